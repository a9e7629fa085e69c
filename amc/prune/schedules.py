"""Pruning schedules and targets for ``amc finetune``.

* :func:`cubic_sparsity`: Zhu & Gupta (2017), ``s_t = s_f + (s_i - s_f)(1 - (t - t0)/(nΔt))^3``
  at the pruning steps ``t = t0, t0 + Δt, ..., t0 + nΔt``;
* :func:`round_levels`: the levels of iterative rounds, equal steps or a fixed fraction of the
  remaining weights per round;
* :func:`build_pruner`: turns ``--target`` / ``--policy`` / ``--first-last-max`` into a pruner.

A pruner has a *level*: for unstructured magnitude pruning the overall weight sparsity (its
final level is the target), for channel pruning and policy-driven layer sparsities the
fraction of the final ratios applied (final level 1). ``masks(model, level)`` gives the masks
for a level, ``sparsity_at(level)`` the fraction of weights (unstructured) or parameters
(channels) it removes and ``physical(model, level)`` the deployable network.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from amc.prune.budget import KINDS, Budget, resource_fn
from amc.prune.masks import ChannelPruner, Masks, magnitude_masks, nm_masks, prunable_weights
from amc.prune.units import PrunableModel
from amc.utils.bisection import bisect
from amc.utils.errors import AmcError

SCHEDULES = ("oneshot", "iterative", "cubic", "lottery")
STRUCTURES = ("channel", "unstructured")


def cubic_sparsity(t: int, s_i: float, s_f: float, t0: int, n: int, dt: int) -> float:
    """Zhu & Gupta's sparsity at step ``t`` (clamped to ``s_i`` before ``t0``, ``s_f`` after
    ``t0 + nΔt``)."""
    if t <= t0:
        return s_i
    frac = min(1.0, (t - t0) / max(1, n * dt))
    return s_f + (s_i - s_f) * (1.0 - frac) ** 3


def cubic_plan(steps_per_epoch: int, total: int, start: float, end: float | None,
               every: int | None) -> tuple[int, int, int]:
    """(t0, n, Δt) from epochs ``start``/``end`` and ``every`` steps (default: 10 pruning
    steps after the first)."""
    t0 = int(round(start * steps_per_epoch))
    t_end = int(round((end if end is not None else 0.6 * total / steps_per_epoch)
                      * steps_per_epoch))
    t_end = min(t_end, total)
    span = t_end - t0
    if span <= 0:
        raise AmcError(f"cubic pruning must end after it starts (steps {t0} -> {t_end}); "
                       "raise --prune-end or lower --prune-start")
    dt = every if every else max(1, span // 10)
    n = span // dt
    if n < 1:
        raise AmcError(f"--prune-every {dt} is longer than the pruning span ({span} steps); "
                       "lower it")
    return t0, n, dt


def round_levels(final: float, rounds: int, step: float | None = None,
                 level_for_sparsity=None) -> list[float]:
    """Levels of iterative rounds: ``final * i / rounds`` or, with ``step``, the levels that
    remove ``step`` of the remaining weights per round until ``final`` is reached."""
    if step is None:
        return [final * (i + 1) / rounds for i in range(rounds)]
    levels, i = [], 1
    while True:
        lv = min(final, level_for_sparsity(1.0 - (1.0 - step) ** i))
        levels.append(lv)
        if lv >= final - 1e-9 or i > 200:
            levels[-1] = final
            return levels
        i += 1


@dataclass
class Target:
    """A parsed ``--target``: ``sparsity:S``, a budget ``flops:F`` / ``params:F`` /
    ``latency:F``, or ``N:M`` semi-structured."""

    kind: str
    value: float
    n: int = 0
    m: int = 0

    @classmethod
    def parse(cls, text: str) -> Target:
        kind, sep, value = str(text).partition(":")
        if sep and kind.isdigit() and value.isdigit():
            n, m = int(kind), int(value)
            if not 0 < n < m:
                raise AmcError(f"bad N:M target {text!r}; use e.g. 2:4")
            return cls("nm", 1 - n / m, n, m)
        if kind == "sparsity":
            try:
                s = float(value)
            except ValueError:
                s = -1.0
            if not 0 < s < 1:
                raise AmcError(f"bad target {text!r}; write sparsity:S with 0 < S < 1")
            return cls("sparsity", s)
        if kind in KINDS:
            b = Budget.parse(text)
            return cls(kind, b.fraction)
        raise AmcError(f"bad target {text!r}; use sparsity:S, flops:F, params:F, latency:F "
                       "or N:M (e.g. 2:4)")


class MagnitudePruner:
    """Unstructured magnitude pruning (global or per-layer) or N:M masks."""

    def __init__(self, model: nn.Module, final: float, scope: str = "global",
                 caps: dict[str, float] | None = None,
                 per_layer: dict[str, float] | None = None, nm: tuple[int, int] | None = None):
        self.names = prunable_weights(model)
        self.final, self.scope, self.caps = final, scope, caps or {}
        self.per_layer, self.nm = per_layer, nm
        sizes = {n: p.numel() for n, p in model.named_parameters() if n in self.names}
        self.total = sum(sizes.values())
        self._per_layer_total = (sum(min(per_layer.get(n, 0.0), self.caps.get(n, 1.0))
                                     * sizes[n] for n in self.names) / self.total
                                 if per_layer is not None else None)
        if per_layer is None and nm is None:
            magnitude_masks(model, final, self.names, self.caps, scope)  # fail early if capped

    def masks(self, model: nn.Module, level: float) -> Masks:
        if self.nm is not None:
            return nm_masks(model, self.names, *self.nm)
        return magnitude_masks(model, level, self.names, self.caps, self.scope, self.per_layer)

    def sparsity_at(self, level: float) -> float:
        if self._per_layer_total is not None:
            return level * self._per_layer_total
        return level

    def level_for(self, sparsity: float) -> float:
        return sparsity / self._per_layer_total if self._per_layer_total else sparsity

    def physical(self, model: nn.Module, level: float) -> nn.Module:
        return model  # the weights are already zero: dropping the masks is permanent


class StructuredPruner(ChannelPruner):
    """:class:`ChannelPruner` with the level helpers the schedules need."""

    final = 1.0

    def __init__(self, pm: PrunableModel, ratios: Sequence[float], **kw):
        super().__init__(ratios, pm.input_size, pm.mode, pm.criterion, pm.round_to,
                         drop_blocks=bool(pm.blocks), **kw)
        self.pm_dense = pm
        """The :class:`PrunableModel` of the dense network the ratios refer to."""

    def sparsity_at(self, level: float) -> float:
        return 1.0 - self.pm_dense.cost_fraction(self.at(level))[1]

    def level_for(self, sparsity: float) -> float:
        return bisect(lambda lv: self.sparsity_at(lv) >= sparsity, 0.0, 1.0, iters=30)

    def physical(self, model: nn.Module, level: float) -> nn.Module:
        self.applied = self.at(level)
        return super().physical(model)


def unit_caps(n_units: int, max_ratio: float, first_last_max: float | None) -> list[float]:
    caps = [max_ratio] * n_units
    if first_last_max is not None:
        caps[0] = caps[-1] = min(max_ratio, first_last_max)
    return caps


def capped_uniform(pm: PrunableModel, budget: Budget, caps: Sequence[float]) -> list[float]:
    """The smallest common ratio, clipped per unit by ``caps``, that meets ``budget``."""
    f = resource_fn(pm, budget)
    if f(list(caps)) > budget.fraction + 1e-9:
        raise AmcError(f"budget {budget} cannot be met under the per-unit limits "
                       f"({f(list(caps)):.3f} of dense remains); loosen the budget or raise "
                       "--first-last-max / --max-ratio")
    r = bisect(lambda m: f([min(m, c) for c in caps]) <= budget.fraction, 0.0, max(caps))
    return [min(r, c) for c in caps]


def build_pruner(cfg, model: nn.Module, input_size: tuple[int, int, int],
                 calib: tuple[torch.Tensor, torch.Tensor] | None = None):
    """The pruner that ``cfg`` (a FinetuneConfig) asks for, or None (dense fine-tuning)."""
    from amc.prune.policy import check_policy, load_policy

    target = Target.parse(cfg.target) if cfg.target else None
    policy = load_policy(cfg.policy) if cfg.policy else None
    if target is None and policy is None:
        return None
    structure = cfg.structure or ("unstructured" if target is not None and target.kind in
                                  ("sparsity", "nm") else "channel")
    if structure not in STRUCTURES:
        raise AmcError(f"unknown structure {structure!r}; use channel or unstructured")
    if target is not None and policy is not None:
        raise AmcError("give either --target or --policy, not both")
    names = prunable_weights(model)
    if structure == "unstructured":
        caps = {n: cfg.max_sparsity for n in names}
        if cfg.first_last_max is not None:
            caps[names[0]] = caps[names[-1]] = min(cfg.max_sparsity, cfg.first_last_max)
        if target is not None and target.kind == "nm":
            return MagnitudePruner(model, target.value, nm=(target.n, target.m))
        if target is not None and target.kind != "sparsity":
            raise AmcError(f"--target {cfg.target} is a resource budget, which channel pruning "
                           "meets; use sparsity:S for unstructured pruning")
        if policy is not None:  # the policy's unit ratios become layer sparsities
            pm = PrunableModel(model, input_size, policy.mode, policy.criterion,
                               drop_blocks=policy.drop_blocks)
            check_policy(policy, pm, cfg.model)
            per = {f"{u['name']}.weight": float(u["ratio"]) for u in policy.units}
            return MagnitudePruner(model, 1.0, caps=caps, per_layer=per)
        return MagnitudePruner(model, target.value, cfg.scope, caps)
    if target is not None and target.kind in ("sparsity", "nm"):
        raise AmcError(f"--target {cfg.target} is unstructured; channel pruning takes a budget "
                       "(flops:F, params:F, latency:F) or a --policy")
    if policy is not None:
        pm = PrunableModel(model, input_size, policy.mode, policy.criterion, policy.round_to,
                           calib, policy.drop_blocks)
        check_policy(policy, pm, cfg.model)
        # exactly the policy's network, as amc apply and amc compare build it (its ratios were
        # limited by the max_ratio it was made with, recorded in it: not capped again here)
        ratios = policy.ratios_for(u.name for u in pm.units)
    else:
        pm = PrunableModel(model, input_size, cfg.units, cfg.criterion, cfg.round_to, calib)
        caps = unit_caps(len(pm.units), cfg.max_ratio, cfg.first_last_max)
        ratios = capped_uniform(pm, Budget(target.kind, target.value), caps)
    return StructuredPruner(pm, ratios, calib=calib)


def steps_in(epochs: float, steps_per_epoch: int) -> int:
    return max(1, int(round(epochs * steps_per_epoch)))
