"""The one device choice: ``auto`` (CUDA when present), ``cpu`` or ``cuda[:N]``.

Every place that runs a network on a device (scoring, training, the env's workers) resolves
the user's word here once and passes the resulting ``torch.device`` on; nothing else calls
``.cuda()``.
"""

from __future__ import annotations

import torch

from amc.utils.errors import AmcError


def resolve_device(device: str) -> torch.device:
    """``auto`` -> CUDA when available, else CPU; checks that ``cuda`` exists."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device not in ("cpu", "cuda") and not device.startswith("cuda:"):
        raise AmcError(f"unknown device {device!r}; use auto, cpu or cuda")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise AmcError("--device cuda asked for but no CUDA device is present; use --device auto")
    return torch.device(device)
