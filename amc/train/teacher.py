"""The teacher of knowledge distillation: the dense model's logits for each training batch.

The teacher only runs forward, so it is scored the way the search scores networks
(:mod:`amc.prune.scoring`): a frozen copy with every BatchNorm folded into its conv, in the
training's memory format, under the inference precision of the run's ``amp``
(:func:`amc.utils.precision.precision` with ``inference=True``: bf16 on GPUs and on CPUs that
compute bf16 natively, fp32 with ``amp`` off). The caller's model is never moved or changed.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from amc.models.fuse import conv_bn_pairs, fold_bn
from amc.utils.precision import Precision, precision


class Teacher:
    """Logits of a frozen, folded copy of ``model`` (no gradients).

    Args:
        model: The dense model to distil from (left as it is).
        device: Where the training runs.
        channels_last: Whether the training's inputs are channels-last.
        amp: The training's mixed precision setting (``auto``, ``bf16``, ``fp16``, ``off``).
    """

    def __init__(self, model: nn.Module, device: torch.device, channels_last: bool = False,
                 amp: str = "auto") -> None:
        net = copy.deepcopy(model).eval()
        fold_bn(net, conv_bn_pairs(net))
        fmt = torch.channels_last if channels_last else torch.contiguous_format
        self.net = net.to(device, memory_format=fmt).requires_grad_(False)
        self.device = device
        self.precision: Precision = precision(amp, device, inference=True)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """The teacher's logits for ``x``, in fp32."""
        with torch.no_grad(), self.precision.autocast(self.device):
            return self.net(x).float()
