"""Benchmark of the pruning engine on the pretrained CIFAR-10 ResNet-56.

Uniform channel pruning of the internal units (the first conv of every block, AMC's
residual-net mode) to a FLOPs budget, without fine-tuning:

* the uniform ratio and the achieved MACs/params ratios (analytic and measured);
* ``val`` (5,000 held-out training images) and ``test`` (10,000) top-1 of the dense model
  and of the pruned model (a) as pruned, (b) with BatchNorm recalibration, (c) with
  least-squares reconstruction, alone and followed by BatchNorm recalibration;
* CPU latency of dense vs pruned at batch 1 and 64 (median and IQR of timed runs, in
  rounds that alternate the two models).

Usage (from the project root)::

    .venv/bin/python scripts/bench_pruning.py \
        --checkpoint ../shared/models/resnet56-cifar10.th --data-dir ../shared/data \
        --out results/pruning_resnet56.json
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import sys
import time

import numpy as np
import torch

from amc.cost.macs import model_cost
from amc.cost.timing import measure_latency
from amc.data.datasets import load_dataset
from amc.models.evaluate import top1
from amc.models.registry import create_model
from amc.prune.budget import Budget, uniform_ratio
from amc.prune.repair import recalibrate_bn, reconstruct
from amc.prune.units import PrunableModel
from amc.utils.io import write_json
from amc.utils.provenance import git_commit, now, versions


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="resnet56")
    p.add_argument("--checkpoint", default="../shared/models/resnet56-cifar10.th")
    p.add_argument("--data-dir", default="../shared/data")
    p.add_argument("--budget", default="flops:0.5")
    p.add_argument("--units", default="internal")
    p.add_argument("--criterion", default="l1")
    p.add_argument("--calib-size", type=int, default=2000,
                   help="training images for BatchNorm recalibration")
    p.add_argument("--recon-size", type=int, default=512,
                   help="training images (a subset of the calibration images) for reconstruction")
    p.add_argument("--eval-threads", type=int, default=1,
                   help="torch threads for the accuracy part (kept low: a shared machine)")
    p.add_argument("--latency-threads", type=int, default=2)
    p.add_argument("--runs-b1", type=int, default=50, help="timed runs at batch 1")
    p.add_argument("--runs-b64", type=int, default=20, help="timed runs at batch 64")
    p.add_argument("--latency-rounds", type=int, default=3,
                   help="alternating dense/pruned measurement rounds per batch size")
    p.add_argument("--eval-limit", type=int, default=None,
                   help="evaluate on the first N val and test images only (smoke runs)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="results/pruning_resnet56.json")
    args = p.parse_args(argv)

    t_start = time.perf_counter()
    load = {"start": os.getloadavg()}
    torch.set_num_threads(args.eval_threads)
    torch.manual_seed(args.seed)

    def log(msg: str) -> None:
        print(f"[{time.perf_counter() - t_start:7.1f}s] {msg}", flush=True)

    data = load_dataset("cifar10", data_dir=args.data_dir)
    size = data.input_size
    xv, yv = data.tensors("val", args.eval_limit)
    xs, ys = data.tensors("test", args.eval_limit)
    xt, yt = data.tensors("train")
    idx = torch.randperm(len(yt), generator=torch.Generator().manual_seed(args.seed))
    calib_x = xt[idx[:args.calib_size]]
    recon_x = calib_x[:args.recon_size]

    dense = create_model(args.model, checkpoint=args.checkpoint)
    pm = PrunableModel(dense, size, args.units, args.criterion)
    budget = Budget.parse(args.budget)
    r = uniform_ratio(pm, budget)
    ratios = [r] * len(pm.units)
    a_macs, a_params = pm.cost(ratios)
    pruned = pm.prune(ratios)
    m_macs, m_params = model_cost(pruned, size)
    d_macs, d_params = model_cost(dense, size)
    log(f"{len(pm.units)} units, uniform ratio {r:.4f}: MACs {m_macs / d_macs:.4f}, params "
        f"{m_params / d_params:.4f} of dense")

    def acc(net: torch.nn.Module, label: str) -> dict[str, float]:
        t = time.perf_counter()
        out = {"val_top1": top1(net, xv, yv), "test_top1": top1(net, xs, ys)}
        log(f"{label:28s} val {out['val_top1']:6.2f}%  test {out['test_top1']:6.2f}%  "
            f"({time.perf_counter() - t:.0f} s)")
        return out

    accuracy = {"dense": acc(dense, "dense")}
    accuracy["pruned_plain"] = acc(pruned, "pruned (plain)")
    bn = recalibrate_bn(pm.prune(ratios), calib_x.split(128))
    accuracy["pruned_bn_recalib"] = acc(bn, "pruned + BN recalib")
    t = time.perf_counter()
    rec = reconstruct(pm, pm.prune(ratios), ratios, recon_x)
    recon_s = time.perf_counter() - t
    log(f"reconstruction took {recon_s:.0f} s")
    accuracy["pruned_reconstruct"] = acc(rec, "pruned + reconstruct")
    rec_bn = recalibrate_bn(rec, calib_x.split(128))
    accuracy["pruned_reconstruct_bn_recalib"] = acc(rec_bn, "pruned + reconstruct + BN")

    latency = {}
    load["before_latency"] = os.getloadavg()
    for batch, runs in ((1, args.runs_b1), (64, args.runs_b64)):
        rounds = []
        for _ in range(args.latency_rounds):  # alternate, so a change of load hits both
            d = measure_latency(dense, size, batch=batch, runs=runs, warmup=5,
                                threads=args.latency_threads)
            q = measure_latency(pruned, size, batch=batch, runs=runs, warmup=5,
                                threads=args.latency_threads)
            rounds.append({"dense": d.as_dict(), "pruned": q.as_dict(),
                           "speedup": d.median_ms / q.median_ms})
            log(f"latency batch {batch}: dense {d.median_ms:.2f} ms (IQR {d.iqr_ms:.2f}), "
                f"pruned {q.median_ms:.2f} ms (IQR {q.iqr_ms:.2f}): "
                f"{d.median_ms / q.median_ms:.2f}x")
        dm = float(np.median([r["dense"]["median_ms"] for r in rounds]))
        qm = float(np.median([r["pruned"]["median_ms"] for r in rounds]))
        latency[f"batch{batch}"] = {
            "dense_median_ms": dm, "pruned_median_ms": qm,
            "speedup": float(np.median([r["speedup"] for r in rounds])),
            "speedup_of_medians": dm / qm, "runs_per_round": runs, "rounds": rounds}

    load["end"] = os.getloadavg()
    result = {
        "what": "uniform channel pruning of ResNet-56 on CIFAR-10 (JPEG copy), no fine-tuning",
        "command": " ".join(shlex.quote(a) for a in [".venv/bin/python", *sys.argv]),
        "date": now(),
        "git_commit": git_commit(),
        "versions": versions(),
        "torch": torch.__version__,
        "machine": {"processor": platform.processor() or platform.machine(),
                    "cpu_count": os.cpu_count(),
                    "load_average_1_5_15_min": load},
        "model": args.model,
        "checkpoint": args.checkpoint,
        "data": {"name": "cifar10", "data_dir": args.data_dir, "val": len(yv),
                 "test": len(ys), "train": len(yt),
                 "note": "val is 5,000 images held out of the training split (seed 0)"},
        "units": args.units,
        "criterion": args.criterion,
        "n_units": len(pm.units),
        "budget": str(budget),
        "uniform_ratio": r,
        "kept_channels": [pm.kept(i, r) for i in range(len(pm.units))],
        "unit_channels": [u.n for u in pm.units],
        "dense": {"macs": d_macs, "params": d_params},
        "pruned": {"macs": m_macs, "params": m_params, "analytic_macs": a_macs,
                   "analytic_params": a_params},
        "macs_ratio": m_macs / d_macs,
        "params_ratio": m_params / d_params,
        "accuracy": accuracy,
        "repair": {
            "bn_recalib": f"BatchNorm running statistics reset and re-estimated (cumulative "
                          f"average, no gradient steps) on {len(calib_x)} random training "
                          "images in batches of 128",
            "reconstruct": f"every conv whose input channels were pruned refitted in forward "
                           f"order by ridge least squares to the dense conv's output on "
                           f"{len(recon_x)} training images (16 sampled positions per "
                           f"image), {recon_s:.0f} s",
            "reconstruct_bn_recalib": "the reconstructed model, then the BatchNorm "
                                      "recalibration above",
        },
        "eval_threads": args.eval_threads,
        "latency": latency,
        "latency_threads": args.latency_threads,
        "latency_note": "torch CPU eager, float32, random input of the model's size; per "
                        "round, measure_latency gives the median and IQR of the timed runs "
                        "after 5 warm-up runs, dense then pruned; rounds alternate the two "
                        "models; dense_/pruned_median_ms are the medians over rounds and "
                        "speedup the median of the per-round speed-ups; the 2-core machine was "
                        "shared with other jobs during the run (see "
                        "machine.load_average_1_5_15_min: a load above the 2 cores means other "
                        "jobs competed), so absolute times may be inflated and noisy (about "
                        "+-30 % run to run); the speed-ups compare dense and pruned measured "
                        "back to back",
        "seconds": time.perf_counter() - t_start,
    }
    result["summary"] = {
        "uniform_ratio": r, "macs_ratio": result["macs_ratio"],
        "params_ratio": result["params_ratio"],
        **{f"{k}_{s}": v[f"{s}_top1"] for k, v in accuracy.items() for s in ("val", "test")},
        "speedup_batch1": latency["batch1"]["speedup"],
        "speedup_batch64": latency["batch64"]["speedup"],
    }
    out = write_json(args.out, result)
    log(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
