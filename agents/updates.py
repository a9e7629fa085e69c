"""When the agent learns: one gradient update per stored transition, made when its episode
ends, and while the envs evaluate the next episodes where that leaves a core (or a GPU).

AMC updates its agent once per transition after each episode. With SB3's own schedule
(``gradient_steps=-1``) the updates run between env steps, so with N Ray workers the driver
makes N x units updates per round while every worker waits for its next action, and the
workers wait for the driver: the driver's updates, not the workers, bound the episode rate.
Here SB3's own training is off (``gradient_steps=0``) and :class:`EpisodeUpdates` (a
callback) makes the updates owed for the transitions an
:class:`~amc.agents.episode_buffer.EpisodeReplayBuffer` stored:

* in-process envs whose scoring holds every core (or ``--no-overlap-updates``): at once,
  after the episodes end (AMC's schedule);
* remote envs, wrapped in :class:`OverlapUpdates`: in a driver thread while the workers
  compute the next episodes' last step (the expensive one: pruning, repair, evaluation),
  joined before that step returns. The policy then acts one round of episodes behind its
  updates; the count of updates, the data they sample and their order do not change, and
  nothing else runs on the driver meanwhile, so a seed still fixes the search;
* an in-process env whose scoring leaves the process a core (on a GPU, or on fewer torch
  threads than the machine has cores: ``amc search``'s one thread): the same, the updates
  in a thread while the env scores (:func:`overlaps`). The scorer draws from its own
  generators only, never from the global ones the updates sample with.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable

import numpy as np
import torch
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.vec_env import VecEnv, VecEnvWrapper


def free_cores() -> int:
    """Cores this process may run on (its CPU affinity) beyond torch's intra-op threads."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return cores - torch.get_num_threads()


def overlaps(overlap_updates: bool, workers: int | None, device: torch.device) -> bool:
    """Whether a search's updates run while its envs score (:class:`OverlapUpdates`):
    asked for (``overlap_updates``) and either Ray workers score (``workers`` > 1) or the
    in-process scorer, on ``device``, leaves the driver's thread a core: a GPU does the
    scoring's arithmetic, or the scoring's torch threads leave a core free."""
    if not overlap_updates:
        return False
    if workers and workers > 1:
        return True
    return torch.device(device).type != "cpu" or free_cores() > 0


class OverlapUpdates(VecEnvWrapper):
    """Runs deferred work in a thread while the wrapped envs compute an episode's last step.

    The envs step in lockstep through episodes of ``episode_length`` steps (the pruning
    env's: one per unit; a restarted Ray worker replays its episode), so every
    ``episode_length``-th step is the one that evaluates. When the envs can say so
    (``wait_first_step``), the jobs start once the first of them has finished that step: on
    the core its worker leaves idle until the round's slowest evaluation ends, instead of
    beside every worker from the start (measured on 2 cores, ResNet-20, 2 workers: +1-2 %
    episodes/s, the same episodes).

    Args:
        venv: The (remote) envs.
        episode_length: Steps per episode.
    """

    def __init__(self, venv: VecEnv, episode_length: int):
        super().__init__(venv)
        self.episode_length = episode_length
        self._t = 0
        self._jobs: list[Callable[[], None]] = []
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self.overlapped = 0
        """Jobs run while the envs were evaluating."""

    def defer(self, job: Callable[[], None]) -> None:
        """Run ``job`` during the next last step of the episodes (once; jobs deferred
        before that step run in the order given)."""
        if job not in self._jobs:
            self._jobs.append(job)

    def reset(self) -> np.ndarray:
        self.finish()
        self._t = 0
        return self.venv.reset()

    def step_async(self, actions: np.ndarray) -> None:
        self.venv.step_async(actions)
        self._t += 1
        if self._jobs and self._t % self.episode_length == 0:
            jobs, self._jobs = self._jobs, []
            self._thread = threading.Thread(target=self._run, args=(jobs,), daemon=True)
            self._thread.start()
            self.overlapped += 1

    def _run(self, jobs: list[Callable[[], None]]) -> None:
        try:
            first = getattr(self.venv, "wait_first_step", None)
            if first is not None:  # start when a worker frees its core: not beside both
                first()
            for job in jobs:
                job()
        except BaseException as e:  # re-raised on the driver's thread by finish()
            self._error = e

    def step_wait(self):
        try:
            return self.venv.step_wait()
        finally:
            self.finish()

    def finish(self) -> None:
        """Wait for the running job; raise what it raised."""
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._error is not None:
            err, self._error = self._error, None
            raise err

    def close(self) -> None:
        try:
            self.finish()
        finally:
            self.venv.close()


class EpisodeUpdates(BaseCallback):
    """Makes one gradient update per transition the replay buffer stored (after SB3's
    ``learning_starts``), at once or, given an :class:`OverlapUpdates`, while the envs
    evaluate the next episodes.

    Args:
        overlap: The wrapper of remote envs to defer the updates to (None: make them at once).
    """

    def __init__(self, overlap: OverlapUpdates | None = None):
        super().__init__(verbose=0)
        self.overlap = overlap
        self.owed = 0
        self.made = 0
        self.seconds = 0.0
        """Wall time spent in updates (this session)."""
        self._seen = 0

    def _on_training_start(self) -> None:
        self._seen = self.model.replay_buffer.committed
        if self.owed:  # owed when the search was checkpointed
            self._schedule()

    def _on_step(self) -> bool:
        return True

    def _on_rollout_end(self) -> None:
        stored = self.model.replay_buffer.committed
        new, self._seen = stored - self._seen, stored
        if new and self.model.num_timesteps > self.model.learning_starts:
            self.owed += new
            self._schedule()

    def _schedule(self) -> None:
        if self.overlap is None:
            self.update()
        else:
            self.overlap.defer(self.update)

    def update(self) -> None:
        """Make the owed updates."""
        n, self.owed = self.owed, 0
        if n:
            t = time.perf_counter()
            self.model.train(gradient_steps=n, batch_size=self.model.batch_size)
            self.seconds += time.perf_counter() - t
            self.made += n

    def _on_training_end(self) -> None:
        if self.overlap is not None:
            self.overlap.finish()

    def state(self) -> dict:
        return {"owed": self.owed}

    def load_state(self, state: dict) -> None:
        self.owed = int(state.get("owed", 0))
