"""Cost model: per-layer and whole-model MACs and parameters, and measured latency.

MACs are counted by forward hooks on the leaf layers that do arithmetic: convolutions
(grouped and depthwise included), linear layers and BatchNorm (one multiply-add per output
element), one row per *call* (a module called twice costs twice), and
``nn.MultiheadAttention`` (projections and both attention products). Matrix products and
convolutions that run outside those modules (functional calls such as Swin's attention) are
counted by :class:`torch.utils.flop_counter.FlopCounterMode` and reported as one extra row
named :data:`FUNCTIONAL`. Parameters are counted once per tensor, so shared weights are not
double counted.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from amc.utils.device import device_of

COUNTED = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear, nn.BatchNorm1d, nn.BatchNorm2d,
           nn.BatchNorm3d)
FUNCTIONAL = "(functional)"  # name of the row of products run outside counted modules


@dataclass
class LayerCost:
    """Cost of one leaf layer for one input image.

    Attributes:
        name: Qualified module name.
        type: Module class name.
        in_channels: Input channels (features for linear layers).
        out_channels: Output channels (features for linear layers).
        kernel: Kernel size (1 for linear and BatchNorm).
        stride: Stride (1 for linear and BatchNorm).
        groups: Convolution groups.
        in_hw: Input (H, W); (1, 1) for linear layers.
        out_hw: Output (H, W); (1, 1) for linear layers.
        macs: Multiply-accumulates per image.
        params: Parameters of this layer.
    """

    name: str
    type: str
    in_channels: int
    out_channels: int
    kernel: int
    stride: int
    groups: int
    in_hw: tuple[int, int]
    out_hw: tuple[int, int]
    macs: int
    params: int

    def as_dict(self) -> dict:
        return asdict(self)


def _attention_macs(m: nn.MultiheadAttention, args: tuple, kwargs: dict) -> int:
    """Per-image MACs of one ``nn.MultiheadAttention`` call: q/k/v and output projections
    and the two attention products (``q @ k^T`` and ``attn @ v``)."""
    names = ("query", "key", "value")
    q, k, v = (args[i] if len(args) > i else kwargs[n] for i, n in enumerate(names))
    seq = 1 if m.batch_first else 0
    lq, lk = (int(t.shape[seq]) if t.dim() == 3 else int(t.shape[0]) for t in (q, k))
    e = m.embed_dim
    return lq * e * e + lk * (m.kdim + m.vdim) * e + 2 * lq * lk * e + lq * e * e


def _layer_macs(m: nn.Module, inp: torch.Tensor, out: torch.Tensor) -> int:
    if isinstance(m, nn.Conv1d | nn.Conv2d | nn.Conv3d):
        per_out = (m.in_channels // m.groups) * int(np.prod(m.kernel_size))
        return int(out[0].numel()) * per_out
    if isinstance(m, nn.Linear):
        return int(out[0].numel()) * m.in_features
    return int(out[0].numel())  # BatchNorm: one scale-and-shift per element


def layer_costs(model: nn.Module, input_size: tuple[int, ...]) -> list[LayerCost]:
    """Trace one forward pass of a single image and return the cost of every counted call.

    A module called twice gives two rows. Products outside counted modules add one
    :data:`FUNCTIONAL` row (only when there are any).

    Args:
        model: Any module.
        input_size: (C, H, W) of one input image.
    """
    rows: list[LayerCost] = []
    hooks = []
    counter = FlopCounterMode(display=False)
    depth, starts, inside = [0], [], [0]  # products counted inside (outermost) counted calls

    def pre_hook(m: nn.Module, args: tuple) -> None:
        if depth[0] == 0:
            starts.append(counter.get_total_flops())
        depth[0] += 1

    def make_hook(name: str):
        def hook(m: nn.Module, args: tuple, kwargs: dict, out: torch.Tensor) -> None:
            depth[0] -= 1
            if depth[0] == 0:
                inside[0] += counter.get_total_flops() - starts.pop()
            params = sum(p.numel() for p in m.parameters(recurse=False))
            if isinstance(m, nn.MultiheadAttention):
                params += sum(p.numel() for p in m.out_proj.parameters())
                rows.append(LayerCost(name, type(m).__name__, m.embed_dim, m.embed_dim, 1, 1, 1,
                                      (1, 1), (1, 1), _attention_macs(m, args, kwargs), params))
                return
            x = args[0] if args else next(iter(kwargs.values()))
            conv = isinstance(m, nn.Conv1d | nn.Conv2d | nn.Conv3d)
            k = int(m.kernel_size[0]) if conv else 1
            s = int(m.stride[0]) if conv else 1
            in_hw = tuple(x.shape[2:4]) if x.dim() >= 4 else (1, 1)
            out_hw = tuple(out.shape[2:4]) if out.dim() >= 4 else (1, 1)
            cin = m.in_channels if conv else (m.in_features if isinstance(m, nn.Linear)
                                              else m.num_features)
            cout = m.out_channels if conv else (m.out_features if isinstance(m, nn.Linear)
                                                else m.num_features)
            rows.append(LayerCost(name, type(m).__name__, int(cin), int(cout), k, s,
                                  int(getattr(m, "groups", 1)), in_hw, out_hw,
                                  _layer_macs(m, x, out), params))
        return hook

    for name, m in model.named_modules():
        if isinstance(m, (*COUNTED, nn.MultiheadAttention)):
            hooks.append(m.register_forward_pre_hook(pre_hook))
            hooks.append(m.register_forward_hook(make_hook(name), with_kwargs=True))
    was_training = model.training
    model.eval()
    try:
        dev = device_of(model)
        with torch.inference_mode(), counter:
            model(torch.zeros(1, *input_size, device=dev))
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    functional = (counter.get_total_flops() - inside[0]) // 2
    if functional > 0:
        rows.append(LayerCost(FUNCTIONAL, "functional", 0, 0, 1, 1, 1, (1, 1), (1, 1),
                              int(functional), 0))
    return rows


def count_params(model: nn.Module) -> int:
    """Number of distinct parameter elements."""
    return sum(p.numel() for p in model.parameters())


def model_cost(model: nn.Module, input_size: tuple[int, ...]) -> tuple[int, int]:
    """(MACs per image, parameters) of the whole model."""
    return sum(r.macs for r in layer_costs(model, input_size)), count_params(model)
