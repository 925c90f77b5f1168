"""Task 3's two figures, drawn from the committed results in Task3/results (no training).

    pip install -e ".[figures]"        # matplotlib, needed only here
    python Task3/figures.py            # writes Task3/figures/freezing.png and forgetting.png

freezing.png: test accuracy (and SST-3 macro-F1) against trainable parameters for each freezing
strategy (scenarios 1, 2 and 4). forgetting.png: scenario 3, the frozen topic head's dev accuracy
and the sentiment dev macro-F1 while training continues on sentiment, per protection (mean ± std
over seeds).
"""

from __future__ import annotations

import statistics
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from tables import load_results  # a sibling module: this script's folder is on sys.path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
FIGURES = HERE / "figures"

# Freezing strategies from "nothing trained" to "everything trained", as (experiment, label).
FREEZING = [
    ("zero_shot_descriptions", "zero-shot"),
    ("frozen_linear", "frozen, linear"),
    ("frozen_mlp", "frozen, MLP"),
    ("top2", "top-2"),
    ("top4", "top-4"),
    ("mtl_plain", "all layers"),
]
FORGETTING = [
    ("forget_sentiment_only", "sentiment only, encoder LR 5e-5"),
    ("forget_high_lr", "sentiment only, encoder LR 2e-4"),
    ("forget_high_lr_interleaved", "LR 2e-4, topic batches interleaved"),
]


def mean_and_std(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def freezing_figure(results: dict, path: Path) -> None:
    figure, axis = plt.subplots(figsize=(7, 4.2))
    series = (
        ("topic", "accuracy", "o", "TREC-6 accuracy"),
        ("sentiment", "accuracy", "s", "SST-3 accuracy"),
        ("sentiment", "macro_f1", "^", "SST-3 macro-F1"),
    )
    for task, metric, marker, name in series:
        xs, ys, errors, labels = [], [], [], []
        for experiment, label in FREEZING:
            records = results.get(experiment, [])
            if not records:
                continue
            mean, std = mean_and_std([100 * r["test"][task][metric] for r in records])
            xs.append(max(records[0]["trainable_parameters"], 1))  # zero-shot: drawn at 1 on the log axis
            ys.append(mean)
            errors.append(std)
            labels.append(label)
        axis.errorbar(xs, ys, yerr=errors, marker=marker, capsize=3, label=name)
        if metric == "macro_f1":  # below the lowest series, staggered where points are close
            for index, (x, y, label) in enumerate(zip(xs, ys, labels, strict=True)):
                offset = (-4, -14 - 10 * (index % 2))
                axis.annotate(label, (x, y), textcoords="offset points", xytext=offset, fontsize=7)
    axis.set_xscale("log")
    axis.set_xlabel("trainable parameters (log; zero-shot drawn at 1)")
    axis.set_ylabel("test accuracy or macro-F1 (%)")
    axis.set_title("Freezing strategies, all-MiniLM-L6-v2 (mean ± std over seeds)")
    axis.grid(alpha=0.3)
    axis.legend(loc="upper left")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def forgetting_figure(results: dict, path: Path) -> None:
    figure, (topic_axis, sentiment_axis) = plt.subplots(1, 2, figsize=(9, 3.8), sharex=True)
    for experiment, label in FORGETTING:
        records = results.get(experiment, [])
        if not records:
            continue
        histories = [[e for e in r["history"] if e.get("event") == "eval"] for r in records]
        steps = [entry["step"] for entry in histories[0]]
        for axis, key in ((topic_axis, "topic/accuracy"), (sentiment_axis, "sentiment/macro_f1")):
            columns = [[100 * history[i][key] for history in histories] for i in range(len(steps))]
            means = [statistics.fmean(column) for column in columns]
            stds = [statistics.stdev(column) if len(column) > 1 else 0.0 for column in columns]
            axis.plot(steps, means, marker=".", label=f"{label} ({len(records)} seeds)")
            low = [mean - std for mean, std in zip(means, stds, strict=True)]
            high = [mean + std for mean, std in zip(means, stds, strict=True)]
            axis.fill_between(steps, low, high, alpha=0.2)
    topic_axis.set_title("frozen topic head: TREC-6 dev accuracy")
    sentiment_axis.set_title("SST-3 dev macro-F1")
    for axis in (topic_axis, sentiment_axis):
        axis.set_xlabel("steps after the multi-task model (step 0)")
        axis.grid(alpha=0.3)
    topic_axis.set_ylabel("%")
    topic_axis.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def main() -> None:
    results = load_results(RESULTS)
    FIGURES.mkdir(exist_ok=True)
    freezing_figure(results, FIGURES / "freezing.png")
    forgetting_figure(results, FIGURES / "forgetting.png")
    print(f"wrote {FIGURES / 'freezing.png'} and {FIGURES / 'forgetting.png'}")


if __name__ == "__main__":
    main()
