"""How the search scales with Ray workers, separated from this machine's two cores.

1. ``sleep``: a benchmark env whose episodes have the pruning env's shape (``--units`` steps,
   11 features, one action; each step but the last busy for ``--step-ms`` of CPU in Python,
   as the ResNet-56 env's budget clipping) and sleep ``--sleep`` seconds at their last step
   (no CPU), run on 1, 2, 4, ... 32 Ray actors with the real agent (AMC's DDPG, one gradient
   update per transition, the reward baseline), interleaved per count: each env in its own
   actor (``--envs-on workers``) with the agent's updates between rounds of episodes and
   overlapping the actors' evaluation, and the envs on the driver sending only their last
   step to the actors (``--envs-on driver``, the search's default; overlapping updates):
   episodes/s per actor count against ``N x`` the 1-actor rate, the driver's update seconds
   per round and its share of the wall time (updates, transfers, driver-side steps), and
   from which count the updates outlast the evaluation (``driver_bound``).
2. ``real``: real ResNet-20 episodes (``internal`` units, ``flops:0.5``, the fast scorer):
   one search with 2 Ray workers (the default: one episode in flight per worker; also with
   the envs in the actors, and with 2 episodes in flight per worker, ``--envs-per-worker 2``)
   against 2 independent single-process searches run at the same time (the hardware's own
   ceiling on 2 cores), episodes/s measured over each run's episodes after the first
   ``--skip`` (start-up excluded); ``--real-repeats`` times, interleaved, the ratios' mean ±
   std over the repeats.

Writes ``results/bench_ray_scaling.json`` and ``results/bench_ray_scaling.png``.

    .venv/bin/python scripts/bench_ray_scaling.py
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import queue
import subprocess
import sys
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import ray
import torch
from stable_baselines3.common.callbacks import (
    BaseCallback,
    CallbackList,
    StopTrainingOnMaxEpisodes,
)

from amc.agents.config import SearchConfig
from amc.agents.ddpg import attach_noise, build_agent
from amc.agents.pooled_vec_env import PooledVecEnv
from amc.agents.ray_runtime import ray_session
from amc.agents.ray_vec_env import RayVecEnv
from amc.agents.updates import EpisodeUpdates, OverlapUpdates
from amc.agents.wrappers import RewardBaseline
from amc.utils.io import write_json
from amc.utils.provenance import git_commit, now, versions


def busy(seconds: float) -> None:
    """Hold the CPU (and the GIL) for ``seconds``."""
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


@ray.remote
class Sleeper:
    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


class SleepPool:
    """``n`` sleeping actors shared by driver-side envs (each sleep on the next idle one)."""

    def __init__(self, n: int):
        self.actors = [Sleeper.options(num_cpus=0.01).remote() for _ in range(n)]
        self.idle: queue.Queue = queue.Queue()
        for a in self.actors:
            self.idle.put(a)

    def __call__(self, seconds: float) -> None:
        a = self.idle.get()
        try:
            ray.get(a.sleep.remote(seconds))
        finally:
            self.idle.put(a)

    def close(self) -> None:
        for a in self.actors:
            ray.kill(a)


class SleepEnv(gym.Env):
    """Episodes of ``units`` steps whose last step sleeps ``sleep`` seconds (on ``pool``'s
    actors when given) and whose other steps are busy for ``step_s`` each."""

    observation_space = gym.spaces.Box(0.0, 1.0, (11,), np.float32)
    action_space = gym.spaces.Box(0.0, 1.0, (1,), np.float32)

    def __init__(self, units: int, sleep: float, step_s: float = 0.0,
                 pool: SleepPool | None = None):
        self.units, self.sleep, self.t = units, sleep, 0
        self.step_s, self.pool = step_s, pool

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return np.zeros(11, np.float32), {}

    def step(self, action):
        self.t += 1
        obs = np.full(11, self.t / self.units, np.float32)
        if self.t < self.units:
            busy(self.step_s)
            return obs, 0.0, False, False, {}
        (self.pool or time.sleep)(self.sleep)
        r = float(-abs(float(np.asarray(action).reshape(-1)[0]) - 0.5))
        return obs, r, True, False, {"episode_result": {"reward": r}}


class SleepEnvFactory:
    def __init__(self, units: int, sleep: float, step_s: float = 0.0):
        self.units, self.sleep, self.step_s = units, sleep, step_s

    def __call__(self) -> SleepEnv:
        return SleepEnv(self.units, self.sleep, self.step_s)


class EpisodeClock(BaseCallback):
    """Wall-clock time of every finished episode, and the time spent outside env steps."""

    def __init__(self):
        super().__init__(verbose=0)
        self.ends: list[float] = []

    def _on_step(self) -> bool:
        now_ = time.perf_counter()
        self.ends += [now_] * int(np.sum(self.locals["dones"]))
        return True


def sleep_run(n: int, args, overlap: bool, envs_on: str = "workers") -> dict:
    cfg = SearchConfig(warmup_episodes=1, episodes=args.rounds * n, seed=0, workers=n)
    step_s = args.step_ms / 1e3
    if envs_on == "driver":
        pool = SleepPool(n)
        venv = PooledVecEnv([lambda: SleepEnv(args.units, args.sleep, step_s, pool)
                             for _ in range(n)], actors=pool)
    else:
        venv = RayVecEnv(SleepEnvFactory(args.units, args.sleep, step_s), n, seed=0,
                         threads=1, num_cpus=0.01)
    try:
        inner = OverlapUpdates(venv, args.units) if overlap else venv
        env = RewardBaseline(inner, cfg.baseline_alpha)
        model, noise = build_agent(cfg, env, args.units)
        updates = EpisodeUpdates(inner if overlap else None)
        clock = EpisodeClock()
        stop = StopTrainingOnMaxEpisodes(max_episodes=args.rounds)
        t0 = time.perf_counter()
        model.learn(total_timesteps=10 * args.rounds * n * args.units,
                    callback=CallbackList([attach_noise(model, noise), updates, clock, stop]))
        wall = time.perf_counter() - t0
    finally:
        venv.close()
    ends = sorted(clock.ends)
    first = ends[n - 1]  # the first round (start-up, warm-up) is left out
    done = len(ends) - n
    rate = done / (ends[-1] - first) if done > 0 else 0.0
    rounds = max(1, updates.made // (n * args.units))
    return {"actors": n, "envs_on": envs_on, "overlap": overlap, "episodes": len(ends),
            "wall_s": wall,
            "episodes_per_s": rate, "ideal_episodes_per_s": n / args.sleep,
            "agent_updates": updates.made,
            "update_seconds_per_round": updates.seconds / rounds,
            "update_ms": 1e3 * updates.seconds / max(1, updates.made)}


def _rate(run: Path, skip: int) -> tuple[int, float]:
    with open(run / "episodes.csv", newline="") as f:
        t = [float(r["run_seconds"]) for r in csv.DictReader(f)]
    t = t[skip:]
    return len(t) - 1, (len(t) - 1) / (t[-1] - t[0])


REAL = {"ray_2_workers": ["--workers", "2"],
        "ray_2_workers_envs_on_workers": ["--workers", "2", "--envs-on", "workers"],
        "ray_2_workers_2_envs_each": ["--workers", "2", "--envs-per-worker", "2"]}
"""The 2-worker searches of a repeat (2 x ``--real-episodes`` episodes each): the default
(envs on the driver, one episode in flight per worker), each env in its own actor, and 2
episodes in flight per worker."""


def real_repeat(args, work: Path) -> dict:
    """One repeat: the three 2-worker searches, then the 2 independent searches together
    (each run's directory is kept: a rerun reuses the runs it finds finished)."""
    ckpt = str(Path(args.models_dir) / "resnet20-cifar10.th")
    common = ["--model", "resnet20", "--checkpoint", ckpt, "--data", "cifar10", "--data-dir",
              args.data_dir, "--units", "internal", "--budget", "flops:0.5", "--val-limit",
              "1000", "--warmup-episodes", "10", "--threads", "1"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    amc = [sys.executable, "-m", "amc.cli", "search"]
    out = {}
    for name, flags in REAL.items():
        run = work / name
        if not (run / "summary.json").is_file():
            subprocess.run([*amc, *common, "--episodes", str(2 * args.real_episodes), *flags,
                            "--force", "--out", str(run)], env=env, check=True)
        n, r = _rate(run, args.skip)
        out[name] = {"episodes": n, "episodes_per_s": r}
    dirs = [work / f"solo{i}" for i in range(2)]
    if not all((d / "summary.json").is_file() for d in dirs):
        procs = [subprocess.Popen([*amc, *common, "--episodes", str(args.real_episodes),
                                   "--seed", str(i), "--force", "--out", str(d)], env=env)
                 for i, d in enumerate(dirs)]
        for p in procs:
            if p.wait() != 0:
                raise SystemExit("an independent search failed")
    rates = [_rate(d, args.skip) for d in dirs]
    out["two_processes"] = {"episodes": sum(n for n, _ in rates),
                            "episodes_per_s": sum(r for _, r in rates)}
    for name in REAL:
        out[f"{name}_over_processes"] = (out[name]["episodes_per_s"]
                                         / out["two_processes"]["episodes_per_s"])
    return out


def real_runs(args, work: Path) -> dict:
    """``--real-repeats`` repeats (interleaved: each repeat runs every search once), and the
    mean ± std over them of each 2-worker search's rate over the independent searches'."""
    reps = [real_repeat(args, work / f"rep{k}") for k in range(args.real_repeats)]
    out: dict = {"repeats": reps}
    for name in REAL:
        v = [r[f"{name}_over_processes"] for r in reps]
        out[f"{name}_over_processes"] = {"mean": float(np.mean(v)), "std": float(np.std(v)),
                                         "values": v}
    return out


def plot(doc: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    for (envs_on, overlap), label in (
            (("driver", True), "envs on the driver, updates overlap evaluation"),
            (("workers", True), "envs in the actors, updates overlap evaluation"),
            (("workers", False), "envs in the actors, updates between rounds")):
        rows = [r for r in doc["sleep"]["rows"]
                if r["overlap"] == overlap and r.get("envs_on", "workers") == envs_on]
        if not rows:
            continue
        n = [r["actors"] for r in rows]
        ax.plot(n, [r["episodes_per_s"] for r in rows], "o-", label=label)
    rows = [r for r in doc["sleep"]["rows"] if r["overlap"]]
    base = rows[0]["episodes_per_s"]
    ax.plot(n, [base * k for k in n], "--", color="gray", label="N x 1-actor rate")
    ax.plot(n, [0.8 * base * k for k in n], ":", color="gray", label="0.8 N x 1-actor rate")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log", base=2)
    ax.set_xlabel("Ray actors")
    ax.set_ylabel("episodes / s")
    ax.set_title(f"Sleeping env ({doc['sleep']['sleep_s']} s per episode, "
                 f"{doc['sleep']['units']} steps), real DDPG agent")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def sleep_doc(args) -> dict:
    """The sleeping runs, interleaved per actor count, and their summary."""
    rows = []
    with ray_session(num_cpus=max(args.actors) + 1):
        for n in args.actors:
            # interleaved: the same load for every schedule
            for envs_on, overlap in SCHEDULES:
                rows.append(sleep_run(n, args, overlap, envs_on))
                r = rows[-1]
                print(f"{n} actors, envs on {envs_on}, overlap {overlap}: "
                      f"{r['episodes_per_s']:.2f} episodes/s (ideal "
                      f"{r['ideal_episodes_per_s']:.2f}; updates "
                      f"{r['update_seconds_per_round']:.2f} s/round)", flush=True)
    for envs_on, overlap in SCHEDULES:
        mine = [r for r in rows if r["overlap"] == overlap and r["envs_on"] == envs_on]
        base = mine[0]["episodes_per_s"]
        for r in mine:
            r["scaling_vs_1_actor"] = r["episodes_per_s"] / (base * r["actors"])
            # per round the driver waits `sleep` for the actors; the rest of a round is its own
            round_s = r["actors"] / r["episodes_per_s"]
            r["driver_seconds_per_round"] = round_s - args.sleep
            # the driver limits the rate once its updates outlast the actors' evaluation
            r["driver_bound"] = r["update_seconds_per_round"] > args.sleep
    return {"command": "python scripts/bench_ray_scaling.py", "date": now(),
           "git_commit": git_commit(), "versions": versions(),
           "sleep": {"sleep_s": args.sleep, "units": args.units, "rounds": args.rounds,
                     "step_ms": args.step_ms,
                     "agent": "AMC DDPG (hidden 300, batch 64, one update per transition)",
                     "schedules": {"driver": "envs on the driver, their last step on the "
                                   "actors, updates overlapping it (the search's default)",
                                   "overlap": "each env in its own actor, updates while the "
                                   "actors evaluate the next episodes' last step",
                                   "between": "each env in its own actor, updates between "
                                   "rounds of episodes"},
                     "rows": rows,
                     "min_scaling_up_to_16": {
                         name: min(r["scaling_vs_1_actor"] for r in rows
                                   if r["actors"] <= 16 and r["overlap"] == o
                                   and r["envs_on"] == e)
                         for name, (e, o) in SCHEDULE_NAMES.items()}}}


SCHEDULE_NAMES = {"driver": ("driver", True), "overlap": ("workers", True),
                  "between": ("workers", False)}
SCHEDULES = list(SCHEDULE_NAMES.values())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--actors", type=int, nargs="+", default=[1, 2, 4, 8, 16, 32])
    p.add_argument("--units", type=int, default=20, help="steps per episode (ResNet-56: 27)")
    p.add_argument("--sleep", type=float, default=2.0, help="seconds per episode")
    p.add_argument("--rounds", type=int, default=4, help="episodes per actor")
    p.add_argument("--step-ms", type=float, default=1.0,
                   help="CPU per step but the last (the ResNet-56 env's budget clipping)")
    p.add_argument("--real-episodes", type=int, default=80, help="per process / worker")
    p.add_argument("--real-repeats", type=int, default=3,
                   help="repeats of the real runs (the ratios' mean ± std)")
    p.add_argument("--skip", type=int, default=10, help="episodes left out at the start")
    p.add_argument("--models-dir", default="../shared/models")
    p.add_argument("--data-dir", default="../shared/data")
    p.add_argument("--work", default="runs/bench_ray_scaling")
    p.add_argument("--out", default="results/bench_ray_scaling.json")
    p.add_argument("--no-real", action="store_true",
                   help="skip the real runs (an existing --out keeps its own)")
    p.add_argument("--no-sleep", action="store_true",
                   help="skip the sleeping runs (an existing --out keeps its own)")
    args = p.parse_args()
    torch.set_num_threads(1)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    load0 = os.getloadavg()[0]
    old = json.loads(Path(args.out).read_text()) if Path(args.out).is_file() else {}
    if args.no_sleep and "sleep" in old:
        doc = {**old, "command": "python scripts/bench_ray_scaling.py --no-sleep", "date": now(),
               "git_commit": git_commit(), "versions": versions(),
               "sleep": {**old["sleep"], "from": f"{old['git_commit']} ({old['date']})"}}
    else:
        doc = sleep_doc(args)
    if not args.no_real:
        doc["real"] = real_runs(args, work)
    elif "real" in old:
        doc["real"] = {**old["real"], "from": f"{old['git_commit']} ({old['date']})"}
    doc["machine"] = {"cpus": os.cpu_count(), "load_avg_start": load0,
                      "load_avg_end": os.getloadavg()[0]}
    write_json(args.out, doc)
    plot(doc, Path(args.out).with_suffix(".png"))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
