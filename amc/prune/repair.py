"""Repairing a pruned network without training.

* :func:`recalibrate_bn`: re-estimate BatchNorm running statistics on a few training batches;
* :func:`reconstruct`: channel reconstruction (He et al. 2017, used by AMC): after a conv
  loses input channels, refit its remaining weights by least squares so that its outputs
  match the dense network's on sampled positions of a few training batches (1x1 and kxk).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from amc.prune.units import PrunableModel


def _capture(model: nn.Module, name: str, x: torch.Tensor, want: str) -> torch.Tensor:
    box: dict[str, torch.Tensor] = {}
    mod = model.get_submodule(name)

    def hook(m, args, out):
        box["v"] = args[0] if want == "in" else out

    h = mod.register_forward_hook(hook)
    try:
        with torch.no_grad():
            model(x)
    finally:
        h.remove()
    return box["v"]


def _kept(pm: PrunableModel, unit: int | None, ratio: float, n: int) -> torch.Tensor:
    if unit is None:
        return torch.arange(n)
    n_prune = n - pm.kept(unit, ratio)
    pruned = set(pm.rankings[unit][:n_prune].tolist())
    return torch.tensor([i for i in range(n) if i not in pruned])


def reconstruct(pm: PrunableModel, pruned: nn.Module, ratios: Sequence[float],
                x: torch.Tensor, samples_per_image: int = 16, ridge: float = 1e-4,
                seed: int = 0) -> nn.Module:
    """Refit, in forward order, every conv whose input channels were pruned.

    Args:
        pm: The prunable model (dense network, units, rankings).
        pruned: ``pm.prune(ratios)``; modified in place and returned.
        ratios: The per-unit ratios it was pruned with.
        x: A batch of training images.
        samples_per_image: Output positions sampled per image.
        ridge: Tikhonov regularisation relative to the mean diagonal.
        seed: Seed of the position sampling.
    """
    gen = torch.Generator().manual_seed(seed)
    todo = [L for L in pm.layers if L.in_unit is not None and ratios[L.in_unit] > 0
            and not L.channelwise]
    for L in todo:
        dense_m = pm.model.get_submodule(L.name)
        m = pruned.get_submodule(L.name)
        if not isinstance(m, nn.Conv2d) or m.groups != 1:
            continue
        inp = _capture(pruned, L.name, x, "in")
        target = _capture(pm.model, L.name, x, "out")
        if dense_m.bias is not None:
            target = target - dense_m.bias.view(1, -1, 1, 1)
        out_idx = _kept(pm, L.out_unit, ratios[L.out_unit] if L.out_unit is not None else 0,
                        L.n_out)
        target = target[:, out_idx]
        cols = F.unfold(inp, m.kernel_size, m.dilation, m.padding, m.stride)  # N, C*k*k, P
        n, d, p = cols.shape
        pick = torch.randint(0, p, (n, min(samples_per_image, p)), generator=gen)
        X = torch.gather(cols, 2, pick[:, None, :].expand(n, d, pick.shape[1]))
        X = X.permute(0, 2, 1).reshape(-1, d)
        Y = target.flatten(2)
        Y = torch.gather(Y, 2, pick[:, None, :].expand(n, Y.shape[1], pick.shape[1]))
        Y = Y.permute(0, 2, 1).reshape(-1, Y.shape[1])
        A = X.T @ X
        A += ridge * A.diagonal().mean() * torch.eye(d)
        W = torch.linalg.solve(A, X.T @ Y)  # d, out
        with torch.no_grad():
            m.weight.copy_(W.T.reshape(m.weight.shape))
    return pruned


def recalibrate_bn(model: nn.Module, batches: Iterable[torch.Tensor]) -> nn.Module:
    """Re-estimate BatchNorm running statistics on ``batches`` (no gradient steps)."""
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not bns:
        return model
    saved = [(m.momentum) for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over all batches
    model.train()
    with torch.no_grad():
        for x in batches:
            model(x)
    for m, mom in zip(bns, saved):
        m.momentum = mom
    return model.eval()
