"""Episodes per second of a ResNet-20 CIFAR-10 AMC search: 1 worker (in-process, 1 thread)
vs N Ray workers (1 thread each), same episode count; writes ``results/bench_ray.json``.

    .venv/bin/python scripts/bench_ray.py --episodes 40 --workers 2

Where the time goes is recorded too: Ray start-up, actor start-up (each actor imports torch
and builds its env from the object store), time inside the envs, and the rest (agent
updates, transfers).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

from amc.agents import SearchConfig, run_search
from amc.utils.provenance import git_commit, now, versions


def one(cfg: SearchConfig) -> dict:
    shutil.rmtree(cfg.out, ignore_errors=True)
    t = time.perf_counter()
    s = run_search(cfg)
    total = time.perf_counter() - t
    learn = s["wall_seconds_this_run"]
    env_time = s["search_seconds"] / max(1, cfg.workers)  # envs run side by side
    return {"workers": cfg.workers, "episodes": s["episodes"], "total_seconds": total,
            "learn_seconds": learn, "episodes_per_second": s["episodes"] / learn,
            "setup_seconds": total - learn, "mean_episode_seconds_in_env":
                s["search_seconds"] / max(1, s["episodes"]),
            "env_seconds_per_worker": env_time,
            "other_seconds_in_learn": learn - env_time, "worker_restarts": s["worker_restarts"]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--episodes", type=int, default=40)
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--val-limit", type=int, default=1000)
    p.add_argument("--models-dir", default="../shared/models")
    p.add_argument("--data-dir", default="../shared/data")
    p.add_argument("--runs", default="runs/bench_ray")
    p.add_argument("--out", default="results/bench_ray.json")
    a = p.parse_args()
    base = dict(model="resnet20", checkpoint=str(Path(a.models_dir) / "resnet20-cifar10.th"),
                data="cifar10", data_dir=a.data_dir, units="internal", budget="flops:0.5",
                val_limit=a.val_limit, bn_recalib=True, episodes=a.episodes,
                warmup_episodes=a.warmup, threads=1, checkpoint_every=10 ** 6)
    r1 = one(SearchConfig(**base, workers=0, out=f"{a.runs}/w1"))
    rn = one(SearchConfig(**base, workers=a.workers, out=f"{a.runs}/w{a.workers}"))
    out = {"command": " ".join(sys.argv), "date": now(), "git_commit": git_commit(),
           "versions": versions(), "cpus": os.cpu_count(),
           "setup": "ResNet-20, CIFAR-10 (JPEG copy), internal units, flops:0.5, BN "
                    f"recalibration, {a.val_limit} val images per episode, 1 torch thread per "
                    "worker; the 1-worker run is in-process (no Ray)",
           "one_worker": r1, f"{a.workers}_workers": rn,
           "speedup": rn["episodes_per_second"] / r1["episodes_per_second"],
           "speedup_including_setup": r1["total_seconds"] / rn["total_seconds"]}
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps({k: out[k] for k in ("speedup", "speedup_including_setup")}))


if __name__ == "__main__":
    main()
