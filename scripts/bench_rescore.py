"""How many of a search's best policies ``--rescore-top`` should score again (its default).

For each AMC search of an ``amc compare`` folder (default ``results/compare_resnet56``), the
search's 8 best distinct policies (by its reward on the first ``--val-limit`` images) are
scored on all of ``val`` and on ``test`` (BN recalibrated on the search's images, as in the
search). For each K, the policy that ``--rescore-top K`` keeps (the best on all of ``val``
among the top K) is compared on ``test`` with the search's own pick (K = 1).

    .venv/bin/python scripts/bench_rescore.py [--folder results/compare_resnet56]
        [--searches flops0.5,flops0.3] [--data-dir ../shared/data]

Each search's scores are cached in ``<work>/<search>.json`` (a killed run resumes; two
processes may score different ``--searches``); the last call writes
``results/bench_rescore.json`` from every search scored so far.
"""

from __future__ import annotations

import argparse
import json
import statistics
from dataclasses import replace
from pathlib import Path

import torch

from amc.agents import SearchConfig
from amc.agents.monitor import read_rows
from amc.agents.rescore import candidates
from amc.config.args import load_run_config
from amc.data.datasets import load_dataset
from amc.prune.policy import load_policy
from amc.prune.scoring import build_scorer
from amc.utils.io import write_json
from amc.utils.provenance import git_commit, now

TOP = 8


def score_search(run: Path, data_dir: str) -> list[dict]:
    cfg = replace(load_run_config(SearchConfig, run, "search"), data_dir=data_dir)
    scorer = build_scorer(**cfg.scorer_kwargs())  # the search's pruning, repair and val
    ds = load_dataset(cfg.data, **cfg.dataset_kwargs(cfg.model))
    on_val = replace(scorer, x=ds.tensors("val")[0], y=ds.tensors("val")[1])
    on_test = replace(scorer, x=ds.tensors("test")[0], y=ds.tensors("test")[1])
    own = run / ("search_best_policy.json" if (run / "search_best_policy.json").is_file()
                 else "best_policy.json")
    best = load_policy(own)
    names = [u.name for u in scorer.pm.units]
    exact = {int(best.provenance["episode"]): best.ratios_for(names)}
    rows = []
    for c in candidates(read_rows(run / "episodes.csv"), scorer.pm, TOP, exact):
        rows.append({"episode": c.episode, "search_val_top1": c.val_top1,
                     "val_top1_all": on_val(c.ratios), "test_top1": on_test(c.ratios)})
        print(run.name, rows[-1], flush=True)
    return rows


def summarize(scored: dict[str, list[dict]]) -> dict:
    per_k = {}
    for k in range(1, TOP + 1):
        gains, changed = {}, 0
        for name, rows in scored.items():
            pick = max(rows[:k], key=lambda r: r["val_top1_all"])  # first among equals
            gains[name] = pick["test_top1"] - rows[0]["test_top1"]
            changed += pick["episode"] != rows[0]["episode"]
        per_k[k] = {"test_gain_mean": statistics.mean(gains.values()),
                    "test_gain_min": min(gains.values()), "test_gain_max": max(gains.values()),
                    "picks_changed": changed,
                    "per_search": gains}
    return per_k


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--folder", default="results/compare_resnet56")
    p.add_argument("--searches", default=None, help="comma-separated (default: all)")
    p.add_argument("--data-dir", default="../shared/data")
    p.add_argument("--work", default="runs/bench_rescore")
    p.add_argument("--out", default="results/bench_rescore.json")
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    work = Path(a.work)
    work.mkdir(parents=True, exist_ok=True)
    runs = sorted(d for d in (Path(a.folder) / "search").iterdir() if d.is_dir())
    if a.searches:
        runs = [d for d in runs if d.name in a.searches.split(",")]
    for run in runs:
        cache = work / f"{run.name}.json"
        if not cache.is_file():
            write_json(cache, score_search(run, a.data_dir))
    scored = {c.stem: json.loads(c.read_text()) for c in sorted(work.glob("*.json"))}
    write_json(a.out, {"command": "python scripts/bench_rescore.py", "made": now(),
                       "git_commit": git_commit(), "folder": a.folder, "top": TOP,
                       "threads": a.threads, "searches": scored,
                       "by_k": summarize(scored)})
    for k, v in summarize(scored).items():
        print(f"K={k}: test gain over the search's own pick {v['test_gain_mean']:+.2f} "
              f"(min {v['test_gain_min']:+.2f}, max {v['test_gain_max']:+.2f}; "
              f"{v['picks_changed']} of {len(scored)} picks changed)")


if __name__ == "__main__":
    main()
