"""Confidence intervals for accuracies: a row of 3/10 and a row of 60/200 are not the same claim."""

from __future__ import annotations

from typing import Sequence


def wilson_interval(correct: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """The Wilson score interval of ``correct / n`` (``(0.0, 1.0)`` for ``n == 0``); it stays inside
    [0, 1] and is sensible at 0/n and n/n, where the normal approximation is not."""
    if n == 0:
        return 0.0, 1.0
    from scipy.stats import binomtest

    ci = binomtest(correct, n).proportion_ci(confidence_level=confidence, method="wilson")
    return float(ci.low), float(ci.high)


def format_accuracy(correct: int, n: int) -> str:
    """``"57/200 28.5% [22.7, 35.1]"``: the count, the rate and its 95% Wilson interval in percent."""
    lo, hi = wilson_interval(correct, n)
    return f"{correct}/{n} {100 * correct / n if n else 0:.1f}% [{100 * lo:.1f}, {100 * hi:.1f}]"


def paired_p_value(a_only: int, b_only: int) -> float:
    """Two-sided exact McNemar test for two methods run on the same problems: ``a_only`` problems
    only the first solved, ``b_only`` only the second. 1.0 when they never disagree."""
    if a_only + b_only == 0:
        return 1.0
    from scipy.stats import binomtest

    return float(binomtest(a_only, a_only + b_only, 0.5).pvalue)


def paired_p_value_of(a: "Sequence[bool]", b: "Sequence[bool]") -> float:
    """:func:`paired_p_value` of two methods' per-problem outcomes on the same problems."""
    return paired_p_value(sum(x and not y for x, y in zip(a, b)), sum(y and not x for x, y in zip(a, b)))
