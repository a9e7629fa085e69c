"""How a pruned conv's time steps with its kept channels on this CPU: the measurements behind
the latency table's whole-vector counting (:func:`amc.prune.latency_timing.lanes`,
:func:`~amc.prune.latency_timing.vector_inputs`).

For the three conv shapes of a CIFAR ResNet-56 stage (3x3, stride 1, 16 channels at 32x32,
32 at 16x16, 64 at 8x8; batch 64), one dimension is pruned while the other stays whole: kept
output channels (inputs whole) and kept input channels (outputs whole), each at 1 and 2
threads, in PyTorch's NCHW eager form (what the ``torch`` latency backend and the delivered
networks run) and channels_last. All variants of one shape, layout and thread count are timed
side by side (:func:`amc.prune.latency_timing.conv_staircase`, on the one timer). Per point:
the fraction of the unpruned conv's time; per series, the mean absolute error of three models of
that fraction: ``linear`` (kept / all), ``vectors`` (kept rounded up to whole vectors of
:func:`lanes`) and ``table`` (what the latency table counts: outputs in whole vectors, inputs
by :func:`vector_inputs`), each with a constant term fitted by least squares.

    .venv/bin/python scripts/bench_conv_vectors.py [--out results/conv_vectors.json]
"""

from __future__ import annotations

import argparse
import os
import platform

import numpy as np
import torch

from amc.prune.latency_timing import conv_staircase, lanes, vector_inputs, whole_vectors
from amc.utils.io import write_json
from amc.utils.provenance import git_commit, now, versions

SHAPES = ((16, 32), (32, 16), (64, 8))
"""(channels, input height = width) of the three ResNet-56 stages' 3x3 convs."""


def kept_counts(channels: int) -> list[int]:
    """The kept channel counts timed: every count up to 8, then both sides of every multiple of
    4 (so that steps at 8 and 16 channel vectors show), and the full width."""
    ks = set(range(1, min(channels, 8) + 1))
    for m in range(4, channels + 1, 4):
        ks.update({m, min(channels, m + 1)})
    return sorted(ks)


def model_error(frac: list[float], cost: list[int]) -> float:
    """Mean absolute error of ``frac ~ a * cost + b`` fitted by least squares (``b`` alone
    where ``cost`` is constant: one vector of outputs)."""
    y, x = np.asarray(frac), np.asarray(cost, dtype=float)
    fit = np.full_like(y, y.mean()) if np.ptp(x) == 0 else np.polyval(np.polyfit(x, y, 1), x)
    return float(np.mean(np.abs(fit - y)))


def series(channels: int, hw: int, side: str, layout: str, threads: int, batch: int,
           runs: int, width: int) -> dict:
    """One conv shape pruned on ``side`` (``out`` or ``in``) in one layout and thread count
    (:func:`conv_staircase`), and the three models' errors."""
    ks = kept_counts(channels)
    frac = list(conv_staircase(channels, hw, side, ks, batch, threads, runs,
                               channels_last=layout == "channels_last").values())
    vectors = [whole_vectors(k, width) for k in ks]
    table = vectors if side == "out" else [vector_inputs(k, width) for k in ks]
    return {"channels": channels, "hw": hw, "side": side, "layout": layout,
            "threads": threads, "kept": ks, "fraction": frac,
            "error": {"linear": model_error(frac, ks), "vectors": model_error(frac, vectors),
                      "table": model_error(frac, table)}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--runs", type=int, default=15, help="timed runs per variant")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--out", default="results/conv_vectors.json")
    args = ap.parse_args()
    width = lanes("torch")
    load0 = os.getloadavg()[0]
    rows = []
    for channels, hw in SHAPES:
        for side in ("out", "in"):
            for layout in ("nchw", "channels_last"):
                for threads in map(int, args.threads.split(",")):
                    r = series(channels, hw, side, layout, threads, args.batch, args.runs, width)
                    rows.append(r)
                    e = r["error"]
                    print(f"{channels}@{hw} {side:3s} {layout:13s} t{threads}: error linear "
                          f"{e['linear']:.3f} vectors {e['vectors']:.3f} table {e['table']:.3f}",
                          flush=True)
    summary = {}
    for layout in ("nchw", "channels_last"):
        for side in ("out", "in"):
            rs = [r for r in rows if r["layout"] == layout and r["side"] == side]
            summary[f"{layout}_{side}"] = {m: float(np.mean([r["error"][m] for r in rs]))
                                           for m in ("linear", "vectors", "table")}
    write_json(args.out, {
        "command": "python scripts/bench_conv_vectors.py", "date": now(),
        "git_commit": git_commit(), "versions": versions(), "batch": args.batch,
        "runs": args.runs, "lanes": width, "cpu": platform.processor() or platform.machine(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(), "cpus": os.cpu_count(),
        "load_avg": {"start": load0, "end": os.getloadavg()[0]},
        "summary_mean_abs_error": summary, "rows": rows})
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
