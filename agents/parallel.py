"""Scoring on Ray actors: independent evaluations (sensitivity sweep, random search) fanned
out with :func:`ray_map`, and :class:`ActorScorer`, the scorer of driver-side envs whose
episodes' last step (the expensive one) runs on the actors."""

from __future__ import annotations

import os
import queue
import time
import uuid
from collections.abc import Callable, Sequence

import ray
from ray.exceptions import RayActorError
from ray.util import ActorPool

from amc.prune.scoring import Score, Scorer, ScorerParts
from amc.prune.units import PrunableModel

from .ray_runtime import kill_actors


@ray.remote
class ScoreWorker:
    """Holds one scorer (network and ``val`` tensors arrive once, by reference)."""

    def __init__(self, parts_ref: list, threads: int = 1):
        import torch

        from amc.utils.allocator import settle

        settle()  # the actor is this process's entry point: as the amc CLI does
        torch.set_num_threads(max(1, threads))
        self.scorer = ray.get(parts_ref[0]).build()
        self.version = 0

    def score(self, ratios: Sequence[float]) -> float:
        return self.scorer(ratios)

    def run(self, ratios: Sequence[float], can_beat: Callable[[float], bool] | None,
            parts_ref: list, version: int) -> tuple[Score, int]:
        """The full :class:`~amc.prune.scoring.Score` (racing with ``can_beat``) and this
        process's id (another one after a restart). ``parts_ref``/``version``: the
        ingredients to score with; rebuilt here when this actor holds another version (a
        first call after :meth:`ActorScorer.load`, or after a restart)."""
        if version != self.version:
            self.scorer, self.version = ray.get(parts_ref[0]).build(), version
        return self.scorer.score(ratios, can_beat), os.getpid()


def ray_map(scorer: Scorer, workers: int, threads: int = 1
            ) -> Callable[[Callable, list[list[float]]], list[float]]:
    """A ``map_fn`` for :mod:`amc.prune.baselines` that scores policies on ``workers`` actors.

    Ray must be initialised (see :func:`amc.agents.ray_runtime.ray_session`).
    """
    ref = ray.put(ScorerParts.of(scorer))
    actors = [ScoreWorker.options(num_cpus=1).remote([ref], threads) for _ in range(workers)]
    pool = ActorPool(actors)

    def map_fn(_fn: Callable, jobs: list[list[float]]) -> list[float]:
        return list(pool.map(lambda a, j: a.score.remote(j), jobs))

    map_fn.actors = actors  # type: ignore[attr-defined]
    map_fn.ref = ref  # type: ignore[attr-defined]
    return map_fn


class ActorScorer:
    """What a driver-side env scores with: the local scorer's network model (``pm``, for the
    env's costs and observations) and a :meth:`score` that runs on the next idle one of
    ``workers`` Ray actors (thread-safe: envs stepping in threads share the actors).

    An actor that dies is restarted by Ray (``max_restarts``) and the score is asked again:
    scoring is a pure function of the ratios, so nothing is lost or counted twice.

    Ray must be initialised (see :func:`amc.agents.ray_runtime.ray_session`).

    Args:
        parts: The scorer's ingredients (its ``device`` resolved in each actor).
        pm: The driver's network model (the same network as ``parts``).
        workers: Actors.
        threads: torch threads per actor.
        num_cpus: CPUs Ray reserves per actor.
        num_gpus: GPUs Ray reserves per actor (the actor's scorer uses them with
            ``device`` ``auto`` or ``cuda``).
        max_restarts: Restarts allowed per actor.
    """

    def __init__(self, parts: ScorerParts, pm: PrunableModel, workers: int, threads: int = 1,
                 num_cpus: float = 1, num_gpus: float = 0, max_restarts: int = 3):
        self.pm = pm
        self.workers = workers
        ref = ray.put(parts)
        tag = uuid.uuid4().hex[:8]
        self.names = [f"amc-scorer-{i}-{tag}" for i in range(workers)]
        self.actors = [ScoreWorker.options(name=n, max_restarts=max_restarts,
                                           max_task_retries=0, num_cpus=num_cpus,
                                           num_gpus=num_gpus).remote([ref], threads)
                       for n in self.names]
        self._ref, self._version = ref, 0
        self._idle: queue.Queue = queue.Queue()
        for i in range(workers):
            self._idle.put(i)
        self._pids: dict[int, int] = {}
        self.restarts = 0
        """Actor restarts seen (an actor that answers from another process)."""

    def score(self, ratios: Sequence[float],
              can_beat: Callable[[float], bool] | None = None,
              deadline_s: float = 120.0) -> Score:
        """Score ``ratios`` on an idle actor (waiting for one when all are busy)."""
        i = self._idle.get()
        try:
            give_up = time.time() + deadline_s
            while True:
                try:
                    s, pid = ray.get(self.actors[i].run.remote(
                        list(ratios), can_beat, [self._ref], self._version))
                    break
                except RayActorError:  # Ray restarts it; ask again
                    if time.time() > give_up:
                        raise
                    time.sleep(0.5)
            if self._pids.setdefault(i, pid) != pid:
                self.restarts += 1
                self._pids[i] = pid
            return s
        finally:
            self._idle.put(i)

    def load(self, parts: ScorerParts) -> None:
        """Score with ``parts`` from now on (the network model ``pm`` stays: the same
        network, e.g. with other ``val`` images); each actor rebuilds its scorer at its next
        score, and again after a restart."""
        self._ref, self._version = ray.put(parts), self._version + 1

    def close(self) -> None:
        kill_actors(self.actors)
        self.actors = []
