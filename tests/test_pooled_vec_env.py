"""The pooled VecEnv: driver-side envs stepped in threads, scoring sent to Ray actors."""

from __future__ import annotations

import threading

import cloudpickle
import numpy as np
import pytest
from stable_baselines3.common.vec_env import DummyVecEnv

from amc.agents.pooled_vec_env import PooledVecEnv
from amc.envs import AMCPruningEnv
from amc.prune.scoring import build_scorer


@pytest.fixture(scope="module")
def scorer(digits_ckpt):
    return build_scorer("digits_cnn", digits_ckpt, "digits", val_limit=64)


def _episodes(venv, actions: np.ndarray) -> list[tuple]:
    """(rewards, dones, ratios of finished episodes) for each step of ``actions``."""
    venv.reset()
    out = []
    for a in actions:
        obs, rew, done, infos = venv.step(a)
        out.append((obs.tolist(), rew.tolist(), done.tolist(),
                    [i.get("episode_result", {}).get("ratios") for i in infos]))
    return out


def test_threaded_steps_equal_in_process_ones(scorer):
    """Two episodes of two envs: the same observations, rewards and policies as SB3's own
    DummyVecEnv for the same actions (the threads change when, not what)."""
    n_units = len(scorer.pm.units)
    actions = np.random.default_rng(0).uniform(0, 1, (2 * n_units, 2, 1)).astype(np.float32)
    fns = [lambda: AMCPruningEnv(scorer, race=True) for _ in range(2)]
    pooled = PooledVecEnv(fns, seed=3)
    try:
        got = _episodes(pooled, actions)
    finally:
        pooled.close()
    dummy = DummyVecEnv(fns)
    dummy.seed(3)
    want = _episodes(dummy, actions)
    assert got == want
    assert sum(d for step in got for d in step[2]) == 4  # two episodes per env ended


class _Blocking:
    """A scorer stand-in whose scores wait until both envs are scoring at once."""

    def __init__(self, scorer, parties: int):
        self.pm, self._inner = scorer.pm, scorer
        self.barrier = threading.Barrier(parties, timeout=10)

    def score(self, ratios, can_beat=None):
        self.barrier.wait()  # raises BrokenBarrierError if the envs scored one by one
        return self._inner.score(ratios, can_beat)


def test_last_steps_score_side_by_side_and_step_async_returns_at_once(scorer):
    blocking = _Blocking(scorer, parties=2)
    n_units = len(scorer.pm.units)
    venv = PooledVecEnv([lambda: AMCPruningEnv(blocking) for _ in range(2)])
    try:
        venv.reset()
        for _ in range(n_units - 1):
            venv.step(np.full((2, 1), 0.5, np.float32))
        venv.step_async(np.full((2, 1), 0.5, np.float32))  # returns while both wait
        _, _, dones, infos = venv.step_wait()
    finally:
        venv.close()
    assert dones.tolist() == [True, True]
    assert all("episode_result" in i for i in infos)


def test_forwarding_to_envs(scorer):
    venv = PooledVecEnv([lambda: AMCPruningEnv(scorer) for _ in range(3)])
    try:
        venv.set_attr("best_reward", -5.0, indices=[1])
        assert venv.get_attr("best_reward") == [None, -5.0, None]
        assert venv.env_method("clip", 0.5, indices=0) == [AMCPruningEnv(scorer).clip(0.5)]
        assert venv.env_is_wrapped(DummyVecEnv) == [False] * 3
    finally:
        venv.close()


def test_racing_bar_travels_without_the_env(scorer, monkeypatch):
    """The last step's racing test goes to a scoring worker: it must hold numbers and the
    reward function, not the env (whose network model does not even pickle)."""
    sent = []

    def keep(ratios, can_beat=None):
        sent.append(can_beat)
        return type(scorer).score(scorer, ratios, None)

    env = AMCPruningEnv(scorer, race=True)
    env.best_reward = -1e9
    monkeypatch.setattr(scorer, "score", keep)
    env.reset(seed=0)
    for _ in range(len(scorer.pm.units)):
        env.step(np.array([0.5], np.float32))
    (can_beat,) = sent
    assert can_beat(100.0) is True and can_beat(0.0) is True  # any top-1 beats -1e9
    assert len(cloudpickle.dumps(can_beat)) < 20_000
    # the case the check must see: a bar that holds the env
    with pytest.raises(TypeError, match="pickle"):
        cloudpickle.dumps(lambda ub: env.best_reward < ub)
