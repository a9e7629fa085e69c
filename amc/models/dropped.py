"""Dropped residual blocks as modules: which blocks can be dropped, and :class:`DroppedBlock`,
a basic block with every inner channel removed (``relu(shortcut(x) + shift)``).

They live with the models because a checkpoint of a network with dropped blocks is loaded
back into its dense architecture (:mod:`amc.models.checkpoint`); :mod:`amc.prune.depth`
drops blocks and proves them exact.
"""

from __future__ import annotations

import torch
from torch import nn

from amc.models.cifar import BasicBlock


def droppable(module: nn.Module) -> bool:
    """Whether ``module`` is a basic residual block this module can drop exactly (CIFAR or
    torchvision ``BasicBlock`` with its shortcut; a plain block has no path to keep)."""
    if isinstance(module, BasicBlock):
        return module.use_shortcut
    try:
        from torchvision.models.resnet import BasicBlock as TvBasicBlock
    except ImportError:  # pragma: no cover - torchvision is a dependency
        return False
    return isinstance(module, TvBasicBlock)


def droppable_blocks(model: nn.Module) -> list[str]:
    """Names of ``model``'s droppable blocks, in module order."""
    return [n for n, m in model.named_modules() if n and droppable(m)]


class DroppedBlock(nn.Module):
    """``relu(shortcut(x) + shift)``: a basic block with every inner channel removed.

    Attributes:
        shortcut: The block's shortcut (identity, option-A padding or a downsampling
            conv + BN).
        shift: Per-channel output of the branch, (1, C, 1, 1); a parameter, so that
            fine-tuning can adjust it.
    """

    def __init__(self, shortcut: nn.Module, shift: torch.Tensor):
        super().__init__()
        self.shortcut = shortcut
        self.shift = nn.Parameter(shift.detach().reshape(1, -1, 1, 1).clone())

    @classmethod
    def of(cls, block: nn.Module) -> DroppedBlock:
        """The dropped form of a :func:`droppable` ``block`` (its BatchNorm in eval form)."""
        if not droppable(block):
            raise ValueError(f"{type(block).__name__} is not a droppable basic block")
        bn = block.bn2
        shift = bn.bias - bn.running_mean * bn.weight / torch.sqrt(bn.running_var + bn.eps)
        shortcut = block.shortcut if isinstance(block, BasicBlock) else block.downsample
        return cls(shortcut if shortcut is not None else nn.Identity(), shift)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.shortcut(x) + self.shift)
