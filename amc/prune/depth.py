"""Dropping whole residual blocks: a block whose inner channels are all removed is exact as
its shortcut plus a constant.

In a basic residual block ``relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x))`` removing
every channel of the inner unit (conv1's outputs = conv2's inputs) leaves conv2 adding
nothing, so the branch is ``bn2`` of zero: its per-channel shift ``beta - gamma * mean /
sqrt(var + eps)`` (eval mode). :class:`DroppedBlock` computes exactly that,
``relu(shortcut(x) + shift)``, what the dense block computes with those channels masked
(conv2's input channels zeroed), at the cost of one add and one ReLU. Unlike a pruned width,
which a CPU convolution pays for in whole vectors, a dropped block takes its whole time
with it (``scripts/bench_block_drop.py``).
"""

from __future__ import annotations

import copy
from collections.abc import Iterable

import torch
from torch import nn

from amc.models.cifar import BasicBlock

DROP = 1.0
"""The ratio that drops a droppable unit's block whole (every other ratio is at most the
``max_ratio`` of channel pruning, below 1)."""


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


def drop_blocks(model: nn.Module, names: Iterable[str], copy_model: bool = True) -> nn.Module:
    """``model`` with the named blocks replaced by :class:`DroppedBlock` (a copy unless
    ``copy_model`` is False)."""
    out = copy.deepcopy(model) if copy_model else model
    for name in names:
        out.set_submodule(name, DroppedBlock.of(out.get_submodule(name)))
    return out


def masked_equivalent(model: nn.Module, names: Iterable[str]) -> nn.Module:
    """A copy of the dense ``model`` with every inner channel of the named blocks masked
    (conv2's input channels zeroed): what :func:`drop_blocks` must compute exactly."""
    out = copy.deepcopy(model)
    with torch.no_grad():
        for name in names:
            out.get_submodule(name).conv2.weight.zero_()
    return out


def unit_blocks(model: nn.Module, units: Iterable) -> dict[int, str]:
    """Per unit (by index) that is exactly a droppable block's inner width, the block's name.

    Such a unit's layers are the block's ``conv1`` (outputs), ``bn1`` and ``conv2``
    (inputs) and nothing else; at ratio 1 (:data:`DROP`) :meth:`PrunableModel.prune`
    replaces the block by :class:`DroppedBlock`.
    """
    out = {}
    for name in droppable_blocks(model):
        block = model.get_submodule(name)
        if block.conv2.bias is not None:  # the branch would not be bn2's shift alone
            continue
        inner = {f"{name}.conv1", f"{name}.bn1", f"{name}.conv2"}
        for u in units:
            if set(u.layers) == inner:
                out[u.index] = name
    return out
