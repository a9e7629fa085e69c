"""Tracing a network into Torch-Pruning's dependency graph, and naming its nodes.

:func:`build_graph` wraps ``tp.DependencyGraph().build_dependency``:

* parameters that belong to no layer Torch-Pruning knows (layer scales, class tokens,
  position embeddings) are passed as ``unwrapped_parameters``: a parameter with one
  non-singleton dimension (a per-channel scale) is pruned along it, any other along its last
  non-singleton dimension (Torch-Pruning's default);
* a reshape, concatenation or split whose channel counts Torch-Pruning cannot infer (the
  channel shuffle of ShuffleNet makes it divide by zero, a concatenation in Swin-S/B adds
  None) is left without an index mapping instead of aborting the trace;
  :mod:`amc.prune.exact` never lets a unit through such a node;
* any other tracing failure is one :class:`AmcError` line naming the model;
* the index mappings are computed once, not again before every group (the traced model is
  never pruned in place).
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable, Iterator

import torch
import torch_pruning as tp
from torch import nn
from torch_pruning.dependency import index_mapping

from amc.utils.errors import AmcError, one_line


def _tolerant(update: Callable) -> Callable:
    """One of Torch-Pruning's index-mapping updates, marking the node ``amc_unmapped``
    instead of raising where it cannot infer the channel counts."""

    def wrapped(graph, node) -> None:
        try:
            update(graph, node)
        except (ZeroDivisionError, TypeError, IndexError):
            node.amc_unmapped = True

    return wrapped


_update_all = index_mapping.update_index_mapping


def _update_unless_frozen(graph) -> None:
    """Torch-Pruning recomputes every index mapping before each group it builds (the model
    may have been pruned in place); amc never prunes the traced model, so a graph built by
    :func:`build_graph` keeps its mappings (seconds per group saved on transformers)."""
    if not getattr(graph, "amc_frozen", False):
        _update_all(graph)


for _name in ("update_reshape_index_mapping", "update_concat_index_mapping",
              "update_split_index_mapping"):
    setattr(index_mapping, _name, _tolerant(getattr(index_mapping, _name)))
index_mapping.update_index_mapping = _update_unless_frozen


def op_name(node) -> str:
    """The autograd op of a graph node without its version suffix (``AddBackward``)."""
    fn = getattr(node, "grad_fn", None)
    name = fn.name() if fn is not None and hasattr(fn, "name") else type(node.module).__name__
    return re.sub(r"\d+$", "", name.rsplit("::", 1)[-1])


def classifier(model: nn.Module) -> nn.Module | None:
    """The last conv or linear layer (the classifier, never pruned)."""
    last = None
    for m in model.modules():
        if isinstance(m, nn.Linear | nn.Conv2d):
            last = m
    return last


def unwrapped_parameters(model: nn.Module) -> list[tuple[nn.Parameter, int]]:
    """Parameters outside the layers Torch-Pruning prunes, with the dimension to prune."""
    known = {id(p) for m in model.modules()
             if tp.ops.module2type(m) != tp.ops.OPTYPE.ELEMENTWISE for p in m.parameters()}
    out = []
    for p in model.parameters():
        dims = [i for i, s in enumerate(p.shape) if s > 1]
        if id(p) not in known and dims:
            out.append((p, dims[0] if len(dims) == 1 else dims[-1]))
    return out


def all_groups(DG: tp.DependencyGraph, ignored: list[nn.Module],
               screen: Callable[[nn.Module, Callable], str | None]
               ) -> Iterator[tuple[nn.Module, object | None, str | None]]:
    """(root, full group, None) for every conv/linear root not ignored and not already in an
    earlier group, as ``DG.get_all_groups`` yields them, or (root, None, reason) when
    ``screen(root, pruning function)`` names a reason to skip it (checked before the group is
    built) or Torch-Pruning cannot build its group."""
    visited: set[int] = set()
    for m in list(DG.module2node):
        if m in ignored or not isinstance(m, nn.Conv2d | nn.Linear) or id(m) in visited:
            continue
        pruner = DG.get_pruner_of_module(m)
        if pruner is None or pruner.get_out_channels(m) is None:
            continue
        visited.add(id(m))
        problem = screen(m, pruner.prune_out_channels)
        if problem:
            yield m, None, problem
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                group = DG.get_pruning_group(m, pruner.prune_out_channels,
                                             list(range(pruner.get_out_channels(m))))
        except Exception as e:  # noqa: BLE001 - Torch-Pruning's index mapping failed
            yield m, None, f"Torch-Pruning cannot follow them ({type(e).__name__}: " \
                           f"{one_line(e)})"
            continue
        outs = [it.dep.target.module for it in group
                if DG.is_out_channel_pruning_fn(it.dep.handler)]
        visited.update(id(o) for o in outs)
        if not any(o in ignored for o in outs):
            yield m, group, None


def build_graph(model: nn.Module, input_size: tuple[int, ...]) -> tp.DependencyGraph:
    """Torch-Pruning's dependency graph of ``model`` traced on one zero input.

    Raises:
        AmcError: if Torch-Pruning cannot trace the model.
    """
    p = next(model.parameters(), None)
    x = torch.zeros(1, *input_size, device=p.device if p is not None else "cpu")
    try:
        with warnings.catch_warnings(), torch.enable_grad():
            warnings.simplefilter("ignore")
            DG = tp.DependencyGraph().build_dependency(
                model, example_inputs=x, unwrapped_parameters=unwrapped_parameters(model),
                verbose=False)
    except Exception as e:
        raise AmcError(f"Torch-Pruning cannot trace {type(model).__name__} on an input of "
                       f"size {tuple(input_size)} ({one_line(e)}); check --input-size") from e
    DG.amc_frozen = True
    return DG
