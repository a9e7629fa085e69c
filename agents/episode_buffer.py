"""A replay buffer that stores each episode when it ends, with its returns (AMC's memory).

AMC (He et al. 2018) learns from whole episodes: an episode's reward is known only at its
last unit, and every transition of it is trained towards that reward. SB3's n-step buffer
approximates this by looking ahead at sampling time, and so also samples the transitions of
episodes still running (their return not yet known). :class:`EpisodeReplayBuffer` (given to
SB3 through its ``replay_buffer_class`` hook) holds each env's transitions until its episode
ends, then stores them: with ``episode_returns`` each one's reward becomes its return to the
episode's end and it is stored as terminal, so the critic's target is exactly that return;
without, they are stored as given (one-step targets that bootstrap).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from gymnasium import spaces
from stable_baselines3.common.buffers import ReplayBuffer


class EpisodeReplayBuffer(ReplayBuffer):
    """SB3's replay buffer, filled one finished episode at a time.

    Args:
        buffer_size: Transitions kept (oldest dropped first).
        observation_space: The env's observation space.
        action_space: The env's action space.
        device: Where sampled batches go.
        n_envs: Envs stepping together (each has its own episode in progress).
        optimize_memory_usage: Not supported (must be False).
        handle_timeout_termination: As SB3's (a truncated step still bootstraps).
        gamma: Discount of the returns.
        episode_returns: Store each transition with its return to the episode's end, as
            terminal (False: with its own reward and done flag).
    """

    def __init__(self, buffer_size: int, observation_space: spaces.Space,
                 action_space: spaces.Space, device: Any = "auto", n_envs: int = 1,
                 optimize_memory_usage: bool = False, handle_timeout_termination: bool = True,
                 gamma: float = 1.0, episode_returns: bool = True):
        if optimize_memory_usage:
            raise ValueError("EpisodeReplayBuffer does not support optimize_memory_usage")
        # one row per transition: an episode is stored whole, whichever env it came from
        super().__init__(buffer_size, observation_space, action_space, device, n_envs=1,
                         handle_timeout_termination=handle_timeout_termination)
        self.gamma, self.episode_returns = gamma, episode_returns
        self.sources = n_envs
        self.pending: list[list[tuple]] = [[] for _ in range(n_envs)]
        self.committed = 0
        """Transitions stored so far (all episodes ever finished, dropped ones included)."""

    def add(self, obs: np.ndarray, next_obs: np.ndarray, action: np.ndarray,
            reward: np.ndarray, done: np.ndarray, infos: list[dict[str, Any]]) -> None:
        """Hold the transitions of one vector step; store the episodes that ended."""
        for i in range(self.sources):
            self.pending[i].append((np.array(obs[i]), np.array(next_obs[i]),
                                    np.array(action[i]), float(reward[i]), bool(done[i]),
                                    infos[i]))
            if done[i]:
                self._commit(i)

    def _commit(self, i: int) -> None:
        steps, self.pending[i] = self.pending[i], []
        returns, g = [], 0.0
        for step in reversed(steps):
            g = step[3] + self.gamma * g
            returns.append(g)
        returns.reverse()
        for (obs, next_obs, action, reward, done, info), ret in zip(steps, returns):
            if self.episode_returns:
                reward, done = ret, True
            super().add(obs[None], next_obs[None], action[None], np.array([reward]),
                        np.array([done]), [info])
        self.committed += len(steps)

    def drop_pending(self) -> None:
        """Forget the episodes in progress (a resumed search restarts its envs)."""
        self.pending = [[] for _ in range(self.sources)]
