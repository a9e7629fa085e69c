"""The one latency timer, and latency of PyTorch models and ONNX Runtime sessions side by side.

:func:`interleaved` times callables; :func:`measure_latency` (one model),
:func:`torch_latencies` (several PyTorch models) and :func:`measure_latencies` (PyTorch and
ONNX Runtime, dense vs pruned) are built on it, and so is the per-layer latency table.

On a shared CPU the load drifts during a measurement; :func:`measure_latencies` therefore times
the models of one engine in interleaved rounds (order flipped every round, one warm-up call
before each block) so that a busy period hits every model alike, and reports median and IQR per
model. The engines are timed one after the other, with a pause between them: both keep their
worker threads spinning for a while after a call, which would slow the other engine down.
Every timing first settles the process's allocator (:func:`amc.utils.allocator.settle`): with
glibc's defaults the same model's time depended on what the process had freed before; the
results record the allocator state.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from amc.utils import allocator
from amc.utils.onnxrt import ort_session

BATCHES = (1, 64)


def ort_logits(sess, x: torch.Tensor, batch: int = 500) -> torch.Tensor:
    """First output of ``sess`` on ``x`` (float32 NCHW), computed ``batch`` images at a time."""
    name = sess.get_inputs()[0].name
    outs = [sess.run(None, {name: x[s:s + batch].numpy()})[0] for s in range(0, len(x), batch)]
    return torch.from_numpy(np.concatenate(outs)).float()


@contextmanager
def num_threads(threads: int | None) -> Iterator[None]:
    """torch's intra-op thread count set to ``threads`` inside the block (None: left as is),
    restored after it."""
    old = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def interleaved(fns: dict[str, Callable[[], object]], runs: int, rounds: int,
                warmup: int = 1) -> dict:
    """The one latency timer: time every function ``runs`` times in ``rounds`` rounds (order
    flipped each round, one warm-up call before each block, ``warmup`` calls of each first;
    the first ``runs % rounds`` rounds take one run more); per key: median, IQR, quartiles
    and min in ms, and the run count. Settles the allocator first
    (:func:`amc.utils.allocator.settle`)."""
    allocator.settle()
    rounds = max(1, min(rounds, runs))
    times: dict[str, list[float]] = {k: [] for k in fns}
    for fn in fns.values():
        for _ in range(max(1, warmup)):
            fn()
    for r in range(rounds):
        per = runs // rounds + (r < runs % rounds)  # `runs` in all (6 for 5 in 3 rounds before)
        for key in (list(fns) if r % 2 == 0 else list(fns)[::-1]):
            if r or len(fns) > 1:
                fns[key]()  # warm-up after the other models ran
            for _ in range(per):
                t = time.perf_counter()
                fns[key]()
                times[key].append((time.perf_counter() - t) * 1e3)
    out = {}
    for key, ts in times.items():
        q1, med, q3 = np.percentile(ts, [25, 50, 75])
        out[key] = {"median_ms": float(med), "iqr_ms": float(q3 - q1), "q1_ms": float(q1),
                    "q3_ms": float(q3), "min_ms": float(min(ts)), "runs": len(ts)}
    return out


def measure_latencies(torch_models: dict[str, nn.Module], onnx_files: dict[str, Path],
                      input_size: tuple[int, ...], threads: int, runs: int = 30,
                      rounds: int = 3) -> dict:
    """Latency rows at batch 1 and 64 in PyTorch and onnxruntime, and the speed-ups.

    Args:
        torch_models: ``dense`` and ``pruned`` PyTorch models (in eval mode).
        onnx_files: ``dense`` and ``pruned`` ONNX files, optionally ``int8``.
        input_size: (C, H, W) of one random input.
        threads: Intra-op threads of both engines.
        runs: Timed runs per model, engine and batch size.
        rounds: Rounds the runs are interleaved in.

    Returns:
        ``rows`` (engine, model, batch, median/IQR ms), ``speedup[engine][batch]`` (dense /
        pruned), ``int8_speedup[batch]`` (dense ORT / INT8 ORT), threads, load averages.
    """
    rows, load = [], [os.getloadavg()[0]]
    with num_threads(threads):
        sessions = {k: ort_session(p, threads) for k, p in onnx_files.items()}
        for b in BATCHES:
            x = torch.randn(b, *input_size, generator=torch.Generator().manual_seed(b))
            xn = x.numpy()
            engines: dict[str, dict[str, Callable[[], object]]] = {
                "pytorch": {k: (lambda m=m, x=x: m(x)) for k, m in torch_models.items()},
                "onnxruntime": {k: (lambda s=s, n=s.get_inputs()[0].name, xn=xn:
                                    s.run(None, {n: xn})) for k, s in sessions.items()}}
            for engine, fns in engines.items():
                time.sleep(0.5)  # let the other engine's spinning worker threads go idle
                with torch.inference_mode():
                    timed = interleaved(fns, runs, rounds)
                for model, t in timed.items():
                    rows.append({"engine": engine, "model": model, "batch": b, **t,
                                 "threads": threads})
    load.append(os.getloadavg()[0])
    med = {(r["engine"], r["model"], r["batch"]): r["median_ms"] for r in rows}
    speedup = {e: {str(b): med[e, "dense", b] / med[e, "pruned", b] for b in BATCHES}
               for e in ("pytorch", "onnxruntime")}
    out = {"threads": threads, "batches": list(BATCHES), "rows": rows, "speedup": speedup,
           "load_avg_1min": {"start": load[0], "end": load[1], "cpus": os.cpu_count()},
           "allocator": allocator.state()}
    if "int8" in onnx_files:
        out["int8_speedup"] = {str(b): med["onnxruntime", "dense", b]
                               / med["onnxruntime", "int8", b] for b in BATCHES}
    return out


def torch_latencies(models: dict[str, nn.Module], input_size: tuple[int, ...], threads: int,
                    runs: int = 20, rounds: int = 4) -> dict:
    """PyTorch CPU latency of several models at batch 1 and 64, timed side by side.

    Args:
        models: Named models (put in eval mode).
        input_size: (C, H, W) of one random input.
        threads: torch intra-op threads.
        runs: Timed runs per model and batch size.
        rounds: Rounds the runs are interleaved in.

    Returns:
        ``{"b1": {name: stats}, "b64": {...}}`` (stats as :func:`interleaved`), the thread
        count, the allocator state and the 1-minute load average at the start and the end.
    """
    out: dict = {"threads": threads, "load_avg_1min": {"start": os.getloadavg()[0]}}
    with num_threads(threads):
        for m in models.values():
            m.eval()
        for b in BATCHES:
            x = torch.randn(b, *input_size, generator=torch.Generator().manual_seed(b))
            with torch.inference_mode():
                out[f"b{b}"] = interleaved({k: (lambda m=m, x=x: m(x)) for k, m in models.items()},
                                           runs, rounds)
    out["load_avg_1min"].update(end=os.getloadavg()[0], cpus=os.cpu_count())
    out["allocator"] = allocator.state()
    return out


@dataclass
class Latency:
    """A latency measurement in milliseconds.

    Attributes:
        median_ms: Median over the timed runs.
        iqr_ms: Inter-quartile range over the timed runs.
        batch: Batch size.
        threads: torch intra-op threads used.
        runs: Timed runs.
    """

    median_ms: float
    iqr_ms: float
    batch: int
    threads: int
    runs: int

    def as_dict(self) -> dict:
        return asdict(self)


def measure_latency(model: nn.Module, input_size: tuple[int, ...], batch: int = 1,
                    runs: int = 20, warmup: int = 3, threads: int | None = None,
                    channels_last: bool = False) -> Latency:
    """Median and IQR of the forward time of ``model`` on a random batch on the CPU.

    Args:
        model: The model (put in eval mode for the measurement).
        input_size: (C, H, W).
        batch: Batch size.
        runs: Timed runs.
        warmup: Untimed runs first.
        threads: torch threads during the measurement (default: leave as is).
        channels_last: Run in channels-last memory format.
    """
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model = model.eval().to(memory_format=fmt)
    x = torch.randn(batch, *input_size).to(memory_format=fmt)
    with num_threads(threads):
        used = torch.get_num_threads()
        with torch.inference_mode():
            t = interleaved({"model": lambda: model(x)}, runs, 1, warmup=warmup)["model"]
    return Latency(t["median_ms"], t["iqr_ms"], batch, used, runs)
