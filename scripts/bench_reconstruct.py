"""Cost of reconstruction in a search episode, and what its speed-ups change in the scores.

Least-squares reconstruction (``--reconstruct``) refits each pruned conv on 16 sampled output
positions per image (256 images). It used to unfold the conv's whole input (``F.unfold``:
for a 3x3 conv on 32x32 maps, 1,024 positions per image, then keep 16) and to run the pruned
network's forward in fp32 whatever ``--score-amp``; it now gathers the patches at the sampled
positions only (:func:`amc.prune.repair.patches_at`, the same numbers) and, in a score, runs
that forward in the score's precision (dense targets and solves stay fp32); since the
fourteenth session that forward is also the BatchNorm recalibration's (one pass instead of
two: ``reconstruct(..., recalibrate=True)``). This runs ResNet-56 episodes (``internal``
units, the first ``--policies`` policies a flops:0.3 search tried after its warm-up, read
from a committed ``episodes.csv``) through the scorer five ways, interleaved in rounds, one
thread, scores as ``--score-amp`` auto picks:

* ``plain``: no reconstruction;
* ``old``: unfolding, fp32 forward, then the recalibration (the code before);
* ``patches_fp32``: sampled patches, fp32 forward (must score exactly as ``old``);
* ``patches``: sampled patches, forward in the score's precision, then the recalibration
  (the thirteenth session's default): its top-1 against ``old``'s (differences, Spearman
  rank correlation over the policies);
* ``fused``: as ``patches``, in the recalibration's pass (the default now): its top-1
  against ``patches``'.

Usage (from the project root; needs ../shared)::

    .venv/bin/python scripts/bench_reconstruct.py --out results/bench_reconstruct.json
"""

from __future__ import annotations

import argparse
import os
import statistics
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from scipy.stats import spearmanr

import amc.prune.repair as repair
import amc.prune.scoring as scoring
from amc.agents.monitor import read_rows
from amc.prune.scoring import build_scorer
from amc.utils.io import write_json
from amc.utils.provenance import cpu_model, git_commit, now, versions


def unfold_patches(x: torch.Tensor, conv: torch.nn.Conv2d, pick: torch.Tensor) -> torch.Tensor:
    """The gathering as it was: unfold every output position, then keep the picked ones."""
    cols = F.unfold(x, conv.kernel_size, conv.dilation, conv.padding, conv.stride)
    return repair._sample(cols, pick)


def policies(path: Path, skip: int, n: int, units: list[str]) -> list[list[float]]:
    return [[float(r[f"ratio:{u}"]) for u in units] for r in read_rows(path)[skip:skip + n]]


def fp32_reconstruct(*args, **kwargs):
    """Reconstruction with the pruned network's forward in fp32 (as it was in scores)."""
    with torch.autocast("cpu", enabled=False):
        return repair.reconstruct(*args, **kwargs)


VARIANTS = {  # name: (gathering, reconstruct called by the scorer (None: no reconstruction),
    # in the recalibration's forward pass)
    "plain": (repair.patches_at, None, False),
    "old": (unfold_patches, fp32_reconstruct, False),
    "patches_fp32": (repair.patches_at, fp32_reconstruct, False),
    "patches": (repair.patches_at, repair.reconstruct, False),
    "fused": (repair.patches_at, repair.reconstruct, True),
}


def compared(a: list[float], b: list[float]) -> dict:
    """Top-1 of ``a`` against ``b`` over the same policies."""
    diff = np.asarray(a) - np.asarray(b)
    return {"mean_diff": float(diff.mean()), "mean_abs_diff": float(np.abs(diff).mean()),
            "max_abs_diff": float(np.abs(diff).max()), "spearman": float(spearmanr(a, b)[0]),
            "same_best": int(np.argmax(a)) == int(np.argmax(b))}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models-dir", default="../shared/models")
    p.add_argument("--data-dir", default="../shared/data")
    p.add_argument("--episodes-csv",
                   default="results/compare_resnet56_amx_recon/search/flops0.3/episodes.csv")
    p.add_argument("--skip", type=int, default=20, help="the warm-up's replayed episodes")
    p.add_argument("--policies", type=int, default=20)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--out", default="results/bench_reconstruct.json")
    a = p.parse_args()
    torch.set_num_threads(1)
    load0 = os.getloadavg()[0]
    scorer = build_scorer("resnet56", f"{a.models_dir}/resnet56-cifar10.th", "cifar10",
                          a.data_dir, val_limit=1000, units="internal", bn_recalib=True,
                          reconstruct=True, amp="auto")
    plain = replace(scorer, reconstruct=False)
    pols = policies(Path(a.episodes_csv), a.skip, a.policies,
                    [u.name for u in scorer.pm.units])
    scorer.score(pols[0])  # the dense targets, captured once per scorer, outside the timings
    times: dict[str, list[dict]] = {v: [] for v in VARIANTS}
    top1: dict[str, list[float]] = {v: [] for v in VARIANTS}
    fused_when_it_can = scoring.Scorer._fused
    try:
        for k in range(a.rounds):
            for variant, (gather, recon, fused) in VARIANTS.items():
                repair.patches_at = gather
                scoring.reconstruct = recon or repair.reconstruct
                scoring.Scorer._fused = fused_when_it_can if fused else lambda _self: False
                for r in pols:
                    sc = (scorer if recon else plain).score(r)
                    times[variant].append({"prune_s": sc.prune_s, "repair_s": sc.repair_s,
                                           "eval_s": sc.eval_s})
                    if k == 0:
                        top1[variant].append(sc.top1)
    finally:
        repair.patches_at, scoring.reconstruct = VARIANTS["plain"][0], VARIANTS["patches"][1]
        scoring.Scorer._fused = fused_when_it_can
    rows = {}
    for v, ts in times.items():
        rows[v] = {k: statistics.median(t[k] for t in ts) for k in ts[0]}
        rows[v]["episode_s"] = statistics.median(sum(t.values()) for t in ts)
    recon = {v: rows[v]["repair_s"] - rows["plain"]["repair_s"] for v in VARIANTS if v != "plain"}
    doc = {"command": "python scripts/bench_reconstruct.py", "made": now(),
           "git_commit": git_commit(), "versions": versions(), "model": "resnet56",
           "units": "internal", "policies": len(pols), "rounds": a.rounds, "threads": 1,
           "score_precision": scorer.precision.name, "episodes_csv": a.episodes_csv,
           "median_seconds": rows, "reconstruction_s": recon,
           "reconstruction_speedup": {v: recon["old"] / recon[v] for v in recon},
           "episode_speedup": {v: rows["old"]["episode_s"] / rows[v]["episode_s"]
                               for v in VARIANTS},
           "patches_fp32_same_top1_as_old": top1["patches_fp32"] == top1["old"],
           "patches_vs_old": compared(top1["patches"], top1["old"]),
           "fused_vs_patches": compared(top1["fused"], top1["patches"]),
           "top1": top1,
           "machine": {"cpus": os.cpu_count(), "cpu": cpu_model(),
                       "load_avg_start": load0, "load_avg_end": os.getloadavg()[0]}}
    write_json(a.out, doc)
    print(", ".join(f"{v} {rows[v]['episode_s']:.3f} s" for v in VARIANTS)
          + f" per episode; reconstruction {recon['old']:.3f} -> {recon['patches']:.3f} -> "
          f"{recon['fused']:.3f} s; patches vs old: {doc['patches_vs_old']}; fused vs patches: "
          f"{doc['fused_vs_patches']}")
    if not doc["patches_fp32_same_top1_as_old"]:
        raise SystemExit("the sampled patches scored differently from unfolding")


if __name__ == "__main__":
    main()
