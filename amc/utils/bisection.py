"""The one bisection: the boundary of a monotone predicate on an interval.

Budgets (the uniform ratio, AMC's clipping rule, the sensitivity threshold, global
thresholds), schedules and mask water-filling all search a monotone false...true predicate.
"""

from __future__ import annotations

from collections.abc import Callable


def bracket(pred: Callable[[float], bool], lo: float, hi: float,
            iters: int = 40) -> tuple[float, float]:
    """Narrow ``[lo, hi]`` around the point where a monotone ``pred`` turns true.

    Args:
        pred: Monotone predicate on ``[lo, hi]``: false below some point, true above it.
        lo: Lower end.
        hi: Upper end (``pred(hi)`` is assumed true).
        iters: Halvings of the interval.

    Returns:
        ``(a, b)`` with ``b - a <= (hi - lo) / 2**iters``, ``pred(b)`` true and ``pred(a)``
        false (or ``(lo, lo)`` when ``pred(lo)`` is already true).
    """
    if pred(lo):
        return lo, lo
    for _ in range(iters):
        mid = (lo + hi) / 2
        if pred(mid):
            hi = mid
        else:
            lo = mid
    return lo, hi


def bisect(pred: Callable[[float], bool], lo: float, hi: float, iters: int = 40) -> float:
    """Smallest x in ``[lo, hi]`` (to ``iters`` halvings) with ``pred(x)`` true."""
    return bracket(pred, lo, hi, iters)[1]


def first_true(pred: Callable[[int], bool], n: int) -> int:
    """Smallest i in ``range(n)`` with ``pred(i)`` true, for ``pred`` monotone false...true
    (``n`` when none is); one call when ``pred(0)`` holds, else about log2(n)."""
    if n and pred(0):
        return 0
    lo, hi = 0, n
    while lo < hi:
        mid = (lo + hi) // 2
        if pred(mid):
            hi = mid
        else:
            lo = mid + 1
    return lo
