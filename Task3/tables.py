"""The grid's results as Markdown: test and dev tables (mean ± sample std over seeds), scenario 3.

Reads only the JSON records the runner writes, so the tables can be rebuilt anywhere, without
torch and without the checkpoints.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sentence_mtl.analysis.comparison import welch_interval

from comparisons import candidates_table, ladder_table, models_table, transfer_tables, twins_table, versus
from grid import TWEETS, Experiment

Results = dict[str, list[dict[str, Any]]]  # experiment name -> one record per seed


def load_results(results: Path) -> Results:
    """Every record under ``results``, grouped by experiment."""
    loaded: Results = {}
    for path in sorted(results.glob("*/seed*.json")):
        record = json.loads(path.read_text(encoding="utf-8"))
        loaded.setdefault(record["experiment"], []).append(record)
    return loaded


def mean_std(values: list[float]) -> str:
    """Percent, mean ± sample standard deviation; the mean alone for one seed."""
    if not values:
        return "—"
    mean = 100 * statistics.fmean(values)
    spread = 100 * statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{mean:.1f} ± {spread:.1f}" if len(values) > 1 else f"{mean:.1f}"


def render(results: Results, grid: Sequence[Experiment]) -> str:
    """Markdown: test and dev accuracy and macro-F1 per experiment and task, in grid order."""
    lines = [
        "Test (reported once per configuration):",
        "",
        *split_table(results, grid, "test"),
        "",
        "Dev (where choices are made; TREC-6 dev is carved from train with data seed 0):",
        "",
        *split_table(results, grid, "dev"),
    ]
    for section in (
        twins_table(results),
        candidates_table(results, grid),
        ladder_table(results),
        forgetting_table(results, grid),
        transfer_tables(results),
        models_table(results),
    ):
        if section:
            lines += ["", *section]
    hardware = sorted({r["hardware"] for records in results.values() for r in records})
    lines += ["", "Hardware: " + "; ".join(hardware)]
    return "\n".join(lines) + "\n"


def split_table(results: Results, grid: Sequence[Experiment], split: str) -> list[str]:
    lines = [
        "| experiment | seeds | TREC-6 acc | TREC-6 macro-F1 | SST-3 acc | SST-3 macro-F1 | SST-3 neutral F1 "
        "| mean macro-F1 | trainable params | s / run, where |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for experiment in grid:
        records = results.get(experiment.name, [])
        if not records or experiment.start_from is not None or TWEETS in experiment.tasks:
            continue

        def values(task: str, metric: str, records=records) -> list[float]:
            return [r[split][task][metric] for r in records if task in r.get(split, {})]

        neutral = [
            r[split]["sentiment"]["per_class_f1"]["neutral"]
            for r in records
            if "neutral" in r[split].get("sentiment", {}).get("per_class_f1", {})
        ]
        mean_f1 = [statistics.fmean(t["macro_f1"] for t in r[split].values()) for r in records]
        lines.append(
            f"| {experiment.name} | {len(records)} | {mean_std(values('topic', 'accuracy'))} "
            f"| {mean_std(values('topic', 'macro_f1'))} | {mean_std(values('sentiment', 'accuracy'))} "
            f"| {mean_std(values('sentiment', 'macro_f1'))} | {mean_std(neutral)} | {mean_std(mean_f1)} "
            f"| {records[0]['trainable_parameters']:,} | {seconds_per_place(records)} |"
        )
    return lines


def place(record: dict[str, Any]) -> str:
    """Where a run ran, short: "CPU", "NVIDIA H200 ×6" (6 runs at a time)."""
    device = record["hardware"].split(",")[0] if "CPU" not in record["hardware"] else "CPU"
    concurrent = record.get("concurrent_runs", 1)
    return f"{device} ×{concurrent}" if concurrent and concurrent > 1 else device


def seconds_per_place(records: list[dict[str, Any]]) -> str:
    """Mean wall seconds per run for each place the seeds ran, so CPU and GPU times never mix."""
    by_place: dict[str, list[float]] = {}
    for record in records:
        by_place.setdefault(place(record), []).append(record["wall_seconds"])
    return " + ".join(f"{statistics.fmean(times):.0f} {where}" for where, times in sorted(by_place.items()))


def forgetting(record: dict[str, Any]) -> dict[str, float]:
    """Scenario 3 from one run's dev history: the topic task at the start and the end.

    Step 0 is the starting model, so ``topic_drop`` is the accuracy the topic task lost as the shared
    encoder moved on; ``sentiment_gain`` is what the continued training bought on the other task.
    """
    history = [entry for entry in record["history"] if entry.get("event") == "eval"]
    if not history or history[0]["step"] != 0:
        raise ValueError(
            f"{record['experiment']} seed {record['seed']}: its history does not start at step 0"
        )
    first, last = history[0], history[-1]
    return {
        "topic_start": first["topic/accuracy"],
        "topic_end": last["topic/accuracy"],
        "topic_lowest": min(entry["topic/accuracy"] for entry in history),
        "topic_drop": first["topic/accuracy"] - last["topic/accuracy"],
        "topic_f1_drop": first["topic/macro_f1"] - last["topic/macro_f1"],
        "sentiment_start": first["sentiment/macro_f1"],
        "sentiment_end": last["sentiment/macro_f1"],
        "sentiment_gain": last["sentiment/macro_f1"] - first["sentiment/macro_f1"],
    }


def interval_from_zero(values: list[float]) -> str:
    """The mean of per-seed changes with its 95 % interval (Welch against a constant 0)."""
    if len(values) < 2:
        return "—"
    difference = welch_interval(values, [0.0])
    return f"{difference.describe(scale=100)}"


def forgetting_table(results: Results, grid: Sequence[Experiment]) -> list[str]:
    """Scenario 3 on dev: each arm's change over the continued training, then the arms against each other."""
    rows, summaries = [], {}
    for experiment in grid:
        records = results.get(experiment.name, [])
        if "forget" not in experiment.tags or not records:
            continue
        summaries[experiment.name] = [forgetting(record) | {"record": record} for record in records]

        def column(key: str, name: str = experiment.name) -> list[float]:
            return [summary[key] for summary in summaries[name]]

        rows.append(
            f"| {experiment.name} | {len(records)} | {mean_std(column('topic_start'))} "
            f"| {mean_std(column('topic_end'))} | {interval_from_zero(column('topic_drop'))} "
            f"| {interval_from_zero(column('topic_f1_drop'))} | {mean_std(column('sentiment_start'))} "
            f"| {interval_from_zero(column('sentiment_gain'))} |"
        )
    if not rows:
        return []
    contrasts = []
    for learning_rate in ("5e-5", "2e-4"):
        for a, b in (("frozen_head", "trainable_head"), ("sentiment_only", "frozen_head")):
            first = [s["record"] for s in summaries.get(f"forget_{a}_lr{learning_rate}", [])]
            second = [s["record"] for s in summaries.get(f"forget_{b}_lr{learning_rate}", [])]
            if first and second:
                drop = versus(first, second, lambda r: forgetting(r)["topic_drop"])
                contrasts.append(f"LR {learning_rate}, {a} − {b}: {drop}")
    return [
        "Scenario 3, on dev: each seed's plain multi-task model (step 0) continued for 200 steps.",
        "Changes are end minus start per seed, mean with its 95 % CI (points):",
        "",
        "| experiment | seeds | TREC-6 acc start | TREC-6 acc end | TREC-6 acc drop | TREC-6 macro-F1 drop "
        "| SST-3 macro-F1 start | SST-3 macro-F1 gain |",
        "|---|---|---|---|---|---|---|---|",
        *rows,
        "",
        "Arms against each other, TREC-6 accuracy drop (points, Welch 95 % CI): "
        + "; ".join(contrasts)
        + ".",
    ]
