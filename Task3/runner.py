"""Running the grid: one run (training or zero-shot), its record, and many runs in a process pool.

Each run writes one small JSON, ``<results>/<experiment>/seed<N>.json``, with its dev and test
metrics, wall time, peak memory, hardware and, where the encoder trained, its STS-B dev Spearman
afterwards. A run whose JSON exists is skipped, so the grid can be filled in over time and on
several machines. The paths a record holds are relative to the repository root, so a record reads
the same whichever machine wrote it. Every run gets a fresh process, so its peak memory is its own.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import shutil
import socket
import time
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from transformers.utils import logging as transformers_logging

from sentence_mtl import MultiTaskModel, SentenceEncoder
from sentence_mtl.analysis.zero_shot import ZeroShotClassifier
from sentence_mtl.data.task_folders import load_tasks
from sentence_mtl.devices import peak_memory, reset_peak_memory, resolve_device
from sentence_mtl.io import atomic_write_text
from sentence_mtl.metrics import classification_metrics, majority_baseline
from sentence_mtl.training import TrainingConfig, hardware_description, train

from grid import LABEL_DESCRIPTIONS, Experiment
from measures import sts_dev_spearman, subset_folder

REPOSITORY = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Paths:
    """Where the grid reads its data and writes its results and checkpoints."""

    root: Path = REPOSITORY  # record paths are written relative to this
    data: Path = REPOSITORY.parent / "shared" / "data"  # the experiments' task folders live here
    results: Path = REPOSITORY / "Task3" / "results"  # one JSON per run, committed
    scratch: Path = REPOSITORY / "runs" / "task3"  # checkpoints, not committed


@dataclass(frozen=True)
class RunOptions:
    """How this machine runs the grid; an experiment's own overrides take precedence."""

    device: str | None = None
    model: str | None = None  # default: the packaged all-MiniLM-L6-v2
    amp: str = "fp32"
    concurrent_runs: int = 1
    paths: Paths = field(default_factory=Paths)


def result_path(results: Path, experiment: Experiment, seed: int) -> Path:
    return results / experiment.name / f"seed{seed}.json"


def pending_runs(
    experiments: list[Experiment], seeds: list[int], results: Path
) -> list[tuple[Experiment, int]]:
    """The (experiment, seed) runs whose result file does not exist yet; zero-shot runs need one seed."""
    pending = []
    for experiment in experiments:
        for seed in seeds[:1] if "zero_shot" in experiment.overrides else seeds:
            if not result_path(results, experiment, seed).is_file():
                pending.append((experiment, seed))
    return pending


def task_arguments(tasks: tuple[str, ...], data: Path) -> list[str]:
    """``NAME=DIR`` arguments with each DIR resolved against the data folder (absolute ones stay)."""
    arguments = []
    for task in tasks:
        name, _, folder = task.partition("=")
        arguments.append(f"{name}={data / folder}")
    return arguments


def run_task_arguments(experiment: Experiment, seed: int, paths: Paths) -> list[str]:
    """The experiment's ``NAME=DIR`` arguments, with this seed's training subset where it has one."""
    arguments = []
    for argument in task_arguments(experiment.tasks, paths.data):
        name, _, folder = argument.partition("=")
        if name in experiment.train_rows:
            folder = str(subset_folder(name, Path(folder), experiment.train_rows[name], seed, paths.scratch))
        arguments.append(f"{name}={folder}")
    return arguments


def repository_relative(value: str, root: Path) -> str:
    """An absolute path as seen from the repository root; anything else (a hub name) unchanged."""
    return os.path.relpath(value, root) if os.path.isabs(value) else value


def portable_config(config: dict[str, Any], root: Path) -> dict[str, Any]:
    """The resolved config with its paths (output, start, model, task folders) relative to ``root``."""
    config = dict(config)
    for key in ("output_dir", "init_from", "model"):
        if isinstance(config.get(key), str):
            config[key] = repository_relative(config[key], root)
    if isinstance(config.get("tasks"), list):
        config["tasks"] = [
            f"{name}={repository_relative(folder, root)}" if separator else repository_relative(name, root)
            for name, separator, folder in (task.partition("=") for task in config["tasks"])
        ]
    return config


def checkpoint_folder(experiment: Experiment, seed: int, paths: Paths) -> Path:
    return paths.scratch / experiment.name / f"seed{seed}" / "best"


def start_checkpoint(experiment: Experiment, seed: int, options: RunOptions) -> Path:
    """The best/ folder of the same seed of the experiment this one continues, trained first if missing."""
    base = experiment.start_from
    assert base is not None
    folder = checkpoint_folder(base, seed, options.paths)
    if not folder.is_dir():
        logging.warning(
            "%s starts from %s seed %d, whose checkpoint is not here: training it",
            experiment.name,
            base.name,
            seed,
        )
        record = run(base, seed, options)
        if not result_path(options.paths.results, base, seed).is_file():  # an existing record is kept
            save_record(options.paths.results, base, seed, record)
    return folder


def per_task_summary(results: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Accuracy, macro-F1 and per-class F1 of each task: what the tables need, without the rest."""
    return {
        task: {
            "accuracy": r["accuracy"],
            "macro_f1": r["macro_f1"],
            "per_class_f1": {label: c["f1"] for label, c in r["per_class"].items()},
        }
        for task, r in results.items()
    }


def run_zero_shot(experiment: Experiment, seed: int, options: RunOptions) -> dict[str, Any]:
    """Scenario 1: the encoder, frozen, classifies by nearest label name or description."""
    started = time.perf_counter()
    encoder = SentenceEncoder.from_pretrained(options.model, device=options.device)
    tasks = load_tasks(run_task_arguments(experiment, seed, options.paths))
    record: dict[str, Any] = {"dev": {}, "test": {}, "baseline": {"dev": {}, "test": {}}}
    for task in tasks:
        descriptions = (
            LABEL_DESCRIPTIONS[task.name] if experiment.overrides["zero_shot"] == "descriptions" else None
        )
        classifier = ZeroShotClassifier(encoder, task.labels, descriptions)
        for split in ("dev", "test"):
            data = getattr(task, split)
            metrics = classification_metrics(data.labels, classifier.predict(data.texts), task.labels)
            record[split].update(per_task_summary({task.name: metrics}))
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
        "stsb_dev_spearman": sts_dev_spearman(encoder, options.paths.data),
        "peak_memory": peak_memory(encoder.device),
        "hardware": hardware_description(encoder.device),
        "host": socket.gethostname(),
        "concurrent_runs": options.concurrent_runs,
        "config": portable_config({"model": encoder.name}, options.paths.root),
        "history": [],
    }


def run(experiment: Experiment, seed: int, options: RunOptions) -> dict[str, Any]:
    """Train one configuration with one seed and return the compact result record."""
    if "zero_shot" in experiment.overrides:
        return run_zero_shot(experiment, seed, options)
    # The grid measures cross-entropy fine-tuning and freezing, also with few labels: the method is named.
    overrides = {"model": options.model, "amp": options.amp, "method": "finetune", **experiment.overrides}
    output_dir = options.paths.scratch / experiment.name / f"seed{seed}"
    if experiment.start_from is not None:
        overrides["init_from"] = str(start_checkpoint(experiment, seed, options))
    config = TrainingConfig(
        output_dir=str(output_dir),
        tasks=run_task_arguments(experiment, seed, options.paths),
        seed=seed,
        device=options.device,
        **overrides,
    )
    device = resolve_device(options.device)
    reset_peak_memory(device)
    started = time.perf_counter()
    metrics = train(config, overwrite=True, show_progress=False)
    wall = time.perf_counter() - started
    memory = peak_memory(device)
    shutil.rmtree(output_dir / "last", ignore_errors=True)
    spearman = None
    if config.freeze != "encoder":  # a frozen encoder keeps the pre-trained embedding by construction
        trained = MultiTaskModel.load(output_dir / "best", device=device)
        spearman = sts_dev_spearman(trained.encoder, options.paths.data)
    summary = {split: per_task_summary(metrics[split]) for split in ("dev", "test") if split in metrics}
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
        "stsb_dev_spearman": spearman,
        "peak_memory": memory,
        "hardware": metrics["hardware"],
        "host": socket.gethostname(),
        "concurrent_runs": options.concurrent_runs,
        "config": portable_config(metrics["config"], options.paths.root),
        "history": metrics["history"],
    }


def save_record(results: Path, experiment: Experiment, seed: int, record: dict[str, Any]) -> None:
    path = result_path(results, experiment, seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(record, indent=1))


def run_and_save(experiment: Experiment, seed: int, options: RunOptions) -> str:
    """One run, start to saved record; returns its one-line test summary.

    An existing record is kept (a run retrained only for its checkpoint does not replace it).
    """
    record = run(experiment, seed, options)
    if not result_path(options.paths.results, experiment, seed).is_file():
        save_record(options.paths.results, experiment, seed, record)
    test = ", ".join(
        f"{task} acc {100 * r['accuracy']:.1f} F1 {100 * r['macro_f1']:.1f}"
        for task, r in record.get("test", {}).items()
    )
    return f"done {experiment.name} seed {seed}: {test} ({record['wall_seconds']:.0f} s)"


def prepare_worker(workers: int) -> None:
    """Each of ``workers`` processes gets its share of the cores, and no progress bars of its own."""
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // workers))
    transformers_logging.disable_progress_bar()


Run = tuple[Experiment, int]


def with_starting_runs(runs: list[Run], paths: Paths) -> list[Run]:
    """The runs, after the runs that train the starting checkpoints they need and this machine lacks."""
    keys = {(experiment.name, seed) for experiment, seed in runs}
    starts: list[Run] = []
    for experiment, seed in runs:
        base = experiment.start_from
        if base is None or checkpoint_folder(base, seed, paths).is_dir() or (base.name, seed) in keys:
            continue
        keys.add((base.name, seed))
        starts.append((base, seed))
    return [*starts, *runs]


def run_in_parallel(runs: list[Run], options: RunOptions, workers: int) -> list[str]:
    """The runs in ``workers`` processes, a fresh spawned one per run (its own CUDA context and memory).

    A run that continues another experiment's seed waits until that run has finished; the starting
    runs this machine lacks are added first. A failed run is reported and the others go on, except
    those that would start from it. Returns the failures.
    """
    pending = with_starting_runs(runs, options.paths)
    starts = {(e.start_from.name, seed) for e, seed in pending if e.start_from is not None}
    pending.sort(key=lambda run: (run[0].name, run[1]) not in starts)  # what others wait for goes first
    unfinished = {(experiment.name, seed) for experiment, seed in pending}
    failures: list[str] = []
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(
        workers, context, initializer=prepare_worker, initargs=(workers,), max_tasks_per_child=1
    ) as pool:
        running: dict[Future[str], Run] = {}
        while pending or running:
            for item in list(pending):
                experiment, seed = item
                base = experiment.start_from
                if base is not None and (base.name, seed) in unfinished:
                    continue
                pending.remove(item)
                running[pool.submit(run_and_save, experiment, seed, options)] = item
            if not running:  # what is left waits on runs that failed
                failures += [f"{e.name} seed {seed}: its starting run failed" for e, seed in pending]
                break
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                experiment, seed = running.pop(future)
                try:
                    print(future.result(), flush=True)
                    unfinished.discard((experiment.name, seed))
                except Exception as error:  # one failed run must not end the others
                    failures.append(f"{experiment.name} seed {seed}: {type(error).__name__}: {error}")
                    print(f"failed {failures[-1]}", flush=True)
    return failures
