"""Which dependency groups can be pruned exactly, and in how many channel groups.

A group (unit) is pruned *exactly* when the physically pruned network computes what the
dense network computes with the same channels masked (the producing layer's filters, its
BatchNorm scale and shift, and the consumers' input slices zeroed), and its cost follows the
analytic model of :mod:`amc.prune.costmodel`. That holds when every node the channels pass
through acts on each channel alone: convolutions, linear layers, BatchNorm, PReLU, per-channel
parameters (layer scales), element-wise activations and arithmetic, spatial pooling and means,
concatenation, splits and slices, and a flatten into a linear layer. :func:`group_problem`
names the first node that breaks this, for example a LayerNorm (a masked channel still counts
in its statistics), attention (Torch-Pruning changes the head size), a permute or channel
shuffle, or channels that are the network's output. Grouped convolutions are handled by
removing the same positions in every group (:func:`channel_groups`).
"""

from __future__ import annotations

import math

from torch import nn
from torch_pruning.ops import OPTYPE

from amc.prune.graph import op_name

# autograd ops that act on every channel alone (element-wise or spatial only)
CHANNELWISE_OPS = frozenset({
    "AddBackward", "SubBackward", "MulBackward", "DivBackward", "NegBackward", "ReluBackward",
    "HardtanhBackward", "HardswishBackward", "HardsigmoidBackward", "SigmoidBackward",
    "SiluBackward", "GeluBackward", "TanhBackward", "EluBackward", "LeakyReluBackward",
    "ClampBackward", "ClampMinBackward", "ClampMaxBackward", "ExpBackward", "PowBackward",
    "SqrtBackward", "CloneBackward", "AliasBackward", "ToCopyBackward",
    "MaxPool2DWithIndicesBackward", "MaxPool2DBackward", "AvgPool2DBackward",
    "AdaptiveAvgPool2DBackward", "AdaptiveMaxPool2DBackward", "UpsampleNearest2DBackward",
    "UpsampleBilinear2DBackward"})
_PRODUCTS = ("AddmmBackward", "MmBackward")
CHANNELWISE_LAYERS = (OPTYPE.BN, OPTYPE.PRELU, OPTYPE.PARAMETER, OPTYPE.DEPTHWISE_CONV)
_MAPPED = (OPTYPE.CONCAT, OPTYPE.SPLIT, OPTYPE.SLICE)
_NORMS = {OPTYPE.LN: "LayerNorm", OPTYPE.GN: "GroupNorm", OPTYPE.IN: "InstanceNorm"}


def linear_internals(DG) -> set:
    """Nodes inside linear-layer calls: the weight transpose, and for inputs with more than two
    dimensions the flattening reshape and the matrix product the layer runs."""
    out = set()
    for node in DG.module2node.values():
        if node.type != OPTYPE.LINEAR:
            continue
        for a in node.inputs:
            if op_name(a) == "TBackward" and not a.inputs:
                out.add(a)
            elif op_name(a) in _PRODUCTS and a.outputs == [node]:
                out.add(a)
                out.update(b for b in a.inputs if (op_name(b) == "TBackward" and not b.inputs)
                           or (b.type == OPTYPE.RESHAPE and len(b.outputs) == 1))
    return out


def _spatial_reduction(node) -> bool:
    fn = node.grad_fn
    sizes = getattr(fn, "_saved_self_sym_sizes", None)
    dims = getattr(fn, "_saved_dim", None)
    if sizes is None or dims is None or len(sizes) < 3:
        return False
    dims = [dims] if isinstance(dims, int) else list(dims)
    return bool(dims) and all(d % len(sizes) >= 2 for d in dims)


def _op_problem(node, internals: set) -> str | None:
    """Why an element-wise/reshape node is not channel-wise (None: it is)."""
    name = op_name(node)
    if getattr(node, "amc_unmapped", False):
        return f"Torch-Pruning cannot map their indices through {name}"
    if node in internals or name in CHANNELWISE_OPS:
        return None
    if name in ("MeanBackward", "SumBackward") and _spatial_reduction(node):
        return None
    if name == "ConstantPadNdBackward" and len(getattr(node.grad_fn, "_saved_pad", ())) <= 4:
        return None
    if node.type in _MAPPED:
        return None  # Torch-Pruning maps the indices of concatenations, splits and slices
    if node.type == OPTYPE.RESHAPE:
        if node.outputs and all(o.type == OPTYPE.LINEAR for o in node.outputs):
            return None  # a flatten into a linear layer
        return f"they pass through a reshape ({name}), e.g. a channel shuffle"
    return f"they pass through {name} (not channel-wise)"


def reachable(DG, module: nn.Module, fn) -> list[tuple[object, object]]:
    """(node, pruning function) of every layer and op that pruning ``module``'s output
    channels reaches, ignoring index mappings: a superset of Torch-Pruning's group, found
    without building index lists (which explode on some transformers)."""
    start = (DG.module2node[module], fn)
    seen, order = {start}, [start]
    for node, f in order:  # breadth first; ``order`` grows while it is walked
        for dep in node.dependencies:
            nxt = (dep.target, dep.handler)
            if dep.is_triggered_by(f) and nxt not in seen:
                seen.add(nxt)
                order.append(nxt)
    return order


def tied_modules(model: nn.Module) -> dict[int, str]:
    """id(module) -> name of another module holding one of its parameters (tied weights)."""
    owner: dict[int, tuple[str, nn.Module]] = {}
    out: dict[int, str] = {}
    for name, m in model.named_modules(remove_duplicate=False):
        for p in m.parameters(recurse=False):
            other, om = owner.setdefault(id(p), (name, m))
            if om is not m:  # another module (a module registered twice is no tie)
                out[id(m)], out[id(om)] = other, name
    return out


def _layer_problem(node, name: str, tied: dict[int, str]) -> str | None:
    mod, t = node.module, node.type
    if t in _NORMS:
        return f"{_NORMS[t]} {name} normalises over them (a masked channel would still count " \
               "in its statistics)"
    if t == OPTYPE.MHA:
        return f"they enter the MultiheadAttention {name} (Torch-Pruning would change its " \
               "head size, not remove heads)"
    if t == OPTYPE.OUTPUT:
        return "they are outputs of the network"
    if t in (OPTYPE.EXPAND, OPTYPE.UNBIND, OPTYPE.EMBED, OPTYPE.LSTM, OPTYPE.CUSTOMIZED):
        return f"they pass through {name if name != '?' else op_name(node)} ({t.name})"
    if isinstance(mod, nn.Module) and id(mod) in tied:
        return f"{name} shares its parameters with {tied[id(mod)]}"
    if isinstance(mod, nn.modules.conv._ConvNd):
        if mod.transposed:
            return f"they enter the transposed convolution {name}"
        if t == OPTYPE.DEPTHWISE_CONV and not mod.in_channels == mod.out_channels:
            return f"grouped conv {name} has groups == out_channels != in_channels"
    return None


def group_problem(items, names: dict[int, str], internals: set, tied: dict[int, str]
                  ) -> str | None:
    """Why a unit cannot be pruned exactly, in a few words (None: it can).

    Args:
        items: (graph node, pruning function) of everything the unit reaches
            (:func:`reachable`).
        names: ``id(module or parameter)`` -> qualified name.
        internals: :func:`linear_internals` of the graph.
        tied: ``id(module)`` -> name of another module that shares its parameters.
    """
    nodes = [node for node, _ in items]
    for node, fn in items:  # nothing consumes it: a network output (in-channels may go)
        if not node.outputs and fn.__name__ != "prune_in_channels":
            return "they are outputs of the network"
    for node in nodes:  # layers first: they name the pattern best
        problem = _layer_problem(node, names.get(id(node.module), "?"), tied)
        if problem:
            return problem
    for node in nodes:
        if node.type in (OPTYPE.ELEMENTWISE, OPTYPE.RESHAPE, *_MAPPED):
            problem = _op_problem(node, internals)
            if problem:
                return problem
    return None


def channel_groups(group, n: int, names: dict[int, str]) -> tuple[int, str | None]:
    """Channel groups ``G`` of a unit of ``n`` channels, or a reason it cannot be pruned.

    A grouped (not depthwise) convolution among the layers keeps its group count, so each
    group must lose the same positions: channel ``p + j * n / G`` goes with position ``p`` for
    every ``j < G``, ``G`` being the least common multiple of the group counts.
    """
    g = 1
    for it in group:
        mod, t = it.dep.target.module, it.dep.target.type
        if t != OPTYPE.CONV or mod.groups == 1:
            continue
        name = names.get(id(mod), "?")
        width = len(it.idxs)
        whole = mod.in_channels if it.dep.handler.__name__ == "prune_in_channels" \
            else mod.out_channels
        if width != whole or list(it.idxs) != list(it.root_idxs):
            return 1, f"grouped conv {name} ({mod.groups} groups) takes them together with " \
                      "other channels"
        g = math.lcm(g, mod.groups)
    if n % g or n // g < 2:
        return g, f"the {n} channels of the grouped convs ({g} groups) leave no position to " \
                  "remove in every group"
    return g, None
