"""The summary of bench/contrastive_dev.py's stages: mean dev scores a variant, and paired intervals.

Each stage's first variant is its default; every other variant is compared with it over the (set,
seed) pairs both ran.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sentence_mtl.analysis.comparison import welch_interval


def summary(out: Path, stages: Mapping[str, Mapping[str, Any]]) -> str:
    """Mean dev accuracy / macro-F1 and seconds per variant, and each variant against the stage's default.

    Seconds are the training loop's where every run has them, else the run's wall clock.
    """
    lines = []
    for stage, variants in stages.items():
        for path in sorted(out.glob(f"{stage}*.jsonl")):
            records = [json.loads(line) for line in path.read_text().splitlines()]
            lines += stage_summary(path.stem, variants, records)
    return "\n".join(lines)


def stage_summary(stage: str, variants: Mapping[str, Any], records: list[dict[str, Any]]) -> list[str]:
    """One line a variant: its means, and its paired difference from the stage's first (default) variant."""
    lines = []
    default = next(iter(variants))
    by_run = {(r["set"], r["seed"], r["variant"]): r for r in records}
    for variant in variants:
        mine = [r for r in records if r["variant"] == variant]
        if not mine:  # a variant left out with --variants
            continue
        paired = [(r, by_run.get((r["set"], r["seed"], default))) for r in mine]
        paired = [(r, base) for r, base in paired if base is not None]
        accuracy, f1 = (100 * statistics.fmean(r[key] for r in mine) for key in ("acc", "f1"))
        clock = "train_sec" if all("train_sec" in r for r in records) else "wall_sec"
        seconds = statistics.fmean(r[clock] for r in mine)
        line = f"{stage} {variant}: {len(mine)} runs, dev acc {accuracy:.2f}, F1 {f1:.2f}, "
        line += f"{seconds:.1f} s ({clock})"
        if variant != default and len(paired) > 1:
            intervals = []
            for key in ("acc", "f1"):
                differences = [r[key] - base[key] for r, base in paired]
                # The paired differences' one-sample t interval: Welch's against a constant group.
                intervals.append(welch_interval(differences, [0.0] * len(differences)).describe(scale=100))
            speed = statistics.fmean(base[clock] / r[clock] for r, base in paired)
            line += f"; − {default}, paired acc {intervals[0]}, F1 {intervals[1]}; {speed:.2f}× its speed"
        lines.append(line)
    return lines
