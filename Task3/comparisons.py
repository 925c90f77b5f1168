"""The grid's comparisons, each one under the project's rule (sentence_mtl.analysis.comparison): a Welch 95 %
interval of the difference of means over seeds, "better" only when it excludes 0, and a sign test
where one comparison repeats over settings. Every function returns Markdown lines; tables.py puts
them together.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from typing import Any

from sentence_mtl.analysis.comparison import sign_test, welch_interval

from grid import LADDER, TRANSFER_ROWS, TWINNED, Experiment

Records = list[dict[str, Any]]
Results = dict[str, Records]
Score = Callable[[dict[str, Any]], float]
TASK_METRICS = (
    ("topic", "accuracy"),
    ("topic", "macro_f1"),
    ("sentiment", "accuracy"),
    ("sentiment", "macro_f1"),
)
LABELS = {"topic": "TREC-6", "sentiment": "SST-3", "accuracy": "acc", "macro_f1": "macro-F1"}
TRANSFER_ARMS = ("frozen", "finetune", "sequential", "sequential_top3", "multitask")


def score(split: str, task: str, metric: str) -> Score:
    return lambda record: record[split][task][metric]


def mean_macro_f1(split: str) -> Score:
    """The mean over tasks of macro-F1: what picks checkpoints and candidates on dev."""
    return lambda record: statistics.fmean(task["macro_f1"] for task in record[split].values())


def spread(values: Sequence[float]) -> str:
    """Percent, mean ± sample SD; the mean alone for one value."""
    mean = 100 * statistics.fmean(values)
    return f"{mean:.1f} ± {100 * statistics.stdev(values):.1f}" if len(values) > 1 else f"{mean:.1f}"


def accuracy_and_f1(records: Records, split: str, task: str) -> str:
    """``acc / macro-F1`` of one task, each as mean ± SD over the records."""
    accuracy = spread([r[split][task]["accuracy"] for r in records])
    return f"{accuracy} / {spread([r[split][task]['macro_f1'] for r in records])}"


def versus(a: Records, b: Records, measure: Score) -> str:
    """``+1.2 [+0.3, +2.1] better``: a − b in points, its interval and the verdict."""
    if not a or not b or (len(a) < 2 and len(b) < 2):
        return "—"
    difference = welch_interval([measure(r) for r in a], [measure(r) for r in b])
    return f"{difference.describe(scale=100)} {difference.verdict}"


def twins_table(results: Results) -> list[str]:
    """Multi-task minus single-task with the same settings, per task metric, on dev and test; pooled."""
    pairs = [("mtl_plain", "single_topic", "single_sentiment")] + [
        (name, f"{name}.single_topic", f"{name}.single_sentiment") for name in TWINNED
    ]
    lines = [
        "Multi-task minus single-task with the same settings (points, Welch 95 % CI, verdict):",
        "",
        "| setting | split | " + " | ".join(f"{LABELS[t]} {LABELS[m]}" for t, m in TASK_METRICS) + " |",
        "|---|---|" + "---|" * len(TASK_METRICS),
    ]
    dev_differences: dict[tuple[str, str], list[float]] = {key: [] for key in TASK_METRICS}
    for multi, topic_twin, sentiment_twin in pairs:
        if not all(results.get(name) for name in (multi, topic_twin, sentiment_twin)):
            continue
        twin = {"topic": results[topic_twin], "sentiment": results[sentiment_twin]}
        for split in ("dev", "test"):
            cells = [versus(results[multi], twin[t], score(split, t, m)) for t, m in TASK_METRICS]
            lines.append(f"| {multi} | {split} | " + " | ".join(cells) + " |")
        for task, metric in TASK_METRICS:
            measure = score("dev", task, metric)
            dev_differences[(task, metric)].append(
                statistics.fmean(map(measure, results[multi])) - statistics.fmean(map(measure, twin[task]))
            )
    pooled = []
    for (task, metric), differences in dev_differences.items():
        wins, counted, p = sign_test(differences)
        pooled.append(
            f"{LABELS[task]} {LABELS[metric]}: multi-task ahead in {wins} of {counted} (p = {p:.3f})"
        )
    return [*lines, "", "Pooled over the settings, dev, two-sided sign test: " + "; ".join(pooled) + "."]


def candidates_table(
    results: Results, grid: Sequence[Experiment], baseline: str = "ladder_kall"
) -> list[str]:
    """Each multi-task candidate against the plain loop run on the same hardware, on dev."""
    base = results.get(baseline, [])
    if not base:
        return []
    lines = [
        f"Multi-task candidates minus the plain loop on the same GPU ({baseline}), dev "
        "(points, Welch 95 % CI):",
        "",
        "| candidate | mean macro-F1 | "
        + " | ".join(f"{LABELS[t]} {LABELS[m]}" for t, m in TASK_METRICS)
        + " |",
        "|---|---|" + "---|" * len(TASK_METRICS),
    ]
    for experiment in grid:
        records = [r for r in results.get(experiment.name, []) if "CPU" not in r["hardware"]]
        if "mtl" not in experiment.tags or "single" in experiment.tags or len(records) < 2:
            continue
        cells = [versus(records, base, mean_macro_f1("dev"))]
        cells += [versus(records, base, score("dev", t, m)) for t, m in TASK_METRICS]
        lines.append(f"| {experiment.name} ({len(records)} GPU seeds) | " + " | ".join(cells) + " |")
    return lines


def ladder_table(results: Results) -> list[str]:
    """K trained layers, with and without class weights: scores, cost, embedding drift, and the steps."""
    lines = [
        "Top-K ladder (one recipe: 4 epochs, LR 5e-5 / 1e-3, batch 32; K = 0 solves the heads exactly):",
        "",
        "| K | class weights | trainable params | dev mean macro-F1 | TREC-6 test acc / macro-F1 "
        "| SST-3 test acc / macro-F1 | SST-3 neutral F1 | STS-B dev Spearman | peak GPU MiB | peak RSS MiB "
        "| s / run |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    steps = []
    for weights in ("none", "balanced"):
        previous: Records = []
        previous_k = ""
        for k in LADDER:
            records = results.get(f"ladder_k{k}{'_balanced' if weights == 'balanced' else ''}", [])
            if not records:
                continue
            test = [accuracy_and_f1(records, "test", task) for task in ("topic", "sentiment")]
            sts = [r["stsb_dev_spearman"] / 100 for r in records if r.get("stsb_dev_spearman") is not None]
            memory = [r.get("peak_memory", {}) for r in records]
            gpu_mib = max(m.get("cuda_mib", 0) for m in memory)
            rss_mib = max(m.get("rss_mib", 0) for m in memory)
            lines.append(
                f"| {k} | {weights} | {records[0]['trainable_parameters']:,} "
                f"| {spread([mean_macro_f1('dev')(r) for r in records])} | {test[0]} | {test[1]} "
                f"| {spread([r['test']['sentiment']['per_class_f1']['neutral'] for r in records])} "
                f"| {spread(sts) if sts else 'unchanged'} "
                f"| {gpu_mib:,.0f} | {rss_mib:,.0f} "
                f"| {statistics.fmean(r['wall_seconds'] for r in records):.0f} |"
            )
            if previous:
                steps.append(
                    f"{weights}, K {previous_k} → {k}: {versus(records, previous, mean_macro_f1('dev'))}"
                )
            previous, previous_k = records, k
    weights_effect = []
    for k in LADDER:
        balanced, unweighted = results.get(f"ladder_k{k}_balanced", []), results.get(f"ladder_k{k}", [])
        weights_effect.append(f"K = {k}: {versus(balanced, unweighted, mean_macro_f1('dev'))}")
    return [
        *lines,
        "",
        "Each step up the ladder, dev mean macro-F1 (points, Welch 95 % CI): " + "; ".join(steps) + ".",
        "",
        "Balanced minus no class weights, dev mean macro-F1: " + "; ".join(weights_effect) + ".",
    ]


def transfer_tables(results: Results) -> list[str]:
    """The learning curve on TweetEval: dev and test per arm and N, and the comparisons that matter."""
    sizes = ["all" if rows is None else str(rows) for rows in TRANSFER_ROWS]
    zero_shot = results.get("transfer_zero_shot", [])
    header = "| arm | " + " | ".join(f"N = {size}" for size in sizes) + " |"
    rule = "|---|" + "---|" * len(sizes)
    lines: list[str] = []
    for split, metrics in (("dev", ("macro_f1",)), ("test", ("accuracy", "macro_f1"))):
        lines += [
            f"TweetEval {split}, {' / '.join(LABELS[m] for m in metrics)} (mean ± SD over 3 seeds):",
            "",
            header,
            rule,
        ]
        if zero_shot:
            cell = " / ".join(spread([r[split]["sentiment"][m] for r in zero_shot]) for m in metrics)
            lines.append("| zero-shot (label names) | " + " | ".join([cell] * len(sizes)) + " |")
        for arm in TRANSFER_ARMS:
            cells = []
            for size in sizes:
                records = results.get(f"transfer_{arm}_n{size}", [])
                cells.append(
                    " / ".join(spread([r[split]["sentiment"][m] for r in records]) for m in metrics)
                    if records
                    else "—"
                )
            lines.append(f"| {arm} | " + " | ".join(cells) + " |")
        lines.append("")
    pairs = (
        ("finetune", "frozen"),
        ("sequential", "finetune"),
        ("sequential_top3", "sequential"),
        ("multitask", "finetune"),
        ("sequential", "frozen"),
    )
    lines += ["Differences in macro-F1 (points, Welch 95 % CI), dev then test:", "", header, rule]
    for a, b in pairs:
        cells = []
        for size in sizes:
            first, second = results.get(f"transfer_{a}_n{size}", []), results.get(f"transfer_{b}_n{size}", [])
            cells.append(
                "dev " + versus(first, second, score("dev", "sentiment", "macro_f1"))
                + "; test " + versus(first, second, score("test", "sentiment", "macro_f1"))
            )  # fmt: skip
        lines.append(f"| {a} − {b} | " + " | ".join(cells) + " |")
    return lines


def models_table(results: Results) -> list[str]:
    """MiniLM against mpnet: test scores, dev, the cost of a run, and memory (TweetEval where run)."""
    rows = []
    for name, label in (
        ("model_minilm_frozen", "MiniLM, frozen"),
        ("model_mpnet_frozen", "mpnet, frozen"),
        ("model_mpnet_top2_epoch1", "mpnet, top 2 layers, 1 epoch"),
    ):
        both, tweets = results.get(name, []), results.get(f"{name}_tweets", [])
        if not both:
            continue
        cells = [accuracy_and_f1(both, "test", task) for task in ("topic", "sentiment")]
        cells.append(accuracy_and_f1(tweets, "test", "sentiment") if tweets else "–")
        seconds = statistics.fmean(r["wall_seconds"] for r in both)
        rss = max(r["peak_memory"]["rss_mib"] for r in [*both, *tweets])
        dev = spread([mean_macro_f1("dev")(r) for r in both])
        rows.append(
            f"| {label} | {both[0]['trainable_parameters']:,} | {dev} | {' | '.join(cells)} "
            f"| {seconds:.0f} | {rss:,.0f} |"
        )
    if not rows:
        return []
    return [
        "The choice of encoder, no class weights (frozen: heads solved exactly); test acc / macro-F1:",
        "",
        "| model | trainable | dev mean macro-F1 | TREC-6 | SST-3 | TweetEval | s / run (TREC-6 + SST-3) "
        "| peak RSS MiB |",
        "|---|---|---|---|---|---|---|---|",
        *rows,
    ]
