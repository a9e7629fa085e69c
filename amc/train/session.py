"""Where a training process sits in a run: alone (:class:`Session`) or as one worker of a
data-parallel run (:class:`DistributedSession`; Ray Train's workers in
``amc.agents.ray_train``).

The training loop and the fine-tuning runner ask the session, never the environment, for the
device, the model wrapper (DDP), sums over workers, and where checkpoints go: one process
writes ``<run>/checkpoints/last.pt``; distributed workers hand their checkpoint to the
framework that launched them (which also restores it after a worker failure).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from amc.utils.device import resolve_device

LAST = "last.pt"
"""The file name of the resume point."""


class Session:
    """A single training process: rank 0 of 1, checkpoints in the run folder."""

    rank: int = 0
    world: int = 1

    @property
    def main(self) -> bool:
        """Whether this process writes the run's files (rank 0)."""
        return self.rank == 0

    def device(self, requested: str) -> torch.device:
        """The device of this process for the user's ``auto``, ``cpu`` or ``cuda``."""
        return resolve_device(requested)

    def wrap(self, model: nn.Module) -> nn.Module:
        """The module the training step calls (DDP where there are several workers)."""
        return model

    def all_sum(self, t: torch.Tensor) -> torch.Tensor:
        """``t`` summed over the workers."""
        return t

    def agree(self, value: Any) -> Any:
        """Rank 0's ``value`` on every worker (decisions that must not diverge)."""
        return value

    def checkpoint(self, write: Callable[[Path], None], ckpt_dir: Path, metrics: dict) -> None:
        """Save the resume point: ``write(folder)`` writes ``folder / LAST``.

        Args:
            write: Writes the checkpoint file into the folder it is given.
            ckpt_dir: The run's checkpoint folder.
            metrics: The latest metrics (for frameworks that record them with it).
        """
        write(ckpt_dir)

    def load_last(self, ckpt_dir: Path) -> dict | None:
        """The latest resume point, or None."""
        from amc.models.checkpoint import read_file

        f = ckpt_dir / LAST
        return read_file(f) if f.is_file() else None


class DistributedSession(Session):
    """A worker of a data-parallel run in an initialised ``torch.distributed`` process group
    (set up by the launcher, e.g. Ray Train); subclasses wrap the model for data-parallel
    training and say where checkpoints go."""

    def __init__(self, rank: int, world: int, device: torch.device):
        self.rank, self.world, self._device = rank, world, device

    def device(self, requested: str) -> torch.device:
        return self._device

    def all_sum(self, t: torch.Tensor) -> torch.Tensor:
        import torch.distributed as dist

        out = t.to(self._device).clone()
        dist.all_reduce(out)
        return out.to(t.device)

    def agree(self, value: Any) -> Any:
        import torch.distributed as dist

        box = [value]
        dist.broadcast_object_list(box, src=0)
        return box[0]
