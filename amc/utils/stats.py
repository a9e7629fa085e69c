"""Summary statistics the benchmarks record over seeds and repeats."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np


def binomial_se(top1: float, n: int) -> float:
    """Standard error (percentage points) of a top-1 of ``top1`` % measured on ``n`` images."""
    p = top1 / 100.0
    return 100.0 * math.sqrt(max(p * (1.0 - p), 0.0) / max(n, 1))


def paired_difference(a_hits: Sequence[bool], b_hits: Sequence[bool]) -> dict:
    """Top-1 of ``a`` minus top-1 of ``b`` measured on the same images (per-image
    correctness ``a_hits``, ``b_hits``), with the standard error of that paired difference.

    Returns ``{"diff", "se"}`` in percentage points, ``"only_a"`` / ``"only_b"`` (images only
    one of them gets right: the difference and its noise come from these alone) and
    ``"beyond_se"``: whether ``|diff|`` exceeds ``se`` (the sample standard deviation of the
    per-image differences over sqrt(n)), decided in counts, where it is exactly
    ``(only_a - only_b) ** 2 > only_a + only_b`` (so one image apart is never beyond it).
    """
    a, b = np.asarray(a_hits, dtype=bool), np.asarray(b_hits, dtype=bool)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"per-image hits of one split expected, got shapes {a.shape}, {b.shape}")
    n = len(a)
    only_a, only_b = int((a & ~b).sum()), int((b & ~a).sum())
    d = only_a - only_b
    var = (only_a + only_b - d * d / n) / (n - 1) if n > 1 else 0.0  # of the per-image d_i
    return {"diff": 100.0 * d / max(n, 1), "se": 100.0 * math.sqrt(max(var, 0.0) / max(n, 1)),
            "only_a": only_a, "only_b": only_b, "beyond_se": d * d > only_a + only_b}


def mean_std(xs: Sequence[float]) -> dict:
    """``{"mean", "std", "n", "values"}`` of ``xs`` (sample std, ddof 1; None for one value)."""
    values = [float(x) for x in xs]
    return {"mean": float(np.mean(values)),
            "std": float(np.std(values, ddof=1)) if len(values) > 1 else None,
            "n": len(values), "values": values}


def format_mean_std(d: dict, digits: int = 2) -> str:
    """``"m ± s"`` of a :func:`mean_std` result (``"m"`` alone for one value)."""
    m = f"{d['mean']:.{digits}f}"
    return m if d["std"] is None else f"{m} ± {d['std']:.{digits}f}"


def bootstrap_spearman(a: Sequence[float], b: Sequence[float], reps: int, seed: int) -> dict:
    """Spearman of ``a`` and ``b`` over ``reps`` resamples of their pairs (with
    replacement): mean, std and the 5 / 95 % quantiles (resamples where either side is
    constant are left out; ``reps`` counts those kept)."""
    from scipy.stats import rankdata  # imported when first needed

    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    rng = np.random.default_rng(seed)
    n, vals = len(a), []
    for _ in range(reps):
        i = rng.integers(0, n, n)
        ra, rb = rankdata(a[i]), rankdata(b[i])
        if ra.std() > 0 and rb.std() > 0:
            vals.append(float(np.corrcoef(ra, rb)[0, 1]))
    v = np.asarray(vals)
    return {"mean": float(v.mean()), "std": float(v.std()), "q05": float(np.quantile(v, 0.05)),
            "q95": float(np.quantile(v, 0.95)), "reps": len(v)}
