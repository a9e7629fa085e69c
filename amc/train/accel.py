"""How a training step uses its device: mixed precision (bf16 where the device supports it,
else fp16 with a gradient scaler), channels-last tensors and ``torch.compile``.

The same settings run unchanged on the CPU (``--amp bf16`` or ``fp16`` there exercise the
autocast and scaler code paths; ``auto`` leaves the CPU in fp32) and on CUDA.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from amc.utils.errors import AmcError

AMP_MODES = ("auto", "bf16", "fp16", "off")


@dataclass(frozen=True)
class Precision:
    """The autocast settings of a training step.

    Attributes:
        dtype: The autocast dtype (None: full fp32, autocast off).
    """

    dtype: torch.dtype | None = None

    @property
    def enabled(self) -> bool:
        return self.dtype is not None

    @property
    def scaled(self) -> bool:
        """Whether gradients need a scaler (fp16's narrow range)."""
        return self.dtype == torch.float16

    @property
    def name(self) -> str:
        return {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[self.dtype]


def bf16_supported(device: torch.device) -> bool:
    """Whether ``device`` runs bf16 natively (CUDA: Ampere or newer)."""
    return device.type == "cuda" and torch.cuda.is_bf16_supported()


def precision(amp: str, device: torch.device) -> Precision:
    """The mixed precision for ``--amp`` on ``device``.

    ``auto``: bf16 on a CUDA device that supports it, fp16 with a scaler on older GPUs, fp32
    on the CPU. ``bf16`` / ``fp16`` force the dtype (also on the CPU); ``off``: fp32.
    """
    if amp not in AMP_MODES:
        raise AmcError(f"unknown --amp {amp!r}; use one of {', '.join(AMP_MODES)}")
    if amp == "off" or (amp == "auto" and device.type != "cuda"):
        return Precision()
    if amp == "auto":
        return Precision(torch.bfloat16 if bf16_supported(device) else torch.float16)
    if amp == "bf16" and device.type == "cuda" and not bf16_supported(device):
        raise AmcError("--amp bf16 asked for but this GPU does not support bf16; use --amp "
                       "fp16 or auto")
    return Precision(torch.bfloat16 if amp == "bf16" else torch.float16)


def memory_format(channels_last: bool) -> torch.memory_format:
    """The memory format of weights and inputs."""
    return torch.channels_last if channels_last else torch.contiguous_format
