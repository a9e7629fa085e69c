"""Folding BatchNorm into the preceding convolution for fast evaluation.

:func:`conv_bn_pairs` finds, once per architecture (torch.fx trace of the dense network),
every ``conv -> BatchNorm`` pair whose conv output feeds only that BatchNorm;
:func:`fold_bn` then folds each pair of a network in eval mode in place (the conv takes the
BatchNorm's scale and shift, the BatchNorm becomes ``Identity``). Pruning keeps module names,
so the pairs of the dense network serve every pruned copy of it.
"""

from __future__ import annotations

from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_BNS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


def conv_bn_pairs(model: nn.Module) -> list[tuple[str, str]]:
    """``(conv name, BatchNorm name)`` pairs that can be folded; ``[]`` when the network
    cannot be traced (it is then evaluated unfolded)."""
    import torch.fx as fx

    try:
        graph = fx.symbolic_trace(model).graph
    except Exception:  # dynamic control flow etc.: no folding, still correct
        return []
    mods = dict(model.named_modules())
    pairs = []
    for node in graph.nodes:
        if node.op != "call_module" or not isinstance(mods.get(node.target), _BNS):
            continue
        src = node.args[0] if node.args else None
        if (getattr(src, "op", None) == "call_module" and isinstance(mods.get(src.target), _CONVS)
                and len(src.users) == 1 and mods[node.target].track_running_stats):
            pairs.append((src.target, node.target))
    return pairs


def fold_bn(model: nn.Module, pairs: list[tuple[str, str]]) -> nn.Module:
    """Fold every pair of ``pairs`` into its conv, in place; ``model`` must be in eval mode
    (its BatchNorm running statistics are what gets folded); a pair the model no longer has
    (a dropped block's, :mod:`amc.prune.depth`) is skipped. Returns ``model``."""
    if model.training:
        raise ValueError("fold_bn needs a model in eval mode")
    names = {n for n, _ in model.named_modules()}
    for conv_name, bn_name in pairs:
        if conv_name not in names or bn_name not in names:
            continue
        conv, bn = model.get_submodule(conv_name), model.get_submodule(bn_name)
        model.set_submodule(conv_name, fuse_conv_bn_eval(conv, bn))
        model.set_submodule(bn_name, nn.Identity())
    return model
