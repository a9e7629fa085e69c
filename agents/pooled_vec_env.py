"""A stable-baselines3 ``VecEnv`` of driver-side pruning envs that score on Ray actors.

An AMC episode is one cheap step per unit (clip the ratio, compute the next observation)
and one expensive last step (prune, repair, evaluate). With the whole env in a worker every
cheap step is a remote round trip; here the envs live on the driver and only their scoring
goes to the actors (:class:`~amc.agents.parallel.ActorScorer`): one round trip per
episode. The envs step in threads, so their last steps score on the actors side by side,
and ``step_async`` returns at once (the driver's updates run meanwhile:
:class:`~amc.agents.updates.OverlapUpdates`). With more envs than actors, finished scores
free their actor for the next env's: the actors stay busy when episodes take unequal times.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Any

import gymnasium as gym
import numpy as np
from stable_baselines3.common.vec_env.base_vec_env import VecEnv


class PooledVecEnv(VecEnv):
    """``n_envs`` envs on the driver, stepped in threads.

    Args:
        env_fns: One callable per env (its scoring may block: it runs in a thread).
        seed: Env i is reset with ``seed + i`` (unless ``seed()`` gave others).
        actors: What the envs score with remotely (an
            :class:`~amc.agents.parallel.ActorScorer`): closed by :meth:`close`; its
            ``restarts`` are :attr:`restarts`.
    """

    def __init__(self, env_fns: list[Callable[[], gym.Env]], seed: int = 0,
                 actors: Any = None):
        self.envs = [fn() for fn in env_fns]
        env = self.envs[0]
        super().__init__(len(self.envs), env.observation_space, env.action_space)
        self.seeds = [seed + i for i in range(self.num_envs)]
        self._pool = ThreadPoolExecutor(max_workers=self.num_envs,
                                        thread_name_prefix="amc-env")
        self._pending: list[Future] = []
        self._actors = actors

    @property
    def remote_scorer(self) -> Any:
        """What the envs score with remotely (None: in the driver)."""
        return self._actors

    @property
    def restarts(self) -> int:
        """Restarts of the scoring actors seen."""
        return int(getattr(self._actors, "restarts", 0))

    def reset(self) -> np.ndarray:
        obs = [env.reset(seed=s if s is not None else self.seeds[i])[0]
               for i, (env, s) in enumerate(zip(self.envs, self._seeds))]
        self._reset_seeds()
        self._reset_options()
        return np.stack(obs)

    def _step(self, i: int, action: np.ndarray) -> tuple:
        env = self.envs[i]
        obs, reward, terminated, truncated, info = env.step(action)
        done = terminated or truncated
        if done:
            info["terminal_observation"] = obs
            if truncated and not terminated:
                info["TimeLimit.truncated"] = True
            obs, _ = env.reset()
        return obs, reward, done, info

    def step_async(self, actions: np.ndarray) -> None:
        self._pending = [self._pool.submit(self._step, i, a)
                         for i, a in enumerate(np.asarray(actions))]

    def wait_first_step(self) -> None:
        """Block until one of the envs' steps in flight has finished (at once when none is)."""
        if self._pending:
            wait(list(self._pending), return_when=FIRST_COMPLETED)

    def step_wait(self):
        results = [f.result() for f in self._pending]
        self._pending = []
        obs, rewards, dones, infos = zip(*results)
        return (np.stack(obs), np.asarray(rewards, dtype=np.float32),
                np.asarray(dones, dtype=bool), list(infos))

    def close(self) -> None:
        for f in self._pending:
            f.cancel()
        self._pool.shutdown(wait=True)
        for env in self.envs:
            env.close()
        if self._actors is not None:
            self._actors.close()

    def get_attr(self, attr_name: str, indices=None) -> list[Any]:
        return [getattr(self.envs[i], attr_name) for i in self._get_indices(indices)]

    def set_attr(self, attr_name: str, value: Any, indices=None) -> None:
        for i in self._get_indices(indices):
            setattr(self.envs[i], attr_name, value)

    def env_method(self, method_name: str, *method_args, indices=None, **method_kwargs):
        return [getattr(self.envs[i], method_name)(*method_args, **method_kwargs)
                for i in self._get_indices(indices)]

    def env_is_wrapped(self, wrapper_class, indices=None) -> list[bool]:
        from stable_baselines3.common import env_util

        return [env_util.is_wrapped(self.envs[i], wrapper_class)
                for i in self._get_indices(indices)]
