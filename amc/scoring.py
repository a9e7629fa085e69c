"""Scoring a pruning policy: prune, optionally repair (BN recalibration, reconstruction),
and measure top-1 on ``val``. Shared by the baselines and the RL environment (the search's
per-episode hot path)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from amc.evaluate import top1
from amc.pruning import PrunableModel, recalibrate_bn
from amc.reconstruct import reconstruct


@dataclass
class Scorer:
    """Evaluates per-unit ratios on held-out data.

    Attributes:
        pm: The prunable model.
        x: Normalised ``val`` images used for the score.
        y: Their labels.
        calib: Training images for BN recalibration and reconstruction.
        bn_recalib: Re-estimate BatchNorm statistics after pruning.
        reconstruct: Refit pruned convs by least squares.
        batch_size: Evaluation batch size.
    """

    pm: PrunableModel
    x: torch.Tensor
    y: torch.Tensor
    calib: torch.Tensor | None = None
    bn_recalib: bool = False
    reconstruct: bool = False
    batch_size: int = 500

    def pruned(self, ratios: Sequence[float]) -> nn.Module:
        """The pruned (and repaired) network."""
        net = self.pm.prune(ratios)
        if self.reconstruct and self.calib is not None:
            reconstruct(self.pm, net, list(ratios), self.calib[:256])
        if self.bn_recalib and self.calib is not None:
            recalibrate_bn(net, self.calib.split(128))
        return net

    def __call__(self, ratios: Sequence[float]) -> float:
        """Top-1 (%) of the pruned network on the held-out data."""
        return top1(self.pruned(ratios), self.x, self.y, self.batch_size)
