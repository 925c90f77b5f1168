"""The statistical rule: Welch's interval matches scipy's, deterministic groups add no variance, and
the sign test pools settings."""

from __future__ import annotations

import pytest
from scipy import stats

from sentence_mtl.analysis.comparison import Difference, sign_test, welch_interval


def test_welch_interval_equals_scipys_welch_t_test_interval() -> None:
    a, b = [0.71, 0.73, 0.70, 0.74], [0.69, 0.70, 0.66]
    expected = stats.ttest_ind(a, b, equal_var=False).confidence_interval(0.95)
    interval = welch_interval(a, b)
    assert interval.estimate == pytest.approx(sum(a) / 4 - sum(b) / 3)
    assert (interval.low, interval.high) == pytest.approx((expected.low, expected.high))


def test_a_deterministic_group_contributes_no_variance() -> None:
    interval = welch_interval([1.0, 2.0, 3.0], [0.0])
    half = stats.t.ppf(0.975, 2) * (1 / 3) ** 0.5  # the SD of [1, 2, 3] is 1, and 2 degrees of freedom
    assert (interval.low, interval.high) == pytest.approx((2 - half, 2 + half))
    assert interval.verdict == "no difference"
    assert welch_interval([0.5, 0.5, 0.5], [0.4]) == Difference(
        pytest.approx(0.1), pytest.approx(0.1), pytest.approx(0.1)
    )


def test_the_verdict_follows_whether_the_interval_excludes_zero() -> None:
    assert Difference(0.02, 0.01, 0.03).verdict == "better"
    assert Difference(-0.02, -0.03, -0.01).verdict == "worse"
    assert Difference(0.02, -0.01, 0.05).verdict == "no difference"
    assert Difference(0.012, 0.003, 0.021).describe(scale=100) == "+1.2 [+0.3, +2.1]"


def test_too_few_scores_are_refused() -> None:
    with pytest.raises(ValueError, match="at least two scores"):
        welch_interval([0.1], [0.2])
    with pytest.raises(ValueError, match="at least one score"):
        welch_interval([], [0.2, 0.3])


def test_the_sign_test_pools_settings_and_drops_ties() -> None:
    wins, counted, p = sign_test([0.1, 0.2, 0.3, 0.1, 0.2, 0.4, 0.3])
    assert (wins, counted) == (7, 7) and p == pytest.approx(2 / 2**7)
    assert sign_test([0.1, -0.1, 0.0]) == (1, 2, 1.0)
