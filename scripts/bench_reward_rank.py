"""Which score before fine-tuning ranks a comparison's policies as its own fine-tune does.

A search picks the policy with the best score before fine-tuning; what a user keeps is the
network after it. For an ``amc compare`` folder (default the ~1.8x one,
``results/compare_resnet56_drop55_pairs``: ResNet-56 at ``latency:0.55``, blocks droppable,
least-squares reconstruction in every search score) this takes the folder's own policies of
the strategies ``--strategies`` and ``--per-search`` episodes of each of its AMC searches,
spread evenly over their val scores (distinct policies after the warm-up), and for each:

* ``plain``: pruned and BN-recalibrated (the folder's calibration draw of run 0), top-1 on the
  search's ``--val-limit`` val images: the score of a search with ``--no-reconstruct``;
* ``recon``: least-squares reconstruction, then the same recalibration and images: the score
  the folder's searches used;
* ``macs_ratio``: the policy's MACs as a fraction of the dense model's (no scoring);
* after: the folder's fine-tune (its recipe and seed, distillation from its adapted dense
  model) from the plainly pruned, recalibrated network (``--finetune-from pruned``), top-1
  on all of val and on test.

It reports the Spearman rank correlation of each score with the after-fine-tuning test top-1
(and val), a bootstrap over the policies, the same among the better half after fine-tuning
(where a search's picks lie; the spread of scores there is what separates them), and the test
top-1 after fine-tuning of the policy each score would pick.

    .venv/bin/python scripts/bench_reward_rank.py [--folder results/compare_resnet56_drop55_pairs]
        [--budget latency0.55] [--per-search 6] [--out results/reward_rank_drop55]

Each policy's scores are cached in ``<work>/<name>.json`` (a killed run resumes); the JSON and
a Markdown table go to ``--out``.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from scipy import stats

from amc.agents.monitor import read_rows
from amc.config.args import load_run_config
from amc.data.datasets import load_dataset, train_view
from amc.models.registry import create_model
from amc.prune.policy import load_policy
from amc.prune.scoring import build_scorer
from amc.report.compare import evaluate_splits
from amc.report.compare_config import CompareConfig
from amc.train.loop import train
from amc.utils.io import write_json, write_text
from amc.utils.provenance import cpu_model, git_commit, now, versions
from amc.utils.stats import bootstrap_spearman

SCORES = ("plain", "recon", "macs_ratio")
"""What is ranked against the after-fine-tuning top-1: the two scores, and the kept MACs (at a
latency budget the policies differ in how many MACs the same latency keeps)."""


def episode_policies(run: Path, units: list[str], per_search: int, warmup: int
                     ) -> list[tuple[str, list[float]]]:
    """``per_search`` distinct policies of the search in ``run`` after its warm-up, spread
    evenly over their val scores (lowest to highest)."""
    rows = read_rows(run / "episodes.csv")[warmup:]
    seen, distinct = set(), []
    for r in sorted(rows, key=lambda r: float(r["val_top1"])):
        ratios = [float(r[f"ratio:{u}"]) for u in units]
        key = tuple(round(x, 4) for x in ratios)
        if key not in seen:
            seen.add(key)
            distinct.append((int(r["episode"]), ratios))
    picks = np.unique(np.linspace(0, len(distinct) - 1, per_search).round().astype(int))
    return [(f"{run.name}_ep{distinct[i][0]}", distinct[i][1]) for i in picks]


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--folder", default="results/compare_resnet56_drop55_pairs")
    ap.add_argument("--budget", default="latency0.55", help="the folder's budget tag")
    ap.add_argument("--strategies", default="amc,blocks",
                    help="the folder's own policies of these strategies join")
    ap.add_argument("--per-search", type=int, default=6)
    ap.add_argument("--bootstrap", type=int, default=2000)
    ap.add_argument("--work", default="runs/reward_rank")
    ap.add_argument("--out", default="results/reward_rank_drop55")
    args = ap.parse_args(argv)
    folder, work = Path(args.folder), Path(args.work)
    cfg = load_run_config(CompareConfig, folder, "compare")
    threads = cfg.threads or 2
    torch.set_num_threads(threads)
    dense_path = folder / "models" / "dense_ft.pt"
    dense = create_model(cfg.model, checkpoint=dense_path)
    data = load_dataset(cfg.data, **cfg.dataset_kwargs(cfg.model))
    train_data = train_view(data, cfg.train_limit, cfg.seed)
    recon = build_scorer(**replace(cfg, checkpoint=str(dense_path)).scorer_kwargs(),
                         net=copy.deepcopy(dense))
    plain = replace(recon, reconstruct=False)
    units = [u.name for u in recon.pm.units]
    pols = [(p.stem, load_policy(p).ratios_for(units))
            for s in args.strategies.split(",")
            for p in sorted((folder / "policies").glob(f"{s}_{args.budget}*.json"))]
    for run in sorted((folder / "search").glob(f"{args.budget}*")):
        pols += episode_policies(run, units, args.per_search, cfg.warmup_episodes)
    rows = []
    for name, ratios in pols:
        cache = work / f"{name}.json"
        if not cache.is_file():
            t = time.perf_counter()
            row = {"name": name, "ratios": ratios, "macs_ratio": recon.pm.cost_fraction(
                ratios)[0], "plain": plain(ratios), "recon": recon(ratios)}
            net = plain.pruned(ratios)
            before = evaluate_splits(net, data, data.input_size)
            train(net, train_data, cfg.finetune_config(cfg.seed, threads), teacher=dense)
            after = evaluate_splits(net, data, data.input_size)
            row.update(test_before_plain=before["test_top1"], val_after=after["val_top1"],
                       test_after=after["test_top1"], seconds=time.perf_counter() - t)
            write_json(cache, row)
            print(name, {k: row[k] for k in ("plain", "recon", "test_after")}, flush=True)
        rows.append(json.loads(cache.read_text()))
    after = np.array([r["test_after"] for r in rows])
    res: dict = {"policies": len(rows), "test_after": {"min": float(after.min()),
                                                      "max": float(after.max())}}
    for s in SCORES:
        v = np.array([r[s] for r in rows])
        pick = int(np.argmax(v))
        res[s] = {"spearman_vs_test_after": float(stats.spearmanr(v, after).statistic),
                  "spearman_vs_val_after": float(stats.spearmanr(
                      v, [r["val_after"] for r in rows]).statistic),
                  "bootstrap_vs_test_after": bootstrap_spearman(v, after, args.bootstrap, 0),
                  "pick": rows[pick]["name"], "pick_test_after": float(after[pick])}
        # the better half after fine-tuning: both scores judged on the same policies
        top = after >= np.median(after)
        res[s]["spearman_vs_test_after_top_half"] = float(
            stats.spearmanr(v[top], after[top]).statistic)
    # val after fine-tuning against test after it, the same networks: how well val itself
    # orders the fine-tuned networks (what a pick by a short fine-tune relies on)
    val_after = np.array([r["val_after"] for r in rows])
    top = after >= np.median(after)
    res["val_after"] = {"spearman_vs_test_after": float(stats.spearmanr(
        val_after, after).statistic), "spearman_vs_test_after_top_half": float(
        stats.spearmanr(val_after[top], after[top]).statistic),
        "val_minus_test_after": float((val_after - after).mean()),
        "val_minus_test_after_top_half": float((val_after[top] - after[top]).mean())}
    out = {"command": "python scripts/bench_reward_rank.py " + " ".join(argv),
           "folder": str(folder), "budget": args.budget, "result": res, "rows": rows,
           "date": now(), "git_commit": git_commit(), "versions": versions(),
           "machine": {"cpu": cpu_model(), "threads": threads,
                       "load_avg_end": os.getloadavg()}}
    write_json(f"{args.out}.json", out)
    lines = [f"# Scores before fine-tuning vs after it: {folder} {args.budget}", "",
             f"{len(rows)} policies (`scripts/bench_reward_rank.py`); after: the folder's "
             "distilled fine-tune from the plainly pruned, BN-recalibrated network.", "",
             "| score | Spearman vs test after | bootstrap mean ± std (5-95 %) | "
             "better half after | vs val after | picks | its test after |",
             "|---|---|---|---|---|---|---|"]
    for s in SCORES:
        d, b = res[s], res[s]["bootstrap_vs_test_after"]
        lines.append(f"| {s} | {d['spearman_vs_test_after']:.3f} | {b['mean']:.3f} ± "
                     f"{b['std']:.3f} ({b['q05']:.2f} to {b['q95']:.2f}) | "
                     f"{d['spearman_vs_test_after_top_half']:.3f} | "
                     f"{d['spearman_vs_val_after']:.3f} | {d['pick']} | "
                     f"{d['pick_test_after']:.2f} |")
    va = res["val_after"]
    lines += ["", f"Best test after fine-tuning among them: {after.max():.2f} "
              f"({rows[int(np.argmax(after))]['name']}).", "",
              f"Val after fine-tuning against test after it (the same networks): Spearman "
              f"{va['spearman_vs_test_after']:.3f} ({va['spearman_vs_test_after_top_half']:.3f}"
              f" among the better half); val − test {va['val_minus_test_after']:.2f} points "
              f"on average ({va['val_minus_test_after_top_half']:.2f} in the better half).", "",
              "| policy | MACs ratio | plain | recon | test before (plain) | test after |",
              "|---|---|---|---|---|---|"]
    lines += [f"| {r['name']} | {r['macs_ratio']:.3f} | {r['plain']:.2f} | {r['recon']:.2f} | "
              f"{r['test_before_plain']:.2f} | {r['test_after']:.2f} |" for r in rows]
    write_text(f"{args.out}.md", "\n".join(lines) + "\n")
    print("\n".join(lines[:8]))


if __name__ == "__main__":
    main()
