"""A stable-baselines3 ``VecEnv`` whose sub-envs are Ray actors.

Each actor holds one :class:`~amc.envs.AMCPruningEnv`; the network and the ``val`` tensors
travel through the object store once (one ``ray.put``), not per episode. Actors are
restartable; when one dies mid-episode the restarted actor replays the episode's recorded
actions (the env is deterministic given them) and the step is retried, so the episode is
neither lost nor counted twice.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import numpy as np
import ray
from ray.exceptions import RayActorError
from stable_baselines3.common.vec_env.base_vec_env import VecEnv

from amc.prune.scoring import ScorerParts

from .ray_runtime import kill_actors


class PruningEnvFactory:
    """Builds the pruning env in a worker from the scorer's ingredients (picklable; shipped
    through the object store once).

    Args:
        parts: Scorer ingredients: network, ``val`` tensors, settings.
        env_kwargs: Budget, reward, max ratio, λ, racing for the env.
    """

    def __init__(self, parts: ScorerParts, env_kwargs: dict):
        self.parts, self.env_kwargs = parts, env_kwargs

    def __call__(self):
        from amc.envs import AMCPruningEnv

        return AMCPruningEnv(self.parts.build(), **self.env_kwargs)


@ray.remote
class EnvWorker:
    """One env in its own process, built by a factory from the object store."""

    def __init__(self, factory_ref: list, seed: int, threads: int):
        import torch

        from amc.utils.allocator import settle

        settle()  # the actor is this process's entry point: as the amc CLI does
        torch.set_num_threads(max(1, threads))
        self.env = ray.get(factory_ref[0])()
        self.seed = seed

    def spaces(self) -> tuple:
        return self.env.observation_space, self.env.action_space

    def reset(self, seed: int | None = None) -> np.ndarray:
        obs, _ = self.env.reset(seed=seed)
        return obs

    def replay(self, actions: list[np.ndarray]) -> np.ndarray:
        """Reset and re-apply the actions of an interrupted episode."""
        obs, _ = self.env.reset(seed=self.seed)
        for a in actions:
            obs, *_ = self.env.step(a)
        return obs

    def get_attr(self, name: str) -> Any:
        return getattr(self.env, name)

    def set_attr(self, name: str, value: Any) -> None:
        setattr(self.env, name, value)

    def env_method(self, name: str, args: tuple, kwargs: dict) -> Any:
        return getattr(self.env, name)(*args, **kwargs)

    def step(self, action: np.ndarray) -> tuple:
        obs, reward, terminated, truncated, info = self.env.step(action)
        done = terminated or truncated
        if done:
            info["terminal_observation"] = obs
            obs, _ = self.env.reset()
        return obs, reward, done, info

    def pid(self) -> int:
        import os

        return os.getpid()


class RayVecEnv(VecEnv):
    """N pruning envs as Ray actors, stepped in lockstep.

    Args:
        factory: Picklable callable that builds one env in a worker (put in the object
            store once), e.g. :class:`PruningEnvFactory`.
        n_envs: Number of actors.
        seed: Worker i is seeded ``seed + i``.
        threads: torch threads per actor.
        num_cpus: CPUs reserved per actor.
        num_gpus: GPUs reserved per actor.
        max_restarts: Restarts allowed per actor.
    """

    def __init__(self, factory: Any, n_envs: int, seed: int = 0,
                 threads: int = 1, num_cpus: float = 1, num_gpus: float = 0,
                 max_restarts: int = 3):
        ref = ray.put(factory)
        self.seeds = [seed + i for i in range(n_envs)]
        tag = uuid.uuid4().hex[:8]
        self.names = [f"amc-env-{i}-{tag}" for i in range(n_envs)]
        self.actors = [
            EnvWorker.options(name=self.names[i], max_restarts=max_restarts,
                              max_task_retries=0, num_cpus=num_cpus, num_gpus=num_gpus)
            .remote([ref], self.seeds[i], threads)
            for i in range(n_envs)]
        obs_space, act_space = ray.get(self.actors[0].spaces.remote())
        super().__init__(n_envs, obs_space, act_space)
        self._ref = ref
        self._episode_actions: list[list[np.ndarray]] = [[] for _ in range(n_envs)]
        self._actions: np.ndarray | None = None
        self._pending: list[Any] = []
        self._attrs: list[dict[str, Any]] = [{} for _ in range(n_envs)]
        self.restarts = 0

    # ------------------------------------------------------------------ VecEnv API
    def reset(self) -> np.ndarray:
        seeds = [self._seeds[i] if self._seeds[i] is not None else self.seeds[i]
                 for i in range(self.num_envs)]
        obs = ray.get([a.reset.remote(s) for a, s in zip(self.actors, seeds)])
        self._reset_seeds()
        self._reset_options()
        self._episode_actions = [[] for _ in range(self.num_envs)]
        return np.stack(obs)

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = np.asarray(actions)
        self._pending = [a.step.remote(self._actions[i]) for i, a in enumerate(self.actors)]

    def wait_first_step(self) -> None:
        """Block until one of the actors' steps in flight has finished (or failed)."""
        if self._pending:
            ray.wait(list(self._pending), num_returns=1)

    def step_wait(self):
        results = []
        for i, ref in enumerate(self._pending):
            results.append(self._get_or_recover(i, ref))
        obs, rewards, dones, infos = zip(*results)
        for i, done in enumerate(dones):
            if done:
                self._episode_actions[i] = []
            else:
                self._episode_actions[i].append(self._actions[i])
        return (np.stack(obs), np.asarray(rewards, dtype=np.float32),
                np.asarray(dones, dtype=bool), list(infos))

    def _get_or_recover(self, i: int, ref: Any, attempts: int = 5) -> tuple:
        for _ in range(attempts):
            try:
                return ray.get(ref)
            except RayActorError:
                self.restarts += 1
                ref = self._recover(i)
        raise RuntimeError(f"env worker {i} kept failing after {attempts} restarts")

    def _recover(self, i: int) -> Any:
        """Wait for Ray to restart actor i, replay the episode so far, retry the step."""
        deadline = time.time() + 120
        while True:
            try:
                for name, value in self._attrs[i].items():  # what set_attr gave the old one
                    ray.get(self.actors[i].set_attr.remote(name, value))
                ray.get(self.actors[i].replay.remote(self._episode_actions[i]))
                break
            except RayActorError:
                if time.time() > deadline:
                    raise
                time.sleep(0.5)
        return self.actors[i].step.remote(self._actions[i])

    def close(self) -> None:
        kill_actors(self.actors)
        self.actors = []

    def get_attr(self, attr_name: str, indices=None) -> list[Any]:
        """The attribute of each selected actor's env."""
        return ray.get([self.actors[i].get_attr.remote(attr_name)
                        for i in self._get_indices(indices)])

    def set_attr(self, attr_name: str, value: Any, indices=None) -> None:
        """Set the attribute on each selected actor's env (again after a restart)."""
        idx = list(self._get_indices(indices))
        for i in idx:
            self._attrs[i][attr_name] = value
        ray.get([self.actors[i].set_attr.remote(attr_name, value) for i in idx])

    def env_method(self, method_name: str, *method_args, indices=None, **method_kwargs):
        """Call the method on each selected actor's env; their results in order."""
        return ray.get([self.actors[i].env_method.remote(method_name, method_args,
                                                         method_kwargs)
                        for i in self._get_indices(indices)])

    def env_is_wrapped(self, wrapper_class, indices=None) -> list[bool]:
        return [False for _ in self._get_indices(indices)]

    def worker_pids(self) -> list[int]:
        return ray.get([a.pid.remote() for a in self.actors])
