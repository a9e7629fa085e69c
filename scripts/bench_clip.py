"""Cost of AMC's clipping rule per env step: the continuous bisection vs the channel steps.

Every step of a search clips the agent's ratio to the range that still lets the budget be
met (:func:`amc.prune.budget.clip_range`); for ResNet-56 that is 27 steps per episode, on
the driver. The rule used to bisect ``[0, max_ratio]`` with 30 halvings (31 cost
evaluations); it now bisects the unit's channel steps (:meth:`PrunableModel.ratio_steps`,
about log2(channels) evaluations), which gives the same kept channels. Both run here on the
same random episodes, interleaved in rounds, one thread; the lower ends are checked equal
(same kept channels, within 1e-6).

Usage (from the project root)::

    .venv/bin/python scripts/bench_clip.py --out results/bench_clip.json
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np
import torch

from amc.models.registry import create_model
from amc.prune.budget import Budget, clip_range, resource_fn
from amc.prune.units import PrunableModel
from amc.utils.bisection import bisect
from amc.utils.io import write_json
from amc.utils.provenance import git_commit, now, versions


def continuous_low(pm: PrunableModel, budget: Budget, chosen: list[float], t: int,
                   max_ratio: float, f) -> float:
    """The rule's lower end as it was: 30 halvings of ``[0, max_ratio]``."""
    tail = [max_ratio] * (len(pm.units) - t - 1)
    return bisect(lambda r: f(chosen + [r] + tail) <= budget.fraction, 0.0, max_ratio,
                  iters=30)


def episodes(pm: PrunableModel, budget: Budget, n: int, max_ratio: float, seed: int
             ) -> list[list[float]]:
    """Random episodes clipped by the rule (the prefixes each step sees)."""
    rng = np.random.default_rng(seed)
    f = resource_fn(pm, budget)
    out = []
    for _ in range(n):
        chosen: list[float] = []
        for t in range(len(pm.units)):
            lo = clip_range(pm, budget, chosen, t, max_ratio, f)[0]
            chosen.append(max(lo, float(rng.uniform(0.0, max_ratio))))
        out.append(chosen)
    return out


def time_steps(fn, eps: list[list[float]], units: int) -> float:
    """Milliseconds per step of ``fn(chosen, t)`` over every step of ``eps``."""
    t0 = time.perf_counter()
    for e in eps:
        for t in range(units):
            fn(e[:t], t)
    return 1e3 * (time.perf_counter() - t0) / (len(eps) * units)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="resnet56")
    p.add_argument("--budgets", default="flops:0.3,flops:0.5,latency:0.65")
    p.add_argument("--episodes", type=int, default=10)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--max-ratio", type=float, default=0.8)
    p.add_argument("--out", default="results/bench_clip.json")
    a = p.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    load0 = os.getloadavg()[0]
    pm = PrunableModel(create_model(a.model), (3, 32, 32), "internal")
    n = len(pm.units)
    rows = {}
    for text in a.budgets.split(","):
        b = Budget.parse(text)
        f = resource_fn(pm, b)
        eps = episodes(pm, b, a.episodes, a.max_ratio, seed=0)
        worst = 0.0
        for e in eps:
            for t in range(n):
                lo = clip_range(pm, b, e[:t], t, a.max_ratio, f)[0]
                ref = continuous_low(pm, b, e[:t], t, a.max_ratio, f)
                assert pm.kept(t, lo) == pm.kept(t, ref), (text, t, lo, ref)
                worst = max(worst, abs(lo - ref))
        old, new = [], []
        for _ in range(a.rounds):  # interleaved: the same load for both
            old.append(time_steps(
                lambda c, t, b=b, f=f: continuous_low(pm, b, c, t, a.max_ratio, f), eps, n))
            new.append(time_steps(
                lambda c, t, b=b, f=f: clip_range(pm, b, c, t, a.max_ratio, f), eps, n))
        rows[text] = {"ms_per_step_bisection": statistics.median(old),
                      "ms_per_step_channel_steps": statistics.median(new),
                      "speedup": statistics.median(old) / statistics.median(new),
                      "ms_per_episode_saved": n * (statistics.median(old)
                                                   - statistics.median(new)),
                      "rounds_bisection": old, "rounds_channel_steps": new,
                      "max_abs_low_diff": worst, "same_kept_channels": True}
        print(f"{text}: {rows[text]['ms_per_step_bisection']:.3f} -> "
              f"{rows[text]['ms_per_step_channel_steps']:.3f} ms per step "
              f"({rows[text]['speedup']:.1f}x), max |lower end diff| {worst:.1e}")
    write_json(a.out, {"command": "python scripts/bench_clip.py", "made": now(),
                       "git_commit": git_commit(), "versions": versions(),
                       "model": a.model, "units": n, "max_ratio": a.max_ratio,
                       "episodes": a.episodes, "rounds": a.rounds, "threads": 1,
                       "budgets": rows,
                       "machine": {"cpus": os.cpu_count(), "load_avg_start": load0,
                                   "load_avg_end": os.getloadavg()[0]}})


if __name__ == "__main__":
    main()
