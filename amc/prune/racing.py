"""Racing evaluation: stop scoring a policy once it cannot beat the best one so far.

A policy's score is its top-1 on the ``val`` images, which are in random order. After the
first ``m`` of ``n`` images with ``k`` correct, the top-1 on all ``n`` is bounded from above
(with one-sided confidence ``z``) by the Wilson score bound on ``k/m`` with the finite-
population correction ``(n - m) / (n - 1)`` (sampling without replacement from ``val``):
the remaining images can only bring the score that far up, at that confidence. If even the
bound cannot beat the best score so far, the evaluation stops; the episode then carries the
score of the images it saw (an unbiased estimate) and the number of images, and it can never
become the best policy (which is therefore always scored on the whole of ``val``).
"""

from __future__ import annotations

import math

LOOKS = (0.125, 0.25, 0.5)
"""Fractions of ``val`` after which the bound is checked (then the rest is evaluated)."""

Z = 2.33
"""One-sided normal quantile of the bound (99 % per look)."""


def upper_bound(correct: int, seen: int, total: int, z: float = Z) -> float:
    """Upper confidence bound (fraction, not %) on the accuracy over all ``total`` images
    after ``correct`` of the first ``seen`` were right."""
    if seen >= total:
        return correct / max(1, total)
    if seen <= 0:
        return 1.0
    p = correct / seen
    v = (total - seen) / max(1, total - 1) / seen  # variance factor with the finite correction
    zz = z * z * v
    bound = (p + zz / 2 + z * math.sqrt(p * (1 - p) * v + zz * v / 4)) / (1 + zz)
    # the images not seen can add at most (total - seen) correct ones
    return min(1.0, bound, (correct + total - seen) / total)


def slices(total: int) -> list[int]:
    """Cumulative image counts at which the bound is checked, ending with ``total``."""
    cuts = sorted({max(1, int(round(f * total))) for f in LOOKS if f * total >= 32})
    return [c for c in cuts if c < total] + [total]
