"""Mixed precision, the one choice for training and scoring: ``auto``, ``bf16``, ``fp16`` or
``off``.

``auto`` means bf16 on a CUDA device that supports it, fp16 on older GPUs; on the CPU it means
fp32 for training, and for inference (scoring pruned networks) bf16 where the CPU computes
bf16 dot products natively (AVX512-BF16 or AMX: 1.6x faster per ResNet-56 episode here,
``results/bench_episode.json``), else fp32. ``bf16`` / ``fp16`` force the dtype (also on the
CPU, where they exercise the same autocast code paths); ``off`` is fp32.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import torch

from amc.utils.errors import AmcError

AMP_MODES = ("auto", "bf16", "fp16", "off")


@dataclass(frozen=True)
class Precision:
    """Autocast settings.

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

    def autocast(self, device: torch.device) -> torch.autocast:
        """The autocast context of these settings on ``device`` (a no-op when off)."""
        return torch.autocast(device.type, dtype=self.dtype or torch.bfloat16,
                              enabled=self.enabled)


def bf16_supported(device: torch.device) -> bool:
    """Whether ``device`` runs bf16 natively (CUDA: Ampere or newer; CPU: AVX512-BF16 or
    AMX)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return device.type == "cpu" and cpu_bf16_native()


def cpu_flags(cpuinfo: str = "/proc/cpuinfo") -> set[str] | None:
    """The CPU's feature flags (the ``flags`` / ``Features`` lines of ``/proc/cpuinfo``), or
    None where that file does not exist."""
    try:
        text = Path(cpuinfo).read_text()
    except OSError:
        return None
    return {f for line in text.splitlines() if line.split(":")[0].strip() in ("flags", "Features")
            for f in line.partition(":")[2].split()}


@functools.cache
def cpu_bf16_native(cpuinfo: str = "/proc/cpuinfo") -> bool:
    """Whether this CPU has bf16 dot-product instructions (``avx512_bf16`` or ``amx_bf16``
    in ``/proc/cpuinfo``; False where that file does not exist)."""
    return bool((cpu_flags(cpuinfo) or set()) & {"avx512_bf16", "amx_bf16"})


@functools.cache
def cpu_int8_dot(cpuinfo: str = "/proc/cpuinfo") -> bool:
    """Whether this x86 CPU has int8 dot products that add in 32 bits (``avx512_vnni``,
    ``avx_vnni`` or ``amx_int8``): without them, onnxruntime's u8s8 kernels add pairs of
    products in 16 bits, which saturate with 8-bit weights. True where ``/proc/cpuinfo``
    does not exist or the CPU is no x86 one (nothing to fear there)."""
    flags = cpu_flags(cpuinfo)
    if flags is None or not flags & {"avx2", "sse4_1"}:
        return True
    return bool(flags & {"avx512_vnni", "avx_vnni", "amx_int8"})


def precision(amp: str, device: torch.device, *, inference: bool = False) -> Precision:
    """The mixed precision for ``amp`` on ``device``.

    Args:
        amp: ``auto``, ``bf16``, ``fp16`` or ``off``.
        device: Where the network runs.
        inference: No gradients (scoring): ``auto`` also uses bf16 on a CPU that runs it
            natively.
    """
    if amp not in AMP_MODES:
        raise AmcError(f"unknown --amp {amp!r}; use one of {', '.join(AMP_MODES)}")
    if amp == "off":
        return Precision()
    if amp == "auto":
        if device.type == "cuda":
            return Precision(torch.bfloat16 if bf16_supported(device) else torch.float16)
        native = inference and bf16_supported(device)
        return Precision(torch.bfloat16 if native else None)
    if amp == "bf16" and device.type == "cuda" and not bf16_supported(device):
        raise AmcError("--amp bf16 asked for but this GPU does not support bf16; use --amp "
                       "fp16 or auto")
    return Precision(torch.bfloat16 if amp == "bf16" else torch.float16)
