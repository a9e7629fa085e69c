"""Scoring a pruning policy: prune, optionally repair (BN recalibration, reconstruction),
and measure top-1 on ``val``. Shared by the baselines and the RL environment (the search's
per-episode hot path)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from amc.models.evaluate import top1
from amc.prune.repair import recalibrate_bn, reconstruct
from amc.prune.units import PrunableModel


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
        calib_y: Labels of ``calib`` (for the taylor criterion).
    """

    pm: PrunableModel
    x: torch.Tensor
    y: torch.Tensor
    calib: torch.Tensor | None = None
    bn_recalib: bool = False
    reconstruct: bool = False
    batch_size: int = 500
    calib_y: torch.Tensor | None = None

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
                 unsafe_load: bool = False, num_classes: int | None = None,
                 net: nn.Module | None = None) -> Scorer:
    """Build a :class:`Scorer` from names and paths (what the CLI and the env share).

    ``net``: the already-loaded dense model, to avoid reading the checkpoint again.
    """
    from amc.data.datasets import load_dataset
    from amc.models.registry import create_model

    if net is None:
        net = create_model(model, num_classes=num_classes, checkpoint=checkpoint,
                           unsafe_load=unsafe_load)
    ds = load_dataset(data, data_dir=data_dir, val_size=val_size, seed=split_seed)
    calib = ds.calibration(calib_size, seed)
    pm = PrunableModel(net, ds.input_size, units, criterion, round_to,
                       calib if criterion == "taylor" else None)
    x, y = ds.tensors("val", val_limit)
    return Scorer(pm, x, y, calib=calib[0], bn_recalib=bn_recalib, reconstruct=reconstruct,
                  calib_y=calib[1])


@dataclass
class ScorerParts:
    """The picklable ingredients of a :class:`Scorer` (network, data, settings), to ship to a
    worker once (e.g. through an object store) and rebuild the scorer there.

    Attributes:
        model: The dense network.
        input_size: (C, H, W).
        mode: Unit mode.
        criterion: Channel importance criterion.
        round_to: Channel rounding.
        x: ``val`` images.
        y: ``val`` labels.
        calib: Training images for repair (and taylor ranking with ``calib_y``).
        calib_y: Labels of ``calib`` (taylor only).
        bn_recalib: Re-estimate BatchNorm statistics.
        reconstruct: Refit pruned convs by least squares.
    """

    model: nn.Module
    input_size: tuple[int, int, int]
    mode: str
    criterion: str
    round_to: int | None
    x: torch.Tensor
    y: torch.Tensor
    calib: torch.Tensor | None
    calib_y: torch.Tensor | None
    bn_recalib: bool
    reconstruct: bool

    @classmethod
    def of(cls, s: Scorer) -> ScorerParts:
        pm = s.pm
        return cls(pm.model, pm.input_size, pm.mode, pm.criterion, pm.round_to, s.x, s.y,
                   s.calib, s.calib_y, s.bn_recalib, s.reconstruct)

    def build(self) -> Scorer:
        calib = (self.calib, self.calib_y) if self.criterion == "taylor" else None
        pm = PrunableModel(self.model, self.input_size, self.mode, self.criterion,
                           self.round_to, calib)
        return Scorer(pm, self.x, self.y, self.calib, self.bn_recalib, self.reconstruct,
                      calib_y=self.calib_y)
