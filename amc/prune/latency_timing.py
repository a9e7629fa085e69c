"""Running a network on a latency target's backend: the fp32 vector width a backend's CPU
convolutions compute together (:func:`lanes`), and the one whole-model timer the lookup table
(:mod:`amc.prune.latency_table`) and the benchmarks share (:func:`time_models`), on PyTorch CPU
eager or ONNX Runtime (exported in memory), and a pruned network's measured latency ratio
(:func:`measured_ratio`)."""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from amc.cost.timing import interleaved, num_threads
from amc.utils.errors import AmcError, one_line
from amc.utils.onnxrt import ort_session

if TYPE_CHECKING:
    from amc.prune.latency_table import LatencySpec
    from amc.prune.units import PrunableModel


def lanes(backend: str) -> int:
    """Output channels a backend's CPU convolution computes together (the fp32 vector width:
    16 with AVX-512, 8 with AVX2; 1: no rounding, for ``ort`` and other CPUs). Measured with
    PyTorch's oneDNN kernels (``results/bench_episode_amx.json``, ``ceiling.pruned_conv``): a
    conv keeping 9 of 16 or 17 of 32 output channels takes as long as the whole one, so a
    pruned width costs what its next multiple of the width costs."""
    if backend != "torch":
        return 1
    cap = torch.backends.cpu.get_cpu_capability()
    return 16 if "AVX512" in cap else 8 if "AVX2" in cap else 1


def whole_vectors(channels: int, lanes: int) -> int:
    """``channels`` rounded up to a multiple of ``lanes`` (what a kernel computing ``lanes``
    outputs together spends)."""
    return -(-channels // lanes) * lanes


def vector_inputs(channels: int, lanes: int) -> int:
    """The input channels a conv of ``lanes``-wide kernels costs for ``channels`` kept
    inputs: up to one vector linearly, past it in whole vectors. Measured with PyTorch's NCHW
    oneDNN convs on an AVX-512 EPYC (3x3, batch 64, 1 and 2 threads;
    ``results/conv_vectors.json``, ``scripts/bench_conv_vectors.py``; 2 threads): 64 outputs at
    8x8 take 0.29 of their full time with 16 inputs, 0.52-0.53 with 17 to 32, 0.76-0.85 with 33
    to 48 and 1.0 from 49; 32 outputs at 16x16 take 0.54 with 16 inputs and 1.02 with 17; up to
    16 inputs the time grows linearly (16 outputs at 32x32: 0.19 with 2 inputs, 0.51 with 8).
    The same with 8 lanes on an AVX2 EPYC (``results/conv_vectors_avx2.json``): 64 inputs
    at 8x8 0.18 with 8, 0.30 with 9 to 16, 0.41-0.43 with 17 to 24.
    In channels_last the inputs stay linear; the ``torch`` backend runs NCHW."""
    return channels if channels <= lanes else whole_vectors(channels, lanes)


def onnx_session(model: nn.Module, x: torch.Tensor, threads: int, spin: bool = True):
    """An ONNX Runtime session of ``model`` exported in memory (legacy exporter: fast, and
    BatchNorm folded as in :func:`amc.deploy.export.export_onnx`); ``spin=False`` stops its
    idle worker threads from spinning (they would slow down the next session timed)."""
    from amc.deploy.verify import quiet

    buf = io.BytesIO()
    try:
        with quiet():
            torch.onnx.export(model.eval(), (x[:2],), buf, dynamo=False, input_names=["input"],
                              dynamic_axes={"input": {0: "batch"}})
    except Exception as e:
        raise AmcError(f"cannot export {type(model).__name__} to ONNX for latency timing: "
                       f"{one_line(e)}") from e
    return ort_session(buf.getvalue(), threads, spin)


def runner(model: nn.Module, x: torch.Tensor, spec: LatencySpec,
           spin: bool = True) -> Callable[[], object]:
    """A no-argument function running ``model`` on ``x`` with ``spec``'s backend (for ``ort``
    the model is exported to ONNX in memory first; ``spin``: see :func:`onnx_session`)."""
    if spec.backend == "ort":
        sess = onnx_session(model, x, spec.threads, spin)
        name, xn = sess.get_inputs()[0].name, x.numpy()
        return lambda: sess.run(None, {name: xn})
    model.eval()
    return lambda: model(x)


ROUNDS, WARMUP = 3, 2
"""How :func:`time_models` times: rounds (order flipped each) and warm-up calls per model."""


def time_models(models: dict[str, nn.Module], input_size: Sequence[int], spec: LatencySpec,
                runs: int | None = None) -> dict[str, float]:
    """Whole-model latency (ms, first quartile) of several models timed side by side with
    :func:`interleaved` on ``spec``'s backend, batch and threads."""
    x = torch.randn(spec.batch, *input_size, generator=torch.Generator().manual_seed(0))
    with num_threads(spec.threads), torch.no_grad():
        fns = {k: runner(m, x, spec) for k, m in models.items()}
        t = interleaved(fns, runs or spec.runs, rounds=ROUNDS, warmup=WARMUP)
    return {k: v["q1_ms"] for k, v in t.items()}


def measured_ratio(pm: PrunableModel, ratios: Sequence[float], spec: LatencySpec) -> float:
    """The latency of ``ratios``' pruned network over the dense network's, both timed whole
    and side by side (:func:`time_models`) on ``spec``'s backend, batch and threads: what a
    latency budget's lookup-table prediction measures on this machine now."""
    t = time_models({"dense": pm.model, "pruned": pm.prune(list(ratios))}, pm.input_size, spec)
    return t["pruned"] / t["dense"]


def conv_staircase(channels: int, hw: int, side: str, kept: Sequence[int], batch: int,
                   threads: int, runs: int, rounds: int = 3,
                   channels_last: bool = False) -> dict[int, float]:
    """A 3x3 conv of ``channels`` at ``hw`` x ``hw`` keeping each count of ``kept`` of its
    outputs (``side="out"``) or inputs (``"in"``), the other side whole, all timed side by
    side (PyTorch CPU eager, ``threads``): per count its time (ms, first quartile) over the
    time of the conv keeping ``max(kept)``. What :func:`lanes` and :func:`vector_inputs`
    were measured with (``scripts/bench_conv_vectors.py``, ``bench_latency_frontier.py``)."""
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    gen = torch.Generator().manual_seed(0)
    fns = {}
    for k in kept:
        co, ci = (k, channels) if side == "out" else (channels, k)
        w = torch.randn(co, ci, 3, 3, generator=gen).contiguous(memory_format=fmt)
        x = torch.randn(batch, ci, hw, hw, generator=gen).contiguous(memory_format=fmt)
        fns[str(k)] = lambda w=w, x=x: F.conv2d(x, w, padding=1)
    with num_threads(threads), torch.inference_mode():
        t = interleaved(fns, runs, rounds=rounds, warmup=2)
    full = t[str(max(kept))]["q1_ms"]
    return {k: t[str(k)]["q1_ms"] / full for k in kept}
