"""Summary statistics the benchmarks record over seeds and repeats."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np


def binomial_se(top1: float, n: int) -> float:
    """Standard error (percentage points) of a top-1 of ``top1`` % measured on ``n`` images."""
    p = top1 / 100.0
    return 100.0 * math.sqrt(max(p * (1.0 - p), 0.0) / max(n, 1))


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
