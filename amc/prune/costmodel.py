"""Exact analytic cost (MACs, parameters) of a network pruned at per-unit channel counts.

Every pruned dimension of a layer (``out`` or ``in`` channels of a conv or linear layer, the
one channel dimension of BatchNorm, a depthwise conv or a per-channel parameter) is a *dim*.
A unit removes, from each dim it reaches, the entries its pruned channels map to: one per
channel, ``H*W`` per channel after a flatten, only the channels of one part after a concat or
split. Channels are removed in ranking order, so the count a unit removes from a dim after
pruning its first ``k`` positions is a fixed prefix sum, stored once. A layer's MACs (summed
over all its calls: a module called twice costs twice) and each parameter tensor (counted
once) then scale with the kept fraction of each of their dims, computed in integers so that
the model equals the measured cost exactly.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import nn
from torch_pruning.ops import OPTYPE

from amc.cost.macs import COUNTED, LayerCost

Key = tuple[str, str]  # (module or parameter name, "out" | "in" | "ch")


@dataclass
class CountedLayer:
    """Cost record of one counted layer (all its calls).

    ``channelwise`` layers (BatchNorm, depthwise conv) scale with one channel count only.
    ``out_unit`` / ``in_unit``: the unit that prunes all of the layer's output / input
    channels one to one (None: no unit, or several units or a mapping such as a flatten).
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
    calls: int = 1
    row: LayerCost | None = None


@dataclass
class Dim:
    """One prunable dimension: its size and, per unit reaching it, the entries removed after
    pruning the unit's first k positions (``cum[k]``)."""

    size: int
    parts: list[tuple[int, list[int]]] = field(default_factory=list)


def layer_keys(m: nn.Module, name: str) -> tuple[Key | None, Key | None, bool]:
    """(output dim, input dim, channelwise) of a counted layer."""
    if isinstance(m, nn.modules.conv._ConvNd) and m.groups > 1 and \
            m.groups == m.out_channels == m.in_channels:
        return (name, "ch"), (name, "ch"), True
    if isinstance(m, nn.modules.batchnorm._BatchNorm | nn.PReLU):
        return (name, "ch"), (name, "ch"), True
    return (name, "out"), (name, "in"), False


def _param_keys(m: nn.Module, name: str, pname: str) -> tuple[Key | None, Key | None]:
    if isinstance(m, nn.modules.conv._ConvNd | nn.Linear):
        out, inp, cw = layer_keys(m, name)
        return (out, None) if cw or pname == "bias" else (out, inp)
    if isinstance(m, nn.modules.batchnorm._BatchNorm | nn.PReLU):
        return (name, "ch"), None
    return None, None


def _channels(m: nn.Module, kind: str) -> int:
    """Dense size of a layer's ``out`` / ``in`` / ``ch`` (channelwise) dimension."""
    if isinstance(m, nn.modules.batchnorm._BatchNorm):
        return int(m.num_features)
    if isinstance(m, nn.PReLU):
        return int(m.num_parameters)
    if isinstance(m, nn.Linear):
        return int(m.in_features if kind == "in" else m.out_features)
    return int(m.in_channels if kind == "in" else m.out_channels)


def group_dim(it, names: dict[int, str]) -> tuple[Key, int] | None:
    """(dim, dense size) a Torch-Pruning group item removes entries from (None: nothing with
    parameters)."""
    node = it.dep.target
    name = names.get(id(node.module))
    if name is None or (isinstance(node.module, nn.PReLU) and node.module.num_parameters == 1):
        return None
    if node.type == OPTYPE.PARAMETER:
        return (name, "ch"), int(node.module.shape[node.pruning_dim])
    out, inp, cw = layer_keys(node.module, name)
    key = out if cw or it.dep.handler.__name__ != "prune_in_channels" else inp
    return key, _channels(node.module, key[1])


def add_unit_dims(dims: dict[Key, Dim], unit: int, entries, rank: torch.Tensor, n: int,
                  g: int) -> None:
    """Record, in each dim a unit reaches, the entries it removes after pruning its first k
    channel positions in ``rank`` order (``entries``: ((dim, size), group item) pairs)."""
    s, pos = n // g, rank[::g] % (n // g)
    for (key, size), it in entries:
        per_root = torch.bincount(torch.as_tensor(it.root_idxs, dtype=torch.long), minlength=n)
        per_pos = per_root.reshape(g, s).sum(0)[pos]
        cum = [0] + torch.cumsum(per_pos, 0).tolist()
        dims.setdefault(key, Dim(size)).parts.append((unit, cum))


def _scaled(value: int, a: int, na: int, b: int, nb: int) -> int:
    return value * a * b // (na * nb)


class CostModel:
    """Exact (MACs, params) as a function of the positions pruned per unit.

    Args:
        model: The dense network.
        rows: Its :func:`amc.cost.macs.layer_costs`.
        dims: The prunable dims the units reach.
        unwrapped: Names of parameters pruned as a whole along one dimension.
    """

    def __init__(self, model: nn.Module, rows: list[LayerCost], dims: dict[Key, Dim],
                 unwrapped: set[str]):
        self.dims = dims
        self.fixed_macs, self.fixed_params = 0, 0
        self._macs: list[tuple[int, Key, Key]] = []
        self._params: list[tuple[int, Key, Key]] = []
        self.layers: list[CountedLayer] = []
        by_name: dict[str, list[LayerCost]] = {}
        for r in rows:
            by_name.setdefault(r.name, []).append(r)
        modules = dict(model.named_modules())
        for name, calls in by_name.items():
            macs = sum(r.macs for r in calls)
            m = modules.get(name)
            if not isinstance(m, COUNTED):
                self.fixed_macs += macs
                continue
            out, inp, cw = layer_keys(m, name)
            bias = getattr(m, "bias", None)
            b = int(bias.numel()) if bias is not None and not cw else 0
            w = sum(p.numel() for p in m.parameters(recurse=False)) - b
            self.layers.append(CountedLayer(name, macs, w, b, calls[0].out_channels,
                                            calls[0].in_channels, cw, calls=len(calls),
                                            row=calls[0]))
            self._add(self._macs, macs, out, None if cw else inp, by_fixed="macs")
        seen: set[int] = set()
        for mname, m in modules.items():
            for pname, p in m.named_parameters(recurse=False):
                if id(p) in seen:
                    continue
                seen.add(id(p))
                full = f"{mname}.{pname}" if mname else pname
                a, b = ((full, "ch"), None) if full in unwrapped else _param_keys(m, mname, pname)
                self._add(self._params, p.numel(), a, b, by_fixed="params")

    def _add(self, table: list, value: int, a: Key | None, b: Key | None, by_fixed: str
             ) -> None:
        a = a if a in self.dims else None
        b = b if b in self.dims else None
        if a is None and b is None:
            if by_fixed == "macs":
                self.fixed_macs += value
            else:
                self.fixed_params += value
            return
        table.append((value, a, b))

    def removed(self, positions: Sequence[int]) -> dict[Key, int]:
        """Entries removed from each dim when unit ``u`` prunes ``positions[u]`` positions."""
        return {k: sum(cum[positions[u]] for u, cum in d.parts) for k, d in self.dims.items()}

    def kept(self, positions: Sequence[int]) -> dict[Key, tuple[int, int]]:
        """(kept, dense) size of every dim."""
        rem = self.removed(positions)
        return {k: (d.size - rem[k], d.size) for k, d in self.dims.items()}

    def cost(self, positions: Sequence[int]) -> tuple[int, int]:
        """(MACs, params) when unit ``u`` prunes ``positions[u]`` positions."""
        kept = self.kept(positions)
        one = (1, 1)
        totals = []
        for table, fixed in ((self._macs, self.fixed_macs), (self._params, self.fixed_params)):
            total = fixed
            for value, a, b in table:
                ka = kept[a] if a is not None else one
                kb = kept[b] if b is not None else one
                total += _scaled(value, ka[0], ka[1], kb[0], kb[1])
            totals.append(total)
        return totals[0], totals[1]

    def channelwise_cost(self, layers: Sequence[tuple[LayerCost, Key]],
                         positions: Sequence[int]) -> tuple[int, int]:
        """(MACs, params) of the given BatchNorm layers (row, dim) at ``positions``: one MAC
        per output element and a scale and a shift per kept channel."""
        kept = self.kept(positions) if any(k in self.dims for _, k in layers) else {}
        macs = params = 0
        for row, key in layers:
            k, c = kept.get(key, (row.out_channels, row.out_channels))
            macs, params = macs + row.macs * k // c, params + 2 * k
        return macs, params

    def assign_units(self, units: Sequence) -> None:
        """Fill the per-layer and per-unit summaries: each unit's MACs and params (``units``
        are :class:`~amc.prune.units.Unit`) and each layer's one-to-one out/in unit."""
        parts = {k: d.parts for k, d in self.dims.items()}
        for L in self.layers:
            ko, ki, _ = layer_keys_from(L)
            for key, attr in ((ko, "out_unit"), (ki, "in_unit")):
                p = parts.get(key, [])
                if len(p) == 1 and p[0][1][-1] == self.dims[key].size == units[p[0][0]].n:
                    setattr(L, attr, p[0][0])
            for u in {p[0] for key in {ko, ki} for p in parts.get(key, [])}:
                units[u].macs += L.macs
                units[u].params += L.w_params + L.b_params

    def layer_keep(self, positions: Sequence[int]) -> list[tuple[float, float]]:
        """Kept fraction of (output, input) channels of every layer in :attr:`layers`."""
        kept = self.kept(positions)
        out = []
        for L in self.layers:
            ko, ki, _ = layer_keys_from(L)
            fo = kept[ko][0] / kept[ko][1] if ko in kept else 1.0
            fi = kept[ki][0] / kept[ki][1] if ki in kept else 1.0
            out.append((fo, fi))
        return out


def layer_keys_from(L: CountedLayer) -> tuple[Key, Key, bool]:
    """The dims of a :class:`CountedLayer` (as :func:`layer_keys` gives them)."""
    if L.channelwise:
        return (L.name, "ch"), (L.name, "ch"), True
    return (L.name, "out"), (L.name, "in"), False
