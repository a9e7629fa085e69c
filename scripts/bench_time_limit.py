"""AMC within the sensitivity sweep's time: the comparison's searches stopped at a wall-time
budget (``amc search --time-limit``), evaluated and fine-tuned like the comparison's.

A search is deterministic given its seed (its workers step in lockstep and the updates are
joined before each evaluation returns), so a search run with ``--time-limit L`` makes the
same episodes as the full search up to the round at which it stops
(:func:`amc.agents.time_limit.out_of_time`: the next round, timed as the longest after the
first, and the rescoring, estimated from the episodes' scoring times, would end past L).
For each AMC search of ``--folder`` this keeps those episodes (by the run's own recorded
``run_seconds`` and scoring times), picks the best policy from them as the search would
(its own best, then ``--rescore-top`` on all of ``val``, timed now), and runs ``amc
compare``'s pipeline on them in ``--out`` (evaluation before and after the same
fine-tuning, latency side by side). The other strategies' artifacts (uniform, sensitivity:
the same policies, calibration draws and fine-tuning seeds) and the adapted dense model are
copied from ``--folder``, not redone.

    .venv/bin/python scripts/bench_time_limit.py [--limit 350]
    .venv/bin/python scripts/quality_summary.py --folder results/compare_resnet56_time_limit \
        --out results/quality_resnet56_time_limit

``--limit sweep``: each search gets the sensitivity sweep's wall seconds (measured in the same
run, ``sensitivity.json``), as ``amc compare --sweep-time-limit`` gives them. Folders made
before the limit covered the rescoring (time_limit.json without ``rule``) subtracted the
longest rescoring and round instead. With more than one worker the rescoring runs on that
many Ray actors, as at the end of a search.

    .venv/bin/python scripts/bench_time_limit.py --limit sweep \
        --folder results/compare_resnet56_amx_recon_reward_full \
        --out results/compare_resnet56_amx_sweep_time
"""

from __future__ import annotations

import argparse
import json
import shutil
from dataclasses import replace
from pathlib import Path

import torch

from amc.agents import SearchConfig
from amc.agents.monitor import read_rows, write_rows
from amc.agents.rescore import candidates, rest_images
from amc.agents.search import refinish
from amc.agents.time_limit import RescoreEstimate, out_of_time
from amc.config.args import load_run_config, stored_fields
from amc.prune.policy import make_policy
from amc.prune.units import PrunableModel
from amc.report.compare import Comparison
from amc.report.compare_config import CompareConfig
from amc.utils.io import write_json

KEPT = ("uniform", "sensitivity")
"""The strategies whose artifacts are copied by default (the checks need the best other
strategy and uniform flops:0.5; global and random are below sensitivity in every column of
results/compare_resnet56); ``--keep all``: every strategy of --folder."""


def stopped_rows(rows: list[dict], workers: int, limit: float, reserve: RescoreEstimate
                 ) -> list[dict]:
    """The episodes a search with ``--time-limit limit`` makes: every round of ``workers``
    episodes up to the one at which :class:`~amc.agents.time_limit.StopAtWallTime` stops
    (``reserve``: the rescoring's estimate, fed the rows' scoring times)."""
    rounds, last = [], 0.0
    for i in range(0, len(rows), workers):
        end = float(rows[min(i + workers, len(rows)) - 1]["run_seconds"])
        rounds.append(end - last)
        last = end
        for r in rows[i:i + workers]:
            reserve.add({k: float(r[k]) for k in ("prune_s", "repair_s", "eval_s", "images")})
        if out_of_time(end, rounds, reserve.seconds(), limit):
            return rows[:i + workers]
    return rows


def stop_search(src: Path, dst: Path, limit: float, pm: PrunableModel) -> dict:
    """``dst``: the search in ``src`` as if stopped at ``limit``; returns its summary."""
    cfg = replace(load_run_config(SearchConfig, src, "search"), out=str(dst), time_limit=limit)
    summary = json.loads((src / "summary.json").read_text())
    workers = int(summary.get("workers") or 1)
    every = read_rows(src / "episodes.csv")
    rows = stopped_rows(every, workers, limit,
                        RescoreEstimate(cfg.rescore_top, rest_images(cfg), workers))
    if dst.exists():
        shutil.rmtree(dst)
    dst.mkdir(parents=True)
    write_json(dst / "config.json", cfg.as_dict())
    write_rows(dst / "episodes.csv", list(rows[0]), rows)
    for f in ("uniform_policy.json", "global_policy.json", "run.json"):
        if (src / f).is_file():
            shutil.copy2(src / f, dst / f)
    own = candidates(rows, pm, 1)[0]  # the search's own best (its csv ratios reproduce it)
    make_policy(pm, own.ratios, cfg.model, cfg.budget, "amc", cfg.seed, cfg.max_ratio,
                {"val_top1": own.val_top1, "reward": own.reward}, episode=own.episode,
                reward_type=cfg.reward).save(dst / "best_policy.json")
    write_json(dst / "summary.json", {
        "episodes": len(rows), "workers": workers, "time_limit": limit,
        "stopped_by_time_limit": len(rows) < len(every),
        "wall_seconds_this_run": float(rows[-1]["run_seconds"]),
        "search_seconds": sum(float(r["seconds"]) for r in rows),
        "full_search": {"episodes": summary["episodes"],
                        "wall_seconds_this_run": summary["wall_seconds_this_run"]}})
    return refinish(cfg)  # --rescore-top on all of val, as the search does at its end


def search_limit(src: Path, limit: str) -> tuple[float, dict]:
    """The searches' wall-time limit (rescoring included) ``limit`` stands for, and (for
    ``sweep``) its basis: the sweep's seconds."""
    if limit != "sweep":
        return float(limit), {}
    sweep = float(json.loads((src / "sensitivity.json").read_text())["seconds"])
    return sweep, {"sweep_seconds": sweep, "limit": sweep,
                   "rule": "amc.agents.time_limit.out_of_time (rescoring included)"}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--folder", default="results/compare_resnet56")
    p.add_argument("--out", default="results/compare_resnet56_time_limit")
    p.add_argument("--limit", default="350",
                   help="seconds of each search, its rescoring included, or sweep")
    p.add_argument("--keep", default=",".join(KEPT),
                   help="comma-separated strategies copied from --folder, or all")
    p.add_argument("--threads", type=int, default=1, help="threads of the rescoring")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    src, out = Path(args.folder), Path(args.out)
    stored = json.loads((src / "config.json").read_text())
    kept = tuple(s for s in stored["strategies"] if s != "amc") if args.keep == "all" else \
        tuple(args.keep.split(","))
    limit, basis = search_limit(src, args.limit)
    if basis:
        write_json(out / "time_limit.json", basis)
        print(f"limit {limit:.1f} s: {basis}", flush=True)
    cfg = CompareConfig(**{**stored_fields(CompareConfig, stored),
                           "budgets": tuple(stored["budgets"]),
                           "strategies": ("amc",) + kept, "time_limit": limit,
                           "out": str(out)})
    for sub in ("models", "eval", "finetune", "policies", "search"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    copies = ["models/dense_ft.pt", "finetune/dense_ft.csv", "sensitivity.json",
              "sensitivity_retimed.json", *(f"eval/{n}" for n in ("dense_ft.json",
                                                                 "dense_before.json"))]
    copies += [str(f.relative_to(src)) for s in kept for d in ("policies", "eval", "finetune")
               for f in (src / d).glob(f"{s}_*")]
    for c in copies:
        if (src / c).is_file() and not (out / c).exists():
            shutil.copy2(src / c, out / c)
    pm = None
    for run in sorted((src / "search").glob("*/summary.json")):
        dst = out / "search" / run.parent.name
        if (dst / "rescore.json").is_file():
            continue  # done (resumable)
        if pm is None:
            from amc.prune.scoring import build_scorer

            scfg = load_run_config(SearchConfig, run.parent, "search")
            pm = build_scorer(**scfg.scorer_kwargs()).pm
        s = stop_search(run.parent, dst, limit, pm)
        print(f"{dst.name}: {s['episodes']} episodes in {s['wall_seconds_this_run']:.0f} s, "
              f"rescored in {s['rescore_seconds']:.0f} s, best episode {s['best_episode']}",
              flush=True)
    # the searches are ready: the comparison only reads their best policies
    Comparison(cfg, lambda _cfg, _budget, run_dir: run_dir / "best_policy.json").run()
    print((out / "table.md").read_text())


if __name__ == "__main__":
    main()
