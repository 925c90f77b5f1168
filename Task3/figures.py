"""Task 3's figures, drawn from the committed results in Task3/results (no training).

    pip install -e ".[figures]"        # matplotlib, needed only here
    python Task3/figures.py            # writes the three PNGs into Task3/figures/

freezing.png: the top-K ladder, dev mean macro-F1 and test SST-3 neutral F1 against K trained
layers, with and without class weights. K = 0 solves the heads exactly, a different method from
the gradient steps of K > 0, so it is drawn apart, not joined to them.
forgetting.png: scenario 3, TREC-6 dev accuracy and macro-F1 while training continues, per arm.
transfer.png: the TweetEval learning curve, test accuracy and macro-F1 against training rows.
Every line is one method; every band is ±1 sample SD over 3 seeds.
"""

from __future__ import annotations

import statistics
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from comparisons import TRANSFER_ARMS, mean_macro_f1
from grid import FORGET_ARMS, LADDER, TRANSFER_ROWS
from tables import Results, load_results

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
FIGURES = HERE / "figures"
LAYERS = {"0": 0, "2": 2, "4": 4, "all": 6}
TWEETEVAL_TRAIN_ROWS = 1599


def band(axis: plt.Axes, xs: list[float], columns: list[list[float]], label: str, **style: object) -> None:
    """A line through the means of ``columns`` and a band of ±1 sample SD around it."""
    means = [statistics.fmean(column) for column in columns]
    sds = [statistics.stdev(column) if len(column) > 1 else 0.0 for column in columns]
    (line,) = axis.plot(xs, means, label=label, **style)
    low = [m - s for m, s in zip(means, sds, strict=True)]
    high = [m + s for m, s in zip(means, sds, strict=True)]
    axis.fill_between(xs, low, high, alpha=0.15, color=line.get_color())


def freezing_figure(results: Results, path: Path) -> None:
    figure, axes = plt.subplots(1, 2, figsize=(9, 3.8))
    measures = (
        (lambda r: 100 * mean_macro_f1("dev")(r), "dev mean macro-F1 (TREC-6, SST-3)"),
        (lambda r: 100 * r["test"]["sentiment"]["per_class_f1"]["neutral"], "SST-3 neutral F1, test"),
    )
    for axis, (measure, title) in zip(axes, measures, strict=True):
        for suffix, name, marker in (
            ("", "no class weights", "o"),
            ("_balanced", "balanced class weights", "s"),
        ):
            trained = [k for k in LADDER if k != "0" and results.get(f"ladder_k{k}{suffix}")]
            columns = [[measure(r) for r in results[f"ladder_k{k}{suffix}"]] for k in trained]
            band(axis, [LAYERS[k] for k in trained], columns, f"K ≥ 2, {name}", marker=marker)
            exact = results.get(f"ladder_k0{suffix}", [])
            if exact:
                style = {"marker": marker, "linestyle": "none", "color": "black"}
                fill = "none" if suffix else "full"
                label = f"K = 0 (heads solved), {name}"
                axis.plot([0], [measure(exact[0])], fillstyle=fill, label=label, **style)
        axis.set_xticks([0, 2, 4, 6], ["0", "2", "4", "all (6)"])
        axis.set_xlabel("top encoder layers trained (K)")
        axis.set_title(title)
        axis.grid(alpha=0.3)
    axes[0].set_ylabel("%")
    axes[0].legend(fontsize=7, title="bands: ±1 SD, 3 seeds", title_fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def forgetting_figure(results: Results, path: Path) -> None:
    figure, axes = plt.subplots(2, 2, figsize=(9, 6.4), sharex=True)
    for row, learning_rate in enumerate(("5e-5", "2e-4")):
        for column, (key, title) in enumerate(
            (("topic/accuracy", "accuracy"), ("topic/macro_f1", "macro-F1"))
        ):
            axis = axes[row][column]
            for arm, (description, _) in FORGET_ARMS.items():
                records = results.get(f"forget_{arm}_lr{learning_rate}", [])
                if not records:
                    continue
                histories = [[e for e in r["history"] if e.get("event") == "eval"] for r in records]
                steps = [entry["step"] for entry in histories[0]]
                columns = [[100 * history[i][key] for history in histories] for i in range(len(steps))]
                band(axis, steps, columns, description, marker=".")
            axis.set_title(f"TREC-6 dev {title}, encoder LR {learning_rate}", fontsize=9)
            axis.grid(alpha=0.3)
    for axis in axes[1]:
        axis.set_xlabel("steps after the multi-task model (step 0)")
    axes[0][0].set_ylabel("%")
    axes[1][0].set_ylabel("%")
    axes[0][0].legend(fontsize=7, title="bands: ±1 SD, 3 starting models", title_fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def transfer_figure(results: Results, path: Path) -> None:
    figure, axes = plt.subplots(1, 2, figsize=(9, 3.8), sharey=True)
    sizes = [TWEETEVAL_TRAIN_ROWS if rows is None else rows for rows in TRANSFER_ROWS]
    names = ["all" if rows is None else str(rows) for rows in TRANSFER_ROWS]
    for axis, metric, title in zip(axes, ("accuracy", "macro_f1"), ("accuracy", "macro-F1"), strict=True):
        for arm in TRANSFER_ARMS:
            groups = [results.get(f"transfer_{arm}_n{name}", []) for name in names]
            if not all(groups):
                continue
            columns = [[100 * r["test"]["sentiment"][metric] for r in group] for group in groups]
            band(axis, sizes, columns, arm, marker="o")
        zero_shot = results.get("transfer_zero_shot", [])
        if zero_shot:
            axis.axhline(100 * zero_shot[0]["test"]["sentiment"][metric], color="gray", linestyle="--",
                         label="zero-shot (label names)")  # fmt: skip
        axis.set_xscale("log")
        axis.set_xticks(sizes, [f"{size:,}" for size in sizes])
        axis.minorticks_off()
        axis.set_xlabel("TweetEval training rows (stratified, per seed)")
        axis.set_title(f"TweetEval test {title}")
        axis.grid(alpha=0.3)
    axes[0].set_ylabel("%")
    axes[0].legend(fontsize=7, title="bands: ±1 SD, 3 seeds", title_fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def main() -> None:
    results = load_results(RESULTS)
    FIGURES.mkdir(exist_ok=True)
    for name, draw in (
        ("freezing", freezing_figure),
        ("forgetting", forgetting_figure),
        ("transfer", transfer_figure),
    ):
        draw(results, FIGURES / f"{name}.png")
        print(f"wrote {FIGURES / name}.png")


if __name__ == "__main__":
    main()
