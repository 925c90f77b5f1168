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

from grid import Experiment

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
    forgetting_lines = forgetting_table(results, grid)
    if forgetting_lines:
        lines += ["", *forgetting_lines]
    hardware = sorted({r["hardware"] for records in results.values() for r in records})
    lines += ["", "Hardware: " + "; ".join(hardware)]
    return "\n".join(lines) + "\n"


def split_table(results: Results, grid: Sequence[Experiment], split: str) -> list[str]:
    lines = [
        "| experiment | seeds | TREC-6 acc | TREC-6 macro-F1 | SST-3 acc | SST-3 macro-F1 | SST-3 neutral F1 "
        "| mean macro-F1 | trainable params | s / run | ran on |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for experiment in grid:
        records = results.get(experiment.name, [])
        if not records or experiment.start_from is not None or "transfer" in experiment.tags:
            continue

        def values(task: str, metric: str, records=records) -> list[float]:
            return [r[split][task][metric] for r in records if task in r.get(split, {})]

        neutral = [
            r[split]["sentiment"]["per_class_f1"]["neutral"]
            for r in records
            if "neutral" in r[split].get("sentiment", {}).get("per_class_f1", {})
        ]
        mean_f1 = [statistics.fmean(t["macro_f1"] for t in r[split].values()) for r in records]
        seconds = statistics.fmean(r["wall_seconds"] for r in records)
        lines.append(
            f"| {experiment.name} | {len(records)} | {mean_std(values('topic', 'accuracy'))} "
            f"| {mean_std(values('topic', 'macro_f1'))} | {mean_std(values('sentiment', 'accuracy'))} "
            f"| {mean_std(values('sentiment', 'macro_f1'))} | {mean_std(neutral)} | {mean_std(mean_f1)} "
            f"| {records[0]['trainable_parameters']:,} | {seconds:.0f} | {ran_on(records)} |"
        )
    return lines


def ran_on(records: list[dict[str, Any]]) -> str:
    """Where an experiment's seeds ran, short: "CPU", "NVIDIA H200 ×6" (6 runs at a time)."""
    places = set()
    for record in records:
        device = record["hardware"].split(",")[0] if "CPU" not in record["hardware"] else "CPU"
        concurrent = record.get("concurrent_runs", 1)
        places.add(f"{device} ×{concurrent}" if concurrent > 1 else device)
    return " + ".join(sorted(places))


def forgetting(record: dict[str, Any]) -> dict[str, float]:
    """Scenario 3 from one run's dev history: the frozen topic head's accuracy at the start and the end.

    Step 0 is the starting model, so ``topic_drop`` is the accuracy the frozen head lost as the shared
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
        "sentiment_start": first["sentiment/macro_f1"],
        "sentiment_end": last["sentiment/macro_f1"],
        "sentiment_gain": last["sentiment/macro_f1"] - first["sentiment/macro_f1"],
    }


def forgetting_table(results: Results, grid: Sequence[Experiment]) -> list[str]:
    """Markdown lines for scenario 3 (dev, mean ± std over seeds); empty when none has run."""
    rows = []
    for experiment in grid:
        records = results.get(experiment.name, [])
        if "forget" not in experiment.tags or not records:
            continue
        summaries = [forgetting(record) for record in records]

        def column(key: str, summaries=summaries) -> str:
            return mean_std([summary[key] for summary in summaries])

        rows.append(
            f"| {experiment.name} | {len(records)} | {column('topic_start')} | {column('topic_end')} "
            f"| {column('topic_drop')} | {column('sentiment_start')} | {column('sentiment_end')} "
            f"| {column('sentiment_gain')} |"
        )
    if not rows:
        return []
    return [
        "Scenario 3, on dev: the frozen topic head while training continues (start = step 0).",
        "",
        "| experiment | seeds | TREC-6 acc start | TREC-6 acc end | TREC-6 acc drop "
        "| SST-3 macro-F1 start | SST-3 macro-F1 end | SST-3 macro-F1 gain |",
        "|---|---|---|---|---|---|---|---|",
        *rows,
    ]
