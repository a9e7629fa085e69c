"""``amc compare``: AMC vs uniform, global, sensitivity and random, before and after
fine-tuning, over several seeds.

One resumable pipeline: every stage writes its artifact into the output folder and is
skipped when that artifact exists, so a killed run continues where it stopped.

Stages: fine-tune the dense checkpoint (the fair baseline; with ``search_on="adapted"`` the
strategies then prune that fine-tuned model) → for each run ``k < seeds``: one policy per
strategy and budget (AMC searches with seed ``seed + k``; the baselines use calibration draw
``seed + k`` for BN recalibration, and random its own draw of policies; sensitivity
reallocates from the first run's sweep) → evaluate each pruned model on ``val``/``test`` →
fine-tune it with the same recipe (seed ``seed + k``) → evaluate again → MACs, params, CPU
latency (all models side by side) → ``table.md``/``table.csv`` (mean ± std,
:mod:`amc.report.compare_table`), ``table_runs.csv``, ``pareto.png``, ``ratios.png``. The AMC
strategy is passed in as a function (the RL side lives outside the core library).
"""

from __future__ import annotations

import copy
import json
import re
import time
from collections.abc import Callable
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import torch

from amc.cost.macs import model_cost
from amc.cost.timing import torch_latencies
from amc.data.datasets import Dataset, load_dataset, train_view
from amc.models.checkpoint import save_model
from amc.models.evaluate import top1
from amc.models.registry import create_model
from amc.prune.baselines import SWEEP, MapFn, run_strategy, sensitivity_sweep
from amc.prune.budget import Budget, unreachable
from amc.prune.latency_table import LatencySpec
from amc.prune.policy import load_policy, make_policy
from amc.prune.rescore import rest_of_val
from amc.prune.scoring import Scorer, build_scorer
from amc.report.compare_config import CompareConfig, check_cached, search_wall_seconds
from amc.report.compare_table import plot_pareto, plot_ratios, val_memory_note, write_table
from amc.train.loop import train
from amc.utils import allocator
from amc.utils.errors import AmcError
from amc.utils.io import write_json

AmcFn = Callable[["CompareConfig", str, Path, Path | None], Path]
#: ``pool(scorer, fn)`` runs ``fn(map_fn)`` with a parallel map over policies (or ``None``).
PoolFn = Callable[[Scorer, Callable[[MapFn | None], object]], object]


def _no_pool(scorer: Scorer, fn: Callable[[MapFn | None], object]) -> object:
    return fn(None)


def _tag(budget: str) -> str:
    return budget.replace(":", "")


def _name(strategy: str, budget: str, run: int = 0) -> str:
    """A run's artifact name (the first run keeps the name of single-run comparisons)."""
    return f"{strategy}_{_tag(budget)}" + (f"_s{run}" if run else "")


def split_run(name: str) -> tuple[str, int]:
    """``amc_latency0.55_s2`` -> (``amc_latency0.55``, 2): a run's name and its number."""
    m = re.fullmatch(r"(.*)_s(\d+)", name)
    return (m.group(1), int(m.group(2))) if m else (name, 0)


def _val_images(limit: int | None, n: int) -> str:
    """How many val images the searches and baselines score on."""
    return f"the first {limit} val images" if limit and limit < n else f"all {n} val images"


def _cached_json(path: Path, make: Callable[[], dict]) -> dict:
    if path.is_file():
        return json.loads(path.read_text())
    d = make()
    write_json(path, d)
    return d


def _lat(lat: dict, name: str) -> dict:
    """Median latencies of one model from ``latency.json``: at the configured threads, and
    batch 64 at 1 thread."""
    t = next((k for k in lat if k.startswith("t") and k != "t1"), "t1")
    return {"latency_b1_ms": lat[t]["b1"][name]["median_ms"],
            "latency_b64_ms": lat[t]["b64"][name]["median_ms"],
            "latency_b64_1thread_ms": lat["t1"]["b64"][name]["median_ms"]}


def evaluate_splits(model: torch.nn.Module, data: Dataset, input_size: tuple[int, ...]) -> dict:
    """Top-1 on all of ``val`` and ``test``, MACs and parameters: what a comparison records of
    every network before and after fine-tuning."""
    macs, params = model_cost(model, input_size)
    return {"val_top1": top1(model, *data.tensors("val")),
            "test_top1": top1(model, *data.tensors("test")), "macs": macs, "params": params}


class Comparison:
    """The pipeline; call :meth:`run`."""

    def __init__(self, cfg: CompareConfig, amc_fn: AmcFn | None = None,
                 pool: PoolFn | None = None):
        cfg.validate()
        if "amc" in cfg.strategies and amc_fn is None:
            raise AmcError("the amc strategy needs the RL side (amc.agents); install it")
        self.cfg, self.amc_fn, self.pool = cfg, amc_fn, pool or _no_pool
        self.dir = Path(cfg.out)  # made by the first write, once model and data are checked
        check_cached(cfg)
        self.threads = cfg.threads or torch.get_num_threads()
        torch.set_num_threads(self.threads)
        self.data = load_dataset(cfg.data, **cfg.dataset_kwargs(cfg.model))
        self.train_data = train_view(self.data, cfg.train_limit, cfg.seed)
        self.pretrained = create_model(cfg.model, num_classes=cfg.num_classes,
                                       checkpoint=cfg.checkpoint, unsafe_load=cfg.unsafe_load)
        self.dense = self.pretrained  # what the strategies prune (see _adapt)
        self.search_cfg = cfg  # what the AMC searches start from
        self.scorer: Scorer = build_scorer(**cfg.scorer_kwargs(),
                                           net=copy.deepcopy(self.dense))
        self._scorers: dict[int, Scorer] = {0: self.scorer}
        # (strategy, budget) -> why it cannot reach the budget (a matter of cost, not of the
        # calibration draw: found once, not again for each run or for AMC's hand-over)
        self._unreachable: dict[tuple[str, str], AmcError] = {}
        self.input_size = self.data.input_size
        write_json(self.dir / "config.json", asdict(cfg))

    # ---------------------------------------------------------------- stages
    def _finetune(self, model: torch.nn.Module, name: str, run: int = 0,
                  distil: bool = True) -> torch.nn.Module:
        """Fine-tune ``model`` with the recipe, distilling from the dense model the strategies
        prune when ``kd_weight`` > 0 and ``distil`` (False: the dense fine-tune itself)."""
        path = self.dir / "models" / f"{name}.pt"
        if path.is_file():
            return create_model(self.cfg.model, checkpoint=path)
        tc = self.cfg.finetune_config(self.cfg.seed + run, self.threads)
        t = time.perf_counter()
        hist = train(model, self.train_data, tc,
                     teacher=self.dense if distil and self.cfg.kd_weight > 0 else None,
                     log_csv=self.dir / "finetune" / f"{name}.csv")
        save_model(model, path, self.cfg.model, {"seconds": time.perf_counter() - t,
                                                 "epochs": self.cfg.finetune_epochs,
                                                 "history": hist})
        return model

    def _evaluate(self, model: torch.nn.Module) -> dict:
        return evaluate_splits(model, self.data, self.input_size)

    def _dense_ft(self) -> dict:
        """The dense model fine-tuned with the recipe (the fair baseline), without a teacher
        (distillation is from the dense model, for the pruned networks)."""
        return _cached_json(self.dir / "eval" / "dense_ft.json",
                            lambda: self._evaluate(self._finetune(create_model(
                                self.cfg.model, checkpoint=self.cfg.checkpoint,
                                unsafe_load=self.cfg.unsafe_load), "dense_ft", distil=False)))

    def _adapt(self) -> None:
        """``search_on="adapted"``: prune the dense model fine-tuned on this data."""
        self._dense_ft()
        path = self.dir / "models" / "dense_ft.pt"
        if not path.is_file():
            raise AmcError(f"--search-on adapted needs {path}, the fine-tuned dense model; "
                           "its weights are not in this folder (rerun in a new --out)")
        self.dense = create_model(self.cfg.model, checkpoint=path)
        self.search_cfg = replace(self.cfg, checkpoint=str(path), unsafe_load=False)
        self.scorer = build_scorer(**self.search_cfg.scorer_kwargs(),
                                   net=copy.deepcopy(self.dense))
        self._scorers = {0: self.scorer}

    def _scorer_for(self, run: int) -> Scorer:
        """The scorer of run ``run``: calibration draw ``seed + run``."""
        if run not in self._scorers:
            x, y = self.data.calibration(self.cfg.calib_size, self.cfg.seed + run)
            self._scorers[run] = replace(self.scorer, calib=x, calib_y=y)
        return self._scorers[run]

    def _delivered(self, ratios: list[float], run: int) -> torch.nn.Module:
        """The network run ``run`` delivers for ``ratios`` (reconstructed or not: see
        ``reconstruct_delivered``), before any fine-tuning."""
        scorer = self._scorer_for(run)
        if scorer.reconstruct and not self.cfg.reconstruct_delivered:
            scorer = replace(scorer, reconstruct=False)
        return scorer.pruned(ratios)

    def _start(self, ratios: list[float], run: int) -> torch.nn.Module:
        """The network run ``run``'s fine-tune starts from for ``ratios`` (see
        ``finetune_from``)."""
        scorer = self._scorer_for(run)
        if self.cfg.finetune_from == "pruned" and scorer.reconstruct:
            return replace(scorer, reconstruct=False).pruned(ratios)
        return self._delivered(ratios, run)

    def _latency(self, jobs: list[tuple[str, str, int]]) -> dict:
        """CPU latency of the dense model and every pruned architecture (weights do not
        change it), all timed side by side in one stage so that load drifts hit each alike;
        at ``threads`` and at 1 thread. Cached in ``latency.json`` with each model's kept
        channels per unit and the allocator state (:mod:`amc.utils.allocator`): a new model,
        one whose policy changed, or timings made under another allocator state (or before it
        was recorded) time them all again."""
        pm = self.scorer.pm
        ratios = {_name(*j): self._ratios(self._policy(*j)) for j in jobs}
        arch = {"dense": [], **{n: [pm.kept(i, x) for i, x in enumerate(r)]
                                for n, r in ratios.items()}}
        path = self.dir / "latency.json"
        if path.is_file():
            lat = json.loads(path.read_text())
            if lat.get("allocator") == allocator.settle() and all(
                    lat.get("arch", {}).get(n) == a for n, a in arch.items()):
                return lat
            path.unlink()  # new or changed models: time them all again, side by side
        models = {"dense": self.dense, **{n: pm.prune(r) for n, r in ratios.items()}}
        return _cached_json(path, lambda: {
            **{f"t{t}": torch_latencies(models, self.input_size, t, self.cfg.latency_runs)
               for t in dict.fromkeys((self.threads, 1))}, "arch": arch,
            "allocator": allocator.state()})

    def _sweep(self) -> dict:
        t = time.perf_counter()
        dense, acc = self.pool(self.scorer, lambda m: sensitivity_sweep(self.scorer, map_fn=m))
        return {"ratios": list(SWEEP), "units": [u.name for u in self.scorer.pm.units],
                "dense_val_top1": dense, "val_top1": acc.tolist(),
                "seconds": time.perf_counter() - t}

    def _policy(self, strategy: str, budget: str, run: int = 0) -> Path:
        name = _name(strategy, budget, run)
        path = self.dir / "policies" / f"{name}.json"
        if path.is_file():
            return path
        if strategy == "amc":
            run_dir = self.dir / "search" / name.removeprefix("amc_")
            sweep_s = 0.0
            if self.cfg.sweep_warm_start and self.cfg.warm_start == "cheap":
                sweep_s = float(_cached_json(self.dir / "sensitivity.json",
                                             self._sweep)["seconds"])
            limit = self.cfg.time_limit
            if self.cfg.sweep_time_limit:  # AMC gets the time the sweep took
                limit = float(_cached_json(self.dir / "sensitivity.json", self._sweep)["seconds"])
            blocks, blocks_s = self._blocks_for_search(budget, run)
            if limit is not None:  # the blocks policy's making is part of AMC's time
                limit = max(0.0, limit - blocks_s)
            best = self.amc_fn(replace(self.search_cfg, seed=self.cfg.seed + run,
                                       time_limit=limit), budget, run_dir, blocks)
            path.parent.mkdir(parents=True, exist_ok=True)
            pol = load_policy(best)
            search_s = search_wall_seconds(run_dir)
            pol.provenance["search_seconds"] = (search_s + sweep_s + blocks_s
                                                if search_s is not None else None)
            if sweep_s:
                pol.provenance["sweep_seconds"] = sweep_s
            if blocks_s:
                pol.provenance["blocks_seconds"] = blocks_s
            pol.save(path)
            return path
        scorer = self._scorer_for(run)
        sweep, sweep_s = None, 0.0
        if strategy == "sensitivity":
            sw = _cached_json(self.dir / "sensitivity.json", self._sweep)
            sweep = (float(sw["dense_val_top1"]), np.asarray(sw["val_top1"], dtype=float))
            sweep_s = float(sw["seconds"])  # the sweep is part of this strategy's search

        rest = rest_of_val(scorer, self.data.tensors("val"))
        parsed = Budget.parse(budget, LatencySpec.from_config(self.cfg))

        def run_it(map_fn: MapFn | None) -> tuple[list[float], dict]:
            return run_strategy(strategy, scorer, parsed, self.cfg.max_ratio,
                                self.cfg.seed + run, self.cfg.n_random, map_fn=map_fn,
                                sweep=sweep, rescore_top=self.cfg.rescore_top, rest=rest,
                                fill=self.cfg.fill_vectors)

        if (strategy, budget) in self._unreachable:
            raise self._unreachable[strategy, budget]
        try:
            ratios, info = self.pool(scorer, run_it) if strategy == "random" else run_it(None)
        except AmcError as e:
            if unreachable(e):
                self._unreachable[strategy, budget] = e
            raise
        extra = {}
        if "candidates" in info:  # blocks: what AMC's search run `run` picks finalists among
            extra = {"candidates": info["candidates"],
                     "scored_by": replace(self.search_cfg, seed=self.cfg.seed + run).scored_by()}
        pol = make_policy(scorer.pm, ratios, self.cfg.model, parsed, strategy,
                          self.cfg.seed + run, self.cfg.max_ratio,
                          {"val_top1": info["val_top1"]},
                          search_seconds=info["seconds"] + sweep_s, **extra)
        return pol.save(path)

    def _blocks_for_search(self, budget: str, run: int) -> tuple[Path | None, float]:
        """With the ``blocks`` strategy in the comparison and a cheap warm start, run
        ``run``'s blocks policy, made first, for AMC's search ``run`` to warm-start from
        (it would make the same policy, same calibration draw, again). Returns (its file or
        None, the seconds its making took: part of AMC's search time)."""
        if ("blocks" not in self.cfg.strategies or self.cfg.warm_start != "cheap"
                or not self.scorer.pm.blocks):
            return None, 0.0
        try:
            path = self._policy("blocks", budget, run)
        except AmcError as e:
            if not unreachable(e):
                raise
            return None, 0.0  # the search leaves it out of its warm start too
        return path, float(load_policy(path).provenance.get("search_seconds") or 0.0)

    def _ratios(self, policy_path: Path) -> list[float]:
        return load_policy(policy_path).ratios_for(u.name for u in self.scorer.pm.units)

    def run(self) -> list[dict]:
        """Run every stage that has no artifact yet; returns one row per run."""
        # Cheap stages first for every budget, strategy and run (policies, scores before
        # fine-tuning), then the fine-tuning: a run stopped early still holds the
        # before-fine-tuning comparison.
        cfg = self.cfg
        if cfg.search_on == "adapted":
            self._adapt()
        jobs = [(s, b, k) for k in range(cfg.seeds) for b in cfg.budgets
                for s in cfg.strategies]
        before = {"dense": _cached_json(self.dir / "eval" / "dense_before.json",
                                        lambda: self._evaluate(self.dense))}
        left_out: dict[tuple[str, str], str] = {}
        for job in list(jobs):
            if job[:2] in left_out:
                jobs.remove(job)
                continue
            try:
                self._policy(*job)
            except AmcError as e:  # a strategy that cannot meet a budget: left out, noted
                if not unreachable(e):
                    raise
                left_out[job[:2]] = str(e).split(";")[0]
                jobs.remove(job)
                print(f"amc: note: {job[0]} at {job[1]} left out: {left_out[job[:2]]}")
        for job in jobs:
            name = _name(*job)
            ratios = self._ratios(self._policy(*job))
            before[name] = _cached_json(
                self.dir / "eval" / f"{name}_before.json",
                lambda r=ratios, k=job[2]: self._evaluate(self._delivered(r, k)))
        dense_eval = self._dense_ft()
        lat = self._latency(jobs)
        rows = []
        for job in jobs:
            name = _name(*job)
            path = self._policy(*job)
            after = None
            if job[2] < (cfg.finetune_runs if cfg.finetune_runs is not None else cfg.seeds):
                after = _cached_json(
                    self.dir / "eval" / f"{name}_after.json",
                    lambda r=self._ratios(path), n=name, k=job[2]: self._evaluate(
                        self._finetune(self._start(r, k), n, k)))
            rows.append(self._row(*job, load_policy(path), before[name], after, dense_eval,
                                  lat))
        what = ("pretrained checkpoint" if cfg.search_on == "pretrained" else
                "dense model fine-tuned on this data (--search-on adapted)")
        scores = (f" (scores: {'refitted and ' if cfg.reconstruct else ''}recalibrated on "
                  f"the first {cfg.recal_size} val images)"
                  if cfg.bn_recalib and cfg.recal_on == "val" else "")
        notes = [f"Pruned: the {what}; "
                 f"BN recalibration on {cfg.recal_size} of {cfg.calib_size} calibration "
                 f"images{' (off)' if not cfg.bn_recalib else ''}{scores}; the strategies "
                 f"score on {_val_images(cfg.val_limit, len(self.data.labels['val']))}, "
                 f"the val columns on all {len(self.data.labels['val'])}."]
        notes += [f"{s} at {b}: left out ({why})." for (s, b), why in left_out.items()]
        memory = val_memory_note(before["dense"], len(self.data.labels["val"]),
                                 len(self.data.labels["test"]))
        if memory:
            print(f"amc: note: {memory}")
            notes.append(memory[0].upper() + memory[1:])
        if cfg.reconstruct:
            notes.append("Least-squares reconstruction before the recalibration in every score"
                         + ("; the delivered networks are reconstructed too."
                            if cfg.reconstruct_delivered else
                            "; the delivered networks are not (plainly pruned and "
                            "BN-recalibrated).")
                         + (" Fine-tuned from the plainly pruned, BN-recalibrated networks."
                            if cfg.finetune_from == "pruned" and cfg.finetune_runs != 0
                            and cfg.reconstruct_delivered else ""))
        agg = write_table(self.dir, rows, {**dense_eval, **_lat(lat, "dense")},
                          before["dense"], n_test=len(self.data.labels["test"]), notes=notes)
        plot_pareto(self.dir, agg, dense_eval)
        plot_ratios(self.dir, cfg.budgets, cfg.strategies,
                    [u.name for u in self.scorer.pm.units])
        return rows

    def _search_seconds(self, strategy: str, name: str, pol) -> float:
        """A strategy's search wall seconds (AMC: its search's, plus the sweep it replayed
        and the blocks policy handed to it)."""
        if strategy == "amc":
            s = search_wall_seconds(self.dir / "search" / name.removeprefix("amc_"))
            if s is not None:
                return s + sum(float(pol.provenance.get(k, 0.0))
                               for k in ("sweep_seconds", "blocks_seconds"))
        return float(pol.provenance.get("search_seconds") or 0.0)

    def _row(self, strategy: str, budget: str, run: int, pol, before: dict,
             after: dict | None, dense: dict, lat: dict) -> dict:
        name = _name(strategy, budget, run)
        mine, base = _lat(lat, name), _lat(lat, "dense")
        return {
            "strategy": strategy, "budget": budget, "run": run,
            "val_before": before["val_top1"], "test_before": before["test_top1"],
            "val_after": after and after["val_top1"], "test_after": after and after["test_top1"],
            "delta_test_vs_dense_ft": after and after["test_top1"] - dense["test_top1"],
            "macs_M": before["macs"] / 1e6, "params_M": before["params"] / 1e6,
            "macs_ratio": pol.achieved["macs_ratio"],
            **mine,
            "speedup_b1": base["latency_b1_ms"] / mine["latency_b1_ms"],
            "speedup_b64": base["latency_b64_ms"] / mine["latency_b64_ms"],
            "speedup_b64_1thread": base["latency_b64_1thread_ms"]
            / mine["latency_b64_1thread_ms"],
            "search_seconds": self._search_seconds(strategy, name, pol),
            # what the latency table predicted, beside what was measured (latency budgets)
            **({"speedup_b64_table": 1.0 / pol.achieved["latency_ratio"]}
               if "latency_ratio" in pol.achieved else {}),
        }
