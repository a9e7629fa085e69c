"""Throughput of dense CIFAR-10 ResNet inference on the CPU, next to an fp32 matmul.

For each model (default ResNet-20 and ResNet-56 with the pretrained checkpoints):

1. every variant of memory format (contiguous, channels_last) x batch size x torch threads
   is timed on a stratified subset of the test split (every 10th image: 1,000 images,
   100 per class), after one untimed warm-up batch, in two interleaved rounds (the second
   in reverse order); a variant's speed is its faster round, which is robust to a
   background job that competes for the two cores now and then;
2. the fastest variant (highest images/s) is run on the full 10,000-image test split,
   which also gives top-1/top-5;
3. an fp32 ``torch.mm`` of two 2048x2048 matrices is timed with the same thread count,
   once per thread count at the start and again right before each full run, so the model's
   GFLOP/s can be read against what the CPU does on dense matrix multiplication.

Convention: GFLOP/s = 2 * MACs per image * images/s / 1e9, with MACs from
``amc.cost.macs.model_cost`` (convolutions, the linear layer and BatchNorm, one multiply-add per
BatchNorm output element; BatchNorm is about 1 % of ResNet MACs). A matmul of n x n by
n x n counts 2 n^3 FLOPs. Timings cover the model's forward passes over pre-normalised
float32 tensors (decoding and normalisation are done once, before timing), including the
per-batch conversion to channels_last where that variant is used.

Usage (from the project root)::

    .venv/bin/python scripts/bench_eval.py --data-dir ../shared/data \
        --models-dir ../shared/models --out results/bench_eval.json
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import torch

from amc.cost.macs import model_cost
from amc.data.datasets import load_dataset
from amc.models.evaluate import accuracy_from_logits, predict
from amc.models.registry import create_model
from amc.utils.io import write_json
from amc.utils.provenance import cpu_model, git_commit, now, versions

ROOT = Path(__file__).resolve().parents[1]
# top-1 of the shared checkpoints on the JPEG test split, from ../shared/README.md
REFERENCE_TOP1 = {"resnet20": 80.73, "resnet32": 82.01, "resnet44": 82.27, "resnet56": 82.73}


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def matmul_gflops(n: int, threads: int, reps: int) -> dict:
    """Median GFLOP/s of an fp32 n x n by n x n ``torch.mm`` with ``threads`` threads."""
    torch.set_num_threads(threads)
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(n, n, generator=gen)
    b = torch.randn(n, n, generator=gen)
    out = torch.empty(n, n)
    for _ in range(2):
        torch.mm(a, b, out=out)
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        torch.mm(a, b, out=out)
        times.append(time.perf_counter() - t)
    med = float(np.median(times))
    return {"threads": threads, "size": n, "reps": reps, "median_s": med,
            "gflops": 2 * n ** 3 / med / 1e9, "best_gflops": 2 * n ** 3 / min(times) / 1e9}


def run_variant(model: torch.nn.Module, x: torch.Tensor, batch: int, threads: int,
                channels_last: bool) -> tuple[float, torch.Tensor]:
    """Seconds for the forward passes over ``x`` (after one warm-up batch) and the logits."""
    torch.set_num_threads(threads)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model.to(memory_format=fmt)
    predict(model, x[:batch], batch_size=batch, channels_last=channels_last)  # warm-up
    t = time.perf_counter()
    logits = predict(model, x, batch_size=batch, channels_last=channels_last)
    return time.perf_counter() - t, logits


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "data"),
                   help="folder with CIFAR-10 (default ../shared/data)")
    p.add_argument("--models-dir", default=str(ROOT.parent / "shared" / "models"),
                   help="folder with <model>-cifar10.th checkpoints (default ../shared/models)")
    p.add_argument("--models", nargs="+", default=["resnet20", "resnet56"])
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[100, 250, 500, 1000])
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--formats", nargs="+", default=["contiguous", "channels_last"],
                   choices=["contiguous", "channels_last"])
    p.add_argument("--subset-stride", type=int, default=10,
                   help="variants are timed on every k-th test image (10: 1,000 images)")
    p.add_argument("--rounds", type=int, default=2,
                   help="timed passes per variant, interleaved; the fastest pass counts")
    p.add_argument("--matmul-size", type=int, default=2048)
    p.add_argument("--matmul-reps", type=int, default=10)
    p.add_argument("--out", default=str(ROOT / "results" / "bench_eval.json"))
    args = p.parse_args(argv)

    default_threads = torch.get_num_threads()
    result: dict = {
        "what": "dense CIFAR-10 ResNet inference throughput (images/s, GFLOP/s) and top-1 on "
                "the full test split, with an fp32 2048x2048 torch.mm GFLOP/s as reference",
        "command": shlex.join([".venv/bin/python", "scripts/bench_eval.py", *sys.argv[1:]]),
        "date": now(),
        "git_commit": git_commit(ROOT),
        "versions": versions(),
        "torch": torch.__version__,
        "machine": {"cpu": cpu_model(), "cpu_count": os.cpu_count(),
                    "platform": platform.platform(),
                    "torch_default_threads": default_threads,
                    "loadavg_start": list(os.getloadavg())},
        "flop_convention": "GFLOP/s = 2 * MACs/image * images/s / 1e9; MACs from "
                           "amc.cost.macs.model_cost (conv + linear + BatchNorm); matmul counts "
                           "2*n^3 FLOPs",
        "timing": "time.perf_counter around amc.models.evaluate.predict over pre-normalised "
                  "float32 "
                  "tensors, after one untimed warm-up batch; data decoding excluded; a "
                  "variant's images/s is the best of its interleaved rounds",
    }

    log(f"loading CIFAR-10 from {args.data_dir}")
    data = load_dataset("cifar10", data_dir=args.data_dir)
    x_all, y_all = data.tensors("test")
    x_sub, y_sub = x_all[::args.subset_stride], y_all[::args.subset_stride]
    result["data"] = {"data_dir": str(Path(args.data_dir).resolve()), "split": "test",
                      "images": len(y_all), "subset_images": len(y_sub),
                      "subset": f"every {args.subset_stride}th test image "
                                f"({len(y_sub) // data.num_classes} per class)",
                      "rounds_per_variant": args.rounds}

    result["matmul"] = []
    for t in args.threads:
        m = matmul_gflops(args.matmul_size, t, args.matmul_reps)
        m["when"] = "start"
        result["matmul"].append(m)
        log(f"matmul {args.matmul_size}^2, {t} thread(s): {m['gflops']:.1f} GFLOP/s")

    result["models"] = {}
    for name in args.models:
        ckpt = Path(args.models_dir) / f"{name}-cifar10.th"
        model = create_model(name, checkpoint=ckpt)
        macs, params = model_cost(model, data.input_size)
        gflop_per_image = 2 * macs / 1e9
        entry: dict = {"checkpoint": str(ckpt.resolve()), "macs_per_image": macs,
                       "params": params, "variants": []}
        combos = list(itertools.product(args.formats, args.batch_sizes, args.threads))
        rounds: dict[tuple, list[float]] = {c: [] for c in combos}
        subset_top1: dict[tuple, float] = {}
        for r in range(args.rounds):
            # alternate the order so that a drifting background load hits all variants alike
            for fmt, bs, t in combos if r % 2 == 0 else combos[::-1]:
                secs, logits = run_variant(model, x_sub, bs, t, fmt == "channels_last")
                rounds[(fmt, bs, t)].append(secs)
                subset_top1[(fmt, bs, t)] = accuracy_from_logits(logits, y_sub,
                                                                 data.num_classes)[0]
                log(f"{name} round {r + 1} {fmt:13s} batch {bs:4d} threads {t}: "
                    f"{len(y_sub) / secs:7.1f} images/s")
        for (fmt, bs, t), times in rounds.items():
            ips = len(y_sub) / min(times)
            entry["variants"].append({
                "memory_format": fmt, "batch_size": bs, "threads": t, "images": len(y_sub),
                "seconds_per_round": times, "images_per_s": ips,
                "gflops": gflop_per_image * ips, "subset_top1": subset_top1[(fmt, bs, t)]})
        win = max(entry["variants"], key=lambda v: v["images_per_s"])
        entry["winner"] = {k: win[k] for k in ("memory_format", "batch_size", "threads")}
        log(f"{name} winner: {entry['winner']} at {win['images_per_s']:.1f} images/s on the "
            "subset; full test split next")

        mm = matmul_gflops(args.matmul_size, win["threads"], args.matmul_reps)
        mm["when"] = f"before the full {name} run"
        result["matmul"].append(mm)
        secs, logits = run_variant(model, x_all, win["batch_size"], win["threads"],
                                   win["memory_format"] == "channels_last")
        top1, top5, per_class = accuracy_from_logits(logits, y_all, data.num_classes)
        ips = len(y_all) / secs
        full = {**entry["winner"], "images": len(y_all), "seconds": secs, "images_per_s": ips,
                "gflops": gflop_per_image * ips, "top1": top1, "top5": top5,
                "per_class_top1": dict(zip(data.classes, per_class)),
                "matmul_gflops_same_threads": mm["gflops"],
                "fraction_of_matmul": gflop_per_image * ips / mm["gflops"]}
        if name in REFERENCE_TOP1:
            full["reference_top1"] = REFERENCE_TOP1[name]
            full["top1_minus_reference"] = top1 - REFERENCE_TOP1[name]
        entry["full"] = full
        result["models"][name] = entry
        log(f"{name} full: {len(y_all)} images in {secs:.1f} s, {ips:.1f} images/s, "
            f"{full['gflops']:.1f} GFLOP/s ({100 * full['fraction_of_matmul']:.0f} % of matmul "
            f"{mm['gflops']:.1f}), top-1 {top1:.2f}% top-5 {top5:.2f}%")

    torch.set_num_threads(default_threads)
    result["machine"]["loadavg_end"] = list(os.getloadavg())
    busiest = max(result["machine"]["loadavg_start"][0], result["machine"]["loadavg_end"][0])
    if busiest > 1.5 * (os.cpu_count() or 1):
        result["warning"] = (f"load average reached {busiest:.1f} on {os.cpu_count()} cores: "
                             "other jobs competed, so the timings (and the winner) are "
                             "unreliable; rerun on a quiet machine before quoting speeds")
        log(result["warning"])
    result["summary"] = {
        name: {"winner": e["winner"], "images_per_s": round(e["full"]["images_per_s"], 1),
               "gflops": round(e["full"]["gflops"], 2),
               "matmul_gflops": round(e["full"]["matmul_gflops_same_threads"], 1),
               "top1": round(e["full"]["top1"], 2)}
        for name, e in result["models"].items()}
    out = write_json(args.out, result)
    log(f"wrote {out}")
    print(json.dumps(result["summary"], indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
