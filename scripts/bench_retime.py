"""The networks of several ``amc compare`` folders timed again, side by side, several times.

A comparison times its own networks once, side by side with its dense model; two comparisons
made on different days are not comparable in speed (on this 2-core machine the same networks
measured 1.98x in one and 1.75x in another). This benchmark builds the networks of the named
policies of each folder (latency depends on the architecture only: the dense model's weights
are the public checkpoint's) and times them all in one process, interleaved
(:func:`amc.cost.timing.torch_latencies`, batch 64 and 1, each thread count), ``--rounds``
times over, so every speed-up comes with its spread over rounds and two folders' networks
can be compared. The allocator is settled at the start, as the ``amc`` command does.
Networks with the same kept channels per unit (the same policy copied into two folders) are
timed once.

    .venv/bin/python scripts/bench_retime.py --folders results/compare_resnet56_drop55 \\
        results/compare_resnet56_drop55_swap --names 'amc_latency0.55*' \\
        'blocks_latency0.55*' 'uniform_latency0.55*' 'uniform_flops0.5*' \\
        --out results/retime_drop55
"""

from __future__ import annotations

import argparse
import fnmatch
import os
from pathlib import Path

import numpy as np
import torch

from amc.cost.timing import torch_latencies
from amc.models.registry import create_model
from amc.prune.policy import check_policy, load_policy, prunable_for
from amc.report.compare import split_run
from amc.utils import allocator
from amc.utils.io import write_json
from amc.utils.provenance import git_commit, now, versions
from amc.utils.stats import format_mean_std, mean_std


def networks(folders: list[Path], patterns: list[str], model: str, checkpoint: str
             ) -> tuple[dict[str, torch.nn.Module], dict[str, list[str]]]:
    """``{"dense": ..., "<folder>/<policy>": pruned}`` for the policies matching
    ``patterns``, and for each timed network the names it stands for (same architecture)."""
    dense = create_model(model, num_classes=10, checkpoint=checkpoint)
    nets: dict[str, torch.nn.Module] = {"dense": dense}
    same: dict[str, list[str]] = {"dense": ["dense"]}
    seen: dict[tuple, str] = {}
    for folder in folders:
        for path in sorted((folder / "policies").glob("*.json")):
            if not any(fnmatch.fnmatch(path.stem, p) for p in patterns):
                continue
            name = f"{folder.name}/{path.stem}"
            policy = load_policy(path)
            pm = prunable_for(policy, dense)
            check_policy(policy, pm, model)
            ratios = policy.ratios_for(u.name for u in pm.units)
            key = tuple(pm.kept(i, r) for i, r in enumerate(ratios))
            if key in seen:
                same[seen[key]].append(name)
                continue
            seen[key] = name
            same[name] = [name]
            nets[name] = pm.prune(ratios)
    return nets, same


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--folders", nargs="+", required=True)
    p.add_argument("--names", nargs="+", default=["*"], help="policy names (globs)")
    p.add_argument("--model", default="resnet56")
    p.add_argument("--checkpoint", default="../shared/models/resnet56-cifar10.th",
                   help="the dense weights the networks are cut from (trained ones, like "
                        "the comparisons' networks; the kept channel counts come from the "
                        "policies)")
    p.add_argument("--input-size", type=int, nargs=3, default=[3, 32, 32])
    p.add_argument("--threads", type=int, nargs="+", default=[2, 1])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--runs", type=int, default=20)
    p.add_argument("--out", default="results/retime")
    args = p.parse_args()
    allocator.settle()  # at the entry point, as the amc command does, before any network
    torch.manual_seed(0)
    nets, same = networks([Path(f) for f in args.folders], args.names, args.model,
                          args.checkpoint)
    print(f"{len(nets)} networks ({sum(map(len, same.values()))} names); "
          f"load {os.getloadavg()[0]:.2f}", flush=True)
    rounds = []
    for r in range(args.rounds):
        row = {}
        for t in args.threads:
            lat = torch_latencies(nets, tuple(args.input_size), t, args.runs)
            ms = {k: v["median_ms"] for k, v in lat["b64"].items()}
            row[f"t{t}"] = {"b64_median_ms": ms, "load_avg_1min": lat["load_avg_1min"],
                            "speedup_b64": {k: ms["dense"] / v for k, v in ms.items()}}
        rounds.append(row)
        print(f"round {r + 1}/{args.rounds} done; load {os.getloadavg()[0]:.2f}", flush=True)
    summary: dict[str, dict] = {}
    for t in args.threads:
        per_name = {n: [rd[f"t{t}"]["speedup_b64"][timed] for rd in rounds]
                    for timed, names in same.items() for n in names}
        groups: dict[str, list[float]] = {}
        for n, v in per_name.items():  # a row: its runs' speed-ups, each the mean over rounds
            groups.setdefault(split_run(n)[0], []).append(float(np.mean(v)))
        summary[f"t{t}"] = {
            "per_network": {n: mean_std(v) for n, v in per_name.items()},
            "per_row": {g: mean_std(v) for g, v in groups.items()},
            "round_spread": {n: float(np.std(v)) for n, v in per_name.items()}}
    out = Path(args.out)
    write_json(out.with_suffix(".json"), {
        "command": "python scripts/bench_retime.py " + " ".join(
            f"--{k.replace('_', '-')} {' '.join(map(str, v)) if isinstance(v, list) else v}"
            for k, v in vars(args).items()),
        "date": now(), "git_commit": git_commit(), "versions": versions(),
        "cpu_count": os.cpu_count(), "same_architecture": same, "rounds": rounds,
        "summary": summary})
    lines = ["| row | n | " + " | ".join(f"speed-up b64, {t} thread(s)" for t in args.threads)
             + " |", "|---|---|" + "---|" * len(args.threads)]
    for g in summary[f"t{args.threads[0]}"]["per_row"]:
        cells = [summary[f"t{t}"]["per_row"][g] for t in args.threads]
        lines.append(f"| {g} | {cells[0]['n']} | "
                     + " | ".join(format_mean_std(c) for c in cells) + " |")
    out.with_suffix(".md").write_text(
        f"Speed-up over dense at batch 64, mean ± std over each row's runs (each run's figure "
        f"the mean of {args.rounds} side-by-side timings); made by `scripts/bench_retime.py` "
        f"(`{out.with_suffix('.json')}`).\n\n" + "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
