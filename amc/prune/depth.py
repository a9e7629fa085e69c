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

from amc.models.dropped import DroppedBlock, droppable, droppable_blocks

__all__ = ["DROP", "DroppedBlock", "drop_blocks", "droppable", "droppable_blocks",
           "masked_equivalent", "unit_blocks"]

DROP = 1.0
"""The ratio that drops a droppable unit's block whole (every other ratio is at most the
``max_ratio`` of channel pruning, below 1)."""


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
