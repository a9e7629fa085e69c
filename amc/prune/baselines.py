"""Baseline strategies that return ratio policies: uniform, global, sensitivity and random.

* ``uniform``: one ratio for every unit, found by bisection on the exact pruned cost.
* ``global``: Torch-Pruning's global ranking: every channel of every unit ranked by one
  importance score (the unit's criterion, normalised by the unit's mean as Torch-Pruning's
  ``global_pruning`` does), one threshold across all units found by bisection so that the
  budget is met; no evaluation at all.
* ``sensitivity``: prune each unit alone at 0.1..0.9, measure the ``val`` accuracy drop,
  give each unit the largest ratio whose drop stays under a common threshold, choose the
  threshold by bisection so the budget is met, then scale to the budget exactly.
* ``blocks`` (with ``drop_blocks``): rank the blocks by ``val`` top-1 with each alone
  dropped; for every k, drop the k least sensitive and prune the other units uniformly to
  the budget; keep the k whose network scores best on ``val``: the cheap allocation that
  trades depth for width (``results/block_drop.md``), and reaches latency budgets channel
  pruning alone cannot.
* ``random``: N random policies that meet the budget exactly; keep the best on ``val``
  (with ``rescore_top`` K and the rest of ``val``: the best on all of ``val`` among the K best,
  as an AMC search picks its own: :mod:`amc.prune.rescore`).

The independent evaluations of ``sensitivity`` and ``random`` can be fanned out with a
``map_fn`` (the Ray integration passes one); by default they run in this process.
"""

from __future__ import annotations

import csv
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from amc.prune.budget import MAX_RATIO, Budget, fill_vectors, resource_fn, uniform_ratio
from amc.prune.depth import DROP
from amc.prune.rescore import rescore, top_distinct
from amc.prune.scoring import Scorer
from amc.utils.bisection import bisect
from amc.utils.errors import AmcError
from amc.utils.progress import progress_iter

SWEEP = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
STRATEGIES = ("uniform", "global", "sensitivity", "random", "blocks")
MapFn = Callable[[Callable[[Sequence[float]], float], list[list[float]]], list[float]]


def local_map(fn: Callable[[Sequence[float]], float], jobs: list[list[float]],
              desc: str = "evaluating") -> list[float]:
    return [fn(j) for j in progress_iter(jobs, total=len(jobs), desc=desc)]


def scale_to_budget(scorer: Scorer, budget: Budget, ratios: Sequence[float],
                    max_ratio: float) -> list[float]:
    """Scale ``ratios`` by one factor so that the budget is met as tightly as possible."""
    f = resource_fn(scorer.pm, budget)
    base = np.asarray(ratios, dtype=float)
    if base.max() <= 0:
        base = np.ones_like(base)

    def at(s: float) -> list[float]:
        return np.clip(base * s, 0.0, max_ratio).tolist()

    hi = max_ratio / max(base.max(), 1e-9)
    while f(at(hi)) > budget.fraction and hi < 1e6:
        hi *= 2  # saturating more units at max_ratio
    if f(at(hi)) > budget.fraction + 1e-9:
        raise AmcError(f"budget {budget} is out of reach with max ratio {max_ratio:g}")
    s = bisect(lambda s: f(at(s)) <= budget.fraction, 0.0, hi)
    return at(s)


def uniform(scorer: Scorer, budget: Budget, max_ratio: float = MAX_RATIO) -> list[float]:
    """One ratio for all units, the smallest that meets the budget."""
    r = uniform_ratio(scorer.pm, budget, max_ratio)
    return [r] * len(scorer.pm.units)


def global_ranking(scorer: Scorer, budget: Budget, max_ratio: float = MAX_RATIO
                   ) -> list[float]:
    """One importance threshold across all units (Torch-Pruning's global ranking): a unit
    loses its channel positions scoring below it, at most ``max_ratio`` of them; the
    threshold is the smallest that meets the budget."""
    pm = scorer.pm
    f = resource_fn(pm, budget)
    scores = [imp.double().numpy() for imp in pm.importance]

    def at(th: float) -> list[float]:
        return [min(max_ratio, float(np.searchsorted(s, th, side="left")) / len(s))
                for s in scores]

    hi = max(float(s[-1]) for s in scores) * 2 + 1.0
    if f(at(hi)) > budget.fraction + 1e-9:
        raise AmcError(f"budget {budget} is out of reach with max ratio {max_ratio:g}")
    return at(bisect(lambda th: f(at(th)) <= budget.fraction, 0.0, hi, iters=60))


def sensitivity_sweep(scorer: Scorer, ratios: Sequence[float] = SWEEP,
                      map_fn: MapFn | None = None) -> tuple[float, np.ndarray]:
    """Each unit pruned alone at each ratio.

    Returns:
        (dense ``val`` top-1, accuracy matrix of shape (units, len(ratios))).
    """
    n = len(scorer.pm.units)
    jobs = [[0.0] * n]
    for u in range(n):
        for r in ratios:
            v = [0.0] * n
            v[u] = r
            jobs.append(v)
    res = (map_fn or local_map)(scorer, jobs)
    return res[0], np.asarray(res[1:], dtype=float).reshape(n, len(ratios))


def read_sensitivity(path_csv: str | Path) -> dict[str, Any]:
    """The CSV of :func:`write_sensitivity` (one row per unit and ratio) as the fields of
    ``amc compare``'s ``sensitivity.json``: ``units``, ``ratios``, ``dense_val_top1`` and
    ``val_top1`` (units x ratios)."""
    with open(path_csv, newline="") as f:
        rows = list(csv.DictReader(f))
    units = list(dict.fromkeys(r["unit"] for r in rows))
    ratios = sorted({float(r["ratio"]) for r in rows})
    at = {(r["unit"], float(r["ratio"])): float(r["val_top1"]) for r in rows}
    return {"units": units, "ratios": ratios,
            "dense_val_top1": float(rows[0]["val_top1"]) + float(rows[0]["drop"]),
            "val_top1": [[at[u, x] for x in ratios] for u in units]}


def write_sensitivity(path_csv: str | Path, unit_names: list[str], dense: float,
                      acc: np.ndarray, ratios: Sequence[float] = SWEEP,
                      png: str | Path | None = None, title: str = "") -> None:
    """CSV (unit, ratio, val_top1, drop) and a one-curve-per-unit plot."""
    p = Path(path_csv)
    p.parent.mkdir(parents=True, exist_ok=True)
    with open(p, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["unit", "ratio", "val_top1", "drop"])
        for name, row in zip(unit_names, acc):
            for r, a in zip(ratios, row):
                w.writerow([name, r, f"{a:.3f}", f"{dense - a:.3f}"])
    if png:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(9, 5.5))
        cmap = plt.get_cmap("viridis")
        for i, (name, row) in enumerate(zip(unit_names, acc)):
            ax.plot(ratios, row, color=cmap(i / max(1, len(unit_names) - 1)), lw=1,
                    label=name if len(unit_names) <= 20 else None)
        ax.axhline(dense, color="k", ls="--", lw=1, label="dense")
        ax.set_xlabel("pruning ratio of the unit (others dense)")
        ax.set_ylabel("val top-1 (%)")
        ax.set_title(title or "Per-unit sensitivity")
        if len(unit_names) <= 20:
            ax.legend(fontsize=6, ncol=2)
        else:
            sm = plt.cm.ScalarMappable(cmap=cmap,
                                       norm=plt.Normalize(0, len(unit_names) - 1))
            fig.colorbar(sm, ax=ax, label="unit index (forward order)")
        fig.tight_layout()
        fig.savefig(png, dpi=120)
        plt.close(fig)


def allocate_by_sensitivity(scorer: Scorer, budget: Budget, dense: float, acc: np.ndarray,
                            ratios: Sequence[float] = SWEEP,
                            max_ratio: float = MAX_RATIO) -> list[float]:
    """Largest ratio per unit under a common drop threshold, threshold chosen to meet the
    budget, then scaled to the budget exactly."""
    grid = np.linspace(0.0, min(max_ratio, max(ratios)), 91)
    xs = np.concatenate([[0.0], np.asarray(ratios)])
    # drop curves made monotone (pruning more never helps)
    drops = np.maximum.accumulate(np.concatenate([np.zeros((len(acc), 1)), dense - acc], 1),
                                  axis=1)
    curves = np.stack([np.interp(grid, xs, d) for d in drops])
    f = resource_fn(scorer.pm, budget)

    def at(th: float) -> list[float]:
        ok = curves <= th + 1e-9
        idx = np.where(ok.all(1), len(grid) - 1, np.argmin(ok, 1) - 1)
        return grid[np.clip(idx, 0, None)].tolist()

    hi = float(drops.max()) + 1.0
    th = bisect(lambda t: f(at(t)) <= budget.fraction, 0.0, hi)
    return scale_to_budget(scorer, budget, at(th), max_ratio)


def blocks_candidates(scorer: Scorer, budget: Budget, max_ratio: float = MAX_RATIO,
                      map_fn: MapFn | None = None, fill: bool = True) -> list[list[float]]:
    """The ``blocks`` strategy's candidates (see the module docstring), fewest drops first:
    for each k that can meet the budget, the k blocks least missed alone dropped and the other
    units pruned uniformly to the budget (``len(blocks)`` scores); ``fill``: then their
    channels past one vector filled where the budget allows
    (:func:`~amc.prune.budget.fill_vectors`), so that they are scored as delivered.

    Raises:
        AmcError: the network has no droppable unit (no ``drop_blocks``, or no residual
            basic block), or even every block dropped cannot meet the budget.
    """
    pm = scorer.pm
    if not pm.blocks:
        raise AmcError("the blocks strategy drops basic residual blocks: pass --drop-blocks "
                       "with a network that has them")
    n = len(pm.units)
    f = resource_fn(pm, budget)
    droppable = sorted(pm.blocks)
    alone = (map_fn or local_map)(scorer, [[DROP if i == u else 0.0 for i in range(n)]
                                           for u in droppable])
    order = [u for _, u in sorted(zip(alone, droppable), key=lambda p: (-p[0], p[1]))]

    def at(k: int, r: float) -> list[float]:
        gone = set(order[:k])
        return [DROP if i in gone else r for i in range(n)]

    cands = []
    for k in range(len(order) + 1):
        if f(at(k, max_ratio)) > budget.fraction + 1e-9:
            continue  # too few blocks dropped to reach the budget
        r = 0.0 if f(at(k, 0.0)) <= budget.fraction else bisect(
            lambda r, k=k: f(at(k, r)) <= budget.fraction, 0.0, max_ratio)
        cands.append(fill_vectors(pm, budget, at(k, r), fill))
        if r == 0.0:
            break  # the other units are dense: dropping more only loses
    if not cands:
        raise AmcError(f"budget {budget} is out of reach even dropping every droppable block "
                       f"and pruning the other units by {max_ratio:g}; loosen the budget")
    return cands


def blocks_then_uniform(scorer: Scorer, budget: Budget, max_ratio: float = MAX_RATIO,
                        map_fn: MapFn | None = None,
                        scored: list[tuple[list[float], float]] | None = None,
                        fill: bool = True,
                        value: Callable[[list[float], float], float] | None = None
                        ) -> list[float]:
    """The ``blocks`` strategy: the best on ``val`` of :func:`blocks_candidates` (at most
    2 x blocks + 1 scores); raises as it does. ``scored``: a list that receives every
    candidate with its val top-1 (for a caller that needs them too: ``--finalists``);
    ``fill``: as for :func:`blocks_candidates`; ``value``: what "best" means instead, of a
    candidate's ratios and val top-1 (a search's reward: the candidates keep different
    MACs)."""
    cands = blocks_candidates(scorer, budget, max_ratio, map_fn, fill)
    scores = (map_fn or local_map)(scorer, cands)
    if scored is not None:
        scored.extend((c, float(t)) for c, t in zip(cands, scores))
    if value is not None:
        scores = [value(c, float(t)) for c, t in zip(cands, scores)]
    return cands[int(np.argmax(scores))]


def random_search(scorer: Scorer, budget: Budget, n: int = 50, seed: int = 0,
                  max_ratio: float = MAX_RATIO, map_fn: MapFn | None = None,
                  rescore_top: int = 0, rest: tuple[torch.Tensor, torch.Tensor] | None = None
                  ) -> tuple[list[float], float, list[tuple[list[float], float]]]:
    """``n`` random policies that meet the budget; returns (best, its val top-1, all).

    ``rescore_top`` K >= 2 with ``rest`` (the ``val`` images and labels past the scorer's):
    the best is the best on all of ``val`` among the K best (:func:`amc.prune.rescore.rescore`;
    its val top-1 stays its score on the scorer's images).
    """
    rng = np.random.default_rng(seed)
    units = len(scorer.pm.units)
    cands = [scale_to_budget(scorer, budget, rng.uniform(0.05, 1.0, units).tolist(), max_ratio)
             for _ in range(n)]
    scores = (map_fn or local_map)(scorer, cands)
    best = int(np.argmax(scores))
    if rescore_top >= 2 and rest is not None and len(rest[1]):
        top = top_distinct(scorer.pm, [(c, s, s) for c, s in zip(cands, scores)], rescore_top)
        if len(top) >= 2:
            best = top[rescore(scorer, rest, top, lambda _r: float)["chosen"]].episode
    return cands[best], float(scores[best]), list(zip(cands, scores))


def run_strategy(strategy: str, scorer: Scorer, budget: Budget, max_ratio: float = MAX_RATIO,
                 seed: int = 0, n_random: int = 50, map_fn: MapFn | None = None,
                 sweep: tuple[float, np.ndarray] | None = None, rescore_top: int = 0,
                 rest: tuple[torch.Tensor, torch.Tensor] | None = None,
                 fill: bool = True) -> tuple[list[float], dict]:
    """Run one baseline; returns (ratios, info with ``val_top1`` and ``seconds``; ``blocks``
    also ``candidates``: every candidate it scored, ``{"ratios", "val_top1"}``, which an AMC
    search warm-started from its policy picks its fine-tuned finalists among instead of
    scoring them again). ``rescore_top``, ``rest``: how random picks its best
    (:func:`random_search`); ``fill``: at a latency budget, the policy's channels past one
    vector filled where the budget allows (:func:`~amc.prune.budget.fill_vectors`)."""
    t = time.perf_counter()
    scored: list[tuple[list[float], float]] = []
    if strategy == "uniform":
        ratios = uniform(scorer, budget, max_ratio)
    elif strategy == "global":
        ratios = global_ranking(scorer, budget, max_ratio)
    elif strategy == "sensitivity":
        dense, acc = sweep or sensitivity_sweep(scorer, map_fn=map_fn)
        ratios = allocate_by_sensitivity(scorer, budget, dense, acc, max_ratio=max_ratio)
    elif strategy == "blocks":
        ratios = blocks_then_uniform(scorer, budget, max_ratio, map_fn, scored, fill)
    elif strategy == "random":
        ratios, _, _ = random_search(scorer, budget, n_random, seed, max_ratio, map_fn,
                                     rescore_top, rest)
    else:
        raise AmcError(f"unknown strategy {strategy!r}; use one of {', '.join(STRATEGIES)}")
    ratios = fill_vectors(scorer.pm, budget, ratios, fill)
    info: dict = {"val_top1": scorer(ratios), "seconds": time.perf_counter() - t}
    if scored:
        info["candidates"] = [{"ratios": [float(x) for x in r], "val_top1": v}
                              for r, v in scored]
    return ratios, info


