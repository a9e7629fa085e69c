"""A short fine-tune proxy reward: prune, take a few SGD steps, then score.

At aggressive budgets (ResNet-56 at 30 % FLOPs) every pruned network is close to chance
right after pruning, and its BN-recalibrated ``val`` top-1 ranks policies poorly against
their accuracy after fine-tuning. :class:`FinetuneScorer` is a drop-in
:class:`~amc.prune.scoring.Scorer` (same ``score``/``__call__``, so the environment and the
baselines take it unchanged) whose repair step is: optional least-squares reconstruction,
then ``ft_steps`` plain SGD steps on a fixed set of training images (the same images, in
the same order, for every policy), then BatchNorm recalibration, then the usual folded
evaluation on ``val``. ``scripts/bench_reward_proxy.py`` measures how well it ranks policies
and what it costs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from amc.prune.scoring import Scorer
from amc.utils.precision import Precision


def short_finetune(net: nn.Module, x: torch.Tensor, y: torch.Tensor, steps: int,
                   batch_size: int = 64, lr: float = 0.01, momentum: float = 0.9,
                   weight_decay: float = 0.0) -> nn.Module:
    """Train ``net`` in place for ``steps`` SGD steps on fixed batches of ``(x, y)``.

    Step ``k`` uses rows ``k * batch_size ...`` of ``x`` (wrapping around), without
    shuffling or augmentation, so two calls on the same images see the same batches.
    BatchNorm layers are in training mode (batch statistics); recalibrate them afterwards.

    Args:
        net: The (pruned) network, on the device of ``x``.
        x: Normalised training images (N, C, H, W).
        y: Their labels.
        steps: SGD steps (0: nothing is done).
        batch_size: Images per step.
        lr: Constant learning rate.
        momentum: SGD (heavy-ball) momentum.
        weight_decay: L2 weight decay.

    Returns:
        ``net``, in eval mode.
    """
    if steps <= 0 or len(x) == 0:
        return net.eval()
    params = [p for p in net.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    n = len(x)
    net.train()
    with torch.enable_grad():
        for k in range(steps):
            idx = torch.arange(k * batch_size, (k + 1) * batch_size) % n
            loss = F.cross_entropy(net(x[idx]), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    return net.eval()


@dataclass
class FinetuneScorer(Scorer):
    """A :class:`~amc.prune.scoring.Scorer` that fine-tunes each pruned network briefly
    before recalibrating BatchNorm and scoring it.

    Attributes:
        ft_x: Normalised training images for the SGD steps (drawn once, shared by all
            policies).
        ft_y: Their labels.
        ft_steps: SGD steps per policy.
        ft_batch: Images per step.
        ft_lr: Learning rate (constant).
        ft_momentum: SGD momentum.
        ft_weight_decay: L2 weight decay.
    """

    ft_x: torch.Tensor | None = None
    ft_y: torch.Tensor | None = None
    ft_steps: int = 20
    ft_batch: int = 64
    ft_lr: float = 0.01
    ft_momentum: float = 0.9
    ft_weight_decay: float = 0.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.ft_x is not None:
            self._dev["ft_x"] = self.ft_x.to(self.device)
            self._dev["ft_y"] = self.ft_y.to(self.device)

    @classmethod
    def from_scorer(cls, scorer: Scorer, ft_x: torch.Tensor, ft_y: torch.Tensor,
                    **settings) -> FinetuneScorer:
        """A fine-tune scorer sharing ``scorer``'s model, ``val`` and calibration images.

        Args:
            scorer: The scorer to extend (its repair and evaluation settings are copied;
                ``settings`` may override them, e.g. ``reconstruct=True``).
            ft_x: Normalised training images for the SGD steps.
            ft_y: Their labels.
            **settings: Other fields of :class:`FinetuneScorer` (``ft_steps`` ...).
        """
        base = dict(pm=scorer.pm, x=scorer.x, y=scorer.y, calib=scorer.calib,
                    bn_recalib=scorer.bn_recalib, reconstruct=scorer.reconstruct,
                    batch_size=scorer.batch_size, calib_y=scorer.calib_y,
                    recal_size=scorer.recal_size, device=scorer.device, fast=scorer.fast,
                    recal_batch=scorer.recal_batch, recal_on=scorer.recal_on)
        return cls(**{**base, **settings}, ft_x=ft_x, ft_y=ft_y)

    def _refits_on_val(self) -> bool:
        return False  # the fits precede the fine-tune, on calibration images

    def _repair(self, net: nn.Module, ratios: Sequence[float],
                prec: Precision = Precision(), recalibrate: bool = True) -> nn.Module:
        self._reconstruct(net, ratios, prec)
        if "ft_x" in self._dev:  # the short fine-tune stays fp32
            short_finetune(net, self._dev["ft_x"], self._dev["ft_y"], self.ft_steps,
                           self.ft_batch, self.ft_lr, self.ft_momentum, self.ft_weight_decay)
        if recalibrate:
            self._recalibrate(net, prec)
        return net.eval()
