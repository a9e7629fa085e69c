"""How fast a pruned CIFAR ResNet-56 can be on this CPU: measured speed-up against MACs for
every way of narrowing it.

``--budget latency:0.5`` asks for a network twice as fast as the dense one. With AMC's
``internal`` units (the first conv of each block; the residual stream keeps its 16/32/64
channels) that budget is refused as unreachable on this machine. This benchmark measures
where the limit lies, without weights or data (latency depends on the shapes only): ResNet-56
networks of given widths, timed side by side with the dense one on each target
(``backend:batch:threads``, as ``--latency-backend/--latency-batch/--latency-threads``) by the
one timer of the latency table (:func:`amc.prune.latency_timing.time_models`, first quartile):

* ``internal``: every block's first conv keeping a fraction ``k`` of its channels, the
  residual stream whole (what ``--units internal`` can reach; ``k`` = 0.1 is ``max_ratio``
  0.9, the most any policy may prune);
* ``all``: residual stream and internal convs narrowed alike to ``k`` (what pruning the
  residual channels too would reach; the option-A shortcut's zero padding needs each stage
  wider than the previous one by an even count, so the widths are rounded to that);
* ``residual``: the residual stream narrowed to ``k``, the internal convs whole;
* ``lanes``: ``all`` with every width a multiple of the CPU's fp32 vector
  (:func:`amc.prune.latency_timing.lanes`; 16 on AVX-512);
* ``check``: the real ``PrunableModel.prune`` of ResNet-56 at uniform ratio 0.5
  (``internal``) next to the same widths built here: their times must agree (the builder
  stands for pruned networks);
* ``staircase`` (``torch`` targets): single 3x3 convs of the three stages' shapes (the
  target's batch and threads, contiguous tensors as the latency table times its layers)
  keeping 1..all of their output channels, and 1..all of their input channels, each time over
  the whole conv's: how the CPU's kernels charge a pruned width (the latency table counts
  kept outputs so: :func:`amc.prune.latency_timing.lanes`).

Writes ``results/latency_frontier.json`` (per target and network: widths, MACs ratio and
speed-up over dense, mean ± std over ``--repeats``; per family the largest MACs ratio measured
at ≥ 1.8x and ≥ 2x) and ``results/latency_frontier.png``.

    .venv/bin/python scripts/bench_latency_frontier.py    # ~10 min on 2 cores
"""

from __future__ import annotations

import argparse
import os
import platform
from pathlib import Path

import numpy as np
import torch
from torch import nn

from amc.cost.macs import model_cost
from amc.models.cifar import CifarResNet, PadShortcut
from amc.prune.latency_table import LatencySpec
from amc.prune.latency_timing import conv_staircase, lanes, time_models, whole_vectors
from amc.prune.units import PrunableModel
from amc.utils.io import write_json
from amc.utils.provenance import cpu_model, git_commit, now, versions

FULL = (16, 32, 64)
INPUT = (3, 32, 32)
TARGETS = "torch:64:2,torch:64:1,ort:64:2"
SPEEDUPS = (1.8, 2.0)
FAMILIES = ("internal", "residual", "all", "lanes")
STAIRCASE = (1, 2, 4, 8, 10, 12, 16, 20, 24, 32, 40, 48, 56, 64)


def narrowed(residual: tuple[int, int, int], internal: tuple[int, int, int],
             depth: int = 56) -> CifarResNet:
    """A CIFAR ResNet whose stages carry ``residual`` channels and whose blocks' first convs
    have ``internal`` channels (randomly initialised, eval mode)."""
    net = CifarResNet(depth)
    net.conv1, net.bn1 = nn.Conv2d(3, residual[0], 3, 1, 1, bias=False), nn.BatchNorm2d(
        residual[0])
    c = residual[0]
    for stage, (r, m) in enumerate(zip(residual, internal, strict=True)):
        for blk in getattr(net, f"layer{stage + 1}"):
            stride = blk.conv1.stride[0]
            blk.conv1 = nn.Conv2d(c, m, 3, stride, 1, bias=False)
            blk.bn1 = nn.BatchNorm2d(m)
            blk.conv2 = nn.Conv2d(m, r, 3, 1, 1, bias=False)
            blk.bn2 = nn.BatchNorm2d(r)
            if isinstance(blk.shortcut, PadShortcut):
                if (r - c) % 2 or r < c:
                    raise ValueError(f"option-A shortcut cannot pad {c} to {r} channels")
                blk.shortcut = PadShortcut(stride, (r - c) // 2, c)
            c = r
    net.linear = nn.Linear(c, 10)
    return net.eval()


def stage_widths(k: float) -> tuple[int, int, int]:
    """Residual widths near ``k`` x 16/32/64, each stage wider than the last by an even count."""
    w = [max(2, round(FULL[0] * k))]
    for full in FULL[1:]:
        w.append(w[-1] + 2 * max(0, round((full * k - w[-1]) / 2)))
    return w[0], w[1], w[2]


def networks(width: int) -> dict[str, dict]:
    """name -> {family, residual, internal} of every network timed (dense first)."""
    out = {"dense": {"family": "dense", "residual": FULL, "internal": FULL}}
    for k in (0.75, 0.5, 0.3, 0.1):
        out[f"internal_{k}"] = {"family": "internal", "residual": FULL,
                                "internal": tuple(max(1, round(c * k)) for c in FULL)}
    for k in (0.875, 0.75, 0.625, 0.5, 0.375, 0.25):
        w = stage_widths(k)
        out[f"all_{k}"] = {"family": "all", "residual": w, "internal": w}
    for k in (0.75, 0.5, 0.25):
        out[f"residual_{k}"] = {"family": "residual", "residual": stage_widths(k),
                                "internal": FULL}
    seen = set()
    for k in (0.875, 0.75, 0.625, 0.5, 0.375, 0.25):
        w = tuple(min(c, max(width, whole_vectors(round(c * k), width))) for c in FULL)
        if w != FULL and w not in seen and all((b - a) % 2 == 0 for a, b in zip(w, w[1:])):
            seen.add(w)
            out[f"lanes_{'_'.join(map(str, w))}"] = {"family": "lanes", "residual": w,
                                                     "internal": w}
    return out


def check_pair() -> dict[str, nn.Module]:
    """The real pruned ResNet-56 (internal, uniform 0.5) and the same widths built here."""
    pm = PrunableModel(CifarResNet(56), INPUT, mode="internal")
    real = pm.prune([0.5] * len(pm.units)).eval()
    return {"check_pruned": real, "check_built": narrowed(FULL, (8, 16, 32))}


def largest_macs_at(rows: list[dict], family: str, speedup: float) -> float | None:
    """The largest MACs ratio of a ``family`` network measured at least ``speedup`` x."""
    ok = [r["macs_ratio"] for r in rows if r["family"] == family
          and r["speedup"]["mean"] >= speedup]
    return max(ok) if ok else None


def bench_target(target: str, nets: dict[str, dict], models: dict[str, nn.Module],
                 repeats: int, runs: int) -> dict:
    """``models`` (built once from ``nets``, with :func:`check_pair`) timed on ``target``."""
    backend, batch, threads = target.split(":")
    spec = LatencySpec(backend=backend, batch=int(batch), threads=int(threads), runs=runs)
    dense_macs = model_cost(models["dense"], INPUT)[0]
    load = [os.getloadavg()[0]]
    ms: dict[str, list[float]] = {k: [] for k in models}
    for _ in range(repeats):
        for k, v in time_models(models, INPUT, spec).items():
            ms[k].append(v)
    load.append(os.getloadavg()[0])
    rows = []
    for k, m in models.items():
        speed = [d / t for d, t in zip(ms["dense"], ms[k], strict=True)]
        meta = nets.get(k, {"family": "check"})
        rows.append({"name": k, "family": meta["family"],
                     "residual": list(meta.get("residual", [])),
                     "internal": list(meta.get("internal", [])),
                     "macs_ratio": model_cost(m, INPUT)[0] / dense_macs,
                     "ms": {"mean": float(np.mean(ms[k])), "std": float(np.std(ms[k], ddof=1))
                            if repeats > 1 else None},
                     "speedup": {"mean": float(np.mean(speed)),
                                 "std": float(np.std(speed, ddof=1)) if repeats > 1 else None}})
    by = {r["name"]: r for r in rows}
    stairs = staircase(int(batch), int(threads), 2 * runs) if backend == "torch" else None
    return {"target": target, "rows": rows, "load_avg_1min": load, "staircase": stairs,
            "check_built_over_pruned_ms": by["check_built"]["ms"]["mean"]
            / by["check_pruned"]["ms"]["mean"],
            "largest_macs_ratio_at": {
                f"{s}x": {f: largest_macs_at(rows, f, s) for f in FAMILIES}
                for s in SPEEDUPS},
            "fastest": {f: max((r["speedup"]["mean"] for r in rows if r["family"] == f),
                               default=None) for f in FAMILIES}}


def staircase(batch: int, threads: int, runs: int) -> dict:
    """Per stage shape (``<channels>ch_<pixels>px``), a 3x3 conv's time keeping ``c`` of its
    outputs (``out``) or of its inputs (``in``), over the whole conv's time
    (:func:`amc.prune.latency_timing.conv_staircase`)."""
    return {f"{c}ch_{hw}px": {
        side: {str(k): f for k, f in conv_staircase(
            c, hw, side, [w for w in STAIRCASE if w <= c], batch, threads, runs,
            rounds=2).items()}
        for side in ("out", "in")} for c, hw in ((16, 32), (32, 16), (64, 8))}


def plot(doc: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    targets = doc["targets"]
    fig, axes = plt.subplots(1, len(targets), figsize=(5 * len(targets), 4), squeeze=False)
    for ax, t in zip(axes[0], targets, strict=True):
        for fam, style in (("internal", "o-"), ("residual", "v-"), ("all", "s-"),
                           ("lanes", "^--")):
            rows = sorted((r for r in t["rows"] if r["family"] in (fam, "dense")),
                          key=lambda r: r["macs_ratio"])
            ax.errorbar([r["macs_ratio"] for r in rows], [r["speedup"]["mean"] for r in rows],
                        yerr=[r["speedup"]["std"] or 0 for r in rows], fmt=style, label=fam,
                        capsize=2)
        for s in SPEEDUPS:
            ax.axhline(s, color="grey", lw=0.6, ls=":")
        ax.set_xlabel("MACs / dense MACs")
        ax.set_ylabel("speed-up over dense (measured)")
        ax.set_title(t["target"])
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--targets", default=TARGETS, help="backend:batch:threads, comma-separated")
    p.add_argument("--repeats", type=int, default=3, help="timings of every network per target")
    p.add_argument("--runs", type=int, default=15, help="timed runs per network and repeat")
    p.add_argument("--out", default="results/latency_frontier.json")
    args = p.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    width = lanes("torch")
    nets = networks(width)
    models = {k: narrowed(v["residual"], v["internal"]) for k, v in nets.items()}
    models.update(check_pair())
    targets = [bench_target(t, nets, models, args.repeats, args.runs)
               for t in args.targets.split(",")]
    doc = {"command": "python scripts/bench_latency_frontier.py", "date": now(),
           "git_commit": git_commit(), "versions": versions(),
           "machine": {"cpus": os.cpu_count(), "cpu": cpu_model(),
                       "processor": platform.processor(), "fp32_vector_lanes": width},
           "repeats": args.repeats, "runs": args.runs, "targets": targets}
    write_json(args.out, doc)
    plot(doc, Path(args.out).with_suffix(".png"))
    for t in targets:
        print(t["target"], "fastest", t["fastest"], "largest MACs at",
              t["largest_macs_ratio_at"], "check", round(t["check_built_over_pruned_ms"], 3))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
