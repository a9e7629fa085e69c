"""Stopping a search at a wall-time budget (``--time-limit``)."""

from __future__ import annotations

import time

import numpy as np
from stable_baselines3.common.callbacks import BaseCallback


class StopAtWallTime(BaseCallback):
    """Stop training at the first end of episodes once ``seconds`` have passed since
    training started (this session's; the envs step in lockstep, so every env's episode
    ends there and none is cut short).

    Args:
        seconds: The wall-time budget of the episodes (None: no limit).
    """

    def __init__(self, seconds: float | None):
        super().__init__(verbose=0)
        self.seconds = seconds
        self.stopped = False
        """Whether the budget ended the training."""
        self._deadline = float("inf")

    def _on_training_start(self) -> None:
        if self.seconds is not None:
            self._deadline = time.perf_counter() + self.seconds

    def _on_step(self) -> bool:
        if np.any(self.locals.get("dones", False)) and time.perf_counter() >= self._deadline:
            self.stopped = True
            return False
        return True
