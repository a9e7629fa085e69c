"""Channel importance: Torch-Pruning's group criteria and the ranking of a unit's channels."""

from __future__ import annotations

import torch
import torch_pruning as tp

__all__ = ["make_importance", "rank_channels"]


def make_importance(criterion: str):
    """Torch-Pruning's group importance for ``l1``, ``l2``, ``bn_scale`` or ``taylor``."""
    if criterion == "taylor":
        return tp.importance.GroupTaylorImportance()
    if criterion == "bn_scale":
        return tp.importance.BNScaleImportance()
    return tp.importance.GroupMagnitudeImportance(p=1 if criterion == "l1" else 2)


def rank_channels(imp, group, n: int, g: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A unit's channels from least to most important, and its positions' scores in that order.

    Grouped units (``g`` channel groups of ``n // g``) rank positions by their mean score over
    the groups and list the channels of each position together.
    """
    scores = imp(group)
    if scores is None:  # e.g. bn_scale on a group without BatchNorm: fall back to L1
        scores = tp.importance.GroupMagnitudeImportance(p=1)(group)
    s = n // g
    pos = scores.detach().float().cpu().reshape(g, s).mean(0)
    order = torch.argsort(pos, stable=True)
    return (order[:, None] + s * torch.arange(g)[None, :]).reshape(-1), pos[order]
