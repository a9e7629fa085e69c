"""What overlapping the agent's updates with the scoring saves in a one-process search.

A search without Ray workers makes one gradient update per stored transition after each
episode. Since this change its updates run in a thread while the next episode scores
when the scoring leaves a core free (:func:`amc.agents.updates.overlaps`: one torch thread
on a machine of two or more cores, ``amc search``'s default, or a GPU). This benchmark runs
the same search (``--model``, flops:0.5, ``internal`` units, today's scorer defaults, cheap
warm start, one thread) with the overlap and without it (``--no-overlap-updates``),
``--repeats`` times each, interleaved (on, off, off, on, ...), and records per run the seconds
per episode, the mean scoring seconds per episode (prune + repair + evaluation, from
``episodes.csv``), the rest (the episode's wall time beyond its scoring: the env's cheap
steps, the agent's actions and, without the overlap, its updates) and the updates' own
seconds. The two searches try different policies after the first learning episode (the
policy acts one episode behind its updates with the overlap), so their scoring seconds
differ a little; the rest is what the overlap changes.

    .venv/bin/python scripts/bench_overlap.py --out results/bench_overlap.json
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import torch

from amc.agents import SearchConfig, run_search
from amc.agents.monitor import read_rows
from amc.utils import allocator
from amc.utils.io import write_json
from amc.utils.provenance import cpu_model, git_commit, now, versions
from amc.utils.stats import format_mean_std, mean_std

SCORING = ("prune_s", "repair_s", "eval_s")


def one_search(args, model: str, overlap: bool, out: Path) -> dict:
    """One search of ``model`` with or without the overlap; its timings."""
    cfg = SearchConfig(model=model, checkpoint=str(Path(args.models_dir) / f"{model}-cifar10.th"),
                       data="cifar10", data_dir=args.data_dir, val_limit=1000,
                       units="internal", budget="flops:0.5", episodes=args.episodes,
                       warmup_episodes=args.warmup, seed=args.seed, threads=1,
                       overlap_updates=overlap, rescore_top=0, out=str(out), force=True)
    s = run_search(cfg)
    rows = read_rows(out / "episodes.csv")
    scoring = sum(float(r[k]) for r in rows for k in SCORING) / len(rows)
    per = float(rows[-1]["run_seconds"]) / len(rows)  # the episodes' wall time
    return {"model": model, "overlap": overlap, "episodes": s["episodes"],
            "seconds_per_episode": per, "scoring_seconds_per_episode": scoring,
            "rest_seconds_per_episode": per - scoring,
            "update_seconds_per_episode": s["agent_update_seconds"] / s["episodes"],
            "agent_updates": s["agent_updates_this_run"],
            "update_rounds_overlapped": s["update_rounds_overlapped"],
            "best_val_top1": s["best_val_top1"], "load_avg_end": os.getloadavg()[0]}


def summary(runs: list[dict]) -> dict:
    """Per model and setting: mean ± std of each timing; per model the saving."""
    out: dict = {}
    for model in dict.fromkeys(r["model"] for r in runs):
        d = out[model] = {}
        for overlap in (True, False):
            mine = [r for r in runs if r["model"] == model and r["overlap"] == overlap]
            d["overlap" if overlap else "serial"] = {
                k: mean_std([r[k] for r in mine])
                for k in ("seconds_per_episode", "scoring_seconds_per_episode",
                          "rest_seconds_per_episode", "update_seconds_per_episode",
                          "best_val_top1")}
        on, off = d["overlap"], d["serial"]
        d["rest_saved_seconds_per_episode"] = (off["rest_seconds_per_episode"]["mean"]
                                               - on["rest_seconds_per_episode"]["mean"])
        d["episode_speedup"] = (off["seconds_per_episode"]["mean"]
                                / on["seconds_per_episode"]["mean"])
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", default=["resnet20", "resnet56"])
    p.add_argument("--models-dir", default="../shared/models")
    p.add_argument("--data-dir", default="../shared/data")
    p.add_argument("--episodes", type=int, default=60)
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--work", default="runs/bench_overlap")
    p.add_argument("--out", default="results/bench_overlap.json")
    args = p.parse_args()
    torch.set_num_threads(1)
    allocator.settle()
    load0 = os.getloadavg()[0]
    runs = []
    for model in args.models:
        for rep in range(args.repeats):
            for overlap in ((True, False) if rep % 2 == 0 else (False, True)):
                r = one_search(args, model, overlap,
                               Path(args.work) / f"{model}_{'on' if overlap else 'off'}{rep}")
                runs.append(r)
                print(f"{model} overlap={overlap}: {r['seconds_per_episode']:.3f} s/episode, "
                      f"rest {r['rest_seconds_per_episode']:.3f} s", flush=True)
    doc = {"command": "python scripts/bench_overlap.py", "date": now(),
           "git_commit": git_commit(), "versions": versions(), "threads": 1,
           "episodes": args.episodes, "warmup_episodes": args.warmup, "runs": runs,
           "summary": summary(runs),
           "machine": {"cpu": cpu_model(), "cpus": os.cpu_count(), "load_avg_start": load0,
                       "load_avg_end": os.getloadavg()[0]}}
    write_json(args.out, doc)
    for model, d in doc["summary"].items():
        print(f"{model}: overlap {format_mean_std(d['overlap']['seconds_per_episode'], 3)} s, "
              f"serial {format_mean_std(d['serial']['seconds_per_episode'], 3)} s per episode "
              f"({d['episode_speedup']:.2f}x); rest "
              f"{format_mean_std(d['overlap']['rest_seconds_per_episode'], 3)} vs "
              f"{format_mean_std(d['serial']['rest_seconds_per_episode'], 3)} s")


if __name__ == "__main__":
    main()
