"""The same AMC searches with other search settings: does an option find better policies?

Each arm reruns the searches of an ``amc compare`` folder (``--folder``, its
``search/<budget>{,_s1,_s2}`` configs: same seeds, scorer, time limit) with some settings
changed, on the dense model ``--checkpoint`` (the folder's own when its weights are still
there); the arms run in turn for each seed, so they share the machine's state. Per arm and
seed: the picked policy's val top-1 on all of ``val`` (``best_val_top1_all``, the search's
own rescoring; on the first ``--val-limit`` images where ``val`` has no more), its MACs as a
fraction of dense, episodes run, wall seconds, the pair moves / drop swaps made and the
seconds and Adam steps of the warm start's fits of the actor (its ``warm_start.json``
history, where the search recorded one: their median and largest mean squared error in
SB3's [-1, 1] action scale, the table giving each seed's median).

    .venv/bin/python scripts/bench_search_variants.py --folder results/compare_resnet56_native \\
        --budget flops0.3 --checkpoint results/compare_resnet56_native_kd/models/dense_ft.pt \\
        --arm base: --arm pairs_anchor1:pair_moves=0.5,anchor_every=1 \\
        --arm pairs:pair_moves=0.5 --out results/search_variants_flops03

Each search runs in ``<work>/<arm>{,_s1,_s2}`` and is skipped once it has a ``summary.json``
(a killed run resumes at the next search); the JSON and a Markdown table go to ``--out``.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from amc.agents import SearchConfig, run_or_resume
from amc.config.args import load_run_config
from amc.utils.io import write_json, write_text
from amc.utils.provenance import cpu_model, git_commit, now, versions
from amc.utils.stats import format_mean_std, mean_std

OWN = "folder"
"""The row of the folder's own searches (``--own``)."""

FIELDS = ("best_val_top1_all", "best_macs_ratio", "episodes", "wall_seconds_this_run",
          "pair_moves", "drop_swaps")

FIT_FIELDS = ("fits", "fit_seconds", "fit_steps", "fit_mse_median", "fit_mse_max")
"""Of a run's warm-start fits (``warm_start.json``'s history; None where it has none)."""


def parse_arm(text: str) -> tuple[str, dict]:
    """``name:k=v,k=v`` (values as Python literals) -> (name, overrides)."""
    name, _, rest = text.partition(":")
    over = {}
    for kv in filter(None, rest.split(",")):
        k, v = kv.split("=", 1)
        over[k.strip()] = ast.literal_eval(v.strip())
    return name, over


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--folder", required=True, help="an amc compare folder")
    ap.add_argument("--budget", required=True, help="its search folder name, e.g. flops0.3")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--checkpoint", help="the dense model (default: the searches' own)")
    ap.add_argument("--arm", action="append", required=True,
                    help="NAME:k=v,... settings changed from the folder's searches")
    ap.add_argument("--own", action="store_true",
                    help="add a row of the folder's own searches as they were made (their "
                         "summary.json: the code of then), e.g. to see what a change did")
    ap.add_argument("--work", default="runs/search_variants")
    ap.add_argument("--out", required=True, help="output path without extension")
    argv = sys.argv[1:] if argv is None else argv
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    arms = [parse_arm(a) for a in args.arm]
    rows = []

    def row(name: str, seed: int, over: dict, run: Path) -> dict:
        s = json.loads((run / "summary.json").read_text())
        all_val = s.get("best_val_top1_all")  # None: no val images past --val-limit
        fits = (json.loads((run / "warm_start.json").read_text()).get("history")
                if (run / "warm_start.json").is_file() else None)
        mse = [f["mse"] for f in fits or ()]
        made = {} if not fits else {
            "fits": len(fits), "fit_seconds": sum(f["seconds"] for f in fits),
            "fit_steps": sum(f["steps"] for f in fits),
            "fit_mse_median": float(np.median(mse)), "fit_mse_max": max(mse)}
        return {"arm": name, "seed": seed, "settings": over,
                "val_top1": s["best_val_top1"] if all_val is None else all_val,
                "on_all_val": all_val is not None, **{k: s.get(k) for k in FIELDS},
                **{k: made.get(k) for k in FIT_FIELDS}}

    for seed in range(args.seeds):
        sfx = f"_s{seed}" if seed else ""
        src = Path(args.folder) / "search" / f"{args.budget}{sfx}"
        base = load_run_config(SearchConfig, src, "search")
        if args.checkpoint:
            base = replace(base, checkpoint=args.checkpoint)
        if args.own:
            rows.append(row(OWN, seed, {}, src))
        for name, over in arms:
            run = Path(args.work) / f"{name}{sfx}"
            if not (run / "summary.json").is_file():
                run_or_resume(replace(base, **over, out=str(run), force=True))
            rows.append(row(name, seed, over, run))
    if args.own:
        arms = [(OWN, {}), *arms]
    arms_out = {}
    for name, over in arms:
        mine = [r for r in rows if r["arm"] == name]
        arms_out[name] = {"settings": over, **{k: mean_std(v) if (v := [
            r[k] for r in mine if r[k] is not None]) else None for k in (
                "val_top1", "episodes", "best_macs_ratio", "fit_seconds", "fit_steps",
                "fit_mse_median")}}
    res = {"command": "python scripts/bench_search_variants.py " + " ".join(argv),
           "folder": args.folder, "budget": args.budget, "checkpoint": args.checkpoint,
           "arms": arms_out, "runs": rows, "date": now(), "git_commit": git_commit(),
           "versions": versions(), "machine": {"cpu": cpu_model(),
                                                "load_avg_end": os.getloadavg()}}
    write_json(f"{args.out}.json", res)
    lines = [f"# AMC search variants: {args.folder} {args.budget}", "",
             "Picked policy's val top-1 on all of val, per seed, and mean ± std "
             "(`scripts/bench_search_variants.py`).", "",
             "| arm | settings | " + " | ".join(f"seed {s}" for s in range(args.seeds))
             + " | mean ± std | MACs | episodes | fits s | fit steps | fit error, median |",
             "|---|---|" + "---|" * (args.seeds + 6)]
    for name, over in arms:
        a = arms_out[name]
        how = "as made then" if name == OWN else (over or "as searched")
        shown = {k: "–" if a[k] is None else format_mean_std(a[k], d) for k, d in (
            ("val_top1", 2), ("best_macs_ratio", 3), ("episodes", 0), ("fit_seconds", 1),
            ("fit_steps", 0))}
        shown["fit_mse_median"] = ("–" if a["fit_mse_median"] is None else " / ".join(
            f"{x:.1e}" for x in a["fit_mse_median"]["values"]))
        cells = [name, str(how), *(f"{r['val_top1']:.2f}" for r in rows if r["arm"] == name),
                 *shown.values()]
        lines.append("| " + " | ".join(cells) + " |")
    write_text(f"{args.out}.md", "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
