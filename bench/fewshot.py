r"""Few labels: SetFit against Task 4 on N labelled rows per class, the same samples for every method.

For each set, N and seed, a sample of N train rows per class (numpy's default_rng(seed), each class
without replacement, then shuffled) and the set's whole test split form a task folder with only
train.tsv and test.tsv, under WORK/samples/. The seed draws the sample and seeds training. Methods,
each one process timed from its start to its scores (imports, model load, training, test):
  setfit     SetFit 1.2.0 with the paper's settings (bench/setfit_run.py, run by --setfit-python)
  defaults   python Task4/task4.py --task NAME=DIR --seed S                (no other flag)
  frozen     the same with --freeze encoder
  finetune   the same with --method finetune: cross-entropy fine-tuning, the default for many labels
  pairs_only the same with --label-sentences 0: the contrastive path on the labelled rows alone
  setfit_names  SetFit with the rows the defaults add: 8 copies of "This sentence is {label}." a class
Transfer from a related task's model (--init-from MODEL, e.g. Task 4's OUTPUT_DIR/best trained on
SST-3 with its head named "task", for TweetEval sentiment):
  source           that model as it came, on the test split: no training (seconds from loading it)
  transfer_frozen  python Task4/task4.py ... --init-from MODEL --freeze encoder: its head solved again
  transfer         python Task4/task4.py ... --init-from MODEL: the defaults on top of it
Results: WORK/<set>/n<N>/<method>/seed<S>.json; finished runs are skipped on a rerun, and the loop
goes seed by seed, so a stopped run leaves whole seeds. --table writes WORK/table.md (mean ± sample
SD of test accuracy / macro-F1, seconds a run, Welch 95 % CI of defaults − SetFit, the paired 95 % CI
of defaults − finetune on the mean over the sets where finetune ran, and for the sets with transfer
runs the paired 95 % CI of transfer − source, − defaults and − SetFit); --figure draws accuracy
against N per set (matplotlib: pip install -e ".[figures]").

    pip install -e ".[fewshot]"      # setfit, in an environment of its own if you like
    python bench/fewshot.py --data "$DATA" --sizes 8 --seeds 0 1 2 3 4 --setfit-python python
    python bench/fewshot.py --data "$DATA" --sizes 64 --seeds 0 1 2 --methods setfit defaults
    python Task4/task4.py --task task="$DATA/sst" --output-dir runs/sst_source --seed 0
    python bench/fewshot.py --data "$DATA" --sets tweeteval_sentiment --sizes 8 --seeds 0 1 2 3 4 \
        --methods source transfer_frozen transfer --init-from runs/sst_source/best
    python bench/fewshot.py --table --figure docs/figures/fewshot.png
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from sentence_mtl.analysis.comparison import welch_interval
from sentence_mtl.data.public_sets import to_tsv
from sentence_mtl.data.task_folders import load_task_folder
from sentence_mtl.io import atomic_write_text
from sentence_mtl.metrics import classification_metrics
from sentence_mtl.model.multitask import MultiTaskModel

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / "bench" / "fewshot_results"
SETS = ("trec", "sst", "tweeteval_sentiment", "mr", "cr", "subj", "mpqa")
METHODS = ("setfit", "defaults", "frozen", "finetune", "pairs_only", "setfit_names")
SETFIT_FLAGS = {"setfit": [], "setfit_names": ["--label-sentences", "8"]}
# Pairs of methods compared on the mean over the sets, paired by seed, below each table.
PAIRED = (("defaults", "finetune"), ("defaults", "pairs_only"), ("defaults", "setfit_names"),
          ("setfit_names", "setfit"))  # fmt: skip
TRANSFER_METHODS = ("source", "transfer_frozen", "transfer")
TASK4_FLAGS = {
    "defaults": [],
    "frozen": ["--freeze", "encoder"],
    "finetune": ["--method", "finetune"],
    "pairs_only": ["--label-sentences", "0"],
    "transfer_frozen": ["--freeze", "encoder"],
    "transfer": [],
}


def sample_rows(labels: list[int], n_classes: int, per_class: int, seed: int) -> np.ndarray:
    """``per_class`` rows of each class (default_rng(seed), without replacement), then shuffled."""
    labels_array, rng = np.asarray(labels), np.random.default_rng(seed)
    by_class = [np.flatnonzero(labels_array == label) for label in range(n_classes)]
    rows = np.concatenate([rng.choice(members, per_class, replace=False) for members in by_class])
    rng.shuffle(rows)
    return rows


def draw_sample(data: Path, name: str, per_class: int, seed: int, work: Path) -> Path:
    """WORK/samples/<set>/n<N>/seed<S>/: N train rows per class and the whole test split."""
    folder = work / "samples" / name / f"n{per_class}" / f"seed{seed}"
    if (folder / "train.tsv").is_file():
        return folder
    task = load_task_folder(name, data / name, dev_fraction=0)
    rows = sample_rows(task.train.labels, len(task.labels), per_class, seed)
    folder.mkdir(parents=True, exist_ok=True)
    for split, picked in (("train", rows), ("test", range(len(task.test)))):
        data = getattr(task, split)
        table = [(data.texts[i], task.labels[data.labels[i]]) for i in picked]
        atomic_write_text(folder / f"{split}.tsv", to_tsv(name, ("text", "label"), table).decode("utf-8"))
    return folder


def score_source(folder: Path, init_from: Path) -> dict[str, Any]:
    """The related task's model as it came, its head named "task", on the folder's test split."""
    task = load_task_folder("task", folder, dev_fraction=0)
    started = time.perf_counter()
    model = MultiTaskModel.load(init_from, device="cpu")
    model.check_labels({"task": task.labels})
    predicted = [task.labels.index(row["task"]["label"]) for row in model.predict(task.test.texts)]
    metrics = classification_metrics(task.test.labels, predicted, task.labels)
    test = {key: metrics[key] for key in ("accuracy", "macro_f1")}
    return {"test": test, "seconds": round(time.perf_counter() - started, 1)}


def run_method(method: str, folder: Path, seed: int, args: argparse.Namespace) -> dict[str, Any]:
    """One run as its own process; its scores and wall-clock seconds (or why it failed)."""
    if method == "source":
        return score_source(folder, args.init_from)
    with tempfile.TemporaryDirectory(prefix="fewshot-") as scratch:
        if method in SETFIT_FLAGS:
            command = [args.setfit_python, str(ROOT / "bench" / "setfit_run.py"), "--folder", str(folder)]
            command += ["--seed", str(seed), *SETFIT_FLAGS[method]]
        else:
            command = [sys.executable, str(ROOT / "Task4" / "task4.py"), "--task", f"task={folder}"]
            command += ["--seed", str(seed), "--output-dir", scratch, *TASK4_FLAGS[method]]
            command += ["--init-from", str(args.init_from)] if method in TRANSFER_METHODS else []
        environment = {**os.environ, "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1"}
        started = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True, env=environment, cwd=ROOT)
        seconds = time.perf_counter() - started
        if done.returncode != 0:
            return {"error": done.stderr.strip().splitlines()[-1:], "seconds": round(seconds, 1)}
        if method in SETFIT_FLAGS:
            scores = json.loads(done.stdout.strip().splitlines()[-1])
            return {"test": scores, "seconds": round(seconds, 1)}
        metrics = json.loads((Path(scratch) / "metrics.json").read_text())
    test = {key: metrics["test"]["task"][key] for key in ("accuracy", "macro_f1")}
    return {"test": test, "seconds": round(seconds, 1), "method_used": metrics.get("method")}


def run_all(args: argparse.Namespace) -> None:
    for per_class in args.sizes:
        for seed in args.seeds:
            for name in args.sets:
                folder = draw_sample(args.data, name, per_class, seed, args.work)
                for method in args.methods:
                    path = args.work / name / f"n{per_class}" / method / f"seed{seed}.json"
                    if path.is_file():
                        continue
                    record = run_method(method, folder, seed, args)
                    record.update(set=name, per_class=per_class, seed=seed, method=method)
                    if method in TRANSFER_METHODS:
                        record["init_from"] = str(args.init_from)
                    path.parent.mkdir(parents=True, exist_ok=True)
                    atomic_write_text(path, json.dumps(record, indent=1))
                    print(describe(record), flush=True)


def describe(record: dict[str, Any]) -> str:
    """One line: which run, and its test scores and seconds, or why it failed."""
    scores = record.get("test")
    shown = f"acc {100 * scores['accuracy']:.1f} F1 {100 * scores['macro_f1']:.1f}" if scores else "failed:"
    which = f"{record['set']} N={record['per_class']} seed {record['seed']} {record['method']}"
    return f"{which}: {shown} {record.get('error', '')}({record['seconds']:.0f} s)"


def load_records(work: Path) -> list[dict[str, Any]]:
    return [json.loads(path.read_text()) for path in sorted(work.glob("*/n*/*/seed*.json"))]


def matching(records: list[dict[str, Any]], name: str, per_class: int, method: str) -> list[dict[str, Any]]:
    return [r for r in records if (r["set"], r["per_class"], r["method"]) == (name, per_class, method)]


def scores_of(
    records: list[dict[str, Any]], name: str, per_class: int, method: str, metric: str
) -> list[float]:
    """Test scores in percent of one set, size and method; failed runs have none."""
    found = matching(records, name, per_class, method)
    return [100 * record["test"][metric] for record in found if "test" in record]


def cell(values: list[float]) -> str:
    if not values:
        return "–"
    spread = f" ± {statistics.stdev(values):.1f}" if len(values) > 1 else ""
    return f"{statistics.fmean(values):.1f}{spread}"


def score_cell(accuracy: list[float], f1: list[float]) -> str:
    """``mean ± SD / mean ± SD (n)`` of one set, size and method."""
    count = f" ({len(accuracy)})" if accuracy else ""
    return f"{cell(accuracy)} / {cell(f1)}{count}"


def size_table(records: list[dict[str, Any]], per_class: int) -> list[str]:
    """One markdown table for one N: a row per set, then the mean over sets."""
    methods = [m for m in METHODS if any((r["method"], r["per_class"]) == (m, per_class) for r in records)]
    header = ["set", *(f"{method} acc / F1" for method in methods), "s a run (" + ", ".join(methods) + ")"]
    header += ["defaults − SetFit, acc [95 % CI]", "F1 [95 % CI]"]
    lines = [f"**N = {per_class} per class**", "", "| " + " | ".join(header) + " |"]
    lines.append("|---" * len(header) + "|")
    means: dict[tuple[str, str], list[float]] = {}
    for name in SETS:
        row = [name]
        for method in methods:
            accuracy, f1 = (scores_of(records, name, per_class, method, m) for m in ("accuracy", "macro_f1"))
            row.append(score_cell(accuracy, f1))
            if accuracy:
                means.setdefault((method, "accuracy"), []).append(statistics.fmean(accuracy))
                means.setdefault((method, "macro_f1"), []).append(statistics.fmean(f1))
        seconds = [cell([r["seconds"] for r in matching(records, name, per_class, m)]) for m in methods]
        row.append(", ".join(seconds))
        for metric in ("accuracy", "macro_f1"):
            ours, theirs = (scores_of(records, name, per_class, m, metric) for m in ("defaults", "setfit"))
            enough = ours and theirs and (len(ours) > 1 or len(theirs) > 1)
            row.append(welch_interval(ours, theirs).describe() if enough else "–")
        lines.append("| " + " | ".join(row) + " |")
    lines.append(mean_row(records, per_class, methods, means))
    for pair in PAIRED:
        if set(pair) <= set(methods):
            lines += ["", paired_line(records, per_class, pair)]
    return lines


def mean_row(
    records: list[dict[str, Any]],
    per_class: int,
    methods: list[str],
    means: dict[tuple[str, str], list[float]],
) -> str:
    """The mean over the seven sets of each method's per-set means, for each method that ran every set."""
    complete = [m for m in methods if len(means.get((m, "accuracy"), [])) == len(SETS)]
    average = {key: statistics.fmean(values) for key, values in means.items() if key[0] in complete}
    row = ["mean over the sets"]
    for method in methods:
        shown = method in complete
        row.append(
            f"{average[(method, 'accuracy')]:.1f} / {average[(method, 'macro_f1')]:.1f}" if shown else "–"
        )
    seconds = {
        m: [r["seconds"] for r in records if (r["per_class"], r["method"]) == (per_class, m)]
        for m in complete
    }
    row.append(", ".join(f"{statistics.fmean(seconds[m]):.1f}" if m in complete else "–" for m in methods))
    if {"defaults", "setfit"} <= set(complete):
        for key in ("accuracy", "macro_f1"):
            estimate = f"{average[('defaults', key)] - average[('setfit', key)]:+.1f}"
            by_seed = seed_mean_differences(records, per_class, key, ("defaults", "setfit"))
            paired = welch_interval(by_seed, [0.0] * len(by_seed)) if len(by_seed) > 1 else None
            row.append(f"{estimate}; paired by seed {paired.describe()}" if paired else estimate)
    else:
        row += ["–", "–"]
    return "| " + " | ".join(row) + " |"


def seed_mean_differences(
    records: list[dict[str, Any]], per_class: int, metric: str, methods: tuple[str, str]
) -> list[float]:
    """For each seed that every set ran with both methods: the mean over the sets of first − second.

    Both methods read the same sample of a seed, so the seeds pair them; the t interval over these
    means (Welch's against a constant group) is the interval of the mean-over-sets difference.
    """
    first, second = methods
    scores: dict[tuple[str, str, int], float] = {}
    for record in records:
        if record["per_class"] == per_class and "test" in record:
            scores[(record["set"], record["method"], record["seed"])] = 100 * record["test"][metric]
    seeds = sorted({seed for _, _, seed in scores})
    complete = [s for s in seeds if all((n, m, s) in scores for n in SETS for m in methods)]
    return [
        statistics.fmean(scores[(name, first, seed)] - scores[(name, second, seed)] for name in SETS)
        for seed in complete
    ]


def paired_line(records: list[dict[str, Any]], per_class: int, pair: tuple[str, str]) -> str:
    """``first − second`` on the mean over the sets, paired by seed (e.g. defaults − finetune)."""
    parts = []
    for label, metric in (("accuracy", "accuracy"), ("macro-F1", "macro_f1")):
        by_seed = seed_mean_differences(records, per_class, metric, pair)
        if len(by_seed) > 1:
            parts.append(f"{label} {welch_interval(by_seed, [0.0] * len(by_seed)).describe()}")
    seeds = len(seed_mean_differences(records, per_class, "accuracy", pair))
    found = "; ".join(parts) if parts else "fewer than two seeds with every set"
    return f"{pair[0].capitalize()} − {pair[1]}, mean over the sets, paired by seed ({seeds} seeds): {found}."


def paired_interval(
    records: list[dict[str, Any]], name: str, per_class: int, methods: tuple[str, str], metric: str
) -> str:
    """The t interval over seeds of ``first − second``: both read the same sample of a seed."""
    by_seed = [
        {r["seed"]: 100 * r["test"][metric] for r in matching(records, name, per_class, m) if "test" in r}
        for m in methods
    ]
    differences = [
        by_seed[0][seed] - by_seed[1][seed] for seed in sorted(by_seed[0].keys() & by_seed[1].keys())
    ]
    return welch_interval(differences, [0.0] * len(differences)).describe() if len(differences) > 1 else "–"


def transfer_table(records: list[dict[str, Any]], per_class: int) -> list[str]:
    """For each set with transfer runs at this N: every method's scores, and transfer against the others."""
    names = [n for n in SETS if any(matching(records, n, per_class, m) for m in TRANSFER_METHODS)]
    if not names:
        return []
    methods = (*TRANSFER_METHODS, "defaults", "setfit")
    header = ["set", *(f"{method} acc / F1" for method in methods), "s a run (" + ", ".join(methods) + ")"]
    header += [
        f"transfer − {other}, {metric} [paired 95 % CI]"
        for other in ("source", "defaults", "setfit")
        for metric in ("acc", "F1")
    ]
    lines = [f"**N = {per_class} per class, transfer from a related task's model**", ""]
    lines += ["| " + " | ".join(header) + " |", "|---" * len(header) + "|"]
    for name in names:
        row = [name]
        for method in methods:
            accuracy, f1 = (scores_of(records, name, per_class, method, m) for m in ("accuracy", "macro_f1"))
            row.append(score_cell(accuracy, f1))
        seconds = [cell([r["seconds"] for r in matching(records, name, per_class, m)]) for m in methods]
        row.append(", ".join(seconds))
        for other in ("source", "defaults", "setfit"):
            for metric in ("accuracy", "macro_f1"):
                row.append(paired_interval(records, name, per_class, ("transfer", other), metric))
        lines.append("| " + " | ".join(row) + " |")
    return [*lines, ""]


def table(work: Path) -> str:
    records = load_records(work)
    sizes = sorted({record["per_class"] for record in records})
    failures = [r for r in records if "error" in r]
    lines = ["Test accuracy / macro-F1 (%), mean ± sample SD over sample seeds (n); seconds a run.", ""]
    for per_class in sizes:
        lines += [*size_table(records, per_class), "", *transfer_table(records, per_class)]
    lines += [f"- {describe(record)}" for record in failures]
    return "\n".join(lines) + "\n"


def figure(work: Path, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = load_records(work)
    sizes = sorted({record["per_class"] for record in records})
    axes = plt.subplots(1, len(SETS), figsize=(3 * len(SETS), 3), sharex=True)[1]
    for axis, name in zip(axes, SETS, strict=True):
        for method in METHODS:
            points = [(n, scores_of(records, name, n, method, "accuracy")) for n in sizes]
            points = [(n, values) for n, values in points if values]
            if not points:
                continue
            means = [statistics.fmean(values) for _, values in points]
            spreads = [statistics.stdev(values) if len(values) > 1 else 0.0 for _, values in points]
            axis.errorbar([n for n, _ in points], means, yerr=spreads, label=method, capsize=3, marker="o")
        axis.set_xscale("log", base=2)
        axis.set_title(name)
        axis.set_xlabel("labels per class")
    axes[0].set_ylabel("test accuracy (%)")
    axes[0].legend(fontsize="small")
    plt.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    plt.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data", help="the DATA folder")
    parser.add_argument("--work", type=Path, default=WORK, help="samples and results")
    parser.add_argument("--sets", nargs="+", default=list(SETS), choices=SETS)
    parser.add_argument("--sizes", nargs="+", type=int, default=[], help="labels per class, e.g. 8 64")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS + TRANSFER_METHODS)
    parser.add_argument("--init-from", type=Path, default=None, help="the related task's model (transfer)")
    parser.add_argument("--setfit-python", default=sys.executable, help="a Python that has setfit")
    parser.add_argument("--table", action="store_true", help="write WORK/table.md and print it")
    parser.add_argument("--figure", type=Path, default=None, help="draw accuracy against N into this PNG")
    args = parser.parse_args()
    if set(args.methods) & set(TRANSFER_METHODS) and args.init_from is None:
        parser.error("the transfer methods start from a related task's model; pass --init-from MODEL")
    run_all(args)
    if args.table:
        text = table(args.work)
        atomic_write_text(args.work / "table.md", text)
        print(text)
    if args.figure:
        figure(args.work, args.figure)


if __name__ == "__main__":
    main()
