"""Repairing a pruned network without training.

* :func:`recalibrate_bn`: re-estimate BatchNorm running statistics on a few training batches;
* :func:`reconstruct`: channel reconstruction (He et al. 2017, used by AMC): after a conv
  loses input channels, refit its remaining weights by least squares so that its outputs
  match the dense network's on sampled positions of a few training batches (1x1 and kxk).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator, Sequence

import torch
from torch import nn

from amc.prune.units import PrunableModel
from amc.utils.device import device_of
from amc.utils.ridge import ridge_solve


def _capture_all(model: nn.Module, names: list[str], x: torch.Tensor) -> dict[str, torch.Tensor]:
    """Outputs of the modules ``names`` in one forward pass of ``model`` on ``x``."""
    box: dict[str, torch.Tensor] = {}
    _forward_hooked(model, x, [model.get_submodule(n).register_forward_hook(
        lambda m, args, out, n=n: box.__setitem__(n, out.detach())) for n in names])
    return box


def _forward_hooked(model: nn.Module, x: torch.Tensor, hooks: list) -> torch.Tensor:
    """One forward pass of ``model`` on ``x`` without gradients, then remove ``hooks``;
    returns the pass's outputs."""
    try:
        with torch.no_grad():
            return model(x)
    finally:
        for h in hooks:
            h.remove()


def _kept(pm: PrunableModel, unit: int | None, ratio: float, n: int) -> torch.Tensor:
    if unit is None:
        return torch.arange(n)
    n_prune = n - pm.kept(unit, ratio)
    pruned = set(pm.rankings[unit][:n_prune].tolist())
    return torch.tensor([i for i in range(n) if i not in pruned])


def _positions(gen: torch.Generator, n: int, p: int, k: int) -> torch.Tensor:
    return torch.randint(0, p, (n, min(k, p)), generator=gen)


def _sample(t: torch.Tensor, pick: torch.Tensor) -> torch.Tensor:
    """(N, D, P) -> the picked positions as rows (N * k, D)."""
    n, d, _ = t.shape
    return torch.gather(t, 2, pick[:, None, :].expand(n, d, pick.shape[1])).permute(
        0, 2, 1).reshape(-1, d)


def patch_rows(shape: torch.Size, conv: nn.Conv2d,
               pick: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Where :func:`patches_at` gathers from an input of ``shape`` (N, C, H, W) seen as
    ``(N*H*W, C)``: the row of every tap of every picked patch, in ``(image, sample, kernel
    row, kernel column)`` order, and the positions (in that order) of the taps that fall in
    the padding. It depends on N, H and W only, not on the channels kept: a layer's is
    computed once (:func:`reconstruct` keeps it with the dense targets).

    Args:
        shape: The conv's input shape.
        conv: The conv (zero padding).
        pick: (N, k) flat output positions per image.
    """
    kh, kw = conv.kernel_size
    sh, sw = conv.stride
    dh, dw = conv.dilation
    ph, pw = conv.padding
    n, _, h, w = shape
    w_out = (w + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    dev = pick.device
    r = ((pick // w_out) * sh - ph)[..., None, None] + (torch.arange(kh, device=dev)
                                                         * dh)[:, None]  # N, k, kh, 1
    q = ((pick % w_out) * sw - pw)[..., None, None] + torch.arange(kw, device=dev) * dw
    inside = (r >= 0) & (r < h) & (q >= 0) & (q < w)  # N, k, kh, kw
    img = torch.arange(n, device=dev)[:, None, None, None]
    at = (img * h + r.clamp(0, h - 1)) * w + q.clamp(0, w - 1)
    return at.reshape(-1), (~inside).flatten().nonzero().squeeze(1)


def patches_at(x: torch.Tensor, conv: nn.Conv2d, pick: torch.Tensor,
               rows: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
    """The input patches of ``conv`` at the output positions ``pick`` only.

    Holds unfold's values at those positions (``_sample(F.unfold(x, ...), pick)``, rows
    ``(image, sample)``) with the columns in ``(kernel row, kernel column, channel)`` order
    (unfold's and ``conv.weight``'s is ``(channel, kernel row, kernel column)``), without
    unfolding every position (a 3x3 conv on 32x32 maps: 16 of 1,024 positions per image)
    or padding ``x``: one row gather from ``x`` seen as ``(N*H*W, C)`` (free for a
    channels-last ``x``), the taps that fall in the padding set to zero.

    Args:
        x: The conv's input, (N, C, H, W).
        conv: The conv (zero padding).
        pick: (N, k) flat output positions per image.
        rows: :func:`patch_rows` of ``x.shape``, ``conv`` and ``pick`` when already known.
    """
    n, c, h, w = x.shape
    at, padding = rows if rows is not None else patch_rows(x.shape, conv, pick)
    patch = x.permute(0, 2, 3, 1).reshape(n * h * w, c).index_select(0, at)
    patch.index_fill_(0, padding, 0)
    return patch.view(-1, conv.kernel_size[0] * conv.kernel_size[1] * c)


def reconstruct(pm: PrunableModel, pruned: nn.Module, ratios: Sequence[float],
                x: torch.Tensor, samples_per_image: int = 16, ridge: float = 1e-4,
                seed: int = 0, dense_cache: dict | None = None,
                recalibrate: bool = False) -> nn.Module:
    """Refit, in forward order, every conv whose input channels were pruned.

    One forward pass of the pruned network does all layers: a pre-hook on each refitted
    conv solves its least squares on the input it is about to receive (which already
    reflects the layers refitted before it) and sets its weights before it runs. The dense
    targets, sampled at fixed positions, are computed once per ``dense_cache``, in fp32.
    Called under autocast, the pruned network's forward (the inputs each fit sees) runs in
    its precision; the least squares are solved in fp32 whatever the caller's autocast.

    With ``recalibrate`` that same pass also re-estimates the BatchNorm statistics on ``x``
    (train-mode BatchNorm, ``x`` as one batch): each statistic comes from the refitted
    weights before it, so they are those :func:`recalibrate_bn` on ``[x]`` would give
    afterwards, and each fit sees its input normalised as the recalibrated network computes
    it (a refit of the result on its own inputs changes nothing), one forward fewer.

    Args:
        pm: The prunable model (dense network, units, rankings).
        pruned: ``pm.prune(ratios)``; modified in place and returned.
        ratios: The per-unit ratios it was pruned with.
        x: A batch of training images.
        samples_per_image: Output positions sampled per image.
        ridge: Tikhonov regularisation relative to the mean diagonal.
        seed: Seed of the position sampling.
        dense_cache: A dict kept across calls with the same ``pm``, ``x`` and settings: the
            dense targets (and each layer's :func:`patch_rows`) are computed into it once
            (None: computed for this call only).
        recalibrate: Re-estimate the BatchNorm statistics in the same pass (then returned
            in eval mode).
    """
    _refit_pass(pm, pruned, ratios, x, samples_per_image, ridge, seed, dense_cache,
                recalibrate)
    return pruned


def reconstructed_outputs(pm: PrunableModel, pruned: nn.Module, ratios: Sequence[float],
                          x: torch.Tensor, samples_per_image: int = 16, ridge: float = 1e-4,
                          seed: int = 0, dense_cache: dict | None = None) -> torch.Tensor:
    """:func:`reconstruct` with ``recalibrate`` on ``x`` (one batch), returning that pass's
    outputs: each conv ran with its refitted weights and each BatchNorm normalised ``x`` by
    the statistics it then keeps, so they are the repaired network's eval-mode outputs on
    ``x`` up to BatchNorm's unbiased variance (as :func:`recalibrated_outputs`). One pass
    refits, recalibrates and evaluates ``x``; ``pruned`` is repaired in place, in eval mode.
    Arguments as for :func:`reconstruct`."""
    return _refit_pass(pm, pruned, ratios, x, samples_per_image, ridge, seed, dense_cache,
                       recalibrate=True)


def _refit_pass(pm: PrunableModel, pruned: nn.Module, ratios: Sequence[float],
                x: torch.Tensor, samples_per_image: int, ridge: float, seed: int,
                dense_cache: dict | None, recalibrate: bool) -> torch.Tensor | None:
    """:func:`reconstruct`'s one forward pass; returns its outputs (None: nothing to refit
    or recalibrate, no pass)."""
    todo = [L for L in pm.layers if L.in_unit is not None and ratios[L.in_unit] > 0
            and not L.channelwise and pm.kept(L.in_unit, ratios[L.in_unit]) > 0]
    todo = [L for L in todo if isinstance(m := pruned.get_submodule(L.name), nn.Conv2d)
            and m.groups == 1 and m.padding_mode == "zeros" and not isinstance(m.padding, str)]
    if not todo:
        return recalibrated_outputs(pruned, x) if recalibrate else None
    cache = dense_cache if dense_cache is not None else {}
    missing = [L.name for L in todo if L.name not in cache]
    if missing:
        dev = device_of(pm.model)
        with torch.autocast(dev.type, enabled=False):  # the targets are fp32 in any caller
            outs = _capture_all(pm.model, missing, x.to(dev))
        for name in missing:
            dense_m = pm.model.get_submodule(name)
            target = outs[name]
            if dense_m.bias is not None:
                target = target - dense_m.bias.view(1, -1, 1, 1)
            y = target.flatten(2).to(x.device)
            gen = torch.Generator().manual_seed(seed + sum(map(ord, name)))
            pick = _positions(gen, y.shape[0], y.shape[2], samples_per_image).to(x.device)
            cache[name] = (pick, _sample(y, pick), None)  # patch_rows: at the first fit

    def refit(L, m: nn.Conv2d, args: tuple) -> None:
        pick, y_all, rows = cache[L.name]
        if rows is None:  # the layer's input shape is known from here on
            rows = patch_rows(args[0].shape, m, pick)
            cache[L.name] = (pick, y_all, rows)
        out_idx = _kept(pm, L.out_unit, ratios[L.out_unit] if L.out_unit is not None else 0,
                        L.n_out).to(y_all.device)
        X, Y = patches_at(args[0], m, pick, rows).float(), y_all[:, out_idx]
        with torch.autocast(X.device.type, enabled=False):  # the normal equations in fp32
            W = ridge_solve(X, Y, ridge)  # d, out (more sampled positions than inputs)
        kh, kw = m.kernel_size  # W's rows in patches_at's (kh, kw, in) order
        m.weight.copy_(W.T.reshape(-1, kh, kw, m.in_channels).permute(0, 3, 1, 2))

    with _recalibrating(pruned) if recalibrate else contextlib.nullcontext():
        return _forward_hooked(pruned, x, [pruned.get_submodule(L.name)
                                           .register_forward_pre_hook(
            lambda m, args, L=L: refit(L, m, args)) for L in todo])


@contextlib.contextmanager
def _recalibrating(model: nn.Module) -> Iterator[None]:
    """Forward passes inside re-estimate ``model``'s BatchNorm running statistics (reset,
    then a cumulative average over the batches); ``model`` is in eval mode afterwards. A
    model without BatchNorm is left as it is."""
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not bns:
        yield
        return
    saved = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over all batches
    model.train()
    try:
        yield
    finally:
        for m, mom in zip(bns, saved):
            m.momentum = mom
        model.eval()


def recalibrate_bn(model: nn.Module, batches: Iterable[torch.Tensor]) -> nn.Module:
    """Re-estimate BatchNorm running statistics on ``batches`` (no gradient steps)."""
    with _recalibrating(model), torch.no_grad():
        for x in batches:
            model(x)
    return model


def recalibrated_outputs(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Re-estimate BatchNorm running statistics on ``x`` as one batch and return that
    forward pass's outputs (``model`` is in eval mode afterwards).

    Each BatchNorm normalised ``x`` by the statistics it then keeps, so the outputs are what
    the recalibrated network computes on ``x`` in eval mode, up to BatchNorm's stored
    variance being the unbiased one (a factor ``m / (m - 1)``, ``m`` = images x positions):
    one pass both recalibrates and evaluates ``x``.
    """
    with _recalibrating(model), torch.no_grad():
        return model(x)
