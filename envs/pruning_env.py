"""``AMCPruningEnv``: AMC's channel-pruning MDP as a Gymnasium env.

One step = one prunable unit, in forward order. The observation holds AMC's 11 features of
the current unit, min-max normalised to [0, 1]; the action in [0, 1] maps to a ratio in
[0, max_ratio] (or drops a droppable unit's block, :mod:`.actions`) and is clipped by the
budget rule so that every episode meets the budget.
At the last unit the policy is applied to a copy of the network and scored on ``val``.
"""

from __future__ import annotations

import time
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from amc.prune.budget import MAX_RATIO, Budget, clip_range, resource_fn, vector_table
from amc.prune.latency_table import LatencySpec
from amc.prune.scoring import Scorer, build_scorer

from .actions import ActionMap
from .rewards import Outcome, reward_fn

FEATURES = ("index", "n", "c", "h", "w", "stride", "k", "macs", "reduced", "rest", "prev_action")


class AMCPruningEnv(gym.Env):
    """Walk the prunable units of a network and choose a pruning ratio for each.

    Args:
        scorer: A ready :class:`~amc.prune.scoring.Scorer`; when None one is built from ``model``,
            ``checkpoint``, ``data`` and the other keyword arguments of
            :func:`amc.prune.scoring.build_scorer` (this is what ``gymnasium.make`` passes).
        budget: Budget such as ``flops:0.5``.
        reward: ``err``, ``flops``, ``params``, ``acc_size``, ``latency`` or ``capacity``.
        max_ratio: Largest pruning ratio of a unit.
        lambda_size: λ of the ``acc_size`` reward.
        capacity_weight: Weight of the MACs in the ``capacity`` reward.
        latency: Where latency budgets and the latency reward are measured (a
            :class:`~amc.prune.latency_table.LatencySpec`; None: its defaults).
        race: Stop scoring an episode's network once it cannot beat ``best_reward``
            (:mod:`amc.prune.racing`); the episode's reward then comes from the images seen.
        fill_vectors: At a latency budget, round a unit's kept channels past one CPU vector
            up to whole vectors when the budget still holds
            (:meth:`~amc.prune.latency_table.LatencyTable.fill`: the table charges them
            whole vectors already).
        **scorer_kwargs: Passed to :func:`amc.prune.scoring.build_scorer`.
    """

    metadata = {"render_modes": []}

    def __init__(self, scorer: Scorer | None = None, *, budget: str = "flops:0.5",
                 reward: str = "err", max_ratio: float = MAX_RATIO, lambda_size: float = 1.0,
                 capacity_weight: float = 1.0, race: bool = False,
                 latency: LatencySpec | None = None, fill_vectors: bool = True,
                 **scorer_kwargs: Any):
        super().__init__()
        self.scorer = scorer if scorer is not None else build_scorer(**scorer_kwargs)
        self.pm = self.scorer.pm
        self.budget = Budget.parse(budget, latency) if isinstance(budget, str) else budget
        self.max_ratio = float(max_ratio)
        self.reward_name = reward
        self.race = race
        self.best_reward: float | None = None
        """Best raw reward of a completely scored episode (this env's, or the search's when
        the agent side sets it with ``set_attr``); racing stops episodes that cannot beat it."""
        self._reward = reward_fn(reward, lambda_size, capacity_weight)
        self._resource = resource_fn(self.pm, self.budget)
        self._vectors = vector_table(self.pm, self.budget, fill_vectors)
        self._latency = None
        if reward == "latency":
            self._latency = (latency or LatencySpec()).table(self.pm)
        self.actions = ActionMap.of(self.pm, self.max_ratio)
        """How actions map to this env's ratios (:class:`~.actions.ActionMap`)."""
        self.n_units = len(self.pm.units)
        self._static = self._static_features()
        self.observation_space = spaces.Box(0.0, 1.0, (len(FEATURES),), np.float32)
        self.action_space = spaces.Box(0.0, 1.0, (1,), np.float32)
        self._t = 0
        self._ratios: list[float] = []
        self._prev = 0.0
        self._t0 = time.perf_counter()
        # fail early on a budget the clipping rule cannot reach
        clip_range(self.pm, self.budget, [], 0, self.max_ratio, self._resource)

    def _static_features(self) -> np.ndarray:
        rows = np.array([[u.index, u.n, u.c, u.h, u.w, u.stride, u.k, u.macs]
                         for u in self.pm.units], dtype=np.float64)
        lo, hi = rows.min(0), rows.max(0)
        span = np.where(hi > lo, hi - lo, 1.0)
        return ((rows - lo) / span).astype(np.float32)

    def _obs(self) -> np.ndarray:
        t = min(self._t, self.n_units - 1)
        chosen = self._ratios + [0.0] * (self.n_units - len(self._ratios))
        macs_now = self.pm.cost(chosen)[0]
        reduced = (self.pm.dense_macs - macs_now) / self.pm.dense_macs
        rest = sum(u.macs for u in self.pm.units[t + 1:]) / max(
            1, sum(u.macs for u in self.pm.units))
        dyn = np.array([reduced, rest, self._prev], dtype=np.float32)
        return np.clip(np.concatenate([self._static[t], dyn]), 0.0, 1.0).astype(np.float32)

    def reset(self, *, seed: int | None = None, options: dict | None = None
              ) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        self._t, self._ratios, self._prev = 0, [], 0.0
        self._t0 = time.perf_counter()
        return self._obs(), {}

    def clip(self, action: float) -> tuple[float, float]:
        """(raw ratio, applied ratio) for the current unit: clipped by the budget rule, then
        its channels past one vector filled where the budget still allows it
        (``fill_vectors``)."""
        raw = self.actions.ratio(self._t, action)
        lo, hi = clip_range(self.pm, self.budget, self._ratios, self._t, self.max_ratio,
                            self._resource)
        applied = float(min(max(raw, lo), hi))
        if self._vectors is not None and (filled := self._vectors.fill(self._t, applied)) >= lo:
            applied = filled
        return raw, applied

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict]:
        a = float(np.asarray(action, dtype=np.float64).reshape(-1)[0])
        raw, applied = self.clip(a)
        self._ratios.append(applied)
        self._prev = self.actions.action(self._t, applied)
        info: dict[str, Any] = {"unit": self.pm.units[self._t].name, "raw_ratio": raw,
                                "ratio": applied}
        self._t += 1
        if self._t < self.n_units:
            return self._obs(), 0.0, False, False, info
        ratios = list(self._ratios)
        macs, params = self.pm.cost(ratios)
        lat = self._latency.predict(ratios) if self._latency is not None else 0.0
        size, target = self._resource(ratios), self.budget.fraction
        macs_fraction = macs / self.pm.dense_macs

        reward_of = self._reward  # the closures below may travel to a scoring worker:
        # they hold the reward function and numbers, never the env

        def reward_at(top1: float) -> float:
            return float(reward_of(Outcome(top1, macs, params, size, target, lat, macs_fraction)))

        best = self.best_reward
        can_beat = (lambda ub: reward_at(ub) > best) if self.race and best is not None else None
        s = self.scorer.score(ratios, can_beat)
        reward = reward_at(s.top1)
        if s.complete and (self.best_reward is None or reward > self.best_reward):
            self.best_reward = reward
        info["episode_result"] = {
            "ratios": ratios, "macs_ratio": macs_fraction,
            "params_ratio": params / self.pm.dense_params, "budget_ratio": size,
            "val_top1": s.top1,
            "reward": reward, "seconds": time.perf_counter() - self._t0,
            "images": s.images, "complete": s.complete, "prune_s": s.prune_s,
            "repair_s": s.repair_s, "eval_s": s.eval_s,
        }
        return self._obs(), reward, True, False, info
