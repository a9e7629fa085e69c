"""Behaviour of the rewards, the reward baseline and the sensitivity allocation."""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import pytest
from stable_baselines3.common.vec_env import DummyVecEnv

from amc.agents.wrappers import RewardBaseline
from amc.envs import Outcome, reward_fn
from amc.prune.baselines import SWEEP, allocate_by_sensitivity
from amc.prune.budget import Budget, resource_fn
from amc.prune.scoring import build_scorer


class Scripted(gym.Env):
    """Episodes of two steps whose final raw rewards come from ``finals`` in turn."""

    observation_space = gym.spaces.Box(0.0, 1.0, (1,), np.float32)
    action_space = gym.spaces.Box(0.0, 1.0, (1,), np.float32)

    def __init__(self, finals: list[float]):
        self.finals, self.k, self.t = list(finals), 0, 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return np.zeros(1, np.float32), {}

    def step(self, action):
        self.t += 1
        if self.t < 2:
            return np.zeros(1, np.float32), 0.0, False, False, {}
        raw = self.finals[self.k]
        self.k += 1
        return np.zeros(1, np.float32), raw, True, False, {"episode_result": {"reward": raw}}


def _final_rewards(venv, episodes: int) -> list[float]:
    venv.reset()
    out = []
    for _ in range(episodes * 2):
        _, r, done, _ = venv.step(np.zeros((1, 1), np.float32))
        if done[0]:
            out.append(float(r[0]))
        else:
            assert r[0] == 0.0  # intermediate rewards pass through
    return out


def test_reward_baseline_subtracts_the_moving_average():
    alpha = 0.5
    venv = RewardBaseline(DummyVecEnv([lambda: Scripted([1.0, 3.0, 2.0, 5.0])]), alpha=alpha)
    got = _final_rewards(venv, 4)
    base, want = None, []
    for raw in (1.0, 3.0, 2.0, 5.0):  # computed independently of the wrapper
        base = raw if base is None else base
        want.append(raw - base)
        base = alpha * base + (1 - alpha) * raw
    assert got == pytest.approx(want)
    assert got != pytest.approx([1.0, 3.0, 2.0, 5.0])  # the agent does not see raw rewards
    assert venv.state()["baseline"] == pytest.approx(base)


def test_reward_baseline_state_survives_a_resume():
    first = RewardBaseline(DummyVecEnv([lambda: Scripted([4.0, 6.0])]), alpha=0.9)
    _final_rewards(first, 2)
    resumed = RewardBaseline(DummyVecEnv([lambda: Scripted([7.0])]), alpha=0.9)
    resumed.load_state(first.state())
    assert _final_rewards(resumed, 1) == pytest.approx([7.0 - first.state()["baseline"]])


def test_acc_size_trades_accuracy_against_size_by_lambda():
    at_target = Outcome(top1=80.0, macs=0, params=0, size_fraction=0.5, target=0.5)
    bigger = Outcome(top1=81.0, macs=0, params=0, size_fraction=0.55, target=0.5)
    strict, lax = reward_fn("acc_size", 1.0), reward_fn("acc_size", 0.01)
    assert strict(at_target) > strict(bigger)  # 10 % over the size costs more than 1 point
    assert lax(bigger) > lax(at_target)  # with a small lambda accuracy wins
    assert strict(at_target) == pytest.approx(0.80 - 1.0)


def test_latency_reward_prefers_faster_and_more_accurate():
    r = reward_fn("latency")

    def o(top1: float, ms: float) -> Outcome:
        return Outcome(top1=top1, macs=0, params=0, size_fraction=0.5, target=0.5,
                       latency_ms=ms)

    assert r(o(80.0, 2.0)) > r(o(80.0, 4.0))  # same accuracy: the faster model wins
    assert r(o(85.0, 4.0)) > r(o(80.0, 4.0))  # same latency: the more accurate one wins
    assert r(o(80.0, 4.0)) == pytest.approx(-0.2 * math.log(5.0))


@pytest.fixture(scope="module")
def scorer(digits_ckpt):
    return build_scorer("digits_cnn", digits_ckpt, "digits", val_limit=32)


def test_sensitivity_allocation_spares_the_sensitive_unit(scorer):
    n = len(scorer.pm.units)
    dense = 90.0
    acc = np.full((n, len(SWEEP)), dense - 1.0)  # every unit insensitive ...
    acc[1] = dense - 60.0 * np.asarray(SWEEP)  # ... except unit 1, which collapses
    budget = Budget.parse("flops:0.6")
    ratios = allocate_by_sensitivity(scorer, budget, dense, acc)
    others = [r for i, r in enumerate(ratios) if i != 1]
    assert ratios[1] < min(others) - 0.1, ratios
    f = resource_fn(scorer.pm, budget)
    assert f(ratios) <= budget.fraction + 1e-9 and f(ratios) > budget.fraction - 0.02
    # the same sweep with unit 2 the sensitive one moves the protection there
    acc2 = np.full_like(acc, dense - 1.0)
    acc2[2] = acc[1]
    ratios2 = allocate_by_sensitivity(scorer, budget, dense, acc2)
    assert ratios2[2] < min(r for i, r in enumerate(ratios2) if i != 2) - 0.1, ratios2


def test_capacity_reward_trades_val_for_the_macs_kept_by_its_weight():
    def o(top1: float, macs_fraction: float) -> Outcome:
        return Outcome(top1=top1, macs=0, params=0, size_fraction=0.5, target=0.5,
                       macs_fraction=macs_fraction)

    r = reward_fn("capacity", capacity_weight=1.0)
    wide = o(80.0, 0.45)
    assert r(wide) > r(o(80.9, 0.44))  # 1 % of the MACs outweighs 0.9 points of val ...
    assert r(wide) < r(o(81.1, 0.44))  # ... but not 1.1
    assert r(wide) == pytest.approx(0.80 + 0.45)
    none = reward_fn("capacity", capacity_weight=0.0)  # weight 0: accuracy alone decides
    assert none(wide) < none(o(80.9, 0.44))


def test_env_and_search_give_a_policy_the_same_capacity_reward(scorer):
    from amc.agents import SearchConfig
    from amc.agents.search import outcome
    from amc.envs import AMCPruningEnv

    cfg = SearchConfig(model="digits_cnn", budget="params:0.6", reward="capacity",
                       capacity_weight=0.5, race=False)
    env = AMCPruningEnv(scorer, **cfg.env_kwargs())
    env.reset(seed=0)
    done, info, reward = False, {}, 0.0
    while not done:
        _, reward, done, _, info = env.step(np.array([0.4], np.float32))
    res = info["episode_result"]
    assert res["macs_ratio"] < 0.99  # pruned: the MACs term differs from dense's
    assert reward == pytest.approx(res["val_top1"] / 100 + 0.5 * res["macs_ratio"], rel=1e-6)
    assert reward != pytest.approx(res["val_top1"] / 100 + 1.0 * res["macs_ratio"], rel=1e-6)
    same = outcome(scorer, cfg, res["ratios"], res["val_top1"])
    assert same["reward"] == pytest.approx(reward, rel=1e-6)
