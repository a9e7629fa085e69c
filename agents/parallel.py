"""Independent evaluations (sensitivity sweep, random search) fanned out over Ray actors."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import ray
from ray.util import ActorPool

from amc.prune.scoring import Scorer, ScorerParts


@ray.remote
class ScoreWorker:
    """Holds one scorer (network and ``val`` tensors arrive once, by reference)."""

    def __init__(self, parts_ref: list, threads: int = 1):
        import torch

        torch.set_num_threads(max(1, threads))
        self.scorer = ray.get(parts_ref[0]).build()

    def score(self, ratios: Sequence[float]) -> float:
        return self.scorer(ratios)


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
