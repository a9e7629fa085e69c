"""Dropping whole residual blocks vs pruning channels: accuracy and measured speed, ResNet-56.

Why: a CPU convolution pays for a pruned width in whole vectors of output channels, so
channel pruning at half the MACs measures 1.3-1.6x faster than dense (the headline), and
every channel allocation measured needs <= 0.25-0.31 of the MACs for 1.8x
(``results/latency_frontier*.json``). A dropped block (:mod:`amc.prune.depth`: exact as its
shortcut plus a constant) takes its whole time with it.

Recipe (the headline's ``--search-on adapted``): the pretrained CIFAR ResNet-56 is first
fine-tuned on our CIFAR-10 copy (1 epoch over 5,000 training images), the dense model every
network here starts from. Blocks are then dropped greedily: each step drops the block whose
removal keeps the best ``val`` top-1 (first ``--val-limit`` images, BN recalibrated on
``--recal-size`` training images). At each ``--targets`` MACs fraction, the block-dropped
network (the shortest greedy prefix under it, BN recalibrated) and uniform channel pruning at
the same MACs (what ``amc compare`` delivers: least-squares reconstruction and BN
recalibration), plus uniform ``flops:0.5`` (issue 15's reference), are scored on ``val`` and
``test`` before and after the same fine-tuning (1 epoch over the same 5,000 images, seeds 0 ..
``--seeds``-1, each with its own calibration draw), and hybrids (the first
``--hybrid-blocks`` greedy blocks dropped and the remaining third-stage blocks' inner widths cut
by ``--hybrid-ratio``: 64 -> 48, whole 16-lane vectors), then timed side by side with the dense
network (batch 1 and 64, ``--threads`` and 1 thread), ``--repeats`` times.

Writes ``results/block_drop.json`` (the greedy order with each step's ``val`` top-1; per
network: MACs ratio, test/val before and after fine-tuning, mean ± std over the seeds,
speed-ups at batch 64, mean ± std over the repeats) and its table ``results/block_drop.md``.
Stages are cached under ``--work`` (weights stay there, never in results/); a killed run
resumes.

    .venv/bin/python scripts/bench_block_drop.py    # ~55 min on 2 cores
"""

from __future__ import annotations

import argparse
import copy
import json
import os
from pathlib import Path

import torch

from amc.cost.macs import model_cost
from amc.cost.timing import torch_latencies
from amc.data.datasets import load_dataset, train_view
from amc.models.checkpoint import save_model
from amc.models.evaluate import top1
from amc.models.registry import create_model
from amc.prune.baselines import uniform
from amc.prune.budget import Budget
from amc.prune.depth import drop_blocks, droppable_blocks
from amc.prune.repair import recalibrate_bn
from amc.prune.scoring import Scorer, build_scorer
from amc.report.compare import evaluate_splits
from amc.report.compare_config import CompareConfig
from amc.train.loop import train
from amc.utils import allocator
from amc.utils.io import write_json
from amc.utils.provenance import cpu_model, git_commit, now, versions
from amc.utils.stats import format_mean_std, mean_std

MODEL = "resnet56"
INPUT = (3, 32, 32)


def finetune(net: torch.nn.Module, data, args, seed: int) -> torch.nn.Module:
    """``amc compare``'s fine-tuning recipe (:meth:`CompareConfig.finetune_config`) without
    distillation (the committed figures predate it as the default)."""
    cfg = CompareConfig(finetune_epochs=args.finetune_epochs, kd_weight=0.0)
    train(net, data, cfg.finetune_config(seed, args.threads))
    return net.eval()


def dense_ft(args, train_data, work: Path) -> torch.nn.Module:
    """The pretrained checkpoint fine-tuned once on ``train_data`` (cached in ``work``)."""
    path = work / "dense_ft.pt"
    if path.is_file():
        return create_model(MODEL, checkpoint=path).eval()
    net = create_model(MODEL, checkpoint=str(Path(args.models_dir) / f"{MODEL}-cifar10.th"))
    finetune(net, train_data, args, 0)
    save_model(net, path, MODEL, {"epochs": args.finetune_epochs})
    return net


def greedy_order(args, dense: torch.nn.Module, s: Scorer, work: Path, floor: float) -> dict:
    """Drop blocks one at a time, each step the one keeping the best ``val`` top-1, until the
    MACs fall to ``floor``; cached step by step."""
    path = work / "order.json"
    st = json.loads(path.read_text()) if path.is_file() else {"steps": []}
    names = droppable_blocks(dense)
    dense_macs = model_cost(dense, INPUT)[0]
    calib = s.calib[:args.recal_size]
    order = [step["block"] for step in st["steps"]]
    macs = model_cost(drop_blocks(dense, order), INPUT)[0] / dense_macs
    while macs > floor:
        best = None
        for b in (n for n in names if n not in order):
            net = recalibrate_bn(drop_blocks(dense, [*order, b]), [calib]).eval()
            v = top1(net, s.x, s.y)
            if best is None or v > best[1]:
                best = (b, v)
        order.append(best[0])
        macs = model_cost(drop_blocks(dense, order), INPUT)[0] / dense_macs
        st["steps"].append({"block": best[0], "val_top1_recalibrated": best[1],
                            "macs_ratio": macs})
        write_json(path, st)
        print(f"drop {best[0]}: val {best[1]:.1f}, MACs {macs:.3f}", flush=True)
    return st


def prefix_under(st: dict, target: float) -> list[str]:
    """The shortest greedy prefix at or under ``target`` of the dense MACs."""
    for k, step in enumerate(st["steps"]):
        if step["macs_ratio"] <= target + 1e-9:
            return [x["block"] for x in st["steps"][:k + 1]]
    raise SystemExit(f"bench_block_drop: error: the greedy order stops above {target} of the "
                     "MACs; lower --floor to at most the smallest --targets")


def table(doc: dict) -> str:
    """The networks as a markdown table (mean ± std over the seeds and the repeats)."""
    ts = list(doc["latency"][0])

    head = ("| network | MACs ratio | test before ft | test after ft | "
            + " | ".join(f"speed-up b64, {t[1:]} thread{'s' if t != 't1' else ''}" for t in ts)
            + " |")
    rows = [head, "|" + "---|" * (4 + len(ts))]
    for name, d in sorted(doc["networks"].items(), key=lambda kv: -kv[1]["macs_ratio"]):
        rows.append(f"| {name} | {d['macs_ratio']:.3f} | {format_mean_std(d['test_before'])} | "
                    f"{format_mean_std(d['test_after'])} | "
                    + " | ".join(format_mean_std(d[f"speedup_b64_{t}"]) for t in ts) + " |")
    return "\n".join(rows) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models-dir", default="../shared/models")
    p.add_argument("--data-dir", default="../shared/data")
    p.add_argument("--targets", type=float, nargs="+", default=[0.5, 0.55, 0.6, 0.7],
                   help="MACs fractions of the block-dropped networks")
    p.add_argument("--hybrid-blocks", type=int, nargs="*", default=[10, 11],
                   help="hybrids: the first N greedy blocks dropped and every third-stage "
                        "inner unit pruned at --hybrid-ratio")
    p.add_argument("--hybrid-ratio", type=float, default=0.25,
                   help="third-stage inner ratio of the hybrids (0.25: 64 -> 48 channels, "
                        "three whole 16-lane vectors)")
    p.add_argument("--floor", type=float, default=0.48, help="greedy order's last MACs ratio")
    p.add_argument("--seeds", type=int, default=2)
    p.add_argument("--val-limit", type=int, default=1000)
    p.add_argument("--recal-size", type=int, default=256)
    p.add_argument("--train-limit", type=int, default=5000)
    p.add_argument("--finetune-epochs", type=float, default=1.0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--runs", type=int, default=20, help="timed runs per model and batch")
    p.add_argument("--repeats", type=int, default=3, help="side-by-side timings of them all")
    p.add_argument("--work", default="runs/bench_block_drop")
    p.add_argument("--out", default="results/block_drop.json")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    allocator.settle()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    load0 = os.getloadavg()[0]
    ds = load_dataset("cifar10", data_dir=args.data_dir)
    train_data = train_view(ds, args.train_limit, 0)
    dense = dense_ft(args, train_data, work)
    scorers = {k: build_scorer(MODEL, data="cifar10", data_dir=args.data_dir,
                               val_limit=args.val_limit, recal_size=args.recal_size, seed=k,
                               net=copy.deepcopy(dense)) for k in range(args.seeds)}
    s0 = scorers[0]
    st = greedy_order(args, dense, s0, work, args.floor)
    dense_macs = model_cost(dense, INPUT)[0]
    nets: dict[str, dict] = {}

    def network(name: str, make) -> None:
        path = work / f"{name}.json"
        r = json.loads(path.read_text()) if path.is_file() else {"runs": {}}
        for k in range(args.seeds):
            if str(k) in r["runs"]:
                continue
            net = make(k)
            before = evaluate_splits(net, ds, INPUT)
            after = evaluate_splits(finetune(net, train_data, args, k), ds, INPUT)
            r["runs"][str(k)] = {"before": before, "after": after}
            write_json(path, r)
            print(name, k, before["test_top1"], "->", after["test_top1"], flush=True)
        runs = [r["runs"][str(k)] for k in range(args.seeds)]
        nets[name] = {"macs_ratio": runs[0]["before"]["macs"] / dense_macs,
                      "test_before": mean_std([x["before"]["test_top1"] for x in runs]),
                      "test_after": mean_std([x["after"]["test_top1"] for x in runs]),
                      "val_before": mean_std([x["before"]["val_top1"] for x in runs]),
                      "val_after": mean_std([x["after"]["val_top1"] for x in runs]), "runs": runs}

    models = {"dense": dense}
    for t in args.targets:
        order = prefix_under(st, t)
        name = f"blocks_{t:g}"

        def blocks_net(k: int, order=order) -> torch.nn.Module:
            calib = scorers[k].calib[:args.recal_size]
            return recalibrate_bn(drop_blocks(dense, order), [calib]).eval()

        network(name, blocks_net)
        nets[name]["dropped"] = order
        models[name] = blocks_net(0)
        macs = nets[name]["macs_ratio"]
        for budget in dict.fromkeys([f"flops:{macs:.4f}", "flops:0.5"]):
            uname = "uniform_" + budget.removeprefix("flops:")
            if uname in nets:
                continue

            def uniform_net(k: int, budget=budget) -> torch.nn.Module:
                s = scorers[k]
                return s.pruned(uniform(s, Budget.parse(budget)))

            network(uname, uniform_net)
            models[uname] = uniform_net(0)
    for n in args.hybrid_blocks:  # blocks dropped + third-stage widths in whole vectors
        order = [x["block"] for x in st["steps"][:n]]
        name = f"blocks{n}+layer3_{args.hybrid_ratio:g}"

        def hybrid_net(k: int, order=order) -> torch.nn.Module:
            s = scorers[k]
            r = [args.hybrid_ratio if u.name.startswith("layer3.") else 0.0
                 for u in s.pm.units]
            net = drop_blocks(s.pruned(r), order, copy_model=False)
            return recalibrate_bn(net, [s.calib[:args.recal_size]]).eval()

        network(name, hybrid_net)
        nets[name]["dropped"] = order
        models[name] = hybrid_net(0)
    # all networks timed side by side, --repeats times (2-thread timings here move by ~10 %
    # from one run to the next); cached per repeat
    lat_path = work / "latency.json"
    lat = json.loads(lat_path.read_text()) if lat_path.is_file() else []
    lat = [r for r in lat if set(next(iter(r.values()))["b64"]) == set(models)]
    while len(lat) < args.repeats:
        lat.append({f"t{t}": torch_latencies(models, INPUT, t, args.runs)
                    for t in dict.fromkeys((args.threads, 1))})
        write_json(lat_path, lat)
    for name, d in nets.items():
        for t in lat[0]:
            d[f"speedup_b64_{t}"] = mean_std([
                r[t]["b64"]["dense"]["median_ms"] / r[t]["b64"][name]["median_ms"]
                for r in lat[:args.repeats]])
    doc = {"command": "python scripts/bench_block_drop.py", "date": now(),
           "git_commit": git_commit(), "versions": versions(), "model": MODEL,
           "dense_ft": evaluate_splits(dense, ds, INPUT), "greedy": st["steps"],
           "networks": nets, "latency": lat[:args.repeats], "settings": vars(args),
           "machine": {"cpus": os.cpu_count(), "cpu": cpu_model(), "load_avg_start": load0,
                       "load_avg_end": os.getloadavg()[0]}}
    write_json(args.out, doc)
    Path(args.out).with_suffix(".md").write_text(table(doc))
    for name, d in nets.items():
        print(f"{name}: MACs {d['macs_ratio']:.3f}, test {d['test_before']['mean']:.2f} -> "
              f"{d['test_after']['mean']:.2f}, speed-up b64 "
              + ", ".join(f"{t} {d[f'speedup_b64_{t}']['mean']:.2f} ± "
                          f"{d[f'speedup_b64_{t}']['std'] or 0:.2f}x" for t in lat[0]))


if __name__ == "__main__":
    main()
