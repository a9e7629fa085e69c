"""VecEnv wrappers (SB3's public extension point) used by the search."""

from __future__ import annotations

import numpy as np
from stable_baselines3.common.vec_env import VecEnv, VecEnvWrapper


class RewardBaseline(VecEnvWrapper):
    """Subtract a moving-average baseline from the final rewards (AMC's normalisation).

    The raw reward stays in ``info["episode_result"]["reward"]``; the agent learns from
    ``reward − baseline``, where the baseline is the exponential moving average of past final
    rewards (factor ``alpha``). The wrapper also keeps the last observations, which the
    exploration noise uses to centre itself on the actor's action.

    Args:
        venv: The vectorised env.
        alpha: Moving-average factor.
    """

    def __init__(self, venv: VecEnv, alpha: float = 0.95):
        super().__init__(venv)
        self.alpha = alpha
        self.baseline: float | None = None
        self.last_obs: np.ndarray | None = None

    def reset(self) -> np.ndarray:
        self.last_obs = self.venv.reset()
        return self.last_obs

    def step_wait(self):
        obs, rewards, dones, infos = self.venv.step_wait()
        rewards = np.asarray(rewards, dtype=np.float32).copy()
        for i, done in enumerate(dones):
            if not done:
                continue
            raw = float(infos[i]["episode_result"]["reward"])
            if self.baseline is None:
                self.baseline = raw
            rewards[i] = raw - self.baseline
            self.baseline = self.alpha * self.baseline + (1 - self.alpha) * raw
        self.last_obs = obs
        return obs, rewards, dones, infos

    def state(self) -> dict:
        return {"baseline": self.baseline}

    def load_state(self, state: dict) -> None:
        self.baseline = state.get("baseline")
