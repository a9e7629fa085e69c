"""Stopping a search at a wall-time budget (``--time-limit``), its rescoring included (and,
with ``--time-limit-finalists``, its finalists' fine-tunes and latency check)."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from typing import Protocol

import numpy as np
from stable_baselines3.common.callbacks import BaseCallback


class RescoreEstimate:
    """What re-scoring the search's best policies on the rest of ``val`` will take, from
    the episodes' own scoring times: ``ceil(top / width)`` waves, each as long as one
    policy pruned, repaired and evaluated on ``rest_images``, and one such time more for
    setting up (the workers receive the rest of ``val`` and rebuild their scorers: the
    ResNet-56 searches of results/compare_resnet56_amx_fused rescored in 0.4-1.7 s more
    than the waves alone). Later candidates race, so it is seldom less.

    Args:
        top: Policies re-scored (``--rescore-top``; below 2: none).
        rest_images: Images of ``val`` past the search's own (0: nothing to rescore on).
        width: Policies scored at once (the search's Ray workers; 1 in-process).
    """

    def __init__(self, top: int, rest_images: int, width: int = 1):
        self.waves = math.ceil(top / max(1, width)) if top >= 2 and rest_images > 0 else 0
        self.rest_images = rest_images
        self._episodes = 0
        self._fixed = self._eval = self._images = 0.0  # running sums

    def add(self, result: dict) -> None:
        """Learn from one episode's ``episode_result`` (prune, repair, eval seconds,
        images)."""
        self._episodes += 1
        self._fixed += float(result.get("prune_s", 0.0)) + float(result.get("repair_s", 0.0))
        self._eval += float(result.get("eval_s", 0.0))
        self._images += float(result.get("images", 0.0))

    def seconds(self) -> float:
        """The rescoring's estimated wall seconds (0 before any episode ended)."""
        if not self.waves or not self._episodes:
            return 0.0
        per_image = self._eval / self._images if self._images else 0.0
        return (self.waves + 1) * (self._fixed / self._episodes + per_image * self.rest_images)


FINETUNE_PER_SCORED_IMAGE = 2.2
"""A finalist's fine-tune, in the wall seconds an episode spends scoring one image (its
``eval_s / images`` on one worker's thread), per training image and epoch plus per ``val``
image, on 2 threads: measured on ResNet-56 at latency:0.54 (38 s for 5,000 images, 1 epoch and
5,000 val images against 1.71 ms per scored image; results/compare_resnet56_drop54_all, seed
0, 2-core AVX2 VM). Only a fallback: a search whose blocks finalists were fine-tuned uses
their own time."""


PICK_FINETUNE_FACTOR = 1.15
"""A search's finalists' fine-tunes against its blocks finalists': at one latency budget its
picks keep more MACs than the blocks candidates (0.43 vs 0.38 of the dense at latency:0.53 on
ResNet-56) and took 40 s each against 35 s (2-core AVX2 VM, the first try of
results/compare_resnet56_drop53_timed's seed 0)."""


class FinalistEstimate:
    """What follows the rescoring with ``--time-limit-finalists``: ``finalists`` fine-tunes
    (or ``count()`` of them: a blocks candidate already fine-tuned is reused), each as long as
    ``per_finetune`` (the search's own blocks finalists' mean, times
    :data:`PICK_FINETUNE_FACTOR`) or, unknown, estimated from
    the episodes' scoring time per image (:data:`FINETUNE_PER_SCORED_IMAGE`, scaled to the
    fine-tune's ``threads``), and ``extra`` seconds more (a latency budget's whole-model
    check).

    Args:
        finalists: ``--finalists`` (below 2: no fine-tune).
        per_finetune: Seconds of one fine-tune timed in this search, or None.
        work: Training images x epochs plus ``val`` images of one fine-tune.
        threads: Threads the fine-tunes run on (the workers' cores).
        extra: Seconds added whatever the episodes.
        count: How many fine-tunes are left to make were the search to end now (asked at
            each estimate; at most ``finalists``: those already fine-tuned are reused);
            None: ``finalists``.
        grow: How many more the next round may bring (its episodes: each new policy may
            become a finalist). The estimate is asked before the round runs, and a count of
            the policies so far had left no room for a finalist the last round added (a
            loaded CI run).
    """

    def __init__(self, finalists: int, per_finetune: float | None, work: float,
                 threads: int = 2, extra: float = 0.0, count: Callable[[], int] | None = None,
                 grow: int = 0):
        self.n = finalists if finalists >= 2 else 0
        self.per_finetune, self.work, self.threads, self.extra = per_finetune, work, threads, extra
        self.count, self.grow = count, grow
        self._eval = self._images = 0.0

    def add(self, result: dict) -> None:
        """Learn from one episode's ``episode_result`` (its eval seconds and images)."""
        self._eval += float(result.get("eval_s", 0.0))
        self._images += float(result.get("images", 0.0))

    def seconds(self) -> float:
        """The estimated wall seconds of the fine-tunes and ``extra``."""
        per = self.per_finetune and self.per_finetune * PICK_FINETUNE_FACTOR
        if per is None:
            per_image = self._eval / self._images if self._images else 0.0
            per = FINETUNE_PER_SCORED_IMAGE * per_image * self.work * 2 / max(1, self.threads)
        n = (min(self.n, self.count() + self.grow) if self.count is not None and self.n
             else self.n)
        return n * per + self.extra


def out_of_time(elapsed: float, rounds: Sequence[float], reserve: float, limit: float) -> bool:
    """Whether a search ``elapsed`` seconds in, at the end of a round of episodes, must stop
    to end within ``limit``: the next round, timed as the longest of ``rounds`` after the
    first (which also starts the workers), and what follows the episodes (``reserve``: the
    rescoring) would end past it."""
    return elapsed + max(rounds[1:] or rounds) + reserve > limit


class FitTimes(Protocol):
    """The times of the actor's fits (:class:`~.warm_start.WarmStart`) for the timer."""

    def pending_seconds(self) -> float:
        """The most a fit deferred to the next round will add to it (0: none pending)."""

    def made_seconds(self) -> float:
        """Seconds of the fits made so far."""


class StopAtWallTime(BaseCallback):
    """Stop training at an end of episodes so that the search, what follows its episodes
    included, ends within ``seconds`` of ``since`` (this session's): at each end of a round
    of episodes (the envs step in lockstep, so every env's episode ends there and none is
    cut short) it stops when the next round, timed as the longest usual round so far after
    the first (which also starts the workers) plus a fit of the actor deferred to it, and
    what follows (``reserves``) would not end in time.
    The first round always runs.

    Args:
        seconds: The search's wall-time budget (None: no limit).
        reserves: Estimates of what follows the episodes (:class:`RescoreEstimate`,
            :class:`FinalistEstimate`), each fed every episode's result (none: the episodes
            alone are bounded).
        since: The :func:`time.perf_counter` time ``seconds`` count from (None: training's
            start), so that what ran before training (cheap policies, building the envs and
            the agent, starting workers) is inside the budget.
        fits: The actor's fits (:class:`~.warm_start.WarmStart`; None: none): a round in
            which one was made is not a usual round (left out of the rounds' longest), and
            a fit deferred to the next round adds its bound to that round.
    """

    def __init__(self, seconds: float | None,
                 *reserves: RescoreEstimate | FinalistEstimate | None,
                 since: float | None = None, fits: FitTimes | None = None):
        super().__init__(verbose=0)
        self.seconds = seconds
        self.since = since
        self.fits = fits
        self._made = 0.0  # the fits' seconds at the last end of a round
        self.reserves = [r for r in reserves if r is not None]
        self.stopped = False
        """Whether the budget ended the training."""
        self.reserved = 0.0
        """What the reserves estimated at the last end of a round (seconds)."""
        self.before = 0.0
        """Seconds from ``since`` to training's start (what went before the episodes)."""
        self._start = self._last = 0.0
        self._rounds: list[float] = []  # the first round and every later usual one

    def _on_training_start(self) -> None:
        self._last = time.perf_counter()
        self._start = self._last if self.since is None else self.since
        self.before = self._last - self._start

    def _on_step(self) -> bool:
        if self.seconds is None or not np.any(self.locals.get("dones", False)):
            return True
        now = time.perf_counter()
        usual = True  # no fit of the actor made in this round
        if self.fits is not None:
            made, self._made = self._made, self.fits.made_seconds()
            usual = self._made == made
        if usual or not self._rounds:
            self._rounds.append(now - self._last)
        self._last = now
        for info in self.locals.get("infos", []):
            if "episode_result" in info:
                for r in self.reserves:
                    r.add(info["episode_result"])
        extra = self.reserved = sum(r.seconds() for r in self.reserves)
        if self.fits is not None:
            extra += self.fits.pending_seconds()
        if out_of_time(now - self._start, self._rounds, extra, self.seconds):
            self.stopped = True
            return False
        return True


def warmup_notice(episodes: int, warmup: int, limit: float, before: float, after: float,
                  finalists: bool) -> str | None:
    """The note for a search that ``--time-limit`` stopped after ``episodes`` episodes, all
    inside its ``warmup`` warm-up episodes (the agent never chose a policy of its own, so the
    search returns the warm-up's best), naming where the ``limit``'s seconds went: ``before``
    the episodes (cheap policies, blocks finalists, building the envs and the agent) and
    kept ``after`` them (rescoring, finalists' fine-tunes, latency check); ``finalists``:
    whether fine-tuned finalists are on (then turning them off is the fix offered). Where
    two or more episodes fitted, it also offers a warm-up of half of them, so that the agent
    chooses the other half (a 90 s ResNet-20 search here fitted 49 of 100 warm-up
    episodes). None when the search got past its warm-up.

    On a CPU where scoring is quick the fixed costs dominate: results/compare_resnet56_amx53's
    first try (5,000-image finalists, 131 s limit) ran 2 episodes."""
    if episodes >= warmup:
        return None
    fix = ("pass --finalists 0 --blocks-finalists 0 (or fewer --finalist-images) to leave "
           "the episodes that time, or raise --time-limit" if finalists
           else "raise --time-limit")
    if episodes >= 2:
        fix += (f", or pass --warmup-episodes {episodes // 2} so that the agent chooses about "
                "half of the episodes that fit")
    return (f"amc: note: --time-limit {limit:.0f} s stopped the search after {episodes} "
            f"episode(s), inside its {warmup} warm-up episodes, so the agent never chose a "
            f"policy itself ({before:.0f} s went before the episodes, {after:.0f} s were kept "
            f"for after them); {fix}")
