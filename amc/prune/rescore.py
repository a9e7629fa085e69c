"""Picking the best of a few policies on more ``val`` images than they were chosen on.

A search (AMC's episodes, the random baseline's draws) scores each policy on the first
``val_limit`` images of ``val``; the best of many such scores is biased upward by their noise
(1,000 images: ±1.3 points at 80 % top-1), so the policy with the highest score is often not
the best one. :func:`rescore` scores a few candidates again on the rest of ``val`` (images
the search never saw; BatchNorm recalibrated as in the search) and picks the best on all of
``val``; later candidates race: they stop once an upper confidence bound shows they cannot
overtake the best so far. With several scoring workers the candidates go in waves of one
per worker, each wave racing against the best of the waves before.
:func:`top_distinct` picks the candidates from scored policies.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from functools import partial

import torch

from amc.prune.scoring import Score, Scorer
from amc.prune.units import PrunableModel


@dataclass
class Candidate:
    """One of the search's best episodes.

    Attributes:
        episode: Its row in ``episodes.csv``.
        ratios: Its per-unit ratios.
        val_top1: Its score in the search (the first ``val_limit`` images).
        reward: Its reward in the search.
    """

    episode: int
    ratios: list[float]
    val_top1: float
    reward: float


def rest_of_val(scorer: Scorer, val: tuple[torch.Tensor, torch.Tensor]
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``val`` images and labels past the scorer's own (its first ``val_limit``): what
    :func:`rescore` scores candidates on."""
    n = len(scorer.y)
    return val[0][n:], val[1][n:]


def top_distinct(pm: PrunableModel, scored: Sequence[tuple[list[float], float, float]],
                 k: int) -> list[Candidate]:
    """The ``k`` best of ``(ratios, val top-1, reward)`` triples by reward (earlier first
    among equals) whose kept channels differ; ``episode`` is the triple's index."""
    order = sorted(range(len(scored)), key=lambda i: -scored[i][2])  # stable
    out: list[Candidate] = []
    seen: set[tuple[int, ...]] = set()
    for i in order:
        ratios, top1, reward = scored[i]
        kept = tuple(pm.kept(u, x) for u, x in enumerate(ratios))
        if kept not in seen:
            seen.add(kept)
            out.append(Candidate(i, list(ratios), float(top1), float(reward)))
            if len(out) == k:
                break
    return out


RewardAt = Callable[[list[float]], Callable[[float], float]]
"""Ratios -> their reward as a function of val top-1 (%). The inner function may travel to
a scoring worker: it must hold numbers and the reward function, not a network."""


def _beats(reward: Callable[[float], float], n1: int, top1: float, n2: int, bar: float,
           ub: float) -> bool:
    """Racing: can a candidate scoring ``top1`` on the first ``n1`` images and at most ``ub``
    on the ``n2`` others beat the reward ``bar``?"""
    return reward((n1 * top1 + n2 * ub) / (n1 + n2)) > bar


def rescore(scorer: Scorer, rest: tuple[torch.Tensor, torch.Tensor],
            cands: Sequence[Candidate], reward_at: RewardAt,
            score: Callable[..., Score] | None = None, width: int = 1) -> dict:
    """Score ``cands`` on the ``rest`` of ``val`` and pick the best on all of it.

    Args:
        scorer: The search's scorer (its ``val`` images are the first ``val_limit``).
        rest: The other ``val`` images and labels.
        cands: The candidates, the search's best first (always scored completely).
        reward_at: The search's reward of ratios as a function of their val top-1 (%).
        score: Scores ratios on ``rest`` (``score(ratios, can_beat)``, thread-safe, e.g. Ray
            actors holding ``rest``); None: ``scorer`` with ``rest`` for its ``val``.
        width: Candidates scored at once (the workers behind ``score``).

    Returns:
        ``{"chosen": index into cands, "rows": one dict per candidate, "seconds",
        "images": len(rest)}``.
    """
    t = time.perf_counter()
    score = score or replace(scorer, x=rest[0], y=rest[1]).score
    width = max(1, width)
    n1, n2 = len(scorer.y), len(rest[1])
    rewards = [reward_at(c.ratios) for c in cands]
    rows: list[dict] = []
    best_i, best_reward = 0, None
    with ThreadPoolExecutor(width) as pool:
        for w0 in range(0, len(cands), width):
            wave = range(w0, min(len(cands), w0 + width))
            bar = best_reward

            def one(i: int, bar: float | None = bar) -> Score:
                c = cands[i]
                can_beat = (partial(_beats, rewards[i], n1, c.val_top1, n2, bar)
                            if i and bar is not None else None)
                return score(c.ratios, can_beat)

            for i, s in zip(wave, pool.map(one, wave)):
                c = cands[i]
                top1 = (n1 * c.val_top1 + s.images * s.top1) / (n1 + s.images)
                reward = rewards[i](top1)
                rows.append({"episode": c.episode, "search_val_top1": c.val_top1,
                             "rest_val_top1": s.top1, "rest_images": s.images,
                             "val_top1_all": top1 if s.complete else None,
                             "reward_all": reward if s.complete else None})
                if s.complete and (best_reward is None or reward > best_reward):
                    best_i, best_reward = i, reward
    return {"chosen": best_i, "rows": rows, "seconds": time.perf_counter() - t,
            "images": n2}
