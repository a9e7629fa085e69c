"""Benchmark of the fine-tuning schedules on the pretrained CIFAR-10 ResNet-20.

Default (structured): a fixed uniform policy at 50 % FLOPs over the internal units (AMC's
residual-net mode), one-shot vs iterative (5 rounds; rounds at a small constant LR, and a
variant that rewinds each round's LR to the start of the cosine schedule) at the same total
epochs, plus the dense model fine-tuned for the same epochs. ``--unstructured``: 90 %
unstructured (global magnitude) sparsity, one-shot vs cubic gradual pruning (Zhu & Gupta) at
the same epochs.
Test top-1 (full 10,000-image test split) of each arm, and fine-tuning speed (images/s,
seconds per epoch) measured during training and, back to back, in a short timed run.

CPU-sized budget: a training subset (``--train-limit``) and few epochs. Each arm is an
``amc finetune`` run under ``--runs-dir``; a finished arm (its summary.json exists) is
skipped and a killed one resumes from its last checkpoint, so the script can be re-run.

Usage (from the project root)::

    nice -n 10 .venv/bin/python scripts/bench_finetune.py --train-limit 10000 --epochs 3
    nice -n 10 .venv/bin/python scripts/bench_finetune.py --unstructured --train-limit 10000 \
        --epochs 3
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shlex
import sys
import time
from pathlib import Path

import torch

from amc.train.finetune import FinetuneConfig, run_finetune
from amc.utils.io import write_json
from amc.utils.provenance import git_commit, now, versions


def arms(args: argparse.Namespace) -> dict[str, dict]:
    if args.unstructured:
        t = f"sparsity:{args.sparsity}"
        common = {"target": t, "first_last_max": args.first_last_max}
        return {"oneshot": {"schedule": "oneshot", **common},
                "cubic": {"schedule": "cubic", **common}}
    t = f"flops:{args.flops}"
    return {"dense": {"schedule": "oneshot"},
            "oneshot": {"schedule": "oneshot", "target": t, "units": "internal"},
            "iterative": {"schedule": "iterative", "target": t, "units": "internal",
                          "rounds": args.rounds, "max_drop": args.max_drop},
            # the same rounds, each replaying the cosine schedule from epoch 0 (LR rewinding)
            # instead of the small constant round LR
            "iterative_rewind": {"schedule": "iterative", "target": t, "units": "internal",
                                 "rounds": args.rounds, "max_drop": args.max_drop,
                                 "lr_rewind": 0.0}}


def speed_test(paths: dict[str, Path], data, steps: int, batch: int, train_limit: int,
               rounds: int = 2) -> dict:
    """Training throughput of saved models, timed back to back in alternating rounds."""
    from amc.models.registry import create_model

    x, y = data.tensors("train")
    models = {k: create_model("resnet20", checkpoint=p) for k, p in paths.items()}
    out: dict[str, list[float]] = {k: [] for k in models}
    for _ in range(rounds):
        for k, m in models.items():
            opt = torch.optim.SGD(m.parameters(), lr=1e-3, momentum=0.9)
            m.train()
            t = time.perf_counter()
            for s in range(steps):
                i = (s * batch) % (len(y) - batch)
                loss = torch.nn.functional.cross_entropy(m(x[i:i + batch]), y[i:i + batch])
                opt.zero_grad()
                loss.backward()
                opt.step()
            out[k].append(steps * batch / (time.perf_counter() - t))
    return {k: {"images_per_s": max(v), "seconds_per_epoch_train_limit": train_limit / max(v),
                "seconds_per_epoch_full_train": len(y) / max(v), "rounds_images_per_s": v}
            for k, v in out.items()}


def plot(path: Path, res: dict, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    names = [k for k, v in res.items() if "test_top1" in v]
    a.bar(names, [res[k]["test_top1"] for k in names], color="tab:blue")
    for i, k in enumerate(names):
        a.text(i, res[k]["test_top1"], f"{res[k]['test_top1']:.2f}", ha="center", va="bottom")
    lo = min([res[k]["test_top1"] for k in names] + [100])
    a.set_ylim(max(0, lo - 10), 100)
    a.set_ylabel("test top-1 (%)")
    a.set_title("after fine-tuning")
    for k in names:
        rows = res[k].get("curve", [])
        b.plot([r[0] for r in rows], [r[1] for r in rows], marker=".", label=k)
    b.set_xlabel("epochs trained")
    b.set_ylabel("val top-1 (%)")
    b.set_title("val top-1 during the run")
    b.legend()
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", default="../shared/models/resnet20-cifar10.th")
    p.add_argument("--data-dir", default="../shared/data")
    p.add_argument("--unstructured", action="store_true", help="90 %% unstructured: one-shot "
                   "vs cubic")
    p.add_argument("--flops", type=float, default=0.5, help="FLOPs budget (structured)")
    p.add_argument("--sparsity", type=float, default=0.9, help="weight sparsity "
                   "(unstructured)")
    p.add_argument("--first-last-max", type=float, default=0.5,
                   help="sparsity limit of the first conv and the classifier (unstructured)")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--max-drop", type=float, default=-1.0, help="rollback threshold of the "
                   "iterative arm (negative: off, so every arm trains the same epochs)")
    p.add_argument("--train-limit", type=int, default=10000)
    p.add_argument("--val-limit", type=int, default=1000)
    p.add_argument("--test-limit", type=int, default=None, help="first N test images (smoke "
                   "runs only; default: all 10,000)")
    p.add_argument("--epochs", type=float, default=3.0)
    p.add_argument("--lr", type=float, default=0.01)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--speed-steps", type=int, default=15, help="timed training steps per model"
                   " in the back-to-back speed test (0: skip)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--runs-dir", default=None)
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    tag = "finetune_resnet20" + ("_unstructured" if args.unstructured else "")
    runs = Path(args.runs_dir or f"runs/bench_{tag}")
    out = Path(args.out or f"results/{tag}.json")
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    doc = {"command": " ".join(shlex.quote(a) for a in [sys.executable, *sys.argv]),
           "date": now(), "git_commit": git_commit(), "versions": versions(),
           "machine": {"cpus": os.cpu_count(), "threads": args.threads,
                       "load_start": os.getloadavg()},
           "budget": {"train_limit": args.train_limit, "val_limit": args.val_limit,
                      "test_limit": args.test_limit,
                      "epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr,
                      "note": "CPU-sized budget: a training subset and few epochs"},
           "arms": {}}
    summaries = {}
    for name, over in arms(args).items():
        cfg = FinetuneConfig(model="resnet20", checkpoint=args.checkpoint, data="cifar10",
                             data_dir=args.data_dir, train_limit=args.train_limit,
                             val_limit=args.val_limit, test_limit=args.test_limit,
                             epochs=args.epochs, lr=args.lr,
                             batch_size=args.batch_size, seed=args.seed, threads=args.threads,
                             test_every_epoch=False, out=str(runs / name),
                             **{"kd_weight": 0.0, **over})  # the committed arms: no teacher
        run = runs / name
        if (run / "summary.json").is_file():
            print(f"[{name}] done before: {run}/summary.json", flush=True)
            s = json.loads((run / "summary.json").read_text())
        else:
            resume = (run / "config.json").is_file()
            print(f"[{name}] {'resuming' if resume else 'starting'} {over}", flush=True)
            t = time.perf_counter()
            s = run_finetune(cfg, resume=resume)
            s["wall_seconds_this_session"] = time.perf_counter() - t
            write_json(run / "summary.json", s)
        summaries[name] = s
        f = s["final"]
        doc["arms"][name] = {
            "config": {k: v for k, v in s["config"].items() if k in over or k in (
                "epochs", "round_epochs", "round_lr", "lr_rewind", "prune_end", "scope")},
            "test_top1": f["test_top1"], "val_top1": f["val_top1"],
            "start_val_top1": s["start_val_top1"], "epochs_trained": s["epochs_trained"],
            "macs_ratio": f["macs_ratio"], "params_ratio": f["params_ratio"],
            "weight_sparsity": f["weight_sparsity"], "nonzero_params": f["nonzero_params"],
            "rounds": s["rounds"], "rollbacks": s["rollbacks"],
            "prune_events": s["prune_events"], "speed_during_training": s["speed"],
            "curve": [], "run_dir": str(run)}
        with open(run / "metrics.csv", newline="") as fh:
            doc["arms"][name]["curve"] = [[float(r["run_epoch"]), float(r["val_top1"])]
                                          for r in csv.DictReader(fh)]
        print(f"[{name}] test top-1 {f['test_top1']:.2f}%  MACs {f['macs_ratio']:.3f}  weight "
              f"sparsity {f['weight_sparsity']:.3f}  ({time.perf_counter() - t0:.0f} s so far)",
              flush=True)
        write_json(out, doc)
    if args.speed_steps:
        from amc.data.datasets import load_dataset

        data = load_dataset("cifar10", data_dir=args.data_dir)
        paths = {"dense_checkpoint": Path(args.checkpoint)}
        paths.update({k: runs / k / "model.pt" for k in summaries})
        doc["speed_back_to_back"] = speed_test(paths, data, args.speed_steps, args.batch_size,
                                               args.train_limit)
        doc["speed_back_to_back_note"] = (
            "training steps (forward, backward, SGD step) at the batch size, timed in two "
            "alternating rounds, best round kept; unstructured models keep the dense shapes "
            "(zeros are still multiplied), so they train at the dense speed")
    doc["machine"]["load_end"] = os.getloadavg()
    doc["seconds"] = time.perf_counter() - t0
    names = list(doc["arms"])
    doc["summary"] = {k: doc["arms"][k]["test_top1"] for k in names}
    if args.unstructured:
        doc["verdict"] = ("cubic >= oneshot" if doc["summary"]["cubic"] >=
                          doc["summary"]["oneshot"] else "cubic < oneshot")
    else:
        doc["verdict"] = "; ".join(
            f"{k} {'>=' if doc['summary'][k] >= doc['summary']['oneshot'] else '<'} oneshot"
            for k in ("iterative", "iterative_rewind"))
    write_json(out, doc)
    title = (f"ResNet-20, CIFAR-10 (JPEG), {args.train_limit} train images, {args.epochs:g} "
             f"epochs per arm: " + ("90 % unstructured" if args.unstructured
                                    else f"{args.flops:g} FLOPs, internal units"))
    plot(out.with_suffix(".png"), doc["arms"], title)
    print(json.dumps(doc["summary"], indent=1), doc["verdict"], f"-> {out}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
