"""Task 4 on data it has never seen: single-task runs on a list of public task folders.

For each folder and seed, three runs, each one JSON in bench/suite_results/<task>/<method>/seed<N>.json:
  reference   frozen all-MiniLM-L6-v2 embeddings from sentence-transformers + scikit-learn's
              LogisticRegression, C in {0.1 … 100} chosen on dev macro-F1: the ten-line baseline;
  frozen      this package, --freeze encoder, every other setting at its default;
  frozen_unweighted  the same with --class-weights none: the reference's own problem (unweighted
              logistic regression, C chosen on dev macro-F1), so it must reproduce the reference;
  finetuned   this package, every setting at its default;
  epochs4     the same with --epochs 4 (the epoch-only budget without the floor of updates): the control
              for the step-budget rule.
Finished runs are skipped on a rerun; `--table` rebuilds bench/suite_results/table.md (mean ± sample
SD over seeds, accuracy / macro-F1 on test, seconds per run).

    python bench/suite.py --methods reference frozen            # minutes on 2 CPU cores
    python bench/suite.py --tasks tweeteval_sentiment cr --methods finetuned --seeds 0 1 2
    python bench/suite.py --table
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from sentence_transformers import SentenceTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, f1_score
from transformers.utils import logging as transformers_logging

from sentence_mtl.data.task_folders import TaskData, load_task_folder
from sentence_mtl.devices import hardware_description, peak_memory, resolve_device
from sentence_mtl.encoder.model_files import packaged_model_path
from sentence_mtl.io import atomic_write_text
from sentence_mtl.metrics import majority_baseline
from sentence_mtl.training import TrainingConfig, train

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
RESULTS = ROOT / "bench" / "suite_results"
TASK3_RESULTS = ROOT / "Task3" / "results"
TASKS = ("tweeteval_sentiment", "mr", "cr", "subj", "mpqa", "trec", "sst")
METHODS = ("reference", "frozen", "frozen_unweighted", "finetuned", "epochs4")
# The reference is written independently of the package on purpose, so it checks the frozen path.
C_GRID = (0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0)


def scores(truth: list[int] | np.ndarray, predicted: np.ndarray) -> dict[str, float]:
    return {
        "accuracy": float(accuracy_score(truth, predicted)),
        "macro_f1": float(f1_score(truth, predicted, average="macro", zero_division=0)),
    }


def run_reference(task: TaskData, seed: int) -> dict[str, Any]:
    """sentence-transformers embeddings + LogisticRegression, C chosen on dev macro-F1."""
    model = SentenceTransformer(str(packaged_model_path()), device="cpu")
    embed = {
        split: model.encode(getattr(task, split).texts, batch_size=64, normalize_embeddings=True)
        for split in ("train", "dev", "test")
    }
    fits = [LogisticRegression(C=c, max_iter=2000).fit(embed["train"], task.train.labels) for c in C_GRID]
    dev_f1 = [scores(task.dev.labels, fitted.predict(embed["dev"]))["macro_f1"] for fitted in fits]
    best = int(np.argmax(dev_f1))
    return {
        "dev": scores(task.dev.labels, fits[best].predict(embed["dev"])),
        "test": scores(task.test.labels, fits[best].predict(embed["test"])),
        "C": C_GRID[best],
    }


def run_package(folder: Path, name: str, seed: int, method: str, settings: Settings) -> dict[str, Any]:
    """One single-task run of train() with the defaults, but for what the method changes."""
    changes = {
        "frozen": {"freeze": "encoder"},
        "frozen_unweighted": {"freeze": "encoder", "class_weights": "none"},
        "epochs4": {"epochs": 4.0},
    }.get(method, {})
    with tempfile.TemporaryDirectory(prefix="suite-") as scratch:
        config = TrainingConfig(
            output_dir=scratch,
            tasks=[f"{name}={folder}"],
            seed=seed,
            model=settings.model,
            device=settings.device,
            **changes,
        )
        metrics = train(config, overwrite=True, show_progress=False)
    return {
        "dev": {key: metrics["dev"][name][key] for key in ("accuracy", "macro_f1")},
        "test": {key: metrics["test"][name][key] for key in ("accuracy", "macro_f1")},
        "steps": metrics["steps"],
        "best_step": metrics["best_step"],
        "stopped_early": metrics["stopped_early"],
        "history": [entry for entry in metrics["history"] if entry["event"] in ("eval", "solve")],
    }


@dataclass(frozen=True)
class Settings:
    """Where the runs read and write: data, results, model (None: the packaged default), device."""

    data: Path = DATA
    results: Path = RESULTS
    model: str | None = None
    device: str | None = None


def result_path(results: Path, task: str, method: str, seed: int) -> Path:
    return results / task / method / f"seed{seed}.json"


def run(task_name: str, method: str, seed: int, settings: Settings) -> None:
    folder = settings.data / task_name
    task = load_task_folder(task_name, folder, seed=0)  # TREC's dev: 10 % of train, stratified, seed 0
    started = time.perf_counter()
    if method == "reference":
        record = run_reference(task, seed)
        device = resolve_device("cpu")
    else:
        record = run_package(folder, task_name, seed, method, settings)
        device = resolve_device(settings.device)
    record.update(
        task=task_name,
        method=method,
        seed=seed,
        train_rows=len(task.train),
        majority=majority_baseline(task.train.labels, task.test.labels, task.labels),
        seconds=round(time.perf_counter() - started, 1),
        # the process's peak so far: one run per process (one task, method and seed) makes it the run's
        peak_rss_mib=peak_memory(device)["rss_mib"],
        hardware=hardware_description(device),
    )
    path = result_path(settings.results, task_name, method, seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(record, indent=1))
    test = record["test"]
    print(f"{task_name} {method} seed {seed}: test acc {100 * test['accuracy']:.1f} "
          f"F1 {100 * test['macro_f1']:.1f} ({record['seconds']:.0f} s)", flush=True)  # fmt: skip


def cell(records: list[dict[str, Any]], task: str | None = None) -> str:
    """Test accuracy / macro-F1 over the records; ``task`` picks one task of a multi-task record."""
    if not records:
        return "–"
    parts = []
    for metric in ("accuracy", "macro_f1"):
        values = [100 * (record["test"][task] if task else record["test"])[metric] for record in records]
        spread = f" ± {statistics.stdev(values):.1f}" if len(values) > 1 else ""
        parts.append(f"{statistics.fmean(values):.1f}{spread}")
    return " / ".join(parts) + f" ({len(records)})"


def seconds_per_hardware(records: list[dict[str, Any]]) -> str:
    """Mean seconds per run, one figure per hardware class, so CPU and GPU times never mix."""
    by_class: dict[str, list[float]] = {}
    for record in records:
        kind = "CPU" if " CPU " in record["hardware"] else "GPU"
        by_class.setdefault(kind, []).append(record["seconds"])
    figures = [f"{statistics.fmean(times):.0f} {kind}" for kind, times in sorted(by_class.items())]
    return " + ".join(figures) or "–"


def table(results: Path = RESULTS) -> str:
    lines = [
        "Test accuracy / macro-F1, mean ± sample SD over seeds (number of seeds); seconds per run "
        "and the hardware class it ran on.",
        "",
        "| task | train rows | majority | reference | frozen | frozen, no class weights | fine-tuned "
        "| fine-tuned, 4 epochs only | s / run (each method) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for task in TASKS:
        records = {
            method: [json.loads(p.read_text()) for p in sorted((results / task / method).glob("seed*.json"))]
            for method in METHODS
        }
        every = [record for group in records.values() for record in group]
        if not every:
            continue
        majority = every[0]["majority"]
        seconds = ", ".join(seconds_per_hardware(records[method]) for method in METHODS)
        lines.append(
            f"| {task} | {every[0]['train_rows']:,} | {100 * majority['accuracy']:.1f} / "
            f"{100 * majority['macro_f1']:.1f} | {cell(records['reference'])} | {cell(records['frozen'])} "
            f"| {cell(records['frozen_unweighted'])} | {cell(records['finetuned'])} "
            f"| {cell(records['epochs4'])} | {seconds} |"
        )
    hardware = sorted({json.loads(p.read_text())["hardware"] for p in results.glob("*/*/seed*.json")})
    return "\n".join([*lines, *multitask_rows(), "", "Hardware: " + "; ".join(hardware)]) + "\n"


def multitask_rows() -> list[str]:
    """TREC-6 + SST-3 trained together, from Task 3's K-ladder on one GPU: K = 0 is the frozen path
    (with and without class weights), K = all with balanced weights is every default."""
    runs = {
        name: [json.loads(p.read_text()) for p in sorted((TASK3_RESULTS / name).glob("seed*.json"))]
        for name in ("ladder_k0_balanced", "ladder_k0", "ladder_kall_balanced")
    }
    if not all(runs.values()):
        return []
    rows = []
    for task, label in (("topic", "trec, multi-task with sst"), ("sentiment", "sst, multi-task with trec")):
        cells = [
            cell(runs[name], task) for name in ("ladder_k0_balanced", "ladder_k0", "ladder_kall_balanced")
        ]
        rows.append(
            f"| {label} | 4,906 + 8,544 | – | – | {' | '.join(cells)} | = fine-tuned (1,684 steps) "
            f"| Task 3 `ladder_*`, GPU |"
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tasks", nargs="+", choices=TASKS, default=list(TASKS))
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("--model", help="model folder or name for the package's runs (default: packaged)")
    parser.add_argument("--device", help="device for the package's runs (default: CUDA when available)")
    parser.add_argument("--table", action="store_true", help="only rebuild the table")
    args = parser.parse_args()
    settings = Settings(data=args.data, results=args.results, model=args.model, device=args.device)
    transformers_logging.disable_progress_bar()
    if not args.table:
        for task in args.tasks:
            for method in args.methods:
                for seed in args.seeds:
                    if not result_path(settings.results, task, method, seed).is_file():
                        run(task, method, seed, settings)
    text = table(settings.results)
    settings.results.mkdir(parents=True, exist_ok=True)
    atomic_write_text(settings.results / "table.md", text)
    print(text)


if __name__ == "__main__":
    main()
