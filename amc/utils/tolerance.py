"""Output comparisons relative to the output's scale.

An absolute tolerance means nothing for networks whose outputs are tiny (a randomly
initialised torchvision model can output values of 1e-10, so any file would pass an
absolute 1e-4) or huge. Every equivalence check (pruned vs masked network, exported file vs
PyTorch) compares ``max |got - ref| / max |ref|`` with :data:`RTOL` instead.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

RTOL = 1e-4  # float32 networks agree to ~1e-6 of their output scale; broken ones by >1e-2

Outputs = torch.Tensor | np.ndarray | Sequence[torch.Tensor | np.ndarray]


def _flat(x: Outputs) -> list[torch.Tensor]:
    if isinstance(x, torch.Tensor | np.ndarray):
        x = [x]
    return [torch.as_tensor(np.asarray(t) if isinstance(t, np.ndarray) else t.detach())
            .double().cpu() for t in x]


def relative_diff(ref: Outputs, got: Outputs) -> float:
    """``max |got - ref| / max |ref|`` over all outputs; ``inf`` when they are not finite, and
    when the reference is all zeros but ``got`` is not (0 when both are all zeros)."""
    ref, got = _flat(ref), _flat(got)
    if [r.shape for r in ref] != [g.shape for g in got]:
        raise ValueError(f"outputs of shapes {[tuple(g.shape) for g in got]} cannot be compared "
                         f"with {[tuple(r.shape) for r in ref]}")
    scale = max((float(r.abs().max()) for r in ref if r.numel()), default=0.0)
    diff = max((float((g - r).abs().max()) for r, g in zip(ref, got) if r.numel()), default=0.0)
    if not (np.isfinite(scale) and np.isfinite(diff)):
        return float("inf")
    if scale == 0.0:
        return 0.0 if diff == 0.0 else float("inf")
    return diff / scale
