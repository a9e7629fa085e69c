"""AMC's DDPG agent, built from stable-baselines3's ``DDPG`` by passing parameters.

Actor and critic have two hidden layers of 300 units; the critic learns ten times faster
than the actor (1e-3 vs 1e-4). SB3 gives both optimisers one learning rate, so the critic's
optimiser is an Adam whose steps use ``lr × lr_scale`` — set through a policy subclass
(SB3's documented custom-policy hook), with SB3's internals untouched. The same subclass
hands the exploration noise the action SB3 has just predicted for the same observations
instead of running the actor a second time (:meth:`AMCPolicy.predict`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from stable_baselines3 import DDPG
from stable_baselines3.common.vec_env import VecEnv
from stable_baselines3.td3.policies import TD3Policy

from amc.envs import ActionMap
from amc.envs.actions import DROP_AT

from .config import SearchConfig
from .episode_buffer import EpisodeReplayBuffer
from .noise import FollowObservations, TruncatedNormalNoise, truncnorm


class ScaledAdam(torch.optim.Adam):
    """Adam whose effective learning rate is ``lr × lr_scale`` (SB3 rewrites ``lr``)."""

    def __init__(self, params: Any, lr: float = 1e-3, lr_scale: float = 1.0, **kwargs: Any):
        super().__init__(params, lr=lr, **kwargs)
        self.lr_scale = lr_scale

    @torch.no_grad()
    def step(self, closure: Any = None) -> Any:
        saved = [g["lr"] for g in self.param_groups]
        for g in self.param_groups:
            g["lr"] = g["lr"] * self.lr_scale
        try:
            return super().step(closure)
        finally:
            for g, lr in zip(self.param_groups, saved):
                g["lr"] = lr


class AMCPolicy(TD3Policy):
    """TD3/DDPG policy whose critic learns ``critic_lr_scale`` times faster than the actor.

    Its :meth:`predict` remembers the rollout's last prediction for one call: SB3 samples an
    action by predicting the actor's action μ(s) and then calling the action noise, which
    needs the same μ(s) as its centre (:func:`attach_noise`); the noise's deterministic
    prediction for the same observations is that answer (a TD3/DDPG actor is deterministic
    either way), so the actor runs once per step instead of twice.
    """

    def __init__(self, *args: Any, critic_lr_scale: float = 10.0, **kwargs: Any):
        self.critic_lr_scale = critic_lr_scale
        self._last: tuple[np.ndarray, np.ndarray] | None = None
        super().__init__(*args, **kwargs)

    def predict(self, observation: Any, state: Any = None, episode_start: Any = None,
                deterministic: bool = False) -> tuple[np.ndarray, Any]:
        """SB3's ``predict``; a deterministic call for exactly the observations of the
        previous, exploring call (SB3's rollout) returns that call's actions without running
        the actor again. The remembered answer serves one call only and is forgotten when the
        policy enters training mode (SB3's ``train``; the warm start's fit) or loads weights.
        """
        last, self._last = self._last, None
        if (deterministic and last is not None and isinstance(observation, np.ndarray)
                and last[0].shape == observation.shape
                and np.array_equal(last[0], observation)):
            return last[1].copy(), state
        actions, state = super().predict(observation, state, episode_start, deterministic)
        if not deterministic and isinstance(observation, np.ndarray):
            self._last = (observation.copy(), np.array(actions, copy=True))
        return actions, state

    def set_training_mode(self, mode: bool) -> None:
        if mode:
            self._last = None
        super().set_training_mode(mode)

    def load_state_dict(self, *args: Any, **kwargs: Any) -> Any:
        self._last = None
        return super().load_state_dict(*args, **kwargs)

    def _build(self, lr_schedule) -> None:
        super()._build(lr_schedule)
        self.critic.optimizer = ScaledAdam(self.critic.parameters(), lr=lr_schedule(1),
                                           lr_scale=self.critic_lr_scale,
                                           **self.optimizer_kwargs)

    def _get_constructor_parameters(self) -> dict[str, Any]:
        data = super()._get_constructor_parameters()
        data["critic_lr_scale"] = self.critic_lr_scale
        return data


def make_noise(cfg: SearchConfig, n_envs: int, demos: list[list[float]] | None = None,
               actions: ActionMap | None = None, twins: Sequence[Sequence[int]] = ()
               ) -> TruncatedNormalNoise:
    """The exploration noise: AMC's, or, with warm-up ``demos``, one that replays them and
    then explores from ``cfg.warm_start_sigma``; ``actions`` names the droppable units that
    ``cfg.drop_swap`` swaps, ``twins`` the groups of equal-cost units that ``cfg.pair_moves``
    trades within."""
    if cfg.episodes > cfg.warmup_episodes:
        truncnorm()  # its import, before the episodes (and --time-limit's estimates) start
    return TruncatedNormalNoise(n_envs, cfg.warm_start_sigma if demos else cfg.noise_sigma,
                                cfg.noise_decay, cfg.warmup_episodes, seed=cfg.seed,
                                demos=demos, demo_sigma=cfg.warm_start_sigma,
                                sigma_min=cfg.noise_min,
                                droppable=sorted(actions.droppable) if actions else (),
                                drop_at=actions.drop_at if actions else DROP_AT,
                                swap=cfg.drop_swap, twins=twins, pairs=cfg.pair_moves)


def build_agent(cfg: SearchConfig, venv: VecEnv, n_units: int,
                tensorboard_log: str | None = None, demos: list[list[float]] | None = None,
                actions: ActionMap | None = None, twins: Sequence[Sequence[int]] = ()
                ) -> tuple[DDPG, TruncatedNormalNoise]:
    """A DDPG agent set up as in AMC, and its exploration noise (``demos``: the warm-up's
    demonstrations; the agent then learns from the first step, since SB3 would otherwise
    take random actions until ``learning_starts``).

    Its replay buffer stores whole episodes with their returns and SB3's own training is off:
    pass :class:`~amc.agents.updates.EpisodeUpdates` to ``learn`` (one update per stored
    transition)."""
    noise = make_noise(cfg, venv.num_envs, demos, actions, twins)
    model = DDPG(
        AMCPolicy, venv,
        learning_rate=cfg.lr_actor,
        buffer_size=max(cfg.batch_size, cfg.buffer_episodes * n_units),
        learning_starts=0 if demos else cfg.warmup_episodes * n_units,
        batch_size=cfg.batch_size, tau=cfg.tau, gamma=cfg.gamma,
        replay_buffer_class=EpisodeReplayBuffer,
        replay_buffer_kwargs={"gamma": cfg.gamma, "episode_returns": cfg.episode_returns},
        action_noise=noise,
        gradient_steps=0,  # EpisodeUpdates makes one update per stored transition
        policy_kwargs={"net_arch": {"pi": [cfg.hidden, cfg.hidden],
                                    "qf": [cfg.hidden, cfg.hidden]},
                       "critic_lr_scale": cfg.lr_critic / cfg.lr_actor,
                       "optimizer_kwargs": {"fused": True}},
        tensorboard_log=tensorboard_log, seed=cfg.seed, verbose=0, device="cpu",
    )
    return model, noise


def attach_noise(model: DDPG, noise: TruncatedNormalNoise) -> FollowObservations:
    """Make ``noise`` the agent's action noise, centred on its actor's action; returns the
    callback that feeds it the observations (pass it to ``learn``)."""
    noise.actor = lambda obs: model.policy.scale_action(model.predict(obs, deterministic=True)[0])
    model.action_noise = noise
    return FollowObservations(noise)
