"""AMC's exploration noise as a stable-baselines3 ``ActionNoise``.

After the warm-up, the action is drawn from a normal centred on the actor's action μ(s) with
σ = max(σ0 · decay^(episode − warm-up), σ_min), truncated to [0, 1] (AMC, He et al. 2018;
σ_min = 0 there). SB3 adds the noise in its [-1, 1] action scale and clips, so this returns
``sample − μ`` in that scale.
During the paper's random warm-up (SB3 then samples uniformly random actions itself) it
returns zeros. A warm-started search (:mod:`amc.agents.warm_start`) gives it demonstrations
instead: during the warm-up each episode replays one cheap policy (first each exactly, then
perturbed by a normal of σ ``demo_sigma``), the noise being the difference between that
action and μ(s); SB3 then stores the demonstrated actions in its replay buffer as its own.

With ``swap`` > 0 and droppable units, an episode after the warm-up swaps, with that
probability, which blocks are dropped: one unit the actor dropped in the env's previous episode
(μ at or above ``drop_at``) is kept, at the mean action of the droppable units it kept, and one
it kept is dropped (action 1). The noise around μ alone rarely does this: an action must cross
``drop_at`` and the budget rule then squeezes the later units, so such an episode scores badly,
and the anchored actor keeps the drops of the best cheap policy it started from.

With ``pairs`` > 0, an episode after the warm-up (that swaps no blocks) is, with that
probability, a *pair move*: the best policy so far (:attr:`TruncatedNormalNoise.incumbent`;
the actor's own actions where none is set), without noise, except one or two pairs of
kept units of the same cost (``twins``: same shapes, e.g. the blocks of one ResNet stage), one
of each pair pruning δ more and the other δ less. Such an episode spends the budget the actor's
policy spends, where the noise on every unit does not: units that keep more make the budget
rule squeeze the last units, units that keep less waste budget, so at a tight budget most noisy
episodes score far below the policy they explore around. Around the incumbent, not μ: at
``latency:0.55`` on ResNet-56 the DDPG updates of ten episodes moved the actor re-fitted to the
best policy by 0.21 per unit on average (0.81 at most: blocks dropped that the best keeps).

SB3 calls an ``ActionNoise`` without arguments, so the noise learns the observations the
next actions are taken for from :class:`FollowObservations`, a callback that reads them from
the rollout's own ``new_obs`` (SB3's public callback locals).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import numpy as np
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.noise import VectorizedActionNoise


def truncnorm():
    """scipy's truncated normal, imported when first asked for (0.9-1.5 s): a search asks
    before its episodes start (:func:`amc.agents.ddpg.make_noise`) when it will pass its
    warm-up, so that the import does not stretch its first round after the warm-up past
    what ``--time-limit`` foresaw; a search that never leaves its warm-up does not pay it."""
    from scipy.stats import truncnorm as dist

    return dist


class TruncatedNormalNoise(VectorizedActionNoise):
    """Truncated-normal noise around the actor's action, decaying per episode.

    A :class:`VectorizedActionNoise` so that SB3 uses it as is for one or several envs; the
    episode counter is global across envs.

    Args:
        n_envs: Number of envs stepping together.
        sigma0: Initial σ in [0, 1] action units.
        decay: Per-episode decay of σ after the warm-up.
        warmup_episodes: Episodes before the noise starts (and before decay counts).
        seed: Seed of the noise's own generator.
        actor: Maps observations (n_envs, obs_dim) to the actor's deterministic actions in
            SB3's [-1, 1] scale, shape (n_envs, action_dim) (set by the agent builder).
        demos: Warm-up demonstrations: per-unit actions in [0, 1] (ratio / max ratio), one
            list per policy (None: the paper's random warm-up).
        demo_sigma: σ of the perturbation of demonstrations after each was played once.
        sigma_min: Floor of the decaying σ (0: the paper's schedule).
        droppable: Indices of the units whose block an action at or above ``drop_at``
            drops (:class:`~amc.envs.actions.ActionMap`).
        drop_at: The action at which a droppable unit is dropped.
        swap: Probability that an episode after the warm-up swaps a dropped and a kept
            block of the actor's previous episode (0: never; the generator is not drawn).
        twins: Groups of units whose pruning costs the same (pair moves trade within one).
        pairs: Probability that an episode after the warm-up that swaps no blocks is a pair
            move (0: never; the generator is not drawn).
        pair_step: Largest δ of a pair move (in [0, 1] action units).
    """

    def __init__(self, n_envs: int = 1, sigma0: float = 0.5, decay: float = 0.95,
                 warmup_episodes: int = 100, seed: int = 0,
                 actor: Callable[[np.ndarray], np.ndarray] | None = None,
                 demos: list[list[float]] | None = None, demo_sigma: float = 0.1,
                 sigma_min: float = 0.0, droppable: Sequence[int] = (),
                 drop_at: float = 0.75, swap: float = 0.0,
                 twins: Sequence[Sequence[int]] = (), pairs: float = 0.0,
                 pair_step: float = 0.2):
        self.n_envs = n_envs
        self.sigma0, self.decay, self.warmup = sigma0, decay, warmup_episodes
        self.sigma_min = sigma_min
        self.rng = np.random.default_rng(seed)
        self.actor = actor
        self.obs: np.ndarray | None = None
        self.episodes = 0
        self.demos = [list(d) for d in demos or []]
        self.demo_sigma = demo_sigma
        self.demos_started = 0
        self._t = np.zeros(n_envs, dtype=int)  # step of each env in its episode
        self._target: list[np.ndarray] = [np.zeros(0)] * n_envs
        self.droppable, self.drop_at, self.swap = sorted(droppable), drop_at, swap
        self.swaps = 0
        """Episodes that swapped a dropped and a kept block."""
        self._mu: list[dict[int, float]] = [{} for _ in range(n_envs)]  # this episode's μ
        self._mu_last: list[dict[int, float]] = [{} for _ in range(n_envs)]
        self._plan: list[dict[int, float]] = [{} for _ in range(n_envs)]
        self.twins = [sorted(int(u) for u in g) for g in twins if len(g) >= 2]
        self.pairs, self.pair_step = pairs, pair_step
        self.pair_moves = 0
        """Episodes that were pair moves."""
        self.incumbent: list[float] | None = None
        """The actions in [0, 1] that replay the best complete episode so far (set by the
        warm start, :class:`~amc.agents.warm_start.WarmStart`): pair moves trade around it
        (around the actor's μ while it is None)."""
        self._shift: list[dict[int, float]] = [{} for _ in range(n_envs)]
        self._base: list[dict[int, float]] = [{} for _ in range(n_envs)]

    @property
    def demonstrating(self) -> bool:
        """Whether the warm-up replays demonstrations now."""
        return bool(self.demos) and self.episodes < self.warmup

    def observe(self, obs: np.ndarray) -> None:
        """The observations the next actions will be taken for."""
        self.obs = np.asarray(obs)

    @property
    def sigma(self) -> float:
        """Current σ in [0, 1] action units."""
        return max(self.sigma0 * self.decay ** max(0, self.episodes - self.warmup),
                   self.sigma_min)

    def _demo_actions(self) -> np.ndarray:
        """The demonstrated actions in [0, 1] for the current step of every env."""
        out = np.empty(self.n_envs)
        for i in range(self.n_envs):
            if self._t[i] == 0:  # a new episode: the next demonstration
                k = self.demos_started
                self.demos_started += 1
                base = np.asarray(self.demos[k % len(self.demos)], dtype=np.float64)
                if k >= len(self.demos):
                    base = base + self.rng.normal(0.0, self.demo_sigma, base.shape)
                # a hair above the ratio: float32 actions must not round a channel count down
                self._target[i] = np.clip(base + 1e-6, 0.0, 1.0)
            t = min(int(self._t[i]), len(self._target[i]) - 1)
            out[i] = self._target[i][t]
        return out

    def __call__(self) -> np.ndarray:
        if self.demonstrating and self.actor is not None and self.obs is not None:
            target = self._demo_actions()
            self._t += 1
            mu = np.asarray(self.actor(self.obs), dtype=np.float64).reshape(self.n_envs)
            return (2.0 * target - 1.0 - mu).reshape(self.n_envs, 1).astype(np.float32)
        steps = self._t.copy()
        self._t += 1
        if self.episodes < self.warmup or self.actor is None or self.obs is None:
            return np.zeros((self.n_envs, 1), dtype=np.float32)
        mu = (np.asarray(self.actor(self.obs), dtype=np.float64) + 1.0) / 2.0  # -> [0, 1]
        sd = max(self.sigma, 1e-6)
        a, b = (0.0 - mu) / sd, (1.0 - mu) / sd
        sample = np.array(truncnorm().rvs(a, b, loc=mu, scale=sd, random_state=self.rng),
                          dtype=np.float64).reshape(mu.shape)
        swapping = self.swap > 0 and bool(self.droppable)
        if swapping or (self.pairs > 0 and self.twins):
            for i, t in enumerate(steps.tolist()):
                m = float(mu.reshape(self.n_envs)[i])
                if t == 0:
                    self._plan[i] = self._swap_plan(self._mu_last[i]) if swapping else {}
                    if not self._plan[i] and self.pairs > 0:
                        self._base[i] = (dict(enumerate(self.incumbent))
                                         if self.incumbent is not None else self._mu_last[i])
                        self._shift[i] = self._pair_plan(self._base[i])
                self._mu[i][t] = m
                if t in self._plan[i]:
                    sample.reshape(self.n_envs)[i] = self._plan[i][t]
                elif self._shift[i]:  # a pair move: the base, shifted at its pairs' units
                    base = self._base[i].get(t, m)
                    sample.reshape(self.n_envs)[i] = (
                        float(np.clip(base + self._shift[i][t], 0.0, self._top(t)))
                        if t in self._shift[i] else base)
        return (2.0 * (sample - mu)).astype(np.float32)

    def _top(self, unit: int) -> float:
        """The largest action that keeps ``unit`` (a droppable one below ``drop_at``)."""
        return self.drop_at - 0.01 if unit in self.droppable else 1.0

    def _pair_plan(self, base: dict[int, float]) -> dict[int, float]:
        """The shifts of a pair move around the actions ``base`` per unit (the incumbent's, or
        the previous episode's μ), with probability ``pairs`` (empty where no twins are both
        kept with room to move): one or two pairs of kept twins, each trading a δ drawn up to
        ``pair_step``."""
        if not base or self.rng.random() >= self.pairs:
            return {}
        kept = [[u for u in g if u in base and base[u] <= self._top(u)]
                for g in self.twins]
        kept = [g for g in kept if len(g) >= 2]
        shift: dict[int, float] = {}
        for _ in range(int(self.rng.integers(1, 3)) if kept else 0):
            free = [u for u in kept[int(self.rng.integers(len(kept)))] if u not in shift]
            if len(free) < 2:
                continue
            more, less = (int(u) for u in self.rng.choice(free, 2, replace=False))
            room = min(self._top(more) - base[more], base[less], self.pair_step)
            if room >= 0.01:
                d = float(self.rng.uniform(0.01, room))
                shift[more], shift[less] = d, -d
        self.pair_moves += bool(shift)
        return shift

    def _swap_plan(self, last_mu: dict[int, float]) -> dict[int, float]:
        """The actions that swap a dropped and a kept block of the episode whose μ per unit
        is ``last_mu`` (with probability ``swap``; empty where it has no both)."""
        if not last_mu or self.rng.random() >= self.swap:
            return {}
        units = [u for u in self.droppable if u in last_mu]
        dropped = [u for u in units if last_mu[u] >= self.drop_at]
        kept = [u for u in units if last_mu[u] < self.drop_at]
        if not dropped or not kept:
            return {}
        self.swaps += 1
        keep_at = min(float(np.mean([last_mu[u] for u in kept])), self.drop_at - 0.05)
        return {int(self.rng.choice(dropped)): keep_at, int(self.rng.choice(kept)): 1.0}

    def reset(self, indices: Iterable[int] | None = None) -> None:
        """SB3 calls this when episodes end and also at the start of every ``learn``, so it
        cannot count episodes: :class:`FollowObservations` does (:meth:`episodes_ended`)."""

    def episodes_ended(self, indices: Iterable[int]) -> None:
        """The episodes of the envs ``indices`` ended: count them."""
        idx = list(indices)
        self.episodes += len(idx)
        self._t[idx] = 0
        for i in idx:
            if self._mu[i]:
                self._mu_last[i], self._mu[i] = self._mu[i], {}
            self._plan[i], self._shift[i], self._base[i] = {}, {}, {}

    def state(self) -> dict:
        return {"episodes": self.episodes, "rng": self.rng.bit_generator.state,
                "demos_started": self.demos_started, "swaps": self.swaps,
                "pair_moves": self.pair_moves}

    def load_state(self, state: dict) -> None:
        self.episodes = int(state["episodes"])
        self.rng.bit_generator.state = state["rng"]
        self.demos_started = int(state.get("demos_started", 0))
        self.swaps = int(state.get("swaps", 0))
        self.pair_moves = int(state.get("pair_moves", 0))
        self._t[:] = 0  # a resumed search starts its envs at the first unit

    def __repr__(self) -> str:
        return f"TruncatedNormalNoise(sigma={self.sigma:.4f}, episodes={self.episodes})"


class FollowObservations(BaseCallback):
    """Hands the rollout's observations to the noise, so that it centres on μ(s), and counts
    the episodes that end (SB3's ``ActionNoise.reset`` also fires at every ``learn`` start).

    After every step it passes on ``new_obs`` (reset observations included). A resumed run
    past the warm-up needs the first observation before its first step: ``on_training_start``
    then resets the env (every episode starts at the first unit, so nothing is lost).
    """

    def __init__(self, noise: TruncatedNormalNoise):
        super().__init__(verbose=0)
        self.noise = noise

    def _on_training_start(self) -> None:
        if self.noise.obs is None and (self.noise.episodes >= self.noise.warmup
                                       or self.noise.demonstrating):
            self.noise.observe(self.training_env.reset())

    def _on_step(self) -> bool:
        done = np.flatnonzero(np.asarray(self.locals["dones"]))
        if done.size:
            self.noise.episodes_ended(done.tolist())
        self.noise.observe(self.locals["new_obs"])
        return True
