"""Scoring a pruning policy: prune, optionally repair (BN recalibration, reconstruction),
and measure top-1 on ``val``. Shared by the baselines and the RL environment: this is the
search's per-episode hot path, so it

* evaluates with every BatchNorm folded into its conv, channels-last tensors that are laid
  out (and moved to the device) once, in inference mode and large batches;
* re-estimates BatchNorm statistics on the first ``recal_size`` calibration images only, in
  one batch (the benchmark ``scripts/bench_episode.py`` measures how few keep the ranking),
  or (``recal_on="val"``) on the first ``recal_size`` ``val`` images, whose predictions that
  same pass then gives: one forward fewer per episode;
* can race (:mod:`amc.prune.racing`): stop scoring a policy that cannot beat the best one;
* can recalibrate and evaluate in mixed precision (``amp``; :mod:`amc.utils.precision`):
  ``auto`` is bf16 on GPUs and on CPUs with native bf16, where a ResNet-56 episode runs 1.6x
  faster and ranks 50 random policies as fp32 does within a Spearman correlation of 0.99
  (``results/bench_episode.json``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from amc.config.blocks import RECAL_ON
from amc.models.evaluate import check_model_data, eval_batch_size, top1
from amc.models.fuse import conv_bn_pairs, fold_bn
from amc.prune.racing import slices, upper_bound
from amc.prune.repair import (
    recalibrate_bn,
    recalibrated_outputs,
    reconstruct,
    reconstructed_outputs,
)
from amc.prune.units import PrunableModel
from amc.utils.device import resolve_device
from amc.utils.precision import Precision, precision


@dataclass
class Score:
    """The score of one policy.

    Attributes:
        top1: ``val`` top-1 in percent, over the images evaluated.
        images: ``val`` images evaluated (fewer than all when racing stopped early).
        total: ``val`` images in all.
        recal_images: Images BatchNorm statistics were re-estimated on (training images,
            or with ``recal_on="val"`` the first of the ``images`` evaluated).
        prune_s: Seconds spent pruning.
        repair_s: Seconds spent repairing (recalibration, reconstruction).
        eval_s: Seconds spent evaluating.
    """

    top1: float
    images: int
    total: int
    recal_images: int = 0
    prune_s: float = 0.0
    repair_s: float = 0.0
    eval_s: float = 0.0

    @property
    def complete(self) -> bool:
        """Whether all of ``val`` was evaluated."""
        return self.images >= self.total


CPU_EVAL_BATCH = 64
"""Largest evaluation batch on a CPU: activations that stay in cache. A ResNet-56 pruned to
50 % FLOPs, 1 thread, evaluated 1,000 CIFAR images in 1.42 s in batches of 64 and 2.05 s in
batches of 500 (``scripts/bench_episode.py``)."""


@dataclass
class Scorer:
    """Evaluates per-unit ratios on held-out data.

    Attributes:
        pm: The prunable model (kept on the CPU; each pruned copy moves to ``device``).
        x: Normalised ``val`` images used for the score.
        y: Their labels.
        calib: Training images for BN recalibration and reconstruction.
        bn_recalib: Re-estimate BatchNorm statistics after pruning.
        reconstruct: Refit pruned convs by least squares (in the recalibration's forward
            pass when both run on the same images as one batch: :func:`reconstruct` with
            ``recalibrate``).
        batch_size: Evaluation batch size (None: a fixed number of pixels per batch,
            :func:`amc.models.evaluate.eval_batch_size`, at most :data:`CPU_EVAL_BATCH`
            images on a CPU).
        calib_y: Labels of ``calib`` (for the taylor criterion).
        recal_size: Calibration images BatchNorm statistics are re-estimated on (None: all).
        device: Where pruned networks are repaired and evaluated.
        fast: Fold BatchNorm and use channels-last tensors for evaluation (False: the plain
            path, kept as the reference).
        recal_batch: Batch size of the BN recalibration (None: one batch with the fast path,
            up to the evaluation batch's pixels, 128 with the plain one; the cumulative
            statistics depend slightly on it).
        amp: Mixed precision of a score's recalibration and evaluation: ``auto``, ``bf16``,
            ``fp16`` or ``off`` (:func:`amc.utils.precision.precision` with
            ``inference=True``); reconstruction's targets and solves, :meth:`pruned` and
            :meth:`reference` stay in fp32.
        recal_on: Where a score's BatchNorm statistics come from: ``calib`` (the first
            ``recal_size`` calibration images) or ``val`` (the first ``recal_size`` ``val``
            images, recalibrated and evaluated in one train-mode pass; with
            ``reconstruct`` the fits run on them in that pass too,
            :func:`~amc.prune.repair.reconstructed_outputs`; racing's first look is then
            after them). Label-free either way; :meth:`pruned` and :meth:`reference` (the
            networks delivered) are always repaired on ``calib``.
    """

    pm: PrunableModel
    x: torch.Tensor
    y: torch.Tensor
    calib: torch.Tensor | None = None
    bn_recalib: bool = False
    reconstruct: bool = False
    batch_size: int | None = None
    calib_y: torch.Tensor | None = None
    recal_size: int | None = None
    device: torch.device | str = "cpu"
    fast: bool = True
    recal_batch: int | None = None
    amp: str = "off"
    recal_on: str = "calib"
    _dev: dict = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.recal_on not in RECAL_ON:
            raise ValueError(f"recal_on must be one of {RECAL_ON}, not {self.recal_on!r}")
        self.device = torch.device(self.device)
        self._dev["precision"] = precision(self.amp, self.device, inference=True)
        self.batch_size = self.batch_size or eval_batch_size(
            self.x.shape, cap=CPU_EVAL_BATCH if self.device.type == "cpu" else 500)
        fmt = torch.channels_last if self.fast and self.x.dim() == 4 else torch.contiguous_format
        self._dev["x"] = self.x.to(self.device).contiguous(memory_format=fmt)
        self._dev["y"] = self.y.to(self.device)
        self._dev["fmt"] = fmt
        if self.calib is not None:
            n = len(self.calib) if self.recal_size is None else min(self.recal_size,
                                                                    len(self.calib))
            self._dev["recal"] = self.calib[:max(1, n)].to(self.device).contiguous(
                memory_format=fmt)
            same = len(self._dev["recal"]) == min(256, len(self.calib))  # the same images
            self._dev["recon"] = (self._dev["recal"] if same
                                  else self.calib[:256].to(self.device))
        self._dev["pairs"] = conv_bn_pairs(self.pm.model) if self.fast else []
        self._dev["dense_targets"] = {}
        self._dev["val_targets"] = {}  # the dense targets on val's first images
        # reconstruction and recalibration in one pass: both asked for, on the same images,
        # recalibrated as one batch (fixed per scorer: the dense targets' cache follows it)
        self._dev["fused"] = (self.reconstruct and self.bn_recalib and "recal" in self._dev
                              and self.recal_on == "calib"
                              and self._dev["recon"] is self._dev["recal"]
                              and self._recal_batch() >= len(self._dev["recal"]))

    @property
    def precision(self) -> Precision:
        """The autocast settings ``amp`` resolved to on ``device``."""
        return self._dev["precision"]

    @property
    def recal_images(self) -> int:
        if self._on_val():
            return self._val_recal()
        return len(self._dev["recal"]) if self.bn_recalib and "recal" in self._dev else 0

    def _on_val(self) -> bool:
        """Whether a score recalibrates on (and in the same pass evaluates) ``val``'s first
        images."""
        return self.bn_recalib and self.recal_on == "val"

    def _refits_on_val(self) -> bool:
        """Whether the reconstruction's fits run on the same first ``val`` images as the
        recalibration, in the scoring pass (with ``recal_on="val"`` and ``reconstruct``)."""
        return self._on_val() and self.reconstruct

    def _val_recal(self) -> int:
        n = len(self._dev["y"])
        return n if self.recal_size is None else max(1, min(self.recal_size, n))

    def _reconstruct(self, net: nn.Module, ratios: Sequence[float],
                     prec: Precision = Precision()) -> None:
        """Refit the pruned convs by least squares (when asked for), the pruned network's
        forward in ``prec``'s autocast (targets and solves stay fp32)."""
        if self.reconstruct and "recon" in self._dev:
            with prec.autocast(self.device):
                reconstruct(self.pm, net, list(ratios), self._dev["recon"],
                            dense_cache=self._dev["dense_targets"])

    def _recalibrate(self, net: nn.Module, prec: Precision = Precision()) -> None:
        """Re-estimate BatchNorm statistics on the recalibration images (when asked for),
        in ``prec``'s autocast."""
        if self.bn_recalib and "recal" in self._dev:
            with prec.autocast(self.device):
                recalibrate_bn(net, self._dev["recal"].split(self._recal_batch()))

    def _recal_batch(self) -> int:
        recal = self._dev["recal"]
        return self.recal_batch or (eval_batch_size(recal.shape, cap=len(recal))
                                    if self.fast else 128)

    def _fused(self) -> bool:
        """Whether reconstruction and recalibration share one forward pass (decided once,
        when the scorer is built)."""
        return self._dev["fused"]

    def _repair(self, net: nn.Module, ratios: Sequence[float],
                prec: Precision = Precision(), recalibrate: bool = True) -> nn.Module:
        if self._fused() and recalibrate:  # one pass: each fit sees the recalibrated inputs
            with prec.autocast(self.device):
                reconstruct(self.pm, net, list(ratios), self._dev["recon"],
                            dense_cache=self._dev["dense_targets"], recalibrate=True)
            return net.eval()
        self._reconstruct(net, ratios, prec)
        if recalibrate:
            self._recalibrate(net, prec)
        return net.eval()

    def pruned(self, ratios: Sequence[float]) -> nn.Module:
        """The pruned (and repaired) network, on ``device``, in eval mode, not folded; its
        BatchNorm statistics re-estimated in fp32 whatever ``amp`` (the network delivered)."""
        return self._repair(self.pm.prune(ratios).to(self.device), ratios)

    def score(self, ratios: Sequence[float],
              can_beat: Callable[[float], bool] | None = None) -> Score:
        """Prune, repair and evaluate ``ratios``.

        Args:
            ratios: Per-unit pruning ratios.
            can_beat: Racing: called with an upper confidence bound on the full-``val``
                top-1 (%) after each slice; when it returns False the evaluation stops.
                None: evaluate all of ``val``.
        """
        t0 = time.perf_counter()
        net = self.pm.prune(ratios).to(self.device)
        t1 = time.perf_counter()
        on_val, refit_val = self._on_val(), self._refits_on_val()
        if refit_val:  # refitted and recalibrated in the scoring pass below
            net.eval()
        else:
            net = self._repair(net, ratios, self.precision, recalibrate=not on_val)
        x, y = self._dev["x"], self._dev["y"]
        n = len(y)
        cuts = slices(n) if can_beat is not None else [n]
        correct, seen = 0, 0
        if on_val:  # the first val images repair the network, and are scored in the same pass
            seen = self._val_recal()
            with self.precision.autocast(self.device):
                out = (reconstructed_outputs(self.pm, net, list(ratios), x[:seen],
                                             dense_cache=self._dev["val_targets"])
                       if refit_val else recalibrated_outputs(net, x[:seen]))
            correct = int((out.argmax(1) == y[:seen]).sum())
            cuts = [seen] + [c for c in cuts if c > seen]
        t2 = time.perf_counter()
        if self.fast:
            net = fold_bn(net, self._dev["pairs"]).to(memory_format=self._dev["fmt"])
        with torch.inference_mode(), self.precision.autocast(self.device):
            for cut in cuts:
                for s in range(seen, cut, self.batch_size):
                    e = min(cut, s + self.batch_size)
                    correct += int((net(x[s:e]).argmax(1) == y[s:e]).sum())
                seen = cut
                if seen < n and can_beat is not None and not can_beat(
                        100.0 * upper_bound(correct, seen, n)):
                    break
        t3 = time.perf_counter()
        return Score(100.0 * correct / max(1, seen), seen, n, self.recal_images,
                     t1 - t0, t2 - t1, t3 - t2)

    def __call__(self, ratios: Sequence[float]) -> float:
        """Top-1 (%) of the pruned network on all of the held-out data."""
        return self.score(ratios).top1

    def reference(self, ratios: Sequence[float]) -> float:
        """Top-1 by the plain path (no folding, contiguous tensors), to check the fast one."""
        return top1(self.pruned(ratios), self._dev["x"].contiguous(), self._dev["y"],
                    self.batch_size)


def build_scorer(model: str, checkpoint: str | None = None, data: str = "digits",
                 data_dir: str | None = None, val_size: int | None = None,
                 split_seed: int = 0, val_limit: int | None = None, units: str = "auto",
                 criterion: str = "l1", round_to: int | None = None, bn_recalib: bool = True,
                 reconstruct: bool = True, calib_size: int = 512, seed: int = 0,
                 unsafe_load: bool = False, num_classes: int | None = None,
                 recal_size: int | None = 256, device: str = "cpu", fast_eval: bool = True,
                 input_size: tuple[int, ...] | None = None, loader_workers: int | None = None,
                 net: nn.Module | None = None, amp: str = "off",
                 drop_blocks: bool = False, recal_on: str = "calib") -> Scorer:
    """Build a :class:`Scorer` from names and paths (what the CLI and the env share).

    Only ``val`` and the calibration draw are decoded (an image folder's training split is
    never read whole); ``input_size``: the size an image folder is cropped to (default: the
    model's).

    ``net``: the already-loaded dense model, to avoid reading the checkpoint again;
    ``device``: ``auto``, ``cpu`` or ``cuda`` (where pruned networks are scored); ``amp``:
    the scores' mixed precision (:attr:`Scorer.amp`); ``drop_blocks``: as for
    :class:`PrunableModel`; ``recal_on``: :attr:`Scorer.recal_on`.
    """
    from amc.data.datasets import load_dataset
    from amc.models.registry import create_model, input_size_of

    if net is None:
        net = create_model(model, num_classes=num_classes, checkpoint=checkpoint,
                           unsafe_load=unsafe_load)
    ds = load_dataset(data, data_dir=data_dir, val_size=val_size, seed=split_seed,
                      input_size=input_size_of(model, input_size), loader_workers=loader_workers)
    check_model_data(net, ds, model)
    calib = ds.calibration(calib_size, seed)
    pm = PrunableModel(net, ds.input_size, units, criterion, round_to,
                       calib if criterion == "taylor" else None, drop_blocks)
    x, y = ds.tensors("val", val_limit)
    return Scorer(pm, x, y, calib=calib[0], bn_recalib=bn_recalib, reconstruct=reconstruct,
                  calib_y=calib[1], recal_size=recal_size, device=resolve_device(device),
                  fast=fast_eval, amp=amp, recal_on=recal_on)


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
        recal_size: Calibration images used for BatchNorm recalibration.
        device: Where the scorer runs (``auto`` resolves on the worker).
        fast: Folded, channels-last evaluation.
        amp: Mixed precision of the scores (``auto`` resolves on the worker).
        drop_blocks: Whether droppable units may drop their blocks.
        recal_on: Where the scores' BatchNorm statistics come from (``calib`` or ``val``).
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
    recal_size: int | None = None
    device: str = "cpu"
    fast: bool = True
    amp: str = "off"
    drop_blocks: bool = False
    recal_on: str = "calib"

    @classmethod
    def of(cls, s: Scorer) -> ScorerParts:
        pm = s.pm
        return cls(pm.model, pm.input_size, pm.mode, pm.criterion, pm.round_to, s.x, s.y,
                   s.calib, s.calib_y, s.bn_recalib, s.reconstruct, s.recal_size,
                   str(s.device.type), s.fast, s.amp, bool(pm.blocks), s.recal_on)

    def build(self) -> Scorer:
        calib = (self.calib, self.calib_y) if self.criterion == "taylor" else None
        pm = PrunableModel(self.model, self.input_size, self.mode, self.criterion,
                           self.round_to, calib, self.drop_blocks)
        return Scorer(pm, self.x, self.y, self.calib, self.bn_recalib, self.reconstruct,
                      calib_y=self.calib_y, recal_size=self.recal_size,
                      device=resolve_device(self.device), fast=self.fast, amp=self.amp,
                      recal_on=self.recal_on)
