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
