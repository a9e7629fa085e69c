"""Summary statistics the benchmarks record over seeds and repeats."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


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
