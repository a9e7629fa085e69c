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


def build_scorer(model: str, checkpoint: str | None = None, data: str = "digits",
                 data_dir: str | None = None, val_size: int | None = None,
                 split_seed: int = 0, val_limit: int | None = None, units: str = "all",
                 criterion: str = "l1", round_to: int | None = None, bn_recalib: bool = False,
                 reconstruct: bool = False, calib_size: int = 512, seed: int = 0,
                 unsafe_load: bool = False, num_classes: int | None = None) -> Scorer:
    """Build a :class:`Scorer` from names and paths (what the CLI and the env share)."""
    from amc.data import load_dataset
    from amc.models import create_model

    net = create_model(model, num_classes=num_classes, checkpoint=checkpoint,
                       unsafe_load=unsafe_load)
    ds = load_dataset(data, data_dir=data_dir, val_size=val_size, seed=split_seed)
    xt, yt = ds.tensors("train")
    idx = torch.randperm(len(yt), generator=torch.Generator().manual_seed(seed))[:calib_size]
    calib = (xt[idx], yt[idx])
    pm = PrunableModel(net, ds.input_size, units, criterion, round_to,
                       calib if criterion == "taylor" else None)
    x, y = ds.tensors("val", val_limit)
    return Scorer(pm, x, y, calib=calib[0], bn_recalib=bn_recalib, reconstruct=reconstruct)
