"""AMC's exploration noise as a stable-baselines3 ``ActionNoise``.

After the warm-up, the action is drawn from a normal centred on the actor's action μ(s) with
σ = σ0 · decay^(episode − warm-up), truncated to [0, 1] (AMC, He et al. 2018). SB3 adds the
noise in its [-1, 1] action scale and clips, so this returns ``sample − μ`` in that scale.
During the warm-up (SB3 then samples uniformly random actions itself) it returns zeros.

SB3 calls an ``ActionNoise`` without arguments, so the noise learns the observations the
next actions are taken for from :class:`FollowObservations`, a callback that reads them from
the rollout's own ``new_obs`` (SB3's public callback locals).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np
from scipy.stats import truncnorm
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.noise import VectorizedActionNoise


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
    """

    def __init__(self, n_envs: int = 1, sigma0: float = 0.5, decay: float = 0.95,
                 warmup_episodes: int = 100, seed: int = 0,
                 actor: Callable[[np.ndarray], np.ndarray] | None = None):
        self.n_envs = n_envs
        self.sigma0, self.decay, self.warmup = sigma0, decay, warmup_episodes
        self.rng = np.random.default_rng(seed)
        self.actor = actor
        self.obs: np.ndarray | None = None
        self.episodes = 0

    def observe(self, obs: np.ndarray) -> None:
        """The observations the next actions will be taken for."""
        self.obs = np.asarray(obs)

    @property
    def sigma(self) -> float:
        """Current σ in [0, 1] action units."""
        return self.sigma0 * self.decay ** max(0, self.episodes - self.warmup)

    def __call__(self) -> np.ndarray:
        if self.episodes < self.warmup or self.actor is None or self.obs is None:
            return np.zeros((self.n_envs, 1), dtype=np.float32)
        mu = (np.asarray(self.actor(self.obs), dtype=np.float64) + 1.0) / 2.0  # -> [0, 1]
        sd = max(self.sigma, 1e-6)
        a, b = (0.0 - mu) / sd, (1.0 - mu) / sd
        sample = truncnorm.rvs(a, b, loc=mu, scale=sd, random_state=self.rng)
        return (2.0 * (sample - mu)).astype(np.float32)

    def reset(self, indices: Iterable[int] | None = None) -> None:
        """Called by SB3 when episodes end: count them."""
        self.episodes += len(list(indices)) if indices is not None else 1

    def state(self) -> dict:
        return {"episodes": self.episodes, "rng": self.rng.bit_generator.state}

    def load_state(self, state: dict) -> None:
        self.episodes = int(state["episodes"])
        self.rng.bit_generator.state = state["rng"]

    def __repr__(self) -> str:
        return f"TruncatedNormalNoise(sigma={self.sigma:.4f}, episodes={self.episodes})"


class FollowObservations(BaseCallback):
    """Hands the rollout's observations to the noise, so that it centres on μ(s).

    After every step it passes on ``new_obs`` (reset observations included). A resumed run
    past the warm-up needs the first observation before its first step: ``on_training_start``
    then resets the env (every episode starts at the first unit, so nothing is lost).
    """

    def __init__(self, noise: TruncatedNormalNoise):
        super().__init__(verbose=0)
        self.noise = noise

    def _on_training_start(self) -> None:
        if self.noise.obs is None and self.noise.episodes >= self.noise.warmup:
            self.noise.observe(self.training_env.reset())

    def _on_step(self) -> bool:
        self.noise.observe(self.locals["new_obs"])
        return True
