"""Task 3 / Task 4 experiment grid on TREC-6 (topic) + SST-3 (sentiment), through the package's API.

Each run writes one small JSON in Task3/results/<experiment>/seed<N>.json with its dev and test
metrics, wall time and hardware. Runs whose JSON exists are skipped, so the grid can be built across
sessions and machines; `--tables` regenerates Task3/results/tables.md (mean ± std over seeds).

    python Task3/experiments.py --list                       # the grid and what is done
    python Task3/experiments.py --only frozen                # cheap: cached embeddings
    python Task3/experiments.py --only mtl single --seeds 0 1 2
    python Task3/experiments.py --tables                     # rebuild the tables from the JSONs
    python Task3/experiments.py --only mtl --device cuda     # the fine-tuning grid on a GPU
    python Task3/experiments.py --device cuda --workers 6    # 6 runs at a time on one GPU

Every run is fp32 unless `--amp` says otherwise, so seeds run on a CPU and on a GPU are comparable.
MiniLM at batch 32 leaves a GPU mostly idle (each step waits on Python), so `--workers N` runs N
runs at once in separate processes; their records say so (`concurrent_runs`), since their wall
times are then shared.
"""

from __future__ import annotations

import argparse
import json
import logging
import multiprocessing
import os
import shutil
import socket
import statistics
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from transformers.utils import logging as transformers_logging

from sentence_mtl import SentenceEncoder
from sentence_mtl.io import atomic_write_text
from sentence_mtl.metrics import classification_metrics, majority_baseline
from sentence_mtl.training import TrainingConfig, hardware_description, load_tasks, train
from sentence_mtl.zero_shot import ZeroShotClassifier

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
RESULTS = ROOT / "Task3" / "results"
SCRATCH = ROOT / "runs" / "task3"
TOPIC = f"topic={DATA / 'trec'}"
SENTIMENT = f"sentiment={DATA / 'sst'}"


@dataclass(frozen=True)
class Experiment:
    """One configuration of the grid; every seed of it is one run."""

    name: str
    description: str
    overrides: dict[str, Any] = field(default_factory=dict)
    tasks: tuple[str, ...] = (TOPIC, SENTIMENT)
    start_from: str | None = None  # an experiment whose seed-0 best checkpoint this one continues


@dataclass(frozen=True)
class RunOptions:
    """How this machine runs the grid; an experiment's own overrides take precedence."""

    device: str | None = None
    model: str | None = None  # default: the packaged all-MiniLM-L6-v2
    amp: str = "fp32"
    concurrent_runs: int = 1


# The plain loop of the issue: AdamW 5e-5 / 1e-3, batch 32, 4 epochs, linear warm-up/decay, mean
# pooling, linear heads, proportional single-task batches, unweighted cross-entropy (pinned: the
# package's default became balanced class weights, mtl_balanced, once this grid measured it).
# Every other experiment varies one or two knobs from it.
FINETUNE = {"epochs": 4.0, "encoder_lr": 5e-5, "head_lr": 1e-3, "batch_size": 32, "class_weights": "none"}
FROZEN = {
    "freeze": "encoder",
    "epochs": 30.0,
    "head_lr": 3e-3,
    "warmup_ratio": 0.0,
    "eval_every": 500,
    "class_weights": "none",
}

# Scenario 1 (everything frozen): nothing is trained; each label is described in words.
LABEL_DESCRIPTIONS = {
    "topic": {
        "abbreviation": "What does this abbreviation or acronym stand for?",
        "description": "A question asking for a description, definition, reason or manner.",
        "entity": "A question asking about a thing: an animal, color, food, product, event or term.",
        "human": "A question asking who: a person, a group or an organization.",
        "location": "A question asking where: a place, city, country, state or mountain.",
        "numeric": "A question asking for a number: how many, how much, when, a date, a size or a price.",
    },
    "sentiment": {
        "negative": "A negative review: the film is bad, boring and disappointing.",
        "neutral": "A neutral review: the film is neither good nor bad.",
        "positive": "A positive review: the film is good, moving and enjoyable.",
    },
}

# Scenario 3 (one head frozen): continue the plain multi-task model (seed 0's best checkpoint) with
# the topic head frozen for 200 steps (3/4 of an SST epoch), and watch the topic accuracy on dev as
# the shared encoder drifts: at the plain encoder LR (5e-5) and at 4× that (2e-4), where the question
# is whether interleaving topic batches (which update the encoder, not the frozen head) protects it.
# Each run's seed changes the batch order and dropout, not the starting model.
FORGET = {
    "freeze": "head:topic",
    "max_steps": 200,
    "eval_every": 25,
    "encoder_lr": 5e-5,
    "head_lr": 1e-3,
    "class_weights": "none",
}

GRID = [
    Experiment("zero_shot_names", "nothing trained: nearest label name by cosine", {"zero_shot": "names"}),
    Experiment(
        "zero_shot_descriptions",
        "nothing trained: nearest label description by cosine",
        {"zero_shot": "descriptions"},
    ),
    Experiment(
        "frozen_linear", "frozen encoder, linear heads on cached embeddings", {**FROZEN, "head": "linear"}
    ),
    Experiment("frozen_mlp", "frozen encoder, MLP heads on cached embeddings", {**FROZEN, "head": "mlp"}),
    Experiment("mtl_plain", "multi-task fine-tuning, the plain loop", FINETUNE),
    Experiment("single_topic", "single-task fine-tuning on TREC", FINETUNE, (TOPIC,)),
    Experiment("single_sentiment", "single-task fine-tuning on SST", FINETUNE, (SENTIMENT,)),
    Experiment(
        "mtl_balanced", "multi-task, balanced class weights", {**FINETUNE, "class_weights": "balanced"}
    ),
    Experiment("mtl_epochs8", "multi-task, 8 epochs", {**FINETUNE, "epochs": 8.0}),
    Experiment(
        "mtl_label_smoothing", "multi-task, label smoothing 0.1", {**FINETUNE, "label_smoothing": 0.1}
    ),
    Experiment("mtl_mlp_head", "multi-task, MLP heads", {**FINETUNE, "head": "mlp"}),
    Experiment("mtl_lr2e-5", "multi-task, encoder LR 2e-5", {**FINETUNE, "encoder_lr": 2e-5}),
    Experiment("mtl_lr1e-4", "multi-task, encoder LR 1e-4", {**FINETUNE, "encoder_lr": 1e-4}),
    Experiment(
        "mtl_lr1e-4_ld0.9",
        "multi-task, encoder LR 1e-4, layer decay 0.9",
        {**FINETUNE, "encoder_lr": 1e-4, "layer_decay": 0.9},
    ),
    Experiment(
        "mtl_lr1e-4_ld0.9_balanced",
        "multi-task, encoder LR 1e-4, layer decay 0.9, balanced class weights",
        {**FINETUNE, "encoder_lr": 1e-4, "layer_decay": 0.9, "class_weights": "balanced"},
    ),
    Experiment(
        "mtl_balanced_label_smoothing",
        "multi-task, balanced class weights, label smoothing 0.1",
        {**FINETUNE, "class_weights": "balanced", "label_smoothing": 0.1},
    ),
    Experiment(
        "mtl_balanced_mlp_head",
        "multi-task, balanced class weights, MLP heads",
        {**FINETUNE, "class_weights": "balanced", "head": "mlp"},
    ),
    Experiment(
        "mtl_label_smoothing_mlp_head",
        "multi-task, label smoothing 0.1, MLP heads",
        {**FINETUNE, "label_smoothing": 0.1, "head": "mlp"},
    ),
    Experiment(
        "mtl_uncertainty",
        "multi-task, uncertainty loss weighting",
        {**FINETUNE, "loss_weighting": "uncertainty"},
    ),
    Experiment(
        "mtl_temperature2",
        "multi-task, temperature sampling T=2",
        {**FINETUNE, "sampling": "temperature", "temperature": 2.0},
    ),
    Experiment(
        "mtl_round_robin", "multi-task, round-robin sampling", {**FINETUNE, "sampling": "round_robin"}
    ),
    Experiment(
        "amp_bf16",
        "the plain loop under bf16 autocast (needs a GPU or a bf16 CPU: 22x slower on AVX2)",
        # named without "mtl" so that `--only mtl` on a CPU does not start a 6-hour run
        {**FINETUNE, "amp": "bf16"},
    ),
    Experiment("top2", "top-2 layers unfrozen", {**FINETUNE, "freeze": "top:2"}),
    Experiment("top4", "top-4 layers unfrozen", {**FINETUNE, "freeze": "top:4"}),
    Experiment(
        "forget_sentiment_only",
        "topic head frozen, sentiment batches only, encoder LR 5e-5",
        {**FORGET, "train_tasks": ["sentiment"]},
        start_from="mtl_plain",
    ),
    Experiment(
        "forget_high_lr",
        "topic head frozen, sentiment batches only, encoder LR 2e-4",
        {**FORGET, "train_tasks": ["sentiment"], "encoder_lr": 2e-4},
        start_from="mtl_plain",
    ),
    Experiment(
        "forget_high_lr_interleaved",
        "topic head frozen, encoder LR 2e-4, topic batches interleaved (proportional)",
        {**FORGET, "encoder_lr": 2e-4},
        start_from="mtl_plain",
    ),
]


def experiment_named(name: str) -> Experiment:
    return next(experiment for experiment in GRID if experiment.name == name)


def single_task_twins(experiment: Experiment) -> list[Experiment]:
    """Each task trained alone with a multi-task experiment's settings: the same-budget comparison."""
    return [
        Experiment(
            f"{experiment.name}.single_{task}",
            f"single-task {task}, the settings of {experiment.name}",
            experiment.overrides,
            (spec,),
        )
        for task, spec in (("topic", TOPIC), ("sentiment", SENTIMENT))
    ]


# The dev candidates of Task 4 that change what a single-task run would do too (sampling and loss
# weighting do not: their single-task twins are single_topic and single_sentiment).
TWINNED = (
    "mtl_balanced",
    "mtl_epochs8",
    "mtl_label_smoothing",
    "mtl_mlp_head",
    "mtl_lr1e-4_ld0.9",
    "mtl_lr1e-4_ld0.9_balanced",
)
GRID += [twin for name in TWINNED for twin in single_task_twins(experiment_named(name))]


def result_path(experiment: Experiment, seed: int) -> Path:
    return RESULTS / experiment.name / f"seed{seed}.json"


def start_checkpoint(experiment: Experiment, options: RunOptions) -> Path:
    """The best/ folder a continuing experiment starts from, trained first if this machine lacks it."""
    assert experiment.start_from is not None
    base = experiment_named(experiment.start_from)
    folder = SCRATCH / base.name / "seed0" / "best"
    if not folder.is_dir():
        logging.warning(
            "%s starts from %s seed 0, whose checkpoint is not here: training it", experiment.name, base.name
        )
        record = run(base, 0, options)
        if not result_path(base, 0).is_file():
            save_record(base, 0, record)
    return folder


def pending_runs(experiments: list[Experiment], seeds: list[int]) -> list[tuple[Experiment, int]]:
    """The (experiment, seed) runs whose result file does not exist yet; zero-shot runs need one seed."""
    pending = []
    for experiment in experiments:
        for seed in seeds[:1] if "zero_shot" in experiment.overrides else seeds:
            if not result_path(experiment, seed).is_file():
                pending.append((experiment, seed))
    return pending


def run_zero_shot(experiment: Experiment, seed: int, options: RunOptions) -> dict[str, Any]:
    """Scenario 1: the encoder, frozen, classifies by nearest label name or description."""
    started = time.perf_counter()
    encoder = SentenceEncoder.from_pretrained(options.model, device=options.device)
    tasks = load_tasks(TrainingConfig(tasks=list(experiment.tasks)))
    record: dict[str, Any] = {"dev": {}, "test": {}, "baseline": {"dev": {}, "test": {}}}
    for task in tasks:
        descriptions = (
            LABEL_DESCRIPTIONS[task.name] if experiment.overrides["zero_shot"] == "descriptions" else None
        )
        classifier = ZeroShotClassifier(encoder, task.labels, descriptions)
        for split in ("dev", "test"):
            data = getattr(task, split)
            metrics = classification_metrics(data.labels, classifier.predict(data.texts), task.labels)
            record[split][task.name] = {
                "accuracy": metrics["accuracy"],
                "macro_f1": metrics["macro_f1"],
                "per_class_f1": {label: c["f1"] for label, c in metrics["per_class"].items()},
            }
            record["baseline"][split][task.name] = majority_baseline(
                task.train.labels, data.labels, task.labels
            )
    return {
        "experiment": experiment.name,
        "description": experiment.description,
        "seed": seed,
        **record,
        "best_step": 0,
        "steps": 0,
        "train_seconds": 0.0,
        "wall_seconds": round(time.perf_counter() - started, 1),
        "trainable_parameters": 0,
        "hardware": hardware_description(encoder.device),
        "host": socket.gethostname(),
        "concurrent_runs": options.concurrent_runs,
        "config": {"model": encoder.name},
        "history": [],
    }


def run(experiment: Experiment, seed: int, options: RunOptions) -> dict[str, Any]:
    """Train one configuration with one seed and return the compact result record."""
    if "zero_shot" in experiment.overrides:
        return run_zero_shot(experiment, seed, options)
    overrides = {"model": options.model, "amp": options.amp, **experiment.overrides}
    output_dir = SCRATCH / experiment.name / f"seed{seed}"
    if experiment.start_from is not None:
        overrides["init_from"] = str(start_checkpoint(experiment, options))
    config = TrainingConfig(
        output_dir=str(output_dir),
        tasks=list(experiment.tasks),
        seed=seed,
        device=options.device,
        **overrides,
    )
    started = time.perf_counter()
    metrics = train(config, overwrite=True, show_progress=False)
    wall = time.perf_counter() - started
    shutil.rmtree(output_dir / "last", ignore_errors=True)
    summary = {
        split: {
            task: {
                "accuracy": r["accuracy"],
                "macro_f1": r["macro_f1"],
                "per_class_f1": {label: c["f1"] for label, c in r["per_class"].items()},
            }
            for task, r in metrics[split].items()
        }
        for split in ("dev", "test")
        if split in metrics
    }
    return {
        "experiment": experiment.name,
        "description": experiment.description,
        "seed": seed,
        **summary,
        "baseline": metrics["baseline"],
        "best_step": metrics["best_step"],
        "steps": metrics["steps"],
        "train_seconds": metrics["train_seconds"],
        "wall_seconds": round(wall, 1),
        "trainable_parameters": metrics["parameters"]["total"]["trainable"],
        "hardware": metrics["hardware"],
        "host": socket.gethostname(),
        "concurrent_runs": options.concurrent_runs,
        "config": metrics["config"],
        "history": metrics["history"],
    }


def save_record(experiment: Experiment, seed: int, record: dict[str, Any]) -> None:
    path = result_path(experiment, seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(record, indent=1))


def run_and_save(name: str, seed: int, options: RunOptions) -> str:
    """One run, start to saved record; returns its one-line test summary."""
    experiment = experiment_named(name)
    record = run(experiment, seed, options)
    save_record(experiment, seed, record)
    test = ", ".join(
        f"{task} acc {100 * r['accuracy']:.1f} F1 {100 * r['macro_f1']:.1f}"
        for task, r in record.get("test", {}).items()
    )
    return f"done {name} seed {seed}: {test} ({record['wall_seconds']:.0f} s)"


def share_threads(workers: int) -> None:
    """Each of ``workers`` processes gets its share of the cores, so they do not fight over them."""
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // workers))


def run_in_parallel(runs: list[tuple[Experiment, int]], options: RunOptions, workers: int) -> None:
    """Runs in ``workers`` fresh processes (spawned, so each has its own CUDA context).

    Continuing experiments' starting checkpoints are trained here first, once, so that no two
    workers train the same one.
    """
    continuing = {e.name: e for e, _ in runs if e.start_from is not None}
    for experiment in continuing.values():
        start_checkpoint(experiment, options)
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(workers, context, initializer=share_threads, initargs=(workers,)) as pool:
        futures = [pool.submit(run_and_save, e.name, seed, options) for e, seed in runs]
        for future in as_completed(futures):
            print(future.result(), flush=True)


def load_results() -> dict[str, list[dict[str, Any]]]:
    results: dict[str, list[dict[str, Any]]] = {}
    for path in sorted(RESULTS.glob("*/seed*.json")):
        record = json.loads(path.read_text(encoding="utf-8"))
        results.setdefault(record["experiment"], []).append(record)
    return results


def mean_std(values: list[float]) -> str:
    if not values:
        return "—"
    mean = 100 * statistics.fmean(values)
    spread = 100 * statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{mean:.1f} ± {spread:.1f}" if len(values) > 1 else f"{mean:.1f}"


def tables(results: dict[str, list[dict[str, Any]]]) -> str:
    """Markdown: test and dev accuracy and macro-F1 per experiment and task (mean ± std over seeds)."""
    lines = [
        "Test (reported once per configuration):",
        "",
        *split_table(results, "test"),
        "",
        "Dev (where choices are made; TREC-6 dev is carved from train with data seed 0):",
        "",
        *split_table(results, "dev"),
    ]
    forgetting_lines = forgetting_table(results)
    if forgetting_lines:
        lines += ["", *forgetting_lines]
    hardware = sorted({r["hardware"] for records in results.values() for r in records})
    lines += ["", "Hardware: " + "; ".join(hardware)]
    return "\n".join(lines) + "\n"


def split_table(results: dict[str, list[dict[str, Any]]], split: str) -> list[str]:
    lines = [
        "| experiment | seeds | TREC-6 acc | TREC-6 macro-F1 | SST-3 acc | SST-3 macro-F1 | SST-3 neutral F1 "
        "| mean macro-F1 | trainable params | s / run | ran on |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for experiment in GRID:
        records = results.get(experiment.name, [])
        if not records or experiment.start_from is not None:
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


def forgetting_table(results: dict[str, list[dict[str, Any]]]) -> list[str]:
    """Markdown lines for scenario 3 (dev, mean ± std over seeds); empty when none has run."""
    rows = []
    for experiment in GRID:
        records = results.get(experiment.name, [])
        if experiment.start_from is None or not records:
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


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--only", nargs="+", default=None, help="run experiments whose name contains any of these"
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--device", default=None)
    parser.add_argument("--model", default=None, help="model folder or hub name (default: packaged MiniLM)")
    parser.add_argument("--amp", choices=("fp32", "bf16", "fp16", "auto"), default="fp32")
    parser.add_argument("--workers", type=int, default=1, help="runs at a time, each in its own process")
    parser.add_argument("--list", action="store_true", help="show the grid and which runs exist")
    parser.add_argument("--tables", action="store_true", help="only rebuild Task3/results/tables.md")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(message)s")
    transformers_logging.disable_progress_bar()

    selected = [e for e in GRID if not args.only or any(word in e.name for word in args.only)]
    if args.list:
        for experiment in GRID:
            done = [seed for seed in args.seeds if result_path(experiment, seed).is_file()]
            print(f"{experiment.name:<20} seeds done {done}  {experiment.description}")
        return
    if args.workers < 1:
        parser.error(f"--workers must be at least 1, got {args.workers}")
    options = RunOptions(args.device, args.model, args.amp, args.workers)
    runs = [] if args.tables else pending_runs(selected, args.seeds)
    if args.workers > 1:
        run_in_parallel(runs, options, args.workers)
    else:
        for experiment, seed in runs:
            print(f"run  {experiment.name} seed {seed} …", flush=True)
            print(run_and_save(experiment.name, seed, options), flush=True)
    table = tables(load_results())
    (RESULTS / "tables.md").parent.mkdir(parents=True, exist_ok=True)
    (RESULTS / "tables.md").write_text(table, encoding="utf-8")
    print(table)


if __name__ == "__main__":
    main()
