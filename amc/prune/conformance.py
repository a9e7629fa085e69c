"""Conformance of structured pruning: claimed vs measured cost, pruned vs masked network.

For a :class:`~amc.prune.units.PrunableModel` and per-unit ratios, :func:`conformance`
prunes the network physically, measures its MACs and parameters, and compares its output
on a batch with the output of the dense network whose pruned channels are masked
(:func:`amc.prune.masks.channel_masks`). An exact unit gives equal costs and outputs equal to
float rounding (relative difference ~1e-6; :data:`amc.utils.tolerance.RTOL` is the bar).

Freshly initialised networks make weak test cases: BatchNorm scales are all one, biases
and some classifiers all zero, layer scales 1e-6 (ConvNeXt's residual branches then hardly
change the output), so a wrongly sliced bias, scale or branch can go unnoticed.
:func:`diversify` gives them distinct random values first, and ``dense_diff`` (how far
pruning moved the output) shows that the comparison could see an error.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import torch
from torch import nn

from amc.cost.macs import model_cost
from amc.prune.budget import Budget, uniform_ratio
from amc.prune.masks import apply_masks, bake, channel_masks
from amc.prune.units import PrunableModel
from amc.utils.tolerance import RTOL, relative_diff

_NORMS = (nn.modules.batchnorm._BatchNorm, nn.LayerNorm, nn.GroupNorm)


@dataclass
class Conformance:
    """Result of one conformance check (cost ratios are fractions of the dense network).

    Attributes:
        claimed_macs: MACs ratio of the analytic cost model.
        measured_macs: MACs ratio measured on the pruned network.
        claimed_params: Parameter ratio of the analytic cost model.
        measured_params: Parameter ratio measured on the pruned network.
        rel_diff: ``max |pruned(x) - masked(x)| / max |masked(x)|``.
        scale: ``max |masked(x)|``.
        dense_diff: ``max |pruned(x) - dense(x)| / max |dense(x)|``: pruning must move the
            output far more than ``rel_diff`` for the check to mean anything.
    """

    claimed_macs: float
    measured_macs: float
    claimed_params: float
    measured_params: float
    rel_diff: float
    scale: float
    dense_diff: float

    @property
    def exact(self) -> bool:
        """Costs equal and outputs equal within :data:`RTOL` of the output scale."""
        return (self.claimed_macs == self.measured_macs
                and self.claimed_params == self.measured_params and self.rel_diff <= RTOL)

    def as_dict(self) -> dict:
        return asdict(self)


@torch.no_grad()
def diversify(model: nn.Module, seed: int = 0) -> nn.Module:
    """Give normalisation layers random statistics and affine parameters, every all-zero
    parameter small random values and every other constant parameter (layer scales) values
    in [0.5, 1.5] (in place), so that any wrongly kept or dropped channel changes the
    output."""
    g = torch.Generator().manual_seed(seed)

    def rand(t: torch.Tensor, lo: float, hi: float) -> torch.Tensor:
        return (lo + (hi - lo) * torch.rand(t.shape, generator=g)).to(t)

    for m in model.modules():
        if isinstance(m, _NORMS):
            for name, lo, hi in (("weight", 0.5, 1.5), ("bias", -0.2, 0.2),
                                 ("running_mean", -0.2, 0.2), ("running_var", 0.5, 1.5)):
                t = getattr(m, name, None)
                if isinstance(t, torch.Tensor):
                    t.copy_(rand(t, lo, hi))
    for p in model.parameters():
        if not p.numel():
            continue
        if not p.any():
            p.copy_(rand(p, -0.05, 0.05))
        elif bool((p == p.flatten()[0]).all()):
            p.copy_(rand(p, 0.5, 1.5))
    return model


@torch.no_grad()
def conformance(pm: PrunableModel, ratios: Sequence[float], x: torch.Tensor) -> Conformance:
    """Prune ``pm``'s network at ``ratios`` and check it (see the module docstring)."""
    ratios = list(ratios)
    claimed = pm.cost_fraction(ratios)
    pruned = pm.prune(ratios)
    macs, params = model_cost(pruned, pm.input_size)
    got = pruned(x)
    del pruned
    dense = pm.model(x)
    masked = bake(pm.model)
    apply_masks(masked, channel_masks(pm, ratios))
    ref = masked(x)
    del masked
    scale = float(ref.abs().max())
    return Conformance(claimed[0], macs / pm.dense_macs, claimed[1], params / pm.dense_params,
                       relative_diff(ref, got), scale, relative_diff(dense, got))


def check_uniform(model: nn.Module, input_size: tuple[int, int, int], mode: str,
                  budget: Budget, x: torch.Tensor) -> tuple[PrunableModel, float, Conformance]:
    """Prune ``model`` with one ratio for every unit of ``mode`` that meets ``budget``, and
    check it: (prunable model, ratio, :class:`Conformance`).

    Raises:
        AmcError: when the model or the budget is refused (the one-line reason).
    """
    pm = PrunableModel(model, input_size, mode)
    r = uniform_ratio(pm, budget)
    return pm, r, conformance(pm, [r] * len(pm.units), x)
