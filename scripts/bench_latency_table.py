"""Validate the per-layer latency table against whole-model timings on the same target.

For each network and target (backend, batch, threads) the table is measured afresh (a temporary
cache), then 20 random policies (ratios uniform in [0, 0.8] per unit, numpy ``default_rng(0)``)
and 10 aggressive ones (uniform 0.75, 0.8, 0.85 and 0.9, and 6 with ratios uniform in [0.5,
0.9], ``default_rng(1)``: where ``latency:0.5`` budgets land) and 10 of whole vectors (each
unit keeping a random number, ``default_rng(2)``, of the CPU's vectors: what ``--fill-vectors``
delivers, where the steps between vectors count) are pruned and timed whole, side by side with
the dense model, with the one timer (:func:`amc.cost.timing.interleaved`). Per policy:
predicted and measured ms, the prediction without the calibration fit (constant rest, scale 1),
the predictions of the same measurements counting every width linearly (``linear``: no whole
vectors, the tables before METHOD 6), counting only a conv's outputs in whole vectors
(``outputs_only``: its inputs linearly, the tables of METHOD 6) and using only the points at
FRACTIONS (``fractions_only``: no conv timed at every whole vector, the tables of METHOD 7),
each refitted on the same calibration timings, and the predicted vs measured fraction of dense
(what a ``latency:`` budget compares). Summary, for the 20 random policies and for the
aggressive and whole-vector ones apart: mean/max absolute relative error and the Spearman rank
correlation. Every target is measured ``--repeats`` times (3), table included, interleaved;
``summary`` gives per target the mean ± std over the repeats, the table (METHOD 8) against
``fractions_only``, ``outputs_only`` and ``linear``.

    nice -n 10 .venv/bin/python scripts/bench_latency_table.py [--models resnet56,resnet20]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime
import scipy
import torch
from scipy.stats import spearmanr

from amc.models.registry import create_model
from amc.prune.latency_table import LatencySpec, latency_table
from amc.prune.latency_timing import lanes, time_models
from amc.prune.units import PrunableModel
from amc.utils.stats import mean_std

TARGETS = "torch:64:2,torch:64:1,ort:64:2"


def _errors(pred: list[float], meas: list[float]) -> dict:
    rel = np.abs(np.asarray(pred) / np.asarray(meas) - 1)
    return {"mean_abs_rel_err": float(rel.mean()), "max_abs_rel_err": float(rel.max()),
            "spearman": float(spearmanr(pred, meas).statistic)}


def bench(name: str, spec: LatencySpec, pm: PrunableModel, policies: list[list[float]],
          pruned: dict, whole_runs: int, sets: list[str]) -> dict:
    load0 = os.getloadavg()
    t0 = time.perf_counter()
    table = latency_table(pm, **vars(spec))
    build_s = time.perf_counter() - t0
    t = time_models({"dense": pm.model, **pruned}, pm.input_size, spec, runs=whole_runs)
    rest0 = table.measured["dense_rest_ms"]
    others = {  # the same measurements predicting as the tables of earlier METHODs did
        "linear": table.with_lanes(1),  # every width linearly (before 6)
        "outputs_only": table.with_lanes(table.lanes, inputs=False, vectors=False),  # 6
        "fractions_only": table.with_lanes(table.lanes, vectors=False)}  # 7
    rows = []
    for i, r in enumerate(policies):
        s = table.layer_sum(r)
        rows.append({"policy": i, "set": sets[i],
                     "predicted_ms": table.predict(r), "uncalibrated_ms": s + rest0,
                     **{f"{k}_predicted_ms": o.predict(r) for k, o in others.items()},
                     **{f"{k}_predicted_fraction": o.fraction(r) for k, o in others.items()
                        if k != "linear"},
                     "measured_ms": t[str(i)], "predicted_fraction": table.fraction(r),
                     "measured_fraction": t[str(i)] / t["dense"]})
    rand = [r for r in rows if r["set"] == "random"]
    meas = [r["measured_ms"] for r in rand]
    out = {
        "model": name, "backend": spec.backend, "batch": spec.batch, "threads": spec.threads,
        "runs_per_layer": spec.runs, "runs_whole": whole_runs, "calib_policies": spec.calib,
        "table_build_s": round(build_s, 1),
        "table": {"dense_predicted_ms": table.dense_ms, "scale": table.scale,
                  "rest_ms": table.rest_ms, "lanes": table.lanes,
                  "calibration": table.measured},
        "dense_measured_ms": t["dense"],
        "calibrated": _errors([r["predicted_ms"] for r in rand], meas),
        "uncalibrated": _errors([r["uncalibrated_ms"] for r in rand], meas),
        **{k: _errors([r[f"{k}_predicted_ms"] for r in rand], meas) for k in others},
        "fraction": _errors([r["predicted_fraction"] for r in rand],
                            [r["measured_fraction"] for r in rand]),
        **{f"{k}_fraction": _errors([r[f"{k}_predicted_fraction"] for r in rand],
                                    [r["measured_fraction"] for r in rand])
           for k in others if k != "linear"},
        **{name: _set_errors([r for r in rows if r["set"] == name], others)
           for name in ("aggressive", "whole")},
        "load_avg": {"start": load0, "end": os.getloadavg()}, "policies": rows}
    c, u, a = out["calibrated"], out["uncalibrated"], out["aggressive"]["fraction"]
    print(f"{name} {spec.backend} b{spec.batch} t{spec.threads}: build {build_s:.0f}s, dense "
          f"{t['dense']:.1f} ms (pred {table.dense_ms:.1f}); err mean {c['mean_abs_rel_err']:.3f}"
          f" max {c['max_abs_rel_err']:.3f} rho {c['spearman']:.3f} | uncalibrated mean "
          f"{u['mean_abs_rel_err']:.3f} max {u['max_abs_rel_err']:.3f} | linear rho "
          f"{out['linear']['spearman']:.3f} | fractions_only rho "
          f"{out['fractions_only']['spearman']:.3f} | aggressive fraction "
          f"err mean {a['mean_abs_rel_err']:.3f} max {a['max_abs_rel_err']:.3f}; "
          f"load {os.getloadavg()}",
          flush=True)
    return out


def _set_errors(rows: list[dict], others: dict) -> dict:
    """A validation set's errors: the table's latency and fraction of dense, and each earlier
    METHOD's fraction of dense (``linear`` has none recorded)."""
    meas = [r["measured_fraction"] for r in rows]
    return {"calibrated": _errors([r["predicted_ms"] for r in rows],
                                  [r["measured_ms"] for r in rows]),
            "fraction": _errors([r["predicted_fraction"] for r in rows], meas),
            **{f"{k}_fraction": _errors([r[f"{k}_predicted_fraction"] for r in rows], meas)
               for k in others if k != "linear"}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="resnet56")
    ap.add_argument("--policies", type=int, default=20)
    ap.add_argument("--runs", type=int, default=9, help="timed runs per layer variant")
    ap.add_argument("--whole-runs", type=int, default=9, help="timed runs per whole model")
    ap.add_argument("--whole", type=int, default=10,
                    help="policies keeping a random number of whole vectors per unit")
    ap.add_argument("--calib", type=int, default=4, help="calibration policies of the table")
    ap.add_argument("--targets", default=TARGETS, help="backend:batch:threads,...")
    ap.add_argument("--out", default="results/latency_table.json")
    ap.add_argument("--repeats", type=int, default=3,
                    help="times every target is measured, table included (interleaved)")
    args = ap.parse_args()
    start = time.time()
    results: list[dict] = []
    for name in args.models.split(","):
        torch.manual_seed(0)
        pm = PrunableModel(create_model(name), (3, 32, 32), mode="internal")
        rng = np.random.default_rng(0)
        policies = [rng.uniform(0.0, 0.8, len(pm.units)).tolist() for _ in range(args.policies)]
        policies += aggressive(len(pm.units))
        policies += whole(pm, lanes("torch"), args.whole)
        sets = (["random"] * args.policies + ["aggressive"] * (len(policies) - args.policies
                                                                - args.whole)
                + ["whole"] * args.whole)
        pruned = {str(i): pm.prune(r) for i, r in enumerate(policies)}
        for rep in range(args.repeats):
            # a fresh cache per repeat: each measures its own table
            os.environ["AMC_CACHE_DIR"] = tempfile.mkdtemp(prefix="amc-latency-")
            for target in args.targets.split(","):
                backend, batch, threads = target.split(":")
                spec = LatencySpec(backend, int(batch), int(threads), args.runs, args.calib)
                results.append({"repeat": rep, **bench(name, spec, pm, policies, pruned,
                                                       args.whole_runs, sets)})
                _write(args, start, results)  # after every target: a partial run counts
    print(f"wrote {args.out} in {time.time() - start:.0f} s")


def aggressive(units: int) -> list[list[float]]:
    """The aggressive validation policies (see the module docstring)."""
    rng = np.random.default_rng(1)
    return ([[r] * units for r in (0.75, 0.8, 0.85, 0.9)]
            + [rng.uniform(0.5, 0.9, units).tolist() for _ in range(6)])


def whole(pm: PrunableModel, width: int, n: int) -> list[list[float]]:
    """``n`` policies each unit of which keeps a random number (``default_rng(2)``) of whole
    vectors of ``width`` channels (1 to all of them)."""
    rng = np.random.default_rng(2)
    out = []
    for _ in range(n):
        out.append([1 - min(u.n, int(rng.integers(1, -(-u.n // width) + 1)) * width) / u.n
                    for u in pm.units])
    return out


def summary(results: list[dict]) -> list[dict]:
    """Per model and target, over the repeats: mean ± sample std of the random policies'
    Spearman and mean relative error, calibrated (METHOD 8), ``fractions_only`` (METHOD 7),
    ``outputs_only`` (METHOD 6) and ``linear``, and the paired Spearman and error differences
    of the table against them; for the aggressive and whole-vector sets, the error of the
    predicted fraction of dense and its change against ``fractions_only``."""
    out = []
    for key in dict.fromkeys((r["model"], r["backend"], r["batch"], r["threads"])
                             for r in results):
        rs = [r for r in results if (r["model"], r["backend"], r["batch"], r["threads"]) == key]
        row = dict(zip(("model", "backend", "batch", "threads"), key), repeats=len(rs),
                   lanes=rs[0]["table"]["lanes"])
        for name in ("calibrated", "fractions_only", "outputs_only", "linear"):
            for stat in ("spearman", "mean_abs_rel_err"):
                row[f"{name}_{stat}"] = mean_std([r[name][stat] for r in rs])
        row["spearman_gain"] = mean_std(
            [r["calibrated"]["spearman"] - r["linear"]["spearman"] for r in rs])
        for other in ("outputs_only", "fractions_only"):
            row[f"spearman_gain_vs_{other}"] = mean_std(
                [r["calibrated"]["spearman"] - r[other]["spearman"] for r in rs])
            row[f"error_change_vs_{other}"] = mean_std(
                [r["calibrated"]["mean_abs_rel_err"] - r[other]["mean_abs_rel_err"]
                 for r in rs])
            row[f"fraction_error_change_vs_{other}"] = mean_std(
                [r["fraction"]["mean_abs_rel_err"] - r[f"{other}_fraction"]["mean_abs_rel_err"]
                 for r in rs])
        for name in ("aggressive", "whole"):  # the fraction of dense, where budgets compare
            if all(name in r for r in rs):
                f = [r[name]["fraction"] for r in rs]
                g = [r[name]["fractions_only_fraction"] for r in rs]
                row[f"{name}_fraction_error"] = mean_std([a["mean_abs_rel_err"] for a in f])
                row[f"{name}_fraction_error_change_vs_fractions_only"] = mean_std(
                    [a["mean_abs_rel_err"] - b["mean_abs_rel_err"] for a, b in zip(f, g)])
                row[f"{name}_fraction_spearman_gain_vs_fractions_only"] = mean_std(
                    [a["spearman"] - b["spearman"] for a, b in zip(f, g)])
        out.append(row)
    return out


def _write(args: argparse.Namespace, start: float, results: list[dict]) -> None:
    out = {"command": " ".join([Path(sys.executable).name, *sys.argv]),
           "wall_s": round(time.time() - start, 1), "cpus": os.cpu_count(),
           "cpu": platform.processor() or platform.machine(),
           "process_threads": torch.get_num_threads(),
           "versions": {"python": platform.python_version(), "torch": torch.__version__,
                        "onnxruntime": onnxruntime.__version__, "numpy": np.__version__,
                        "scipy": scipy.__version__},
           "policy_draw": f"numpy default_rng(0).uniform(0, 0.8, units) x {args.policies}",
           "aggressive_draw": "uniform 0.75, 0.8, 0.85, 0.9; numpy default_rng(1)"
                              ".uniform(0.5, 0.9, units) x 6",
           "whole_draw": f"per unit numpy default_rng(2).integers(1, vectors + 1) whole "
                         f"vectors of {lanes('torch')} channels x {args.whole}",
           "results": results, "summary": summary(results)}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
