"""AMC search vs the uniform baseline on a CIFAR-10 ResNet, no fine-tuning.

Runs (or resumes) ``amc search`` in a run directory, then scores the best AMC policy and the
uniform policy on the full ``val`` split and on ``test``, and writes
``results/search_<model>.json`` and ``results/search_<model>.png`` (the learning curve).

    .venv/bin/python scripts/bench_search.py --model resnet20 --episodes 300
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import torch

from amc.agents import SearchConfig, run_or_resume
from amc.data.datasets import load_dataset
from amc.models.evaluate import top1
from amc.models.registry import create_model
from amc.prune.policy import load_policy
from amc.prune.scoring import build_scorer
from amc.utils.io import write_json
from amc.utils.provenance import git_commit, now, versions


def _search_wall(run_dir: Path) -> float | None:
    """Seconds from the search's start to its last episode (``run_seconds`` of the last row;
    a resumed search counts from its resumption)."""
    import csv

    with open(run_dir / "episodes.csv", newline="") as f:
        t = [float(r["run_seconds"]) for r in csv.DictReader(f) if r.get("run_seconds")]
    return t[-1] if t else None


def _mean_images(run_dir: Path) -> float | None:
    """Mean ``val`` images scored per episode (racing scores hopeless policies on fewer)."""
    import csv

    with open(run_dir / "episodes.csv", newline="") as f:
        n = [int(r["images"]) for r in csv.DictReader(f) if r.get("images")]
    return sum(n) / len(n) if n else None


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="resnet20")
    p.add_argument("--models-dir", default="../shared/models")
    p.add_argument("--data-dir", default="../shared/data")
    p.add_argument("--episodes", type=int, default=300)
    p.add_argument("--warmup", type=int, default=100)
    p.add_argument("--val-limit", type=int, default=1000,
                   help="val images scored per episode (the final comparison uses all val)")
    p.add_argument("--budget", default="flops:0.5")
    p.add_argument("--bn-recalib", action=argparse.BooleanOptionalAction, default=True,
                   help="re-estimate BatchNorm statistics of every pruned network (search and "
                        "final scoring alike)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--runs", default="runs")
    p.add_argument("--results", default="results")
    a = p.parse_args()
    ckpt = str(Path(a.models_dir) / f"{a.model}-cifar10.th")
    run_dir = Path(a.runs) / f"bench_search_{a.model}"
    cfg = SearchConfig(model=a.model, checkpoint=ckpt, data="cifar10", data_dir=a.data_dir,
                       val_limit=a.val_limit, units="internal", budget=a.budget, reward="err",
                       bn_recalib=a.bn_recalib,
                       episodes=a.episodes, warmup_episodes=a.warmup, seed=a.seed,
                       threads=a.threads, checkpoint_every=10, out=str(run_dir))
    summary = run_or_resume(cfg)
    torch.set_num_threads(2)
    data = load_dataset("cifar10", data_dir=a.data_dir)
    model = create_model(a.model, checkpoint=ckpt)
    kw = {**cfg.scorer_kwargs(), "val_limit": None}
    scorer = build_scorer(**kw)  # the same pruning and repair as in the search
    out: dict = {"command": " ".join(sys.argv), "date": now(), "git_commit": git_commit(),
                 "versions": versions(), "model": a.model, "data": "cifar10 (JPEG copy)",
                 "units": "internal", "budget": a.budget, "reward": "err", "fine_tuning": None,
                 "bn_recalib": a.bn_recalib, "calib_images": cfg.calib_size,
                 "episodes": summary["episodes"], "warmup_episodes": a.warmup,
                 "val_images_per_episode": a.val_limit, "seed": a.seed,
                 "seconds_per_episode": summary["seconds_per_episode"],
                 "search_wall_seconds": _search_wall(run_dir),
                 "search_images_per_episode": _mean_images(run_dir),
                 "search_config": json.loads((run_dir / "config.json").read_text()),
                 "search_started_at_commit": json.loads(
                     (run_dir / "run.json").read_text()).get("git_commit"),
                 "first_episode_beating_uniform_on_search_val":
                     summary["first_episode_beating_uniform"]}
    dense = {s: top1(model, *data.tensors(s)) for s in ("val", "test")}
    out["dense"] = dense
    for name in ("best_policy", "uniform_policy"):
        pol = load_policy(run_dir / f"{name}.json")
        pruned = scorer.pruned(pol.ratios_for(u.name for u in scorer.pm.units))
        key = "amc" if name == "best_policy" else "uniform"
        out[key] = {"val_top1": top1(pruned, *data.tensors("val")),
                    "test_top1": top1(pruned, *data.tensors("test")),
                    "macs_ratio": pol.achieved["macs_ratio"],
                    "params_ratio": pol.achieved["params_ratio"],
                    "ratios": {u["name"]: u["ratio"] for u in pol.units},
                    "found_at_episode": pol.provenance.get("episode")}
    out["amc_minus_uniform_test"] = out["amc"]["test_top1"] - out["uniform"]["test_top1"]
    out["amc_minus_uniform_val"] = out["amc"]["val_top1"] - out["uniform"]["val_top1"]
    res = Path(a.results)
    target = res / f"search_{a.model}.json"
    if target.is_file():  # what the run before found, next to what this one found
        old = json.loads(target.read_text())
        out["previous"] = {k: old.get(k) for k in (
            "date", "git_commit", "episodes", "seconds_per_episode", "search_wall_seconds",
            "amc_minus_uniform_test", "amc_minus_uniform_val")}
    write_json(target, out)
    shutil.copy(run_dir / "learning_curve.png", res / f"search_{a.model}.png")
    print(json.dumps({k: out[k] for k in ("amc_minus_uniform_test", "amc_minus_uniform_val")}))


if __name__ == "__main__":
    main()
