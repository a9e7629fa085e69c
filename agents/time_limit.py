"""Stopping a search at a wall-time budget (``--time-limit``), its rescoring included."""

from __future__ import annotations

import math
import time
from collections.abc import Sequence

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


def out_of_time(elapsed: float, rounds: Sequence[float], reserve: float, limit: float) -> bool:
    """Whether a search ``elapsed`` seconds in, at the end of a round of episodes, must stop
    to end within ``limit``: the next round, timed as the longest of ``rounds`` after the
    first (which also starts the workers), and what follows the episodes (``reserve``: the
    rescoring) would end past it."""
    return elapsed + max(rounds[1:] or rounds) + reserve > limit


class StopAtWallTime(BaseCallback):
    """Stop training at an end of episodes so that the search, its rescoring included,
    ends within ``seconds`` of training's start (this session's): at each end of a round
    of episodes (the envs step in lockstep, so every env's episode ends there and none is
    cut short) it stops when the next round, timed as the longest so far after the first
    (which also starts the workers), and the rescoring (``reserve``) would not end in time.
    The first round always runs.

    Args:
        seconds: The search's wall-time budget (None: no limit).
        reserve: The rescoring's estimate, fed each episode's result (None: the episodes
            alone are bounded).
    """

    def __init__(self, seconds: float | None, reserve: RescoreEstimate | None = None):
        super().__init__(verbose=0)
        self.seconds = seconds
        self.reserve = reserve
        self.stopped = False
        """Whether the budget ended the training."""
        self._start = self._last = 0.0
        self._rounds: list[float] = []

    def _on_training_start(self) -> None:
        self._start = self._last = time.perf_counter()

    def _on_step(self) -> bool:
        if self.seconds is None or not np.any(self.locals.get("dones", False)):
            return True
        now = time.perf_counter()
        self._rounds.append(now - self._last)
        self._last = now
        if self.reserve is not None:
            for info in self.locals.get("infos", []):
                if "episode_result" in info:
                    self.reserve.add(info["episode_result"])
        extra = self.reserve.seconds() if self.reserve is not None else 0.0
        if out_of_time(now - self._start, self._rounds, extra, self.seconds):
            self.stopped = True
            return False
        return True
