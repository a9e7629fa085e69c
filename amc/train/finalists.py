"""Picking among a search's best policies by a short fine-tune (``--finalists``).

No score before fine-tuning orders the good policies as fine-tuning does: on CIFAR ResNet-56
at ~1.8x (``results/reward_rank_drop55.md``) the search's score ranks 24 policies at
Spearman 0.90 against test top-1 after the comparison's fine-tune, but only 0.5 among the
better half, where a search's pick lies; and where blocks may be dropped, networks of equal
latency that drop more blocks and prune the rest less keep more MACs and recover more
(``results/README.md``, the ``compare_resnet56_drop55_finalists`` section: one search's pick
that kept its warm start's 4 drops, replaced by an 11-drop candidate, +0.43 on test). So a
search can end by fine-tuning a few finalists briefly and keeping the one best on ``val``
after it, as NetAdapt's long-term fine-tune of its candidates does.

:func:`pick_finalists` chooses the finalists from scored policies: the best policy of each
distinct set of dropped blocks first (best pattern first), then the next best distinct
policies; :func:`finetune_finalists` fine-tunes each with one recipe and scores it on ``val``,
and keeps the first (the search's own pick) unless another leads it by more than a margin:
the finalists lie within a point of each other, inside one fine-tune's spread, so a pick by
the raw best swaps the search's pick for a policy no better after fine-tuning and worse
before it (``results/compare_resnet56_drop54_plain``: two of three searches swapped their
pick for a finalist 0.14 / 0.30 points ahead on val after the fine-tune and 2.42 / 1.26 points
behind on test before it).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from amc.data.datasets import Dataset
from amc.models.evaluate import top1
from amc.prune.depth import DROP
from amc.prune.units import PrunableModel
from amc.train.loop import TrainConfig, train
from amc.utils.stats import binomial_se


@dataclass
class Finalist:
    """One policy to fine-tune.

    Attributes:
        name: Where it comes from (an episode, ``blocks_k9``...).
        ratios: Its per-unit ratios.
        score: What it was chosen by (higher is better: the search's reward).
        episode: Its episode in the search, if it is one.
        val_top1: Its val top-1 in the search's scoring, where known.
    """

    name: str
    ratios: list[float]
    score: float
    episode: int | None = None
    val_top1: float | None = None


def dropped(pm: PrunableModel, ratios: Sequence[float]) -> frozenset[int]:
    """The droppable units whose block ``ratios`` drops."""
    return frozenset(u for u in pm.blocks if ratios[u] >= DROP)


def pick_finalists(pm: PrunableModel, pool: Sequence[Finalist], k: int) -> list[Finalist]:
    """The ``k`` finalists of ``pool``: the best of each distinct set of dropped blocks, best
    set first, then the next best policies whose kept channels differ from those chosen
    (earlier first among equal scores). Without droppable blocks: the ``k`` best distinct."""
    order = sorted(pool, key=lambda f: -f.score)  # stable

    def kept(f: Finalist) -> tuple[int, ...]:
        return tuple(pm.kept(u, x) for u, x in enumerate(f.ratios))

    out: list[Finalist] = []
    chosen: set[tuple[int, ...]] = set()
    patterns: set[frozenset[int]] = set()
    for f in order:  # one per pattern of dropped blocks
        if len(out) == k:
            return out
        p = dropped(pm, f.ratios)
        if p not in patterns and kept(f) not in chosen:
            patterns.add(p)
            chosen.add(kept(f))
            out.append(f)
    for f in order:  # fill with the next best distinct
        if len(out) == k:
            break
        if kept(f) not in chosen:
            chosen.add(kept(f))
            out.append(f)
    return out


def ratios_key(ratios: Sequence[float]) -> tuple[float, ...]:
    """A policy's ratios as a key (rounded to 6 decimals, as records keep them)."""
    return tuple(round(float(x), 6) for x in ratios)


def finetune_finalists(finalists: Sequence[Finalist], start: Callable[[list[float]], nn.Module],
                       data: Dataset, cfg: TrainConfig, val: tuple[torch.Tensor, torch.Tensor],
                       teacher: nn.Module | None = None,
                       say: Callable[[str], None] | None = None,
                       known: dict[tuple[float, ...], float] | None = None,
                       margin_se: float = 0.0, deadline: float | None = None,
                       per_finetune: float | None = None) -> dict:
    """Fine-tune each finalist with ``cfg`` on ``data`` and score it on ``val``.

    Args:
        finalists: The policies, the search's own pick first (it wins ties).
        start: The network a policy's fine-tune starts from (pruned, BN-recalibrated).
        data: The training images of the fine-tunes.
        cfg: The recipe (one seed for every finalist: they differ only by policy).
        val: The images and labels the finalists are judged on.
        teacher: Distillation teacher (used when ``cfg.kd_weight`` > 0).
        say: Called with a line per finalist.
        known: Val top-1 after this very fine-tune of policies already fine-tuned, by their
            ratios (:func:`ratios_key`): not fine-tuned again.
        margin_se: Another finalist replaces the first only when it leads it on ``val``
            after the fine-tune by more than this many standard errors of the difference
            of two top-1s on ``val``'s images (binomial); 0: the best wins (ties: the first).
        deadline: A :func:`time.perf_counter` time the fine-tunes must end by: a finalist
            after the first whose fine-tune, timed as the longest so far (or
            ``per_finetune`` before any), would end past it is left out, and so are the
            ones after it (None: all are fine-tuned).
        per_finetune: Seconds one fine-tune is expected to take before any was timed here.

    Returns:
        ``{"chosen": index into finalists, "rows": one dict per finalist fine-tuned or
        reused (the first ones, in order), "margin": the lead (points) another finalist
        needed, "left_out": finalists left out by ``deadline``, "seconds"}``; each row holds
        the name, score, ``val_top1_after`` and ``seconds``.
    """
    t0 = time.perf_counter()
    rows: list[dict] = []
    longest = per_finetune or 0.0
    left_out = 0
    for i, f in enumerate(finalists):
        t = time.perf_counter()
        acc = (known or {}).get(ratios_key(f.ratios))
        reused = acc is not None
        if not reused and i and deadline is not None and t + longest > deadline:
            left_out = len(finalists) - i
            if say:
                say(f"finalists: {left_out} left out, their fine-tunes (~{longest:.0f} s "
                    "each) would end past the time limit")
            break
        if not reused:
            net = start(f.ratios)
            train(net, data, cfg, teacher=teacher)
            acc = top1(net, *val)
        rows.append({"name": f.name, "score": f.score, "val_top1_after": acc,
                     "seconds": time.perf_counter() - t, "reused": reused})
        if not reused:
            longest = max(longest, rows[-1]["seconds"])
        if say:
            say(f"finalist {f.name}: val top-1 {acc:.2f} % after the fine-tune"
                + (" (fine-tuned before)" if reused else ""))
    best = max(range(len(rows)), key=lambda i: (rows[i]["val_top1_after"], -i))
    first = rows[0]["val_top1_after"]
    margin = margin_se * math.sqrt(2.0) * binomial_se(first, len(val[1]))
    if rows[best]["val_top1_after"] - first <= margin:
        best = 0
    return {"chosen": best, "rows": rows, "margin": margin, "left_out": left_out,
            "seconds": time.perf_counter() - t0}
