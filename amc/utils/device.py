"""The one device choice: ``auto`` (CUDA when present), ``cpu`` or ``cuda[:N]``.

Every place that runs a network on a device (scoring, training, the env's workers) resolves
the user's word here once and passes the resulting ``torch.device`` on; nothing else calls
``.cuda()``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

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


def device_of(model: torch.nn.Module, default: str | torch.device = "cpu") -> torch.device:
    """Where ``model``'s parameters are (``default`` for a model without any)."""
    first = next(iter(model.parameters()), None)
    return first.device if first is not None else torch.device(default)


@contextmanager
def placed(model: torch.nn.Module, device: str | torch.device) -> Iterator[torch.nn.Module]:
    """``model`` on ``device`` for the ``with`` block, back where it was after it.

    Networks between stages live on the CPU (the training loop moves its model to the
    device and back); an evaluation on the device moves such a network there and back in
    place (its parameters stay the same objects), and leaves one already there as it is.
    """
    dev = torch.device(device)
    home = device_of(model, dev)
    same = home.type == dev.type and (dev.index is None or home.index == dev.index)
    if same:
        yield model
        return
    model.to(dev)
    try:
        yield model
    finally:
        model.to(home)
