"""Prunable units and structured channel pruning on Torch-Pruning's DependencyGraph.

A *unit* is one dependency group: the layers whose channels must be removed together
(a conv's output channels, its BatchNorm, the next conv's input channels, and everything a
residual add ties to them). :class:`PrunableModel` discovers the units once, ranks each
unit's channels once by an importance criterion, and keeps an exact analytic cost model
(MACs and parameters as a function of per-unit ratios, matching the physically pruned
network to the channel). :meth:`PrunableModel.prune` then removes channels from a copy of
the network with Torch-Pruning's layer pruners; no graph is re-traced per call, which keeps
the search's per-episode cost low.

Modes:
    * ``all``: every group DepGraph can prune (the classifier's outputs never);
    * ``internal``: AMC's residual-net mode, only groups whose channels meet no residual
      add (for a ResNet: the first conv of each block).
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field

import torch
import torch_pruning as tp
from torch import nn

from amc.cost.macs import COUNTED, LayerCost, count_params, layer_costs
from amc.utils.errors import AmcError

MODES = ("all", "internal")
CRITERIA = ("l1", "l2", "bn_scale", "taylor")


@dataclass
class Unit:
    """One prunable dependency group.

    Attributes:
        index: Position in forward order.
        name: Qualified name of the group's leading (root) module.
        layers: Names of the modules whose channels the group removes.
        n: Output channels of the root (the channels being pruned).
        c: Input channels of the root.
        h: Input height of the root.
        w: Input width of the root.
        stride: Root stride.
        k: Root kernel size.
        macs: MACs of every layer the unit touches (dense).
        params: Parameters of every layer the unit touches (dense).
    """

    index: int
    name: str
    layers: list[str]
    n: int
    c: int
    h: int
    w: int
    stride: int
    k: int
    macs: int
    params: int

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class CountedLayer:
    """Cost bookkeeping of one counted layer: which unit prunes its outputs / inputs.

    ``channelwise`` layers (BatchNorm, depthwise conv) scale with one channel count only.
    """

    name: str
    macs: int
    w_params: int
    b_params: int
    n_out: int
    n_in: int
    channelwise: bool
    out_unit: int | None = None
    in_unit: int | None = None


@dataclass
class PrunePlan:
    root: nn.Module
    fn: object
    items: list[tuple[str, object]] = field(default_factory=list)


def _is_pad_module(m: nn.Module) -> bool:
    return type(m).__name__ == "PadShortcut"


def _classifier(model: nn.Module) -> nn.Module | None:
    last = None
    for m in model.modules():
        if isinstance(m, nn.Linear | nn.Conv2d):
            last = m
    return last


class PrunableModel:
    """A network with its prunable units, channel rankings and exact cost model.

    Args:
        model: The dense network (not modified).
        input_size: (C, H, W) of one input.
        mode: ``all`` or ``internal``.
        criterion: ``l1``, ``l2``, ``bn_scale`` or ``taylor``.
        round_to: Keep channel counts at multiples of this (None: no rounding).
        calib: (x, y) training batch, needed by the ``taylor`` criterion.
    """

    def __init__(self, model: nn.Module, input_size: tuple[int, int, int], mode: str = "all",
                 criterion: str = "l1", round_to: int | None = None,
                 calib: tuple[torch.Tensor, torch.Tensor] | None = None):
        if mode not in MODES:
            raise AmcError(f"unknown unit mode {mode!r}; use all or internal")
        if criterion not in CRITERIA:
            raise AmcError(f"unknown criterion {criterion!r}; use one of {', '.join(CRITERIA)}")
        self.model = model.eval()
        self.input_size = tuple(input_size)
        self.mode, self.criterion, self.round_to = mode, criterion, round_to
        self._names = {id(m): n for n, m in model.named_modules()}
        costs = layer_costs(model, self.input_size)
        self._order = {c.name: i for i, c in enumerate(costs)}
        self.dense_macs = sum(c.macs for c in costs)
        self.dense_params = count_params(model)
        self.DG = tp.DependencyGraph().build_dependency(
            model, example_inputs=torch.zeros(1, *self.input_size))
        self.units, self.plans = self._discover(costs)
        if not self.units:
            raise AmcError(f"no prunable units found in {mode!r} mode; try --units all")
        self.layers = self._cost_table(costs)
        counted = sum(L.w_params + L.b_params for L in self.layers)
        self._fixed_params = self.dense_params - counted
        self.rankings = self._rank(calib)

    # ------------------------------------------------------------------ discovery
    def _discover(self, costs: list[LayerCost]) -> tuple[list[Unit], list[PrunePlan]]:
        clf = _classifier(self.model)
        by_name = {c.name: c for c in costs}
        found = []
        pads = any(_is_pad_module(m) for m in self.model.modules())
        for group in self.DG.get_all_groups(ignored_layers=[clf] if clf is not None else [],
                                            root_module_types=[nn.Conv2d, nn.Linear]):
            root_dep = group[0].dep
            root = root_dep.target.module
            root_name = self._names.get(id(root))
            if root_name is None or root_name not in by_name:
                continue
            has_add = any("Add" in type(it.dep.target.module).__name__
                          or "AddBackward" in str(it.dep.target.module) for it in group)
            items, outs = [], set()
            for it in group:
                mod = it.dep.target.module
                name = self._names.get(id(mod))
                if name is None or not isinstance(mod, COUNTED):
                    continue
                fn_name = getattr(it.dep.handler, "__name__", "")
                items.append((name, fn_name))
                if fn_name == "prune_out_channels":
                    outs.add(int(mod.weight.shape[0]))
            if len(outs) > 1:
                if pads and self.mode == "all":
                    raise AmcError(
                        "DepGraph cannot trace the option-A zero-padding shortcut of this "
                        "CIFAR ResNet in 'all' mode (it couples layers of different widths); "
                        "use --units internal")
                continue
            if self.mode == "internal" and has_add:
                continue
            found.append((root_name, root, root_dep.handler, items))
        found.sort(key=lambda f: self._order[f[0]])
        units, plans = [], []
        for i, (name, root, fn, items) in enumerate(found):
            c = by_name[name]
            touched = sorted({n for n, _ in items}, key=lambda n: self._order.get(n, 0))
            units.append(Unit(i, name, touched, c.out_channels, c.in_channels, c.in_hw[0],
                              c.in_hw[1], c.stride, c.kernel,
                              sum(by_name[n].macs for n in touched if n in by_name),
                              sum(by_name[n].params for n in touched if n in by_name)))
            plans.append(PrunePlan(root, fn, items))
        return units, plans

    def _cost_table(self, costs: list[LayerCost]) -> list[CountedLayer]:
        layers = {}
        for c in costs:
            m = self.model.get_submodule(c.name)
            bias = getattr(m, "bias", None)
            b = int(bias.numel()) if bias is not None else 0
            is_bn = isinstance(m, nn.modules.batchnorm._BatchNorm)
            w, b = (c.params, 0) if is_bn else (c.params - b, b)
            channelwise = is_bn or (c.groups > 1 and c.groups == c.in_channels)
            layers[c.name] = CountedLayer(c.name, c.macs, w, b, c.out_channels, c.in_channels,
                                    channelwise)
        for u, plan in zip(self.units, self.plans):
            for name, fn_name in plan.items:
                if name not in layers:
                    continue
                if fn_name == "prune_out_channels":
                    layers[name].out_unit = u.index
                elif fn_name == "prune_in_channels":
                    layers[name].in_unit = u.index
        return list(layers.values())

    def _rank(self, calib: tuple[torch.Tensor, torch.Tensor] | None) -> list[torch.Tensor]:
        if self.criterion == "taylor":
            if calib is None:
                raise AmcError("the taylor criterion needs training batches; pass data")
            self.model.zero_grad()
            x, y = calib
            with torch.enable_grad():
                nn.functional.cross_entropy(self.model(x), y).backward()
            imp = tp.importance.GroupTaylorImportance()
        elif self.criterion == "bn_scale":
            imp = tp.importance.BNScaleImportance()
        else:
            imp = tp.importance.GroupMagnitudeImportance(p=1 if self.criterion == "l1" else 2)
        ranks = []
        for u, plan in zip(self.units, self.plans):
            group = self.DG.get_pruning_group(plan.root, plan.fn, list(range(u.n)))
            scores = imp(group)
            if scores is None:  # e.g. bn_scale on a group without BatchNorm: fall back to L1
                scores = tp.importance.GroupMagnitudeImportance(p=1)(group)
            ranks.append(torch.argsort(scores.detach().cpu(), stable=True))
        if self.criterion == "taylor":
            self.model.zero_grad(set_to_none=True)
        return ranks

    # ------------------------------------------------------------------ cost model
    def kept(self, unit: int, ratio: float) -> int:
        """Channels the unit keeps at ``ratio`` (the same rule :meth:`prune` applies)."""
        n = self.units[unit].n
        keep = n - int(n * float(ratio) + 1e-9)
        if self.round_to and self.round_to > 1:
            keep = min(n, -(-keep // self.round_to) * self.round_to)
        return max(1, keep)

    def cost(self, ratios: Iterable[float]) -> tuple[float, float]:
        """Exact (MACs, params) of the network pruned at per-unit ``ratios``."""
        keep = [self.kept(i, r) / u.n for i, (u, r) in enumerate(zip(self.units, ratios))]
        macs, params = 0.0, float(self._fixed_params)
        for L in self.layers:
            ko = keep[L.out_unit] if L.out_unit is not None else 1.0
            ki = keep[L.in_unit] if L.in_unit is not None else 1.0
            if L.channelwise:
                ko = ki = min(ko, ki)
                macs += L.macs * ko
                params += (L.w_params + L.b_params) * ko
            else:
                macs += L.macs * ko * ki
                params += L.w_params * ko * ki + L.b_params * ko
        return macs, params

    def cost_fraction(self, ratios: Iterable[float]) -> tuple[float, float]:
        """(MACs, params) as fractions of the dense network."""
        m, p = self.cost(ratios)
        return m / self.dense_macs, p / self.dense_params

    # ------------------------------------------------------------------ pruning
    def prune(self, ratios: Iterable[float], model: nn.Module | None = None) -> nn.Module:
        """Return a physically pruned copy of ``model`` (default: the dense network).

        ``model`` must have the dense architecture of the network this object was built on
        (for example a fresh copy of the same checkpoint).
        """
        ratios = list(ratios)
        if len(ratios) != len(self.units):
            raise AmcError(f"{len(ratios)} ratios given for {len(self.units)} units")
        net = copy.deepcopy(model if model is not None else self.model)
        for u, plan, rank, r in zip(self.units, self.plans, self.rankings, ratios):
            n_prune = u.n - self.kept(u.index, r)
            if n_prune <= 0:
                continue
            idxs = sorted(rank[:n_prune].tolist())
            group = self.DG.get_pruning_group(plan.root, plan.fn, idxs)
            for it in group:
                name = self._names.get(id(it.dep.target.module))
                if name is None:
                    continue
                it.dep.handler(net.get_submodule(name) if name else net, list(it.idxs))
        return net.eval()

    def features(self) -> list[dict]:
        """The units as dicts (for reports and policies)."""
        return [u.as_dict() for u in self.units]
