"""Prunable units and structured channel pruning on Torch-Pruning's DependencyGraph.

A *unit* is one dependency group: the layers whose channels must be removed together
(a conv's output channels, its BatchNorm, the next conv's input channels, and everything a
residual add or a concatenation ties to them). :class:`PrunableModel` discovers the units
once, keeps only those that can be pruned exactly (:mod:`amc.prune.exact`: the pruned
network computes what the dense one computes with the same channels masked; the others are
left out with a one-line notice, and a network with none left is refused), ranks each
unit's channels once by an importance criterion, and keeps an exact analytic cost model
(:mod:`amc.prune.costmodel`: MACs and parameters as a function of per-unit ratios, equal to
the measured cost of the physically pruned network). :meth:`PrunableModel.prune` then
removes channels from a copy of the network with Torch-Pruning's layer pruners; no graph is
re-traced per call, which keeps the search's per-episode cost low.

Grouped convolutions keep their group count: a unit that reaches one removes the same
positions from every group (``Unit.groups`` channels at a time), and ``round_to`` rounds
the kept channels to a multiple of both.

Modes:
    * ``auto`` (default): ``internal`` for a network with residual adds, else ``all``;
    * ``all``: every group DepGraph can prune (the classifier's outputs never);
    * ``internal``: AMC's residual-net mode, only groups whose channels meet no residual
      add (for a ResNet: the first conv of each block).
"""

from __future__ import annotations

import copy
import logging
import math
from collections.abc import Iterable, Sequence

import torch
from torch import nn
from torch_pruning.ops import OPTYPE

from amc.cost.macs import count_params, layer_costs
from amc.models.cifar import PadShortcut, conv_shortcuts
from amc.prune.costmodel import CostModel, CountedLayer, add_unit_dims, group_dim
from amc.prune.depth import DROP, drop_blocks, unit_blocks
from amc.prune.exact import channel_groups, group_problem, linear_internals, reachable, tied_modules
from amc.prune.graph import all_groups, build_graph, classifier, op_name, unwrapped_parameters
from amc.prune.importance import make_importance, rank_channels
from amc.prune.unit import PrunePlan, Unit
from amc.utils.errors import AmcError

__all__ = ["CRITERIA", "MODES", "CountedLayer", "PrunableModel", "PrunePlan", "Unit"]

MODES = ("auto", "all", "internal")
CRITERIA = ("l1", "l2", "bn_scale", "taylor")
log = logging.getLogger("amc")
_RESIDUAL = "their channels meet a residual add"  # skipped in internal mode
_NOTED: set[str] = set()


def _note(text: str) -> None:
    """Log a one-line notice once per process (pruners rebuild this object often)."""
    if text not in _NOTED:
        _NOTED.add(text)
        log.warning(text)


class PrunableModel:
    """A network with its prunable units, channel rankings and exact cost model.

    Args:
        model: The dense network (not modified).
        input_size: (C, H, W) of one input.
        mode: ``all``, ``internal`` or ``auto`` (``internal`` when the network has residual
            adds, as AMC prunes residual nets, else ``all``; :attr:`mode` then holds the mode
            chosen, and a one-line notice says which).
        criterion: ``l1``, ``l2``, ``bn_scale`` or ``taylor``.
        round_to: Keep channel counts at multiples of this (None: no rounding).
        calib: (x, y) training batch, needed by the ``taylor`` criterion.
        drop_blocks: Let a unit that is exactly a basic residual block's inner width take
            ratio 1 (:data:`~amc.prune.depth.DROP`): the block is then replaced by its
            shortcut plus a constant (:mod:`amc.prune.depth`), exactly, with its time.

    Attributes:
        units: The units that can be pruned exactly, in forward order.
        left_out: (root layer, reason) of the groups that cannot.
        pad_shortcuts: Whether the network has zero-padding shortcuts other than
            :class:`~amc.models.cifar.PadShortcut` (its residual channels cannot be pruned
            exactly; ``all`` mode is refused).
        converted: The :class:`~amc.models.cifar.PadShortcut` modules that ``all`` mode
            replaced by equivalent 1x1 selection convs (:func:`~amc.models.cifar.conv_shortcuts`):
            :attr:`model` is then that converted copy, the same function with prunable
            residual channels.
        layers: Cost records of the counted layers (:class:`CountedLayer`).
        blocks: Per droppable unit (index), its block's name (empty without
            ``drop_blocks``).
        rankings: Per unit, its channels from least to most important.
        importance: Per unit, the importance of its channel positions in ascending order
            (Torch-Pruning's group score, normalised by the group's mean, as its global
            ranking compares them across groups); position ``j`` is removed ``groups``
            channels at a time.

    Raises:
        AmcError: if Torch-Pruning cannot trace the model, or no unit can be pruned exactly.
    """

    def __init__(self, model: nn.Module, input_size: tuple[int, int, int], mode: str = "all",
                 criterion: str = "l1", round_to: int | None = None,
                 calib: tuple[torch.Tensor, torch.Tensor] | None = None,
                 drop_blocks: bool = False):
        if mode not in MODES:
            raise AmcError(f"unknown unit mode {mode!r}; use auto, all or internal")
        if criterion not in CRITERIA:
            raise AmcError(f"unknown criterion {criterion!r}; use one of {', '.join(CRITERIA)}")
        if criterion == "taylor" and calib is None:
            raise AmcError("the taylor criterion needs training batches; pass data")
        self.input_size = tuple(input_size)
        self.converted: list[str] = []
        if mode == "all":
            model, self.converted = conv_shortcuts(model)
        self.model = model.eval()
        self.pad_shortcuts = any(type(m).__name__ == "PadShortcut"  # another class's
                                 and not isinstance(m, PadShortcut) for m in model.modules())
        self.mode, self.criterion, self.round_to = mode, criterion, round_to
        self._steps: dict[tuple, list[float]] = {}  # ratio_steps, computed once
        self._names = {id(m): n for n, m in model.named_modules()}
        self._names.update({id(p): n for n, p in model.named_parameters()})
        costs = layer_costs(model, self.input_size)
        self._rows = {}
        for c in costs:
            self._rows.setdefault(c.name, c)
        self._order = {name: i for i, name in enumerate(self._rows)}
        self.dense_macs = sum(c.macs for c in costs)
        if self.converted:
            extra = sum(self._rows[n].macs for n in self.converted if n in self._rows)
            _note(f"amc: note: --units all prunes the {len(self.converted)} option-A shortcuts "
                  f"of {type(model).__name__} as 1x1 selection convs (the same output; "
                  f"{100 * extra / max(1, self.dense_macs - extra):.2f} % more MACs than "
                  "zero padding)")
        self.dense_params = count_params(model)
        unwrapped = {self._names[id(p)] for p, _ in unwrapped_parameters(model)}
        self.DG = build_graph(model, self.input_size)
        dims = self._discover(calib)
        self._costs = CostModel(model, costs, dims, unwrapped)
        self.layers: list[CountedLayer] = self._costs.layers
        self._costs.assign_units(self.units)
        self.blocks = unit_blocks(model, self.units) if drop_blocks else {}
        self._bn2 = {u: (self._rows[f"{b}.bn2"], (f"{b}.bn2", "ch"))
                     for u, b in self.blocks.items()}
        if self.left_out:
            shown = "; ".join(f"{n}: {r}" for n, r in self.left_out[:4])
            more = f"; and {len(self.left_out) - 4} more" if len(self.left_out) > 4 else ""
            note = (f"amc: note: {len(self.left_out)} unit(s) of {type(model).__name__} left "
                    f"out (not prunable exactly): {shown}{more}")
            _note(note)

    # ------------------------------------------------------------------ discovery
    def _discover(self, calib) -> dict:
        model, names = self.model, self._names
        if self.criterion == "taylor":
            model.zero_grad()
            x, y = calib
            with torch.enable_grad():
                nn.functional.cross_entropy(model(x), y).backward()
        clf = classifier(model)
        internals, tied = linear_internals(self.DG), tied_modules(model)
        imp = make_importance(self.criterion)
        found, self.left_out = [], []
        residual: list[nn.Module] = []
        claimed: dict[tuple[str, str], set[int]] = {}

        def screen(m: nn.Module, fn) -> str | None:
            items = reachable(self.DG, m, fn)
            if self.mode in ("internal", "auto") and any(op_name(n) == "AddBackward"
                                                         for n, _ in items):
                residual.append(m)
                return _RESIDUAL
            problem = group_problem(items, names, internals, tied)
            if problem and self.pad_shortcuts and self.mode == "all" and "ConstantPadNd" in problem:
                raise AmcError(
                    "DepGraph cannot trace the option-A zero-padding shortcut of this network "
                    "in 'all' mode (it couples layers of different widths); use "
                    "--units internal")
            return problem

        for root, group, problem in all_groups(self.DG, [clf] if clf is not None else [],
                                               screen):
            name = names.get(id(root))
            if name is None or name not in self._rows:
                continue
            if problem == _RESIDUAL:
                continue
            if group is None:
                self.left_out.append((name, problem))
                continue
            root_dep = group[0].dep
            n = len(group[0].idxs)
            widths = {int(it.dep.target.module.weight.shape[0]) for it in group
                      if isinstance(it.dep.target.module, nn.Conv2d | nn.Linear)
                      and it.dep.handler.__name__ == "prune_out_channels"}
            problem = "Torch-Pruning couples layers of different widths" if len(
                widths) > 1 else None
            g, gproblem = channel_groups(group, n, names) if not problem else (1, None)
            entries = [] if problem or gproblem else [
                (k, it) for it in group if (k := group_dim(it, names)) is not None]
            overlap = next((k[0][0] for k, it in entries if claimed.get(k[0], set()) &
                            set(it.idxs)), None)
            reason = problem or gproblem or (overlap and f"{overlap} is also pruned by another "
                                             "unit")
            if not reason:
                try:
                    rank, score = rank_channels(imp, group, n, g)
                except Exception as e:  # noqa: BLE001 - any failure of the scorer
                    reason = f"Torch-Pruning cannot score them ({type(e).__name__}: {e})"[:160]
            if reason:
                self.left_out.append((name, reason))
                continue
            for k, it in entries:
                claimed.setdefault(k[0], set()).update(it.idxs)
            found.append((name, root, root_dep.handler, group, g, (rank, score), entries))
        if self.criterion == "taylor":
            model.zero_grad(set_to_none=True)
        self.notice: str | None = None
        """The one-line notice of what ``auto`` chose (None when nothing was left whole)."""
        if self.mode == "auto":
            self.mode = "internal" if residual else "all"
            if residual:
                self.notice = (
                    f"amc: note: --units auto chose 'internal' for {type(model).__name__}: "
                    f"{len(residual)} group(s) whose channels meet a residual add stay whole "
                    "(AMC's residual-net mode); " + (
                        "its zero-padding shortcuts keep them whole in every mode"
                        if self.pad_shortcuts else "pass --units all to prune them too"))
                _note(self.notice)
        if not found:
            first = f": {self.left_out[0][0]}: {self.left_out[0][1]}" if self.left_out else ""
            more = f" (and {len(self.left_out) - 1} more)" if len(self.left_out) > 1 else ""
            hint = "; try --units all" if residual and not self.pad_shortcuts else ""
            raise AmcError(f"no unit of {type(model).__name__} can be pruned exactly in "
                           f"{self.mode!r} mode{first}{more}{hint}")
        found.sort(key=lambda f: self._order[f[0]])
        self.units, self.plans, self.rankings = [], [], []
        self.importance: list[torch.Tensor] = []
        dims: dict = {}
        for i, (name, root, fn, group, g, (rank, score), entries) in enumerate(found):
            c = self._rows[name]
            touched = sorted({k[0][0] for k, _ in entries if k[0][0] in self._rows},
                             key=lambda n: self._order[n])
            n = len(group[0].idxs)
            self.units.append(Unit(i, name, touched, n, c.in_channels, c.in_hw[0], c.in_hw[1],
                                   c.stride, c.kernel, 0, 0, g))
            self.plans.append(PrunePlan(root, fn, [(names[id(it.dep.target.module)],
                                                    it.dep.handler.__name__)
                                                   for _, it in entries]))
            self.rankings.append(rank)
            self.importance.append(score)
            add_unit_dims(dims, i, entries, rank, n, g)
        return dims

    # ------------------------------------------------------------------ cost model
    def kept(self, unit: int, ratio: float) -> int:
        """Channels the unit keeps at ``ratio`` (the same rule :meth:`prune` applies)."""
        n, g = self.units[unit].n, self.units[unit].groups
        if ratio >= DROP and unit in self.blocks:
            return 0
        s = n // g
        keep = s - int(s * float(ratio) + 1e-9)
        if self.round_to and self.round_to > 1:
            step = self.round_to // math.gcd(self.round_to, g)
            keep = min(s, -(-keep // step) * step)
        return max(1, keep) * g

    def dropped_elements(self, ratios: Sequence[float]) -> int:
        """Output elements (per image) of the blocks ``ratios`` drop: the elementwise work
        (ReLUs, the residual add) that leaves with them, beyond their counted layers."""
        return sum(self._bn2[u][0].out_channels * math.prod(self._bn2[u][0].out_hw)
                   for u in self.blocks if ratios[u] >= DROP)

    def top_ratio(self, unit: int, max_ratio: float) -> float:
        """The largest ratio of the unit: :data:`~amc.prune.depth.DROP` for a droppable
        unit, else ``max_ratio``."""
        return DROP if unit in self.blocks else max_ratio

    def ratio_steps(self, unit: int, max_ratio: float) -> list[float]:
        """The ratios in ``[0, max_ratio]`` at which the unit's kept channels change, rising
        from 0: each is the smallest ratio that keeps its count (``k / s``), and every ratio
        up to the next one prunes the same channels (so costs are step functions of them);
        a droppable unit ends with :data:`~amc.prune.depth.DROP`."""
        key = (unit, float(max_ratio), self.round_to)
        if key not in self._steps:
            s = self.units[unit].n // self.units[unit].groups
            steps, last = [], None
            for k in range(int(s * float(max_ratio) + 1e-9) + 1):
                kept = self.kept(unit, k / s)
                if kept != last:
                    steps.append(k / s)
                    last = kept
            self._steps[key] = steps + ([DROP] if unit in self.blocks else [])
        return self._steps[key]

    def canonical(self, ratios: Iterable[float]) -> list[float]:
        """The same policy as exact fractions of removed channel positions (``k / s``): a
        ratio a hair below a boundary and one on it remove the same channels here, but only
        the exact fraction survives float32 actions and rounding unchanged."""
        return [((u.n - self.kept(i, r)) // u.groups) / (u.n // u.groups)
                for i, (u, r) in enumerate(zip(self.units, ratios))]

    def _positions(self, ratios: Iterable[float]) -> list[int]:
        return [(u.n - self.kept(i, r)) // u.groups
                for i, (u, r) in enumerate(zip(self.units, ratios))]

    def cost(self, ratios: Iterable[float]) -> tuple[int, int]:
        """Exact (MACs, params) of the network pruned at per-unit ``ratios``.

        A dropped block's layers count nothing by their kept channels; its ``bn2`` (one MAC
        per output element, a scale and a shift per channel) becomes the shift alone."""
        ratios = list(ratios)
        positions = self._positions(ratios)
        macs, params = self._costs.cost(positions)
        dropped = [self._bn2[u] for u in self.blocks if ratios[u] >= DROP]
        if dropped:
            m, p = self._costs.channelwise_cost(dropped, positions)
            macs, params = macs - m, params - p // 2
        return macs, params

    def twins(self) -> list[list[int]]:
        """Groups of two or more units whose pruning costs the same (the same shapes, MACs
        and parameters, e.g. the non-downsampling blocks of one ResNet stage): moving
        channels from one to its twin leaves the cost of the network unchanged."""
        groups: dict[tuple, list[int]] = {}
        for u in self.units:
            groups.setdefault((u.n, u.c, u.h, u.w, u.stride, u.k, u.macs, u.params, u.groups),
                              []).append(u.index)
        return [g for g in groups.values() if len(g) >= 2]

    def cost_fraction(self, ratios: Iterable[float]) -> tuple[float, float]:
        """(MACs, params) as fractions of the dense network."""
        m, p = self.cost(ratios)
        return m / self.dense_macs, p / self.dense_params

    def layer_keep(self, ratios: Iterable[float]) -> list[tuple[float, float]]:
        """Kept fraction of (output, input) channels of every layer in :attr:`layers`."""
        return self._costs.layer_keep(self._positions(ratios))

    # ------------------------------------------------------------------ pruning
    def prune(self, ratios: Iterable[float], model: nn.Module | None = None,
              inplace: bool = False) -> nn.Module:
        """Return a physically pruned copy of ``model`` (default: the dense network).

        ``model`` must have the dense architecture of the network this object was built on
        (for example a fresh copy of the same checkpoint); with ``inplace`` it is pruned
        itself instead of a copy. Each layer and parameter is cut once, with the union of
        what every unit removes from it (in dense indices), so that units sharing a layer
        (a concatenation's consumer) do not shift each other's indices.
        """
        ratios = list(ratios)
        if len(ratios) != len(self.units):
            raise AmcError(f"{len(ratios)} ratios given for {len(self.units)} units")
        if inplace and model is None:
            raise AmcError("prune(inplace=True) needs a model other than the dense network")
        if model is not None and self.mode == "all":  # as the dense network was converted
            model, done = conv_shortcuts(model)
            inplace = inplace and not done  # a converted copy is pruned and returned
        net = model if inplace else copy.deepcopy(model if model is not None else self.model)
        todo: dict = {}
        for u, plan, rank, r in zip(self.units, self.plans, self.rankings, ratios):
            n_prune = u.n - self.kept(u.index, r)
            if n_prune <= 0 or n_prune == u.n:  # nothing, or a dropped block (below)
                continue
            group = self.DG.get_pruning_group(plan.root, plan.fn, sorted(rank[:n_prune].tolist()))
            for it in group:
                name = self._names.get(id(it.dep.target.module))
                if name is not None:
                    todo.setdefault((name, it.dep.handler), (it.dep.target, set()))[1].update(
                        it.idxs)
        for (name, handler), (node, idxs) in todo.items():
            handler.__self__.pruning_dim = node.pruning_dim
            if node.type == OPTYPE.PARAMETER:
                parent, _, leaf = name.rpartition(".")
                owner = net.get_submodule(parent)
                setattr(owner, leaf, handler(getattr(owner, leaf), sorted(idxs)))
            else:
                handler(net.get_submodule(name), sorted(idxs))
        drop_blocks(net, [self.blocks[u] for u, r in enumerate(ratios)
                          if u in self.blocks and r >= DROP], copy_model=False)
        return net.eval()

    def features(self) -> list[dict]:
        """The units as dicts (for reports and policies)."""
        return [u.as_dict() for u in self.units]
