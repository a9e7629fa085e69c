"""``amc compare``: AMC vs uniform vs sensitivity vs random, before and after fine-tuning.

One resumable pipeline: every stage writes its artifact into the output folder and is
skipped when that artifact exists, so a killed run continues where it stopped.

Stages: fine-tune the dense checkpoint (the fair baseline) → one policy per strategy and
budget → evaluate each pruned model on ``val``/``test`` → fine-tune it with the same recipe
→ evaluate again → MACs, params, CPU latency → ``table.md``/``table.csv``, ``pareto.png``,
``ratios.png``. The AMC strategy is passed in as a function (the RL side lives outside the
core library).
"""

from __future__ import annotations

import copy
import csv
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from amc.config.args import check_counts
from amc.config.blocks import OptimConfig, ScoringConfig
from amc.cost.macs import model_cost
from amc.cost.timing import torch_latencies
from amc.data.datasets import Dataset, load_dataset
from amc.models.checkpoint import save_model
from amc.models.evaluate import top1
from amc.models.registry import create_model
from amc.prune.baselines import SWEEP, MapFn, run_strategy, sensitivity_sweep
from amc.prune.budget import Budget
from amc.prune.policy import load_policy, make_policy
from amc.prune.scoring import Scorer, build_scorer
from amc.train.loop import TrainConfig, train
from amc.utils.errors import AmcError
from amc.utils.io import write_json

STRATEGIES = ("amc", "uniform", "sensitivity", "random")
AmcFn = Callable[["CompareConfig", str, Path], Path]
#: ``pool(scorer, fn)`` runs ``fn(map_fn)`` with a parallel map over policies (or ``None``).
PoolFn = Callable[[Scorer, Callable[[MapFn | None], object]], object]


def _no_pool(scorer: Scorer, fn: Callable[[MapFn | None], object]) -> object:
    return fn(None)


@dataclass(kw_only=True)
class CompareConfig(ScoringConfig, OptimConfig):
    """The comparison to run.

    Attributes:
        budgets: Budgets to compare, e.g. flops:0.5.
        strategies: Strategies: amc, uniform, sensitivity, random.
        episodes: AMC search episodes.
        warmup_episodes: AMC warm-up episodes.
        n_random: Policies tried by the random strategy.
        finetune_epochs: Epochs of fine-tuning for the dense and every pruned model.
        train_limit: Train on the first N (shuffled) training images only (None: all).
        workers: Ray workers for the AMC search and the baselines (0: in-process).
        latency_runs: Timed runs per latency measurement.
        out: Output folder (every stage's artifact is cached here).
    """

    budgets: tuple[str, ...] = ("flops:0.5",)
    strategies: tuple[str, ...] = STRATEGIES
    episodes: int = 300
    warmup_episodes: int = 100
    n_random: int = 50
    finetune_epochs: float = 5.0
    train_limit: int | None = None
    workers: int = 0
    threads: int | None = 2
    latency_runs: int = 20
    out: str = "runs/compare"

    def validate(self) -> None:
        check_counts(self)
        for s in self.strategies:
            if s not in STRATEGIES:
                raise AmcError(f"unknown strategy {s!r}; use {','.join(STRATEGIES)}")
        for b in self.budgets:
            Budget.parse(b)
        if not self.budgets or not self.strategies:
            raise AmcError("give at least one --budget and one strategy")


def _tag(budget: str) -> str:
    return budget.replace(":", "")


def _cached_json(path: Path, make: Callable[[], dict]) -> dict:
    if path.is_file():
        return json.loads(path.read_text())
    d = make()
    write_json(path, d)
    return d


def _search_wall_seconds(run_dir: Path) -> float | None:
    """Wall-clock seconds of an AMC search (of its last session when it was resumed; the
    summary's ``search_seconds`` sums env time over the workers); None without a summary."""
    f = run_dir / "summary.json"
    if not f.is_file():
        return None
    s = json.loads(f.read_text())
    return s.get("wall_seconds_this_run") or s["search_seconds"]


def _lat(lat: dict, name: str) -> dict:
    """Median latencies of one model from ``latency.json``: at the configured threads, and
    batch 64 at 1 thread."""
    t = next(k for k in lat if k != "t1") if len(lat) > 1 else "t1"
    return {"latency_b1_ms": lat[t]["b1"][name]["median_ms"],
            "latency_b64_ms": lat[t]["b64"][name]["median_ms"],
            "latency_b64_1thread_ms": lat["t1"]["b64"][name]["median_ms"]}


def _train_view(ds: Dataset, limit: int | None, seed: int) -> Dataset:
    if not limit or limit >= len(ds.labels["train"]):
        return ds
    idx = np.random.default_rng(seed).permutation(len(ds.labels["train"]))[:limit]
    return ds.select(train=idx)


class Comparison:
    """The pipeline; call :meth:`run`."""

    def __init__(self, cfg: CompareConfig, amc_fn: AmcFn | None = None,
                 pool: PoolFn | None = None):
        cfg.validate()
        if "amc" in cfg.strategies and amc_fn is None:
            raise AmcError("the amc strategy needs the RL side (amc.agents); install it")
        self.cfg, self.amc_fn, self.pool = cfg, amc_fn, pool or _no_pool
        self.dir = Path(cfg.out)  # made by the first write, once model and data are checked
        self.threads = cfg.threads or torch.get_num_threads()
        torch.set_num_threads(self.threads)
        self.data = load_dataset(cfg.data, **cfg.dataset_kwargs(cfg.model))
        self.train_data = _train_view(self.data, cfg.train_limit, cfg.seed)
        self.dense = create_model(cfg.model, num_classes=cfg.num_classes,
                                  checkpoint=cfg.checkpoint, unsafe_load=cfg.unsafe_load)
        self.scorer: Scorer = build_scorer(**cfg.scorer_kwargs(),
                                           net=copy.deepcopy(self.dense))
        self.input_size = self.data.input_size
        write_json(self.dir / "config.json", asdict(cfg))

    # ---------------------------------------------------------------- stages
    def _finetune(self, model: torch.nn.Module, name: str) -> torch.nn.Module:
        path = self.dir / "models" / f"{name}.pt"
        if path.is_file():
            return create_model(self.cfg.model, checkpoint=path)
        tc = TrainConfig(**self.cfg.optim_fields(), epochs=self.cfg.finetune_epochs,
                         seed=self.cfg.seed, eval_splits=(), threads=self.threads,
                         device=self.cfg.device)
        t = time.perf_counter()
        hist = train(model, self.train_data, tc,
                     teacher=self.dense if self.cfg.kd_weight > 0 else None,
                     log_csv=self.dir / "finetune" / f"{name}.csv")
        save_model(model, path, self.cfg.model, {"seconds": time.perf_counter() - t,
                                                 "epochs": self.cfg.finetune_epochs,
                                                 "history": hist})
        return model

    def _evaluate(self, model: torch.nn.Module) -> dict:
        v = top1(model, *self.data.tensors("val"))
        t = top1(model, *self.data.tensors("test"))
        macs, params = model_cost(model, self.input_size)
        return {"val_top1": v, "test_top1": t, "macs": macs, "params": params}

    def _latency(self, jobs: list[tuple[str, str]]) -> dict:
        """CPU latency of the dense model and every pruned architecture (weights do not
        change it), all timed side by side in one stage so that load drifts hit each alike;
        at ``threads`` and at 1 thread. Cached in ``latency.json``."""
        names = ["dense"] + [f"{s}_{_tag(b)}" for s, b in jobs]
        path = self.dir / "latency.json"
        if path.is_file():
            lat = json.loads(path.read_text())
            if all(n in lat["t1"]["b64"] for n in names):
                return lat
            path.unlink()  # new budgets or strategies: time them all again, side by side
        models = {"dense": self.dense, **{f"{s}_{_tag(b)}": self.scorer.pm.prune(
            self._ratios(self._policy(s, b))) for s, b in jobs}}
        return _cached_json(path, lambda: {
            f"t{t}": torch_latencies(models, self.input_size, t, self.cfg.latency_runs)
            for t in dict.fromkeys((self.threads, 1))})

    def _sweep(self) -> dict:
        t = time.perf_counter()
        dense, acc = self.pool(self.scorer, lambda m: sensitivity_sweep(self.scorer, map_fn=m))
        return {"ratios": list(SWEEP), "units": [u.name for u in self.scorer.pm.units],
                "dense_val_top1": dense, "val_top1": acc.tolist(),
                "seconds": time.perf_counter() - t}

    def _policy(self, strategy: str, budget: str) -> Path:
        path = self.dir / "policies" / f"{strategy}_{_tag(budget)}.json"
        if path.is_file():
            return path
        if strategy == "amc":
            run_dir = self.dir / "search" / _tag(budget)
            best = self.amc_fn(self.cfg, budget, run_dir)
            path.parent.mkdir(parents=True, exist_ok=True)
            pol = load_policy(best)
            pol.provenance["search_seconds"] = _search_wall_seconds(run_dir)
            pol.save(path)
            return path
        sweep, sweep_s = None, 0.0
        if strategy == "sensitivity":
            sw = _cached_json(self.dir / "sensitivity.json", self._sweep)
            sweep = (float(sw["dense_val_top1"]), np.asarray(sw["val_top1"], dtype=float))
            sweep_s = float(sw["seconds"])  # the sweep is part of this strategy's search
        def run(map_fn: MapFn | None) -> tuple[list[float], dict]:
            return run_strategy(strategy, self.scorer, Budget.parse(budget),
                                self.cfg.max_ratio, self.cfg.seed, self.cfg.n_random,
                                map_fn=map_fn, sweep=sweep)

        ratios, info = self.pool(self.scorer, run) if strategy == "random" else run(None)
        pol = make_policy(self.scorer.pm, ratios, self.cfg.model, budget, strategy,
                          self.cfg.seed, self.cfg.max_ratio, {"val_top1": info["val_top1"]},
                          search_seconds=info["seconds"] + sweep_s)
        return pol.save(path)

    def _ratios(self, policy_path: Path) -> list[float]:
        by = {u["name"]: u["ratio"] for u in load_policy(policy_path).units}
        return [by[u.name] for u in self.scorer.pm.units]

    def run(self) -> list[dict]:
        """Run every stage that has no artifact yet; returns the table rows."""
        # Cheap stages first for every budget and strategy (policies, scores before
        # fine-tuning), then the fine-tuning: a run stopped early still holds the
        # before-fine-tuning comparison.
        jobs = [(s, b) for b in self.cfg.budgets for s in self.cfg.strategies]
        before = {"dense": _cached_json(self.dir / "eval" / "dense_before.json",
                                        lambda: self._evaluate(self.dense))}
        for strategy, budget in jobs:
            name = f"{strategy}_{_tag(budget)}"
            ratios = self._ratios(self._policy(strategy, budget))
            before[name] = _cached_json(self.dir / "eval" / f"{name}_before.json",
                                        lambda r=ratios: self._evaluate(self.scorer.pruned(r)))
        dense_eval = _cached_json(self.dir / "eval" / "dense_ft.json",
                                  lambda: self._evaluate(self._finetune(create_model(
                                      self.cfg.model, checkpoint=self.cfg.checkpoint),
                                      "dense_ft")))
        lat = self._latency(jobs)
        rows = []
        for strategy, budget in jobs:
            name = f"{strategy}_{_tag(budget)}"
            path = self._policy(strategy, budget)
            after = _cached_json(self.dir / "eval" / f"{name}_after.json",
                                 lambda r=self._ratios(path), n=name: self._evaluate(
                                     self._finetune(self.scorer.pruned(r), n)))
            rows.append(self._row(strategy, budget, load_policy(path), before[name], after,
                                  dense_eval, lat))
        write_table(self.dir, rows, {**dense_eval, **_lat(lat, "dense")}, before["dense"])
        plot_pareto(self.dir, rows, dense_eval)
        plot_ratios(self.dir, self.cfg, self.scorer)
        return rows

    def _row(self, strategy: str, budget: str, pol, before: dict, after: dict,
             dense: dict, lat: dict) -> dict:
        mine, base = _lat(lat, f"{strategy}_{_tag(budget)}"), _lat(lat, "dense")
        return {
            "strategy": strategy, "budget": budget,
            "val_before": before["val_top1"], "test_before": before["test_top1"],
            "val_after": after["val_top1"], "test_after": after["test_top1"],
            "delta_test_vs_dense_ft": after["test_top1"] - dense["test_top1"],
            "macs_M": after["macs"] / 1e6, "params_M": after["params"] / 1e6,
            "macs_ratio": pol.achieved["macs_ratio"],
            **mine,
            "speedup_b1": base["latency_b1_ms"] / mine["latency_b1_ms"],
            "speedup_b64": base["latency_b64_ms"] / mine["latency_b64_ms"],
            "speedup_b64_1thread": base["latency_b64_1thread_ms"]
            / mine["latency_b64_1thread_ms"],
            "search_seconds": (_search_wall_seconds(self.dir / "search" / _tag(budget))
                               if strategy == "amc" else None)
            or pol.provenance.get("search_seconds") or 0.0,
        }


def write_table(out: Path, rows: list[dict], dense: dict, dense_before: dict | None = None
                ) -> None:
    """``table.csv`` and ``table.md`` (one row per strategy and budget)."""
    cols = list(rows[0])
    with open(out / "table.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=cols)
        w.writeheader()
        w.writerows(rows)
    fmt = {c: "{:.2f}" for c in cols}
    fmt.update(strategy="{}", budget="{}", macs_ratio="{:.3f}", params_M="{:.3f}",
               search_seconds="{:.0f}")
    lines = [f"Dense fine-tuned: val {dense['val_top1']:.2f} %, test {dense['test_top1']:.2f} %"
             f", {dense['macs'] / 1e6:.2f}M MACs, batch-64 CPU latency "
             f"{dense['latency_b64_ms']:.1f} ms ({dense['latency_b64_1thread_ms']:.1f} ms on 1 "
             "thread); latencies: median of interleaved runs (`latency.json`)"]
    if dense_before:
        lines.append(f"Dense before fine-tuning: val {dense_before['val_top1']:.2f} %, test "
                     f"{dense_before['test_top1']:.2f} %")
    lines += ["",
             "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        lines.append("| " + " | ".join(fmt[c].format(r[c]) for c in cols) + " |")
    (out / "table.md").write_text("\n".join(lines) + "\n")


def plot_pareto(out: Path, rows: list[dict], dense: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for s in dict.fromkeys(r["strategy"] for r in rows):
        pts = sorted((r["macs_M"], r["test_after"], r["test_before"]) for r in rows
                     if r["strategy"] == s)
        line, = ax.plot([p[0] for p in pts], [p[1] for p in pts], "o-", label=f"{s} (ft)")
        ax.plot([p[0] for p in pts], [p[2] for p in pts], "x--", color=line.get_color(),
                alpha=0.6, label=f"{s} (before ft)")
    ax.plot([dense["macs"] / 1e6], [dense["test_top1"]], "k*", ms=12, label="dense (ft)")
    ax.set_xlabel("MACs (M)")
    ax.set_ylabel("test top-1 (%)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "pareto.png", dpi=120)
    plt.close(fig)


def plot_ratios(out: Path, cfg: CompareConfig, scorer: Scorer) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    units = [u.name for u in scorer.pm.units]
    budgets = list(cfg.budgets)
    fig, axes = plt.subplots(len(budgets), 1, figsize=(max(6, 0.35 * len(units)),
                                                      3.2 * len(budgets)), squeeze=False)
    for ax, b in zip(axes[:, 0], budgets):
        for s in cfg.strategies:
            if s == "random":
                continue
            pol = load_policy(out / "policies" / f"{s}_{_tag(b)}.json")
            by = {u["name"]: u["ratio"] for u in pol.units}
            ax.plot(range(len(units)), [1 - by[n] for n in units], "o-", ms=3, label=s)
        ax.set_title(f"kept channel ratio per unit at {b}")
        ax.set_ylim(0, 1.05)
        ax.set_xticks(range(len(units)))
        ax.set_xticklabels(units, rotation=90, fontsize=6)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "ratios.png", dpi=120)
    plt.close(fig)
