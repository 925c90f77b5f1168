"""Comparing two configurations over seeds: the one rule every "better" in this project follows.

A configuration is run with several seeds; a score is summarised as mean ± sample SD (n − 1). One
configuration is *better* than another when the 95 % confidence interval of the difference of
their means excludes 0. The interval is Welch's (Welch 1947): it does not assume equal variances,
and its degrees of freedom come from the Welch–Satterthwaite equation. A deterministic method (one
that gives the same score for every seed, such as a convex solver) contributes no variance. When
the same comparison repeats over several settings, :func:`sign_test` pools them: under "no
difference" each setting is a fair coin.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from scipy import stats


@dataclass(frozen=True)
class Difference:
    """``mean(a) − mean(b)`` with its 95 % interval, in the scores' own units."""

    estimate: float
    low: float
    high: float

    @property
    def verdict(self) -> str:
        """ "better" or "worse" when the interval excludes 0, else "no difference"."""
        if self.low > 0:
            return "better"
        if self.high < 0:
            return "worse"
        return "no difference"

    def describe(self, scale: float = 1.0, digits: int = 1) -> str:
        """``+1.2 [+0.3, +2.1]`` with the scores multiplied by ``scale`` (100 for percentages)."""
        values = (scale * self.estimate, scale * self.low, scale * self.high)
        return "{:+.{d}f} [{:+.{d}f}, {:+.{d}f}]".format(*values, d=digits)


def welch_interval(a: Sequence[float], b: Sequence[float], confidence: float = 0.95) -> Difference:
    """Welch's interval for ``mean(a) − mean(b)``; a group of one score counts as deterministic.

    Needs at least two scores in one of the groups, or no variance to estimate at all (both groups
    constant), in which case the interval is the difference itself.
    """
    if not a or not b:
        raise ValueError("each group needs at least one score")
    if len(a) < 2 and len(b) < 2:
        raise ValueError("one of the groups needs at least two scores to estimate a spread")
    estimate = statistics.fmean(a) - statistics.fmean(b)
    parts = [statistics.variance(group) / len(group) if len(group) > 1 else 0.0 for group in (a, b)]
    standard_error = math.sqrt(sum(parts))
    if standard_error == 0:
        return Difference(estimate, estimate, estimate)
    freedom = sum(parts) ** 2 / sum(
        part**2 / (len(group) - 1) for part, group in zip(parts, (a, b), strict=True) if part > 0
    )
    half_width = stats.t.ppf(0.5 + confidence / 2, freedom) * standard_error
    return Difference(estimate, estimate - half_width, estimate + half_width)


def sign_test(differences: Sequence[float]) -> tuple[int, int, float]:
    """How many of the settings favour ``a`` (> 0), how many count (ties dropped), and the two-sided p."""
    wins = sum(difference > 0 for difference in differences)
    counted = sum(difference != 0 for difference in differences)
    if counted == 0:
        return 0, 0, 1.0
    return wins, counted, float(stats.binomtest(wins, counted, 0.5).pvalue)
