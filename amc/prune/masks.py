"""Weight masks: unstructured magnitude pruning, N:M semi-structured masks, channel masks.

A mask set maps a parameter name (as in ``model.named_parameters()``) to a 0/1 tensor of the
parameter's shape. Masks are applied by multiplying the parameter in place
(:func:`apply_masks`) before training and again after every optimiser step, so the network
always computes with the pruned weights while its architecture and state-dict keys stay those
of the dense model. Making the pruning permanent is therefore just dropping the masks (the
weights are already zero); structured masks are made physical with
:meth:`ChannelPruner.physical`.

Why not ``torch.nn.utils.prune``: its re-parametrisation renames ``weight`` to
``weight_orig`` (checkpoints would then not load into the model registry's architecture), a
module that has run a forward pass with it can no longer be deep-copied, and Torch-Pruning's
dependency tracer does not see the masked weight as the module's parameter. The in-place
product gives the same forward pass and the same exact sparsity.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
from torch import nn

from amc.prune.depth import DROP
from amc.prune.units import PrunableModel
from amc.utils.bisection import bracket
from amc.utils.errors import AmcError

Masks = dict[str, torch.Tensor]


def prunable_weights(model: nn.Module) -> list[str]:
    """Names of the conv and linear weights, in module order (what unstructured pruning
    prunes and what its sparsity is measured on)."""
    return [f"{name}.weight" if name else "weight" for name, m in model.named_modules()
            if isinstance(m, nn.Conv2d | nn.Linear)]


def apply_masks(model: nn.Module, masks: Masks) -> None:
    """Zero the masked entries in place."""
    if not masks:
        return
    params = dict(model.named_parameters())
    with torch.no_grad():
        for name, mask in masks.items():
            p = params[name]
            p.mul_(mask.to(p.device, p.dtype))


def merge(a: Masks, b: Masks) -> Masks:
    """Element-wise product of two mask sets (the union of what they prune)."""
    out = dict(a)
    for k, v in b.items():
        out[k] = out[k] * v if k in out else v
    return out


def sparsity(model: nn.Module, names: Sequence[str] | None = None) -> float:
    """Fraction of zero entries among the parameters ``names`` (default: conv/linear
    weights)."""
    names = list(names) if names is not None else prunable_weights(model)
    params = dict(model.named_parameters())
    zeros = sum(int((params[n] == 0).sum()) for n in names)
    total = sum(params[n].numel() for n in names)
    return zeros / max(1, total)


def layer_sparsity(model: nn.Module, names: Sequence[str] | None = None) -> dict[str, float]:
    params = dict(model.named_parameters())
    names = list(names) if names is not None else prunable_weights(model)
    return {n: float((params[n] == 0).float().mean()) for n in names}


# ----------------------------------------------------------------------------- unstructured


def _fill(sizes: list[int], caps: list[float], k: int) -> list[int]:
    """Prune counts per layer with one common fraction, capped per layer, summing to ``k``
    (water filling)."""
    limits = [int(c * n) for c, n in zip(caps, sizes)]
    if k > sum(limits):
        raise AmcError("the target sparsity cannot be met under the per-layer limits; lower "
                       "the target or raise --first-last-max / --max-sparsity")
    lo, _ = bracket(lambda f: sum(min(lim, int(f * n)) for lim, n in zip(limits, sizes)) >= k,
                    0.0, 1.0, iters=60)
    counts = [min(lim, int(lo * n)) for lim, n in zip(limits, sizes)]
    rest = k - sum(counts)
    for i in sorted(range(len(sizes)), key=lambda i: -sizes[i]):  # hand out the remainder
        add = min(rest, limits[i] - counts[i])
        counts[i] += add
        rest -= add
    return counts


def _smallest(score: torch.Tensor, k: int) -> torch.Tensor:
    mask = torch.ones(score.numel())
    if k > 0:
        mask[torch.argsort(score.flatten(), stable=True)[:k]] = 0.0
    return mask.view_as(score)


def magnitude_masks(model: nn.Module, level: float, names: Sequence[str],
                    caps: dict[str, float] | None = None, scope: str = "global",
                    per_layer: dict[str, float] | None = None) -> Masks:
    """Masks that prune the smallest-magnitude weights.

    Args:
        model: The network (already-zero weights rank lowest, so masks only grow).
        level: Overall sparsity over ``names``; with ``per_layer``, the fraction of each
            layer's own target (0..1).
        names: Parameters to prune.
        caps: Largest sparsity per parameter (default 1).
        scope: ``global`` (one magnitude threshold across layers, capped layers excepted) or
            ``layer`` (the same sparsity in every layer, caps respected).
        per_layer: Explicit sparsity per parameter (from a policy), scaled by ``level``.

    Returns:
        One mask per name; exactly ``round(level * total)`` zeros (global/layer scope).
    """
    params = dict(model.named_parameters())
    caps = caps or {}
    scores = {n: params[n].detach().abs().cpu() for n in names}
    if per_layer is not None:
        return {n: _smallest(scores[n], int(round(min(per_layer.get(n, 0.0) * level,
                                                      caps.get(n, 1.0)) * scores[n].numel())))
                for n in names}
    sizes = [scores[n].numel() for n in names]
    k = int(round(level * sum(sizes)))
    cap = [caps.get(n, 1.0) for n in names]
    if scope == "layer":
        counts = _fill(sizes, cap, k)
        return {n: _smallest(scores[n], c) for n, c in zip(names, counts)}
    if scope != "global":
        raise AmcError(f"unknown scope {scope!r}; use global or layer")
    limits = {n: int(c * s) for n, c, s in zip(names, cap, sizes)}
    if k > sum(limits.values()):
        raise AmcError("the target sparsity cannot be met under the per-layer limits; lower "
                       "the target or raise --first-last-max / --max-sparsity")
    fixed: dict[str, int] = {}
    while True:  # global threshold; layers that would pass their cap are pinned at it
        free = [n for n in names if n not in fixed]
        k_free = k - sum(fixed.values())
        flat = torch.cat([scores[n].flatten() for n in free])
        owner = torch.cat([torch.full((scores[n].numel(),), i) for i, n in enumerate(free)])
        chosen = owner[torch.argsort(flat, stable=True)[:k_free]]
        counts = torch.bincount(chosen, minlength=len(free)).tolist()
        over = [n for n, c in zip(free, counts) if c > limits[n]]
        if not over:
            break
        for n in over:
            fixed[n] = limits[n]
    counts_by = dict(zip(free, counts)) | fixed
    return {n: _smallest(scores[n], counts_by[n]) for n in names}


def nm_masks(model: nn.Module, names: Sequence[str], n: int = 2, m: int = 4) -> Masks:
    """N:M semi-structured masks: in every group of ``m`` consecutive input weights keep the
    ``n`` largest (2:4 is what sparse tensor cores run). Grouping runs along the input
    channels (innermost after kernel positions); layers whose input count is not a multiple of
    ``m`` (e.g. an RGB stem) stay dense."""
    params = dict(model.named_parameters())
    masks = {}
    for name in names:
        w = params[name].detach().cpu()
        if w.dim() == 4:
            flat = w.permute(0, 2, 3, 1).reshape(-1, m) if w.shape[1] % m == 0 else None
        else:
            flat = w.reshape(-1, m) if w.shape[1] % m == 0 else None
        if flat is None:
            continue
        keep = torch.zeros_like(flat)
        keep.scatter_(1, flat.abs().topk(n, dim=1).indices, 1.0)
        if w.dim() == 4:
            o, i, kh, kw = w.shape
            keep = keep.reshape(o, kh, kw, i).permute(0, 3, 1, 2)
        masks[name] = keep.reshape(w.shape).contiguous()
    if not masks:
        raise AmcError(f"no layer has an input count divisible by {m}; {n}:{m} masks need one")
    return masks


# ----------------------------------------------------------------------------- channels


def bake(model: nn.Module) -> nn.Module:
    """A plain copy of the network (for tracing and physical pruning)."""
    return copy.deepcopy(model).cpu().eval()


def channel_masks(pm: PrunableModel, ratios: Sequence[float],
                  model: nn.Module | None = None) -> Masks:
    """Masks that zero, in the dense network, exactly the weights ``pm.prune(ratios)``
    removes: the producing layers' filters and biases, their BatchNorm scales and shifts,
    per-channel parameters and the consumers' input slices (concatenations, flattens and
    grouped convs included).

    Every parameter of a copy of the network is replaced by its element indices and the copy
    is pruned with :meth:`PrunableModel.prune` (the one pruning implementation); the indices
    missing afterwards are the masked entries. A dropped block (ratio
    :data:`~amc.prune.depth.DROP`) is masked whole: its ``conv1``, ``bn1`` and ``conv2``
    parameters are zero, so its branch is ``bn2``'s shift, as :class:`DroppedBlock` computes.

    Args:
        pm: The prunable model.
        ratios: Per-unit ratios.
        model: A network of ``pm``'s dense architecture (default: ``pm.model``).
    """
    model = model if model is not None else pm.model
    ids = {}  # deepcopy takes these for the parameters instead of copying the weights
    for p in model.parameters():
        dtype = torch.float32 if p.numel() <= 2 ** 24 else torch.float64  # exact integers
        ids[id(p)] = nn.Parameter(torch.arange(p.numel(), dtype=dtype).view(p.shape))
    net = copy.deepcopy(model, ids).cpu().eval()
    shapes = {name: p.shape for name, p in net.named_parameters()}
    dropped = [pm.blocks[u] for u, r in enumerate(ratios) if u in pm.blocks and r >= DROP]
    kept = [0.0 if u in pm.blocks and r >= DROP else r for u, r in enumerate(ratios)]
    pruned = dict(pm.prune(kept, model=net, inplace=True).named_parameters())
    out: Masks = {}
    whole = tuple(f"{b}.{layer}." for b in dropped for layer in ("conv1", "bn1", "conv2"))
    for name, shape in shapes.items():
        if name.startswith(whole):
            out[name] = torch.zeros(shape)
            continue
        q = pruned.get(name)
        if q is None or q.shape == shape:
            continue
        keep = torch.zeros(shape.numel())
        keep[q.detach().reshape(-1).long()] = 1.0
        out[name] = keep.view(shape)
    return out


class ChannelPruner:
    """Structured pruning by channel masks on the dense architecture.

    Each call of :meth:`masks` ranks channels on the *current* weights (masked channels score
    zero and stay pruned, so successive masks are nested) and masks, for every pruned channel,
    what :func:`channel_masks` masks: the masked network computes exactly what the physically
    pruned one computes.
    :meth:`physical` removes the masked channels with :class:`PrunableModel`.

    Args:
        ratios: Final per-unit ratios (in the order of the units of ``mode``).
        input_size: (C, H, W).
        mode, criterion, round_to, drop_blocks: As for :class:`PrunableModel`.
        calib: Training batch (needed by the taylor criterion).
    """

    def __init__(self, ratios: Sequence[float], input_size: tuple[int, int, int], mode: str,
                 criterion: str, round_to: int | None = None,
                 calib: tuple[torch.Tensor, torch.Tensor] | None = None,
                 drop_blocks: bool = False):
        self.ratios = [float(r) for r in ratios]
        self.drop_blocks = drop_blocks
        self.input_size, self.mode, self.criterion = tuple(input_size), mode, criterion
        self.round_to, self.calib = round_to, calib
        self.applied: list[float] = [0.0] * len(self.ratios)

    def pm(self, model: nn.Module) -> PrunableModel:
        return PrunableModel(bake(model), self.input_size, self.mode, self.criterion,
                             self.round_to, self.calib, self.drop_blocks)

    def at(self, level: float) -> list[float]:
        return [r * float(level) for r in self.ratios]

    def masks(self, model: nn.Module, level: float) -> Masks:
        """Channel masks for ``level`` (0: none, 1: the final ratios)."""
        ratios = self.at(level)
        out = channel_masks(self.pm(model), ratios)
        self.applied = ratios
        return out

    def physical(self, model: nn.Module) -> nn.Module:
        """Remove the masked channels (the ratios of the last :meth:`masks` call)."""
        return self.pm(model).prune(self.applied)
