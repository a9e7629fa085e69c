"""AMC's latency-budget networks with their idle vector lanes filled: accuracy against speed.

A conv computes its output channels a whole CPU vector at a time (16 fp32 lanes with AVX-512,
8 with AVX2; :func:`amc.prune.latency_timing.lanes`), so a pruned width that is not a multiple
of the vector leaves lanes idle that cost as much as kept channels; the latency table counts
them so. This benchmark takes a comparison's AMC policies (``--names``, runs 0-2) and rounds
every kept width up to a multiple of 8 and of 16 (``fill8`` / ``fill16``; dropped blocks stay
dropped), then per network: MACs, the fraction of dense the latency table predicts (the
comparison's target: PyTorch CPU, batch 64, 2 threads, 20 runs; measured or cached),
speed-ups over dense timed side by side (batch 64, 2 threads and 1, ``--rounds`` rounds, the
mean), and test top-1 after the same fine-tune for all (``amc finetune`` from the
comparison's adapted dense model: 1 epoch over 5,000 training images, distilled, seed = run),
with the reference folder's uniform ``flops:0.5`` policies fine-tuned alike. Fine-tunes are
cached under ``--work`` (a killed run resumes).

    .venv/bin/python scripts/bench_lane_fill.py  # ~15 min on 2 cores
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
from pathlib import Path

import numpy as np
import torch

from amc.cost.timing import torch_latencies
from amc.models.registry import create_model
from amc.prune.latency_table import latency_table
from amc.prune.latency_timing import vector_inputs, whole_vectors
from amc.prune.policy import load_policy, make_policy, prunable_for
from amc.utils import allocator
from amc.utils.io import write_json
from amc.utils.provenance import git_commit, now, versions
from amc.utils.stats import format_mean_std, mean_std

FILLS = ("8", "16")
"""Default fills: a width, and ``p`` after it for only the widths past one vector
(``16p``: 17-31 kept channels become 32, 1-16 stay as they are)."""
SUFFIXES = ("", "_s1", "_s2")


def filled(policy, pm, lanes: int, past: bool = False) -> list[float]:
    """``policy``'s ratios with every kept width rounded up to a multiple of ``lanes``
    (``past``: only the widths past one vector, which the latency table charges whole
    vectors for already, :func:`~amc.prune.latency_timing.vector_inputs`)."""
    rule = vector_inputs if past else whole_vectors
    out = []
    for i, r in enumerate(policy.ratios_for(u.name for u in pm.units)):
        kept, n = pm.kept(i, r), pm.units[i].n
        out.append(r if kept == 0 else 1.0 - min(n, rule(kept, lanes)) / n)
    return out


def finetune(dense: Path, policy: Path, out: Path, seed: int, data_dir: str) -> float:
    """Test top-1 after ``amc finetune`` with the recipe of ``bench_compare.sh``'s ``ftone``
    (distilled; cached in ``out``)."""
    if not (out / "summary.json").is_file():
        subprocess.run([os.environ.get("AMC_BIN", ".venv/bin/amc"), "finetune", "--model",
                        "resnet56", "--checkpoint", str(dense), "--data", "cifar10",
                        "--data-dir", data_dir, "--policy", str(policy), "--epochs", "1",
                        "--train-limit", "5000", "--lr", "0.01", "--batch-size", "128",
                        "--seed", str(seed), "--threads", "2", "--kd-weight", "0.5",
                        "--out", str(out), "--force"], check=True)
    return float(json.loads((out / "summary.json").read_text())["final"]["test_top1"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--folder", default="results/compare_resnet56_drop55_finalists_blocks")
    ap.add_argument("--names", default="amc_latency0.55")
    ap.add_argument("--reference", default="results/compare_resnet56_drop55_kd_plain",
                    help="folder whose uniform_flops0.5 policies are fine-tuned alike")
    ap.add_argument("--dense", default=None,
                    help="the adapted dense model (default: the folder's models/dense_ft.pt)")
    ap.add_argument("--data-dir", default="../shared/data")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--work", default="runs/bench_lane_fill")
    ap.add_argument("--out", default="results/lane_fill")
    ap.add_argument("--fills", default=",".join(FILLS),
                    help="comma-separated fills: a width (every kept width rounded up to its "
                         "multiples), with p after it only the widths past one vector")
    args = ap.parse_args()
    fills = [f for f in args.fills.split(",") if f]
    allocator.settle()
    torch.manual_seed(0)
    folder, work = Path(args.folder), Path(args.work)
    dense_path = Path(args.dense) if args.dense else folder / "models" / "dense_ft.pt"
    dense = create_model("resnet56", num_classes=10, checkpoint=str(dense_path))
    nets: dict[str, torch.nn.Module] = {"dense": dense}
    rows: dict[str, dict] = {}
    table = None
    for run, sfx in enumerate(SUFFIXES):
        src = folder / "policies" / f"{args.names}{sfx}.json"
        policy = load_policy(src)
        pm = prunable_for(policy, dense)
        table = table or latency_table(pm, batch=64, threads=2, runs=20)
        base = policy.ratios_for(u.name for u in pm.units)
        variants = {"amc": (base, src)}
        for fill in fills:
            lanes, past = int(fill.rstrip("p")), fill.endswith("p")
            ratios = filled(policy, pm, lanes, past)
            path = work / "policies" / f"fill{fill}{sfx}.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            make_policy(pm, ratios, "resnet56", policy.budget, "amc", run, policy.max_ratio,
                        filled_from=str(src), lanes=lanes, past_one_vector=past).save(path)
            variants[f"fill{fill}"] = (ratios, path)
        for v, (ratios, path) in variants.items():
            key = f"{v}{sfx}"
            nets[key] = pm.prune(ratios)
            rows[key] = {"variant": v, "run": run, "policy": str(path),
                         "macs_ratio": pm.cost_fraction(ratios)[0],
                         "predicted_fraction": table.fraction(ratios),
                         "kept": [pm.kept(i, r) for i, r in enumerate(ratios)]}
        ref = Path(args.reference) / "policies" / f"uniform_flops0.5{sfx}.json"
        rows[f"uniform_flops0.5{sfx}"] = {"variant": "uniform_flops0.5", "run": run,
                                          "policy": str(ref)}
        upol = load_policy(ref)
        upm = prunable_for(upol, dense)
        nets[f"uniform_flops0.5{sfx}"] = upm.prune(upol.ratios_for(u.name for u in upm.units))
    print(f"{len(nets)} networks; load {os.getloadavg()[0]:.2f}", flush=True)
    speed: dict[str, dict[str, list[float]]] = {}
    for _ in range(args.rounds):
        for t in (2, 1):
            ms = {k: v["median_ms"] for k, v in torch_latencies(
                nets, (3, 32, 32), t)["b64"].items()}
            for k in rows:
                speed.setdefault(k, {}).setdefault(f"t{t}", []).append(ms["dense"] / ms[k])
    for k, row in rows.items():
        row["speedup_b64"] = {t: float(np.mean(v)) for t, v in speed[k].items()}
        row["test_top1_after_ft"] = finetune(dense_path, Path(row["policy"]), work / "ft" / k,
                                             row["run"], args.data_dir)
        print(k, row["test_top1_after_ft"], row["speedup_b64"], flush=True)
    summary = {}
    for v in ("amc", *(f"fill{f}" for f in fills), "uniform_flops0.5"):
        rs = [r for r in rows.values() if r["variant"] == v]
        summary[v] = {"test_top1_after_ft": mean_std([r["test_top1_after_ft"] for r in rs]),
                      **{f"speedup_b64_{t}": mean_std([r["speedup_b64"][t] for r in rs])
                         for t in ("t2", "t1")}}
        if v != "uniform_flops0.5":
            summary[v]["macs_ratio"] = mean_std([r["macs_ratio"] for r in rs])
            summary[v]["predicted_fraction"] = mean_std([r["predicted_fraction"] for r in rs])
        if v.startswith("fill"):
            summary[v]["minus_amc_paired"] = mean_std([
                rows[f"{v}{s}"]["test_top1_after_ft"] - rows[f"amc{s}"]["test_top1_after_ft"]
                for s in SUFFIXES])
    out = Path(args.out)
    write_json(out.with_suffix(".json"), {
        "command": "python scripts/bench_lane_fill.py", "args": vars(args), "date": now(),
        "git_commit": git_commit(), "versions": versions(), "cpu_count": os.cpu_count(),
        "lanes": table.lanes, "load_avg_end": os.getloadavg()[0], "rows": rows,
        "summary": summary})
    lines = ["| network | MACs ratio | predicted fraction (table) | speed-up b64, 2 threads | "
             "1 thread | test after ft | minus amc (paired) |", "|---|---|---|---|---|---|---|"]
    for v, s in summary.items():
        cells = [format_mean_std(s[k], 3) if k in s else ""
                 for k in ("macs_ratio", "predicted_fraction")]
        cells += [format_mean_std(s[k]) if k in s else ""
                  for k in ("speedup_b64_t2", "speedup_b64_t1", "test_top1_after_ft",
                            "minus_amc_paired")]
        lines.append(f"| {v} | " + " | ".join(cells) + " |")
    out.with_suffix(".md").write_text(
        f"`{args.folder}`'s {args.names} networks (runs 0-2) with their kept widths rounded up to "
        f"whole vectors ({', '.join(fills)}: the width; p: only the widths past one vector), "
        f"and `{args.reference}`'s uniform flops:0.5; mean ± "
        f"std over the 3 runs; speed-ups the mean of {args.rounds} side-by-side timings; made "
        f"by `scripts/bench_lane_fill.py` (`{out.with_suffix('.json')}`).\n\n"
        + "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
