"""Per-episode cost of scoring a policy: the old path against the fast scorer, side by side.

For the pretrained CIFAR ResNet-20 and ResNet-56 (``internal`` units, ``flops:0.5``, BN
recalibration, 1,000 ``val`` images, one thread) it writes ``results/bench_episode.json``:

* ``policies``: the same 20 random policies that meet the budget, each scored by
  ``old`` (the code before: plain evaluation, BN recalibration on 512 images in batches of
  128), ``fast_same`` (the fast scorer with the same 512 recalibration images, no racing:
  its top-1 must match ``old``), ``fast`` (a search's defaults in fp32: recalibration on
  ``recal_size`` images in one batch, racing against the best full score so far), and
  ``fast_same_bf16`` / ``fast_bf16``: the same two with the scores in bf16
  (``--score-amp bf16``, what ``auto`` picks on a CPU with native bf16), and ``default``
  (what ``amc search`` scores with by default: ``fast`` with ``--score-amp auto`` and the
  least-squares reconstruction, its top-1 higher by design), and ``fast_val``: ``fast``
  recalibrating on the first ``recal_size`` ``val`` images instead of calibration images,
  in the train-mode pass that also scores them (``--recal-on val``; its work counts those
  images once), and ``default_val``: ``default`` with ``--recal-on val`` (the
  reconstruction's fits and the recalibration both on those first ``val`` images, in the
  pass that scores them). All but ``default`` and ``default_val`` prune plainly
  (``PLAIN``). Per policy and path: seconds split into prune / repair / evaluate, top-1,
  images recalibrated and evaluated.
* ``summary``: mean seconds per episode per path, the speed-up over ``old``, the floor
  (multiply-adds of recalibration + evaluation / the fp32 matmul rate measured in the same
  run with the same thread count), and the work done in GFLOP/s as a fraction of that rate
  (bf16 paths: also of the bf16 matmul rate).
* ``ceiling``: the fast scorer on the dense network and single convolutions of the
  model's shapes, as fractions of the matmul rate: what any policy's episode can reach;
  ``pruned_conv``: the same convolutions with about half their output channels.
* ``recal``: the Spearman rank correlation between 50 random policies' scores after BN
  recalibration on 64 ... 512 images and after recalibration on 2,000 images.
* ``recal_val``: the same 50 policies recalibrated on the first ``recal_size`` ``val``
  images (``fast_val``'s scores): Spearman against the 2,000-image recalibration, beside the
  calibration images' own figure.
* ``recon_val``: the same 50 policies scored as ``default`` and ``default_val`` score them
  (reconstruction; fitted and recalibrated on calibration images, or on the first ``val``
  images that the same pass scores), each against the held-out top-1 of the network
  ``default`` delivers (:meth:`Scorer.pruned`: repaired on calibration images) on the 2,000
  ``val`` images after the first ``--val-limit`` (no score sees them): Spearman of both,
  and their difference with a 95 % bootstrap interval over the policies.
* ``amp``: the same 50 policies scored in bf16: Spearman and differences against fp32.
* ``search_resnet56``: for each seed 0..``--search-seeds``-1, 100-episode ResNet-56 searches
  with that seed on the old path, on the fast scorer with racing and on the fast scorer
  without racing (``--search-variants``), their best policies re-scored by the old path (on
  the searches' 1,000 ``val`` images: this favours ``old``, whose search picked its best on
  exactly that scorer, recalibration draw included) and on held-out data (the 4,000 ``val``
  images no search saw, BN recalibrated the old way on another calibration draw); the
  summary gives mean ± std over the seeds and of the paired differences (one pair is not
  enough: a search's best policy varies by seed more than the 0.3-point target); seeds 0-2
  also with bf16 scores (``fast_bf16``, paired with ``fast`` as well); ``fast_time``: the
  fast scorer given the old path's time (200 episodes: the same seed, the same wall time).
  A search with ``--rescore-top`` (``SearchConfig``'s default: 5) picks its best
  among its best few on all of ``val``, the held-out images included; ``pick`` re-scores
  the search's own pick before that (``search_best_policy.json``) both ways, blind to them;
  ``optimism`` splits how far the pick's score in the search lies above its held-out one
  into the luck of the search's ``val`` images and of its recalibration
  (:func:`pick_optimism`). ``best_test_reconstructed``: each variant's best policy on
  ``test`` as ``amc`` delivers it by default (reconstructed and recalibrated on calibration
  images), whatever scorer its search used.

Each stage is cached under ``--work`` (a killed run resumes); ``--fresh`` starts over;
``--reuse results/bench_episode.json`` fills the cache with the committed file's ``recal``
stages and searches (what does not depend on this run's timing).

    .venv/bin/python scripts/bench_episode.py    # ~6 h on 2 cores (searches ~5.5 h)

``--models`` with no name runs the searches only (e.g. with ``--reuse`` and
``--search-variants fast_time`` to add a variant to committed searches).

``fast_norace`` and ``fast_bf16`` run for seeds 0-2 only (``SEEDS_OF``); cached seeds are
reused as they are.

On a CPU without native bf16 (no AVX512-BF16 or AMX: bf16 is emulated there, ~40x slower
than fp32, and ``--score-amp auto`` scores in fp32) ``--bf16 auto`` leaves out every bf16
stage (the two bf16 paths, the ceiling's ``bf16``, ``amp``, the ``fast_bf16`` searches);
``--bf16 on`` measures them anyway.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import replace
from functools import partial
from pathlib import Path

import numpy as np
import torch

from amc.cost.timing import interleaved
from amc.models.evaluate import top1
from amc.prune.baselines import scale_to_budget
from amc.prune.budget import Budget
from amc.prune.repair import recalibrate_bn
from amc.prune.scoring import Scorer, build_scorer
from amc.utils import allocator
from amc.utils.io import write_json
from amc.utils.precision import cpu_bf16_native
from amc.utils.provenance import cpu_model, git_commit, now, versions
from amc.utils.stats import mean_std

OLD_RECAL, OLD_BATCH = 512, 128
PLAIN = {"reconstruct": False}
"""Every scorer and search here prunes plainly (no least-squares refit): the benchmark compares
the scorer's mechanics (folding, recalibration size, racing, bf16) on the scores they had when
it was made; reconstruction, the default since 2026-12-03, changes every score
(``scripts/bench_reconstruct.py``)."""
DEFAULT = {"reconstruct": True, "amp": "auto"}
"""What ``amc search`` scores with by default beyond ``fast`` (the ``default`` path)."""
HELDOUT_DRAW = 1000
"""Calibration draw of the held-out re-scoring (no search uses it: searches use their seed)."""


def matmul_gflops(n: int = 2048, reps: int = 5, dtype: torch.dtype = torch.float32) -> float:
    """``n x n`` matmul rate in ``dtype`` (fp32 by default) with the current thread count
    (best of ``reps``)."""
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    a @ b
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t)
    return 2 * n ** 3 / best / 1e9


def old_path(s: Scorer, ratios: list[float]) -> dict:
    """The scorer as it was: prune, recalibrate on 512 images in batches of 128, evaluate the
    unfolded network on contiguous tensors."""
    t0 = time.perf_counter()
    net = s.pm.prune(ratios)
    t1 = time.perf_counter()
    recalibrate_bn(net, s.calib[:OLD_RECAL].split(OLD_BATCH))
    t2 = time.perf_counter()
    acc = top1(net, s.x, s.y, 500)
    t3 = time.perf_counter()
    return {"top1": acc, "images": len(s.y), "recal_images": OLD_RECAL, "prune_s": t1 - t0,
            "repair_s": t2 - t1, "eval_s": t3 - t2}


ON_VAL = ("fast_val", "default_val")
"""The paths whose recalibration images are the first ``val`` images they score."""


def images_worked(row: dict, path: str) -> int:
    """Images a path's episode ran through the network: recalibrated plus evaluated, each
    once (an ``ON_VAL`` path's recalibration images are the first it evaluates, in one
    pass)."""
    return row["images"] + (0 if path in ON_VAL else row["recal_images"])


def as_row(score) -> dict:
    return {"top1": score.top1, "images": score.images, "recal_images": score.recal_images,
            "prune_s": score.prune_s, "repair_s": score.repair_s, "eval_s": score.eval_s}


def random_policies(s: Scorer, budget: Budget, n: int, seed: int) -> list[list[float]]:
    rng = np.random.default_rng(seed)
    units = len(s.pm.units)
    return [scale_to_budget(s, budget, rng.uniform(0.05, 1.0, units).tolist(), 0.8)
            for _ in range(n)]


def cached(path: Path, make) -> dict:
    if path.is_file():
        return json.loads(path.read_text())
    out = make()
    write_json(path, out)
    return out


def spearman(a: list[float], b: list[float]) -> float:
    ra, rb = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
    return float(np.corrcoef(ra, rb)[0, 1])


BF16_PATHS = ("fast_same_bf16", "fast_bf16")
"""The paths that score in bf16 (``--score-amp bf16``; ``auto`` on a CPU with native bf16)."""


def bench_paths(args, model: str, matmul: float, matmul_bf16: float) -> dict:
    """The 20 policies through the six paths, interleaved policy by policy: the three fp32
    ones, ``fast_same`` and ``fast`` again with the scores in bf16, and ``default``: what
    ``amc search`` scores with by default (``fast`` with ``--score-amp auto`` and the
    least-squares reconstruction fused into the recalibration; its top-1 differs by design,
    and its work counts the recalibration and evaluation only, not the fits)."""
    ckpt = str(Path(args.models_dir) / f"{model}-cifar10.th")
    kw = dict(model=model, checkpoint=ckpt, data="cifar10", data_dir=args.data_dir,
              val_limit=args.val_limit, units="internal", bn_recalib=True, calib_size=2000, **PLAIN)
    same = build_scorer(**kw, recal_size=OLD_RECAL)
    same.recal_batch = OLD_BATCH  # the old batching: the same statistics, so the same top-1
    fast = build_scorer(**kw, recal_size=args.recal_size)
    low = BF16_PATHS if args.bf16 else ()
    if args.bf16:  # each copy moves val and the calibration images again
        same_bf16, fast_bf16 = replace(same, amp="bf16"), replace(fast, amp="bf16")
    default = build_scorer(**{**kw, **DEFAULT}, recal_size=args.recal_size)
    on_val, default_val = replace(fast, recal_on="val"), replace(default, recal_on="val")
    budget = Budget.parse(args.budget)
    rows, best = [], {"fast": None, "fast_bf16": None, "default": None, "fast_val": None,
                      "default_val": None}

    def raced(scorer: Scorer, name: str, r: list[float]) -> dict:
        bar = best[name]
        row = as_row(scorer.score(r, (lambda ub: ub > bar) if bar is not None else None))
        if row["images"] == args.val_limit:
            best[name] = row["top1"] if bar is None else max(bar, row["top1"])
        return row

    for i, r in enumerate(random_policies(same, budget, args.policies, seed=1)):
        o = old_path(same, r)
        f_same = as_row(same.score(r))
        f = raced(fast, "fast", r)
        macs = same.pm.cost(r)[0]
        row = {"policy": i, "ratios": r, "macs_per_image": macs, "old": o,
               "fast_same": f_same, "fast": f}
        if args.bf16:
            row |= {"fast_same_bf16": as_row(same_bf16.score(r)),
                    "fast_bf16": raced(fast_bf16, "fast_bf16", r)}
        rows.append(row | {"default": raced(default, "default", r),
                           "fast_val": raced(on_val, "fast_val", r),
                           "default_val": raced(default_val, "default_val", r)})
        print(f"{model} policy {i}: old {sum(o[k] for k in ('prune_s', 'repair_s', 'eval_s')):.2f}"
              f" s, fast {sum(f[k] for k in ('prune_s', 'repair_s', 'eval_s')):.2f} s "
              f"({f['images']} images), top-1 {o['top1']:.1f}/{f_same['top1']:.1f}/{f['top1']:.1f}",
              flush=True)
    summary = {}
    for path in ("old", "fast_same", "fast", *low, "default", *ON_VAL):
        sec = [sum(row[path][k] for k in ("prune_s", "repair_s", "eval_s")) for row in rows]
        work = [2 * row["macs_per_image"] * images_worked(row[path], path) for row in rows]
        busy = [row[path]["repair_s"] + row[path]["eval_s"] for row in rows]
        summary[path] = {
            "seconds_per_episode": float(np.mean(sec)),
            "prune_s": float(np.mean([row[path]["prune_s"] for row in rows])),
            "repair_s": float(np.mean([row[path]["repair_s"] for row in rows])),
            "eval_s": float(np.mean([row[path]["eval_s"] for row in rows])),
            "images_evaluated": float(np.mean([row[path]["images"] for row in rows])),
            "images_recalibrated": float(np.mean([row[path]["recal_images"] for row in rows])),
            "floor_s": float(np.mean(work) / (matmul * 1e9)),
            "gflops": float(sum(work) / sum(busy) / 1e9),
            "fraction_of_matmul": float(sum(work) / sum(busy) / 1e9 / matmul),
        }
        if path in BF16_PATHS:
            summary[path]["fraction_of_bf16_matmul"] = float(sum(work) / sum(busy) / 1e9
                                                             / matmul_bf16)
    for path in ("fast_same", "fast", *low, "default", *ON_VAL):
        summary[path]["speedup_vs_old"] = (summary["old"]["seconds_per_episode"]
                                           / summary[path]["seconds_per_episode"])
    summary["max_abs_top1_diff_old_vs_fast_same"] = float(max(
        abs(row["old"]["top1"] - row["fast_same"]["top1"]) for row in rows))
    if args.bf16:
        summary["max_abs_top1_diff_fast_same_vs_bf16"] = float(max(
            abs(row["fast_same_bf16"]["top1"] - row["fast_same"]["top1"]) for row in rows))
    for path in ("fast", *low[1:], "default", *ON_VAL):
        full = [row for row in rows if row[path]["images"] == args.val_limit]
        summary[f"{path}_policies_scored_on_all_val"] = len(full)
    return {"rows": rows, "summary": summary, "matmul_gflops": matmul,
            "matmul_bf16_gflops": matmul_bf16}


def lane_padded(args, model: str, paths: dict) -> None:
    """Count each policy's work as the CPU's convolution kernels do it: every conv's output
    channels rounded up to the fp32 vector width (:func:`~amc.prune.latency_timing.lanes`;
    ``ceiling``'s
    ``pruned_conv`` shows a conv with half its outputs taking as long as the whole one).
    Adds ``padded_macs_per_image`` to each row and ``fraction_of_matmul_lane_padded`` to each
    path's summary (computed from the rows' ratios and times: no timing of its own)."""
    from amc.cost.macs import layer_costs
    from amc.models.registry import create_model
    from amc.prune.latency_timing import lanes, whole_vectors
    from amc.prune.units import PrunableModel

    width = lanes("torch")
    # channel counts depend on the ratios only: the architecture, without weights or data
    pm = PrunableModel(create_model(model), (3, 32, 32), mode="internal")
    for row in paths["rows"]:
        costs = layer_costs(pm.prune(row["ratios"]), (3, 32, 32))
        real = sum(c.macs for c in costs)
        padded = sum(c.macs * whole_vectors(c.out_channels, width) / c.out_channels
                     if c.type.startswith("Conv") else c.macs for c in costs)
        row["padded_macs_per_image"] = row["macs_per_image"] * padded / real
    rows = paths["rows"]
    for path, summ in paths["summary"].items():
        if not isinstance(summ, dict):
            continue
        work = sum(2 * r["padded_macs_per_image"] * images_worked(r[path], path) for r in rows)
        busy = sum(r[path]["repair_s"] + r[path]["eval_s"] for r in rows)
        summ["fraction_of_matmul_lane_padded"] = work / busy / 1e9 / paths["matmul_gflops"]
    paths["vector_width"] = width


def bench_ceiling(args, model: str, matmul: float, matmul_bf16: float, reps: int = 3) -> dict:
    """The fast scorer on the dense network (ratios 0: the widest, most efficient layers any
    policy of this model can have), best of ``reps``: the efficiency ceiling of the scorer on
    this model, split into recalibration (BatchNorm in training mode, not foldable) and the
    folded evaluation; and single 3x3 convolutions of the model's stage shapes (batch 64,
    channels-last), the kernel's own ceiling, each also with about half its output channels
    (``pruned_conv``: its share of the matmul rate, and its time over the unpruned conv's: a
    kernel that computes output channels a vector at a time gains little from odd widths)."""
    ckpt = str(Path(args.models_dir) / f"{model}-cifar10.th")
    s = build_scorer(model=model, checkpoint=ckpt, data="cifar10", data_dir=args.data_dir,
                     val_limit=args.val_limit, units="internal", bn_recalib=True,
                     calib_size=2000, recal_size=args.recal_size, **PLAIN)
    macs = s.pm.cost([0.0] * len(s.pm.units))[0]
    dense = [0.0] * len(s.pm.units)

    def best_of(scorer: Scorer):
        return min((scorer.score(dense) for _ in range(reps)),
                   key=lambda sc: sc.repair_s + sc.eval_s)

    best = best_of(s)
    low = best_of(replace(s, amp="bf16")) if args.bf16 else None
    recal_flops, eval_flops = 2 * macs * best.recal_images, 2 * macs * best.images
    fns, flops = {}, {}
    for c, hw in ((16, 32), (32, 16), (64, 8)):
        x = torch.randn(64, c, hw, hw).contiguous(memory_format=torch.channels_last)
        # the stage's conv, and the same with about half its outputs (a pruned unit's conv)
        for out, key in ((c, f"{c}ch_{hw}px"), (c // 2 + 1, f"{c}to{c // 2 + 1}ch_{hw}px")):
            conv = torch.nn.Conv2d(c, out, 3, padding=1).eval().to(
                memory_format=torch.channels_last)
            fns[key] = partial(conv, x)
            flops[key] = 2 * 64 * c * out * 9 * hw * hw
    with torch.inference_mode():
        times = interleaved(fns, runs=20, rounds=2)
    rates = {k: flops[k] / (t["min_ms"] / 1e3) / 1e9 / matmul for k, t in times.items()}
    convs = {k: v for k, v in rates.items() if "to" not in k}
    pruned = {k: {"fraction_of_matmul": v,
                  "seconds_vs_unpruned": times[k]["min_ms"]
                  / times[k.split("to")[0] + "ch_" + k.split("_")[1]]["min_ms"]}
              for k, v in rates.items() if "to" in k}
    return {"dense_macs_per_image": macs, "recal_images": best.recal_images,
            "images": best.images, "repair_s": best.repair_s, "eval_s": best.eval_s,
            "recal_fraction_of_matmul": recal_flops / best.repair_s / 1e9 / matmul,
            "eval_fraction_of_matmul": eval_flops / best.eval_s / 1e9 / matmul,
            "fraction_of_matmul": (recal_flops + eval_flops)
            / (best.repair_s + best.eval_s) / 1e9 / matmul,
            "single_conv_fraction_of_matmul": convs,
            "pruned_conv": pruned,
            "matmul_gflops": matmul, "matmul_bf16_gflops": matmul_bf16,
            "bf16": None if low is None else {"repair_s": low.repair_s, "eval_s": low.eval_s,
                     "fraction_of_matmul": (recal_flops + eval_flops)
                     / (low.repair_s + low.eval_s) / 1e9 / matmul,
                     "fraction_of_bf16_matmul": (recal_flops + eval_flops)
                     / (low.repair_s + low.eval_s) / 1e9 / matmul_bf16}}


def bench_recal(args, model: str) -> dict:
    """Spearman of scores after recalibration on few images vs on 2,000."""
    ckpt = str(Path(args.models_dir) / f"{model}-cifar10.th")
    kw = dict(model=model, checkpoint=ckpt, data="cifar10", data_dir=args.data_dir,
              val_limit=args.val_limit, units="internal", bn_recalib=True, calib_size=2000, **PLAIN)
    scorers = {n: build_scorer(**kw, recal_size=n) for n in (*args.recal_sizes, 2000)}
    policies = random_policies(scorers[2000], Budget.parse(args.budget), args.recal_policies,
                               seed=2)
    scores = {n: [] for n in scorers}
    for i, r in enumerate(policies):
        for n, s in scorers.items():
            scores[n].append(s(r))
        print(f"{model} recal policy {i}: " + ", ".join(
            f"{n}: {v[-1]:.1f}" for n, v in scores.items()), flush=True)
    ref = scores[2000]
    return {"policies": len(policies), "scores": {str(n): v for n, v in scores.items()},
            "spearman_vs_2000": {str(n): spearman(scores[n], ref) for n in args.recal_sizes},
            "mean_abs_diff_vs_2000": {str(n): float(np.mean(np.abs(np.subtract(scores[n], ref))))
                                      for n in args.recal_sizes}}


def bench_recal_val(args, model: str, recal: dict) -> dict:
    """The ``recal`` stage's 50 policies recalibrated on the first ``--recal-size`` ``val``
    images instead of calibration images (``recal_on="val"``: the pass that recalibrates
    also scores them): Spearman and mean (|) difference against the 2,000-image
    recalibration, beside the same figures of the calibration images' ``--recal-size``."""
    ckpt = str(Path(args.models_dir) / f"{model}-cifar10.th")
    s = build_scorer(model=model, checkpoint=ckpt, data="cifar10", data_dir=args.data_dir,
                     val_limit=args.val_limit, units="internal", bn_recalib=True,
                     calib_size=2000, recal_size=args.recal_size, recal_on="val", **PLAIN)
    policies = random_policies(s, Budget.parse(args.budget), args.recal_policies, seed=2)
    scores = []
    for i, r in enumerate(policies):
        scores.append(s(r))
        print(f"{model} recal on val, policy {i}: {scores[-1]:.1f}", flush=True)
    ref, calib = recal["scores"]["2000"], recal["scores"][str(args.recal_size)]
    return {"policies": len(policies), "recal_size": args.recal_size, "scores": scores,
            "spearman_vs_2000": spearman(scores, ref),
            "mean_diff_vs_2000": float(np.mean(np.subtract(scores, ref))),
            "mean_abs_diff_vs_2000": float(np.mean(np.abs(np.subtract(scores, ref)))),
            "calib_spearman_vs_2000": spearman(calib, ref),
            "calib_mean_diff_vs_2000": float(np.mean(np.subtract(calib, ref))),
            "calib_mean_abs_diff_vs_2000": float(np.mean(np.abs(np.subtract(calib, ref))))}


def bench_recon_val(args, model: str) -> dict:
    """The ``recal`` stage's 50 policies scored with the reconstruction, its fits and the
    recalibration on calibration images (``default``) or on the first ``--recal-size``
    ``val`` images (``default_val``), against the held-out top-1 of the network ``default``
    delivers: Spearman of both, and their mean differences from it."""
    ckpt = str(Path(args.models_dir) / f"{model}-cifar10.th")
    s = build_scorer(model=model, checkpoint=ckpt, data="cifar10", data_dir=args.data_dir,
                     val_limit=None, units="internal", bn_recalib=True, calib_size=2000,
                     recal_size=args.recal_size, **{**DEFAULT, "amp": "off"})
    rest = slice(args.val_limit, args.val_limit + HELD_IMAGES)
    held = replace(s, x=s.x[rest], y=s.y[rest])
    s = replace(s, x=s.x[:args.val_limit], y=s.y[:args.val_limit])
    on_val = replace(s, recal_on="val")
    policies = random_policies(s, Budget.parse(args.budget), args.recal_policies, seed=2)
    calib, val, truth = [], [], []
    for i, r in enumerate(policies):
        calib.append(s(r))
        val.append(on_val(r))
        truth.append(top1(held.pruned(r), held.x, held.y, held.batch_size))
        print(f"{model} reconstruction on val, policy {i}: calib {calib[-1]:.1f}, val "
              f"{val[-1]:.1f}, held out {truth[-1]:.1f}", flush=True)
    return {"policies": len(policies), "recal_size": args.recal_size,
            "held_out_images": len(held.y), "scores_calib": calib, "scores_val": val,
            "held_out_top1": truth,
            "spearman_calib_vs_held_out": spearman(calib, truth),
            "spearman_val_vs_held_out": spearman(val, truth),
            "spearman_val_vs_calib": spearman(val, calib),
            "mean_diff_calib_vs_held_out": float(np.mean(np.subtract(calib, truth))),
            "mean_diff_val_vs_held_out": float(np.mean(np.subtract(val, truth)))}


def spearman_gain(scores: dict, draws: int = 2000, seed: int = 0) -> dict:
    """``recon_val``'s Spearman of the ``val`` scores minus that of the calibration ones
    (both against the held-out top-1), with a 95 % interval from resampling the policies
    (``draws`` bootstrap draws)."""
    val, calib, truth = (np.asarray(scores[k]) for k in ("scores_val", "scores_calib",
                                                          "held_out_top1"))
    rng = np.random.default_rng(seed)
    diffs = []
    for _ in range(draws):
        i = rng.integers(0, len(truth), len(truth))
        diffs.append(spearman(val[i], truth[i]) - spearman(calib[i], truth[i]))
    return {"difference": spearman(val, truth) - spearman(calib, truth),
            "ci95": [float(np.percentile(diffs, 2.5)), float(np.percentile(diffs, 97.5))],
            "bootstrap_draws": draws}


HELD_IMAGES = 2000
"""``val`` images after the first ``--val-limit`` that ``recon_val`` scores the delivered
networks on."""


def bench_amp(args, model: str, recal: dict) -> dict:
    """The ``recal`` stage's 50 policies scored in bf16 (recalibration on ``--recal-size``
    images): Spearman and mean |difference| against the same scorer in fp32 and against fp32
    with recalibration on 2,000 images (both from ``recal``)."""
    ckpt = str(Path(args.models_dir) / f"{model}-cifar10.th")
    s = build_scorer(model=model, checkpoint=ckpt, data="cifar10", data_dir=args.data_dir,
                     val_limit=args.val_limit, units="internal", bn_recalib=True,
                     calib_size=2000, recal_size=args.recal_size, amp="bf16",
                     **PLAIN)
    policies = random_policies(s, Budget.parse(args.budget), args.recal_policies, seed=2)
    bf16 = []
    for i, r in enumerate(policies):
        bf16.append(s(r))
        print(f"{model} bf16 policy {i}: {bf16[-1]:.1f}", flush=True)
    fp32, ref = recal["scores"][str(args.recal_size)], recal["scores"]["2000"]
    top = int(np.argmax(fp32))
    return {"policies": len(policies), "recal_size": args.recal_size, "scores_bf16": bf16,
            "spearman_vs_fp32": spearman(bf16, fp32),
            "mean_abs_diff_vs_fp32": float(np.mean(np.abs(np.subtract(bf16, fp32)))),
            "max_abs_diff_vs_fp32": float(np.max(np.abs(np.subtract(bf16, fp32)))),
            "spearman_vs_2000": spearman(bf16, ref),
            "fp32_spearman_vs_2000": recal["spearman_vs_2000"][str(args.recal_size)],
            "fp32_best_rank_in_bf16": int(np.argsort(np.argsort(-np.asarray(bf16)))[top]) + 1}


VARIANTS = {"old": dict(fast_eval=False, recal_size=OLD_RECAL, race=False, score_amp="off"),
            "fast": dict(fast_eval=True, race=True, score_amp="off"),
            "fast_norace": dict(fast_eval=True, race=False, score_amp="off"),
            "fast_bf16": dict(fast_eval=True, race=True, score_amp="bf16"),
            "fast_time": dict(fast_eval=True, race=True, score_amp="off"),
            "fast_val": dict(fast_eval=True, race=True, score_amp="off", recal_on="val"),
            "recon": dict(fast_eval=True, race=True, score_amp="off", reconstruct=True),
            "recon_val": dict(fast_eval=True, race=True, score_amp="off", reconstruct=True,
                              recal_on="val")}
"""The search variants: the old path; the fast scorer with racing (a search's defaults
before ``--score-amp``); the fast scorer without racing (separates racing's effect from the
recalibration size's); the fast scorer with racing and bf16 scores (today's defaults on a
CPU with native bf16); ``fast`` given the old path's time (``EPISODES_X`` times the
episodes: its episodes take about half as long in fp32); ``fast`` recalibrating on the first
``val`` images, which the same pass scores (``recal_on="val"``); ``fast`` with the
reconstruction (``amc search``'s default scorer on a CPU without native bf16), and the same
fitted and recalibrated on the first ``val`` images (``recal_on="val"``)."""
PAIRED_WITH = {"fast_bf16": ("old", "fast"), "fast_val": ("old", "fast", "recon"),
               "recon_val": ("old", "recon")}
"""The variants each variant's best policies are also compared with, seed by seed (the
others: ``old`` only)."""
EPISODES_X = {"fast_time": 2}
"""Variants searched for a multiple of ``--search-episodes`` (warm-up a quarter of them, as
for the others)."""


SEEDS_OF = {"fast_norace": 3, "fast_bf16": 3}
"""Variants searched for the first N seeds only (the others for all ``--search-seeds``)."""


def search_cache(seed: int) -> str:
    """The cache file of seed ``seed``'s searches (seed 0 keeps the single-seed name)."""
    return "search.json" if seed == 0 else f"search_s{seed}.json"


def restore_cache(committed: Path, work: Path) -> list[str]:
    """Write the stages a committed results file holds that do not depend on this run's
    timing (``recal`` per model, each seed's searches) into ``work``'s cache where absent;
    the cache files written."""
    doc = json.loads(committed.read_text())
    files = {f"{m}_recal.json": d["recal"] for m, d in doc.get("models", {}).items()
             if "recal" in d}
    files |= {search_cache(int(k)): v
              for k, v in doc.get("search_resnet56", {}).get("seeds", {}).items()}
    done = []
    for name, value in files.items():
        if not (work / name).is_file():
            write_json(work / name, value)
            done.append(name)
    return done


def bench_search(args, work: Path, seed: int) -> dict:
    """ResNet-56 searches with seed ``seed``: one per variant of ``--search-variants``, each
    best policy re-scored by the old path (recalibration on 512 of 2,000 images). Cached per
    seed in ``search.json`` / ``search_s<seed>.json``; variants already there are kept."""
    from amc.agents import SearchConfig, run_or_resume

    path = work / search_cache(seed)
    out = json.loads(path.read_text()) if path.is_file() else {}
    todo = [n for n in args.search_variants if n not in out and seed < SEEDS_OF.get(n, 99)]
    ckpt = str(Path(args.models_dir) / "resnet56-cifar10.th")
    base = dict(model="resnet56", checkpoint=ckpt, data="cifar10", data_dir=args.data_dir,
                val_limit=args.val_limit, units="internal", budget=args.budget,
                bn_recalib=True, episodes=args.search_episodes,
                warmup_episodes=args.search_episodes // 4, seed=seed, threads=1, **PLAIN)
    ref = ref_scorer(args, ckpt) if todo else None
    for name in todo:
        v = {"recal_size": args.recal_size, **VARIANTS[name]}
        run = search_dir(work, name, seed)
        episodes = args.search_episodes * EPISODES_X.get(name, 1)
        cfg = SearchConfig(**{**base, "episodes": episodes, "warmup_episodes": episodes // 4,
                              **v}, out=str(run))
        t = time.perf_counter()
        s = run_or_resume(cfg)
        wall = time.perf_counter() - t
        ratios = best_ratios(run, ref)
        out[name] = {"episodes": episodes, "best_val_top1_in_search": s["best_val_top1"],
                     "best_episode": s["best_episode"],
                     "best_rescored_by_old_path": old_path(ref, ratios)["top1"],
                     "seconds_per_episode": s["seconds_per_episode"], "wall_seconds": wall,
                     "settings": v, "agent": {"warm_start": cfg.warm_start,
                                              "warmup_episodes": cfg.warmup_episodes,
                                              "noise_min": cfg.noise_min,
                                              "update_rounds_overlapped":
                                                  s.get("update_rounds_overlapped", 0)}}
        if "old" in out and "fast" in out:
            out["fast_minus_old_rescored"] = (out["fast"]["best_rescored_by_old_path"]
                                              - out["old"]["best_rescored_by_old_path"])
        write_json(path, out)  # each finished search is kept
    held = None
    for name in [n for n, v in out.items() if isinstance(v, dict) and "best_heldout_val" not in v]:
        if held is None:
            held = heldout_scorer(args, ckpt)
        run = search_dir(work, name, seed)
        out[name]["best_heldout_val"] = old_path(held, best_ratios(run, held))["top1"]
        write_json(path, out)
    for name in [n for n, v in out.items() if isinstance(v, dict) and "pick" not in v]:
        run = search_dir(work, name, seed)
        if not own_pick_differs(run):  # the re-ranking kept the search's pick (or none ran)
            out[name]["pick"] = {k: out[name][k] for k in ("best_rescored_by_old_path",
                                                           "best_heldout_val")}
        else:
            if ref is None:
                ref = ref_scorer(args, ckpt)
            if held is None:
                held = heldout_scorer(args, ckpt)
            out[name]["pick"] = {
                "best_rescored_by_old_path": old_path(ref, best_ratios(run, ref, PICK))["top1"],
                "best_heldout_val": old_path(held, best_ratios(run, held, PICK))["top1"]}
        write_json(path, out)
    test = None
    for name in [n for n, v in out.items() if isinstance(v, dict) and "best_test" not in v]:
        run = search_dir(work, name, seed)
        if test is None:
            test = test_scorer(args, ckpt)
        out[name]["best_test"] = old_path(test, best_ratios(run, test))["top1"]
        out[name]["pick"]["best_test"] = (
            old_path(test, best_ratios(run, test, PICK))["top1"] if own_pick_differs(run)
            else out[name]["best_test"])
        write_json(path, out)
    repaired = None  # each best policy as amc delivers it by default, on test
    for name in [n for n, v in out.items() if isinstance(v, dict)
                 and "best_test_reconstructed" not in v]:
        if repaired is None:
            repaired = replace(test if test is not None else test_scorer(args, ckpt),
                               reconstruct=True)
        r = best_ratios(search_dir(work, name, seed), repaired)
        out[name]["best_test_reconstructed"] = top1(repaired.pruned(r), repaired.x,
                                                    repaired.y, 500)
        write_json(path, out)
    for name in [n for n, v in out.items() if isinstance(v, dict) and "optimism" not in v]:
        out[name]["optimism"] = pick_optimism(search_dir(work, name, seed),
                                              out[name]["pick"]["best_heldout_val"])
        write_json(path, out)
    return out


def pick_optimism(run: Path, heldout: float) -> dict | None:
    """How far the search ``run``'s own pick scored above what it is worth, in two parts
    (None without a re-ranking that scored it on all the held-out images):
    ``val_sample``: its score in the search minus its score on the held-out images with the
    same recalibrated network (the luck of the search's ``val`` images); ``recalibration``:
    that held-out score minus the old path's with another calibration draw (``heldout``,
    the luck of the search's recalibration)."""
    f = run / "rescore.json"
    rows = json.loads(f.read_text())["rows"] if f.is_file() else []
    if not rows or rows[0]["val_top1_all"] is None:  # not scored on all of them
        return None
    return {"val_sample": rows[0]["search_val_top1"] - rows[0]["rest_val_top1"],
            "recalibration": rows[0]["rest_val_top1"] - heldout}


PICK = "search_best_policy.json"
"""The search's own best policy, before ``--rescore-top`` re-ranks its best few on all of
``val`` (the held-out images included): the measure blind to the held-out images."""


def search_dir(work: Path, name: str, seed: int) -> Path:
    """The run folder of variant ``name``'s search with ``seed`` (seed 0 keeps the
    single-seed name)."""
    return work / (f"search_{name}" + (f"_s{seed}" if seed else ""))


def own_pick_differs(run: Path) -> bool:
    """Whether the search ``run``'s re-ranking replaced its own pick (:data:`PICK`) with
    another policy (False without a re-ranking): only then is the pick scored separately."""
    from amc.prune.policy import load_policy

    return ((run / PICK).is_file()
            and load_policy(run / PICK).ratios != load_policy(run / "best_policy.json").ratios)


def best_ratios(run: Path, s: Scorer, name: str = "best_policy.json") -> list[float]:
    """The ratios of the search ``run``'s best policy (``name``), in the order of ``s``'s
    units."""
    from amc.prune.policy import load_policy

    return load_policy(run / name).ratios_for(u.name for u in s.pm.units)


def ref_scorer(args, ckpt: str) -> Scorer:
    """The old path's scorer on the searches' ``val`` images (recalibration on 512 of 2,000
    calibration images): what every search's best policy is re-scored by."""
    return build_scorer(model="resnet56", checkpoint=ckpt, data="cifar10",
                        data_dir=args.data_dir, val_limit=args.val_limit, units="internal",
                        bn_recalib=True, calib_size=2000, recal_size=OLD_RECAL, **PLAIN)


def test_scorer(args, ckpt: str) -> Scorer:
    """The held-out scorer on the 10,000 ``test`` images instead (no search or re-ranking
    sees them)."""
    from amc.data.datasets import load_dataset

    x, y = load_dataset("cifar10", data_dir=args.data_dir).tensors("test")
    return replace(heldout_scorer(args, ckpt), x=x, y=y)


def heldout_scorer(args, ckpt: str) -> Scorer:
    """The old path's scorer on the ``val`` images after the searches' first
    ``--val-limit`` (never seen by a search), with calibration draw ``HELDOUT_DRAW``."""
    s = build_scorer(model="resnet56", checkpoint=ckpt, data="cifar10", data_dir=args.data_dir,
                     val_limit=None, units="internal", bn_recalib=True, calib_size=2000,
                     seed=HELDOUT_DRAW, recal_size=OLD_RECAL, **PLAIN)
    return replace(s, x=s.x[args.val_limit:], y=s.y[args.val_limit:])


def search_summary(runs: dict[str, dict]) -> dict:
    """Mean ± std over the seeds of each variant's re-scored best policy (on the searches'
    ``val`` images and held out), of its seconds per episode, and of the paired difference of
    every variant from ``old``."""
    names = sorted({k for r in runs.values() for k, v in r.items() if isinstance(v, dict)})

    out: dict = {}
    for n in names:
        have = [r for r in runs.values() if n in r]
        out[n] = {"best_rescored": mean_std([r[n]["best_rescored_by_old_path"] for r in have]),
                  "best_heldout_val": mean_std([r[n]["best_heldout_val"] for r in have]),
                  **({"best_test": mean_std([r[n]["best_test"] for r in have])}
                     if all("best_test" in r[n] for r in have) else {}),
                  **({"best_test_reconstructed": mean_std([r[n]["best_test_reconstructed"]
                                                           for r in have])}
                     if all("best_test_reconstructed" in r[n] for r in have) else {}),
                  "seconds_per_episode": mean_std([r[n]["seconds_per_episode"] for r in have]),
                  "wall_seconds": mean_std([r[n]["wall_seconds"] for r in have])}
        if all("pick" in r[n] for r in have):  # the searches' own picks (before rescoring)
            out[n]["pick"] = {k: mean_std([r[n]["pick"][k] for r in have])
                              for k in ("best_rescored_by_old_path", "best_heldout_val",
                                        "best_test") if all(k in r[n]["pick"] for r in have)}
        parts = [r[n].get("optimism") for r in have]
        if parts and all(parts):  # the pick's optimism, split into its two sources
            out[n]["pick_optimism"] = {k: mean_std([o[k] for o in parts])
                                       for k in ("val_sample", "recalibration")}
        for base in PAIRED_WITH.get(n, ("old",)):
            pairs = [r for r in have if base in r]
            if n == base or not pairs:
                continue
            for key, metric in ((f"minus_{base}", "best_rescored_by_old_path"),
                                (f"minus_{base}_heldout", "best_heldout_val"),
                                (f"minus_{base}_test", "best_test"),
                                (f"minus_{base}_test_reconstructed",
                                 "best_test_reconstructed")):
                if not all(metric in r[n] and metric in r[base] for r in pairs):
                    continue
                out[n][key] = mean_std([r[n][metric] - r[base][metric] for r in pairs])
                if all(metric in r[n].get("pick", {}) and metric in r[base].get("pick", {})
                       for r in pairs):
                    out[n][f"pick_{key}"] = mean_std([r[n]["pick"][metric]
                                                      - r[base]["pick"][metric] for r in pairs])
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="*", default=["resnet20", "resnet56"],
                   help="models of the per-episode stages (none: the ResNet-56 searches only)")
    p.add_argument("--models-dir", default="../shared/models")
    p.add_argument("--data-dir", default="../shared/data")
    p.add_argument("--budget", default="flops:0.5")
    p.add_argument("--val-limit", type=int, default=1000)
    p.add_argument("--policies", type=int, default=20)
    p.add_argument("--recal-size", type=int, default=256,
                   help="recalibration images of the fast path (the search default)")
    p.add_argument("--recal-sizes", type=int, nargs="+", default=[64, 128, 256, 512])
    p.add_argument("--recal-policies", type=int, default=50)
    p.add_argument("--search-episodes", type=int, default=100)
    p.add_argument("--search-seeds", type=int, default=6,
                   help="seeds 0..N-1 of the same-seed search pair (mean ± std over them)")
    p.add_argument("--search-seeds-from", type=int, default=0,
                   help="first seed searched here (two processes can split the seeds over one "
                        "--work; a last run without it collects them all from the cache)")
    p.add_argument("--search-variants", nargs="+", default=sorted(VARIANTS),
                   choices=sorted(VARIANTS))
    p.add_argument("--reuse", default=None,
                   help="a committed bench_episode.json whose recal stages and searches fill "
                        "the cache where it lacks them (paths and ceiling are measured again)")
    p.add_argument("--bf16", choices=("auto", "on", "off"), default="auto",
                   help="the bf16 paths, ceiling and amp stage (auto: where the CPU computes "
                        "bf16 natively; elsewhere bf16 runs emulated, ~40x slower than fp32, "
                        "and no default scores in it)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--work", default="runs/bench_episode")
    p.add_argument("--out", default="results/bench_episode.json")
    p.add_argument("--fresh", action="store_true")
    args = p.parse_args()
    args.bf16 = args.bf16 == "on" or (args.bf16 == "auto" and cpu_bf16_native())
    torch.set_num_threads(args.threads)
    # as the amc CLI and Ray actors run (and before any stage: the ceiling's timer would
    # settle it midway, leaving the first model's paths timed with glibc's defaults)
    allocator.settle()
    work = Path(args.work)
    if args.fresh and work.exists():
        import shutil

        shutil.rmtree(work)
    if args.reuse:
        print("reused from", args.reuse, restore_cache(Path(args.reuse), work), flush=True)
    load0 = os.getloadavg()[0]
    matmul = [matmul_gflops()]
    bf16_rate = partial(matmul_gflops, dtype=torch.bfloat16) if args.bf16 else lambda: None
    if not args.bf16:  # its searches score in bf16 too
        args.search_variants = [v for v in args.search_variants if v != "fast_bf16"]
    matmul_bf16 = [bf16_rate()]
    doc = {"command": "python scripts/bench_episode.py", "date": now(), "git_commit": git_commit(),
           "versions": versions(), "threads": args.threads, "budget": args.budget,
           "val_images": args.val_limit, "units": "internal", "recal_size": args.recal_size,
           "bf16_stages": args.bf16, "models": {}}
    for model in args.models:
        m, mb = matmul_gflops(), bf16_rate()
        matmul.append(m)
        matmul_bf16.append(mb)
        d = doc["models"][model] = {
            "paths": cached(work / f"{model}_paths.json",
                            lambda model=model, m=m, mb=mb: bench_paths(args, model, m, mb)),
            "ceiling": cached(work / f"{model}_ceiling.json",
                              lambda model=model, m=m, mb=mb: bench_ceiling(args, model, m,
                                                                             mb)),
            "recal": cached(work / f"{model}_recal.json",
                            lambda model=model: bench_recal(args, model))}
        d["recal_val"] = cached(work / f"{model}_recal_val.json",
                                lambda model=model, r=d["recal"]: bench_recal_val(args, model, r))
        d["recon_val"] = cached(work / f"{model}_recon_val.json",
                                lambda model=model: bench_recon_val(args, model))
        d["recon_val"]["spearman_val_minus_calib"] = spearman_gain(d["recon_val"])
        lane_padded(args, model, d["paths"])
        # the rates the cached stages' fractions were computed with (measured when they ran)
        d["matmul_gflops_at_paths"] = d["paths"]["matmul_gflops"]
        d["matmul_bf16_gflops_at_paths"] = d["paths"]["matmul_bf16_gflops"]
        if args.bf16:
            d["amp"] = cached(work / f"{model}_amp.json",
                              lambda model=model, r=d["recal"]: bench_amp(args, model, r))
    if ("resnet56" in args.models or not args.models) and args.search_episodes > 0:
        # seed 0 keeps the cache name of the single-seed benchmark
        runs = {str(k): bench_search(args, work, k)
                for k in range(args.search_seeds_from, args.search_seeds)}
        doc["search_resnet56"] = {"seeds": runs, "summary": search_summary(runs)}
    doc["matmul_gflops"] = matmul
    doc["matmul_bf16_gflops"] = matmul_bf16
    doc["machine"] = {"cpus": os.cpu_count(), "cpu": cpu_model(), "load_avg_start": load0,
                      "load_avg_end": os.getloadavg()[0]}
    write_json(args.out, doc)
    for model, d in doc["models"].items():
        s = d["paths"]["summary"]
        print(f"{model}: old {s['old']['seconds_per_episode']:.2f} s, fast "
              f"{s['fast']['seconds_per_episode']:.2f} s ({s['fast']['speedup_vs_old']:.2f}x), "
              f"efficiency {s['fast_same']['fraction_of_matmul']:.2f} of matmul (dense: "
              f"{d['ceiling']['fraction_of_matmul']:.2f}); recal "
              f"Spearman {d['recal']['spearman_vs_2000']}; default "
              f"{s['default']['seconds_per_episode']:.2f} s "
              f"({s['default']['speedup_vs_old']:.2f}x); recalibrating on val "
              f"{s['fast_val']['seconds_per_episode']:.2f} s "
              f"({s['fast_val']['speedup_vs_old']:.2f}x), Spearman "
              f"{d['recal_val']['spearman_vs_2000']:.3f}; default on val "
              f"{s['default_val']['seconds_per_episode']:.2f} s "
              f"({s['default_val']['speedup_vs_old']:.2f}x), Spearman vs held out "
              f"{d['recon_val']['spearman_val_vs_held_out']:.3f} (calib "
              f"{d['recon_val']['spearman_calib_vs_held_out']:.3f})")
        if "fast_bf16" not in s:
            continue
        print(f"{model}: bf16 "
              f"{s['fast_bf16']['seconds_per_episode']:.2f} s "
              f"({s['fast_bf16']['speedup_vs_old']:.2f}x), efficiency "
              f"{s['fast_same_bf16']['fraction_of_matmul']:.2f} of the fp32 matmul, "
              f"{s['fast_same_bf16']['fraction_of_bf16_matmul']:.2f} of the bf16 one; "
              f"Spearman vs fp32 {d['amp']['spearman_vs_fp32']:.3f}")


if __name__ == "__main__":
    main()
