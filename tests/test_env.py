"""The Gymnasium pruning env: API contract, budget guarantee, observations."""

from __future__ import annotations

import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from amc.envs import ENV_ID, FEATURES, AMCPruningEnv
from amc.prune.budget import Budget
from amc.prune.scoring import Score, Scorer, build_scorer


@pytest.fixture(scope="module")
def scorer(digits_ckpt):
    return build_scorer("digits_cnn", digits_ckpt, "digits", val_limit=4)


def test_check_env_passes_without_warnings(digits_ckpt):
    env = gym.make(ENV_ID, model="digits_cnn", checkpoint=digits_ckpt, budget="flops:0.5")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_env(env.unwrapped)
    assert [str(w.message) for w in caught] == []
    assert env.observation_space.dtype == np.float32
    assert env.observation_space.shape == (len(FEATURES),) == (11,)
    assert env.action_space.low[0] == 0.0 and env.action_space.high[0] == 1.0


def test_make_passes_kwargs(digits_ckpt):
    env = gym.make(ENV_ID, model="digits_cnn", checkpoint=digits_ckpt, budget="params:0.4",
                   max_ratio=0.7, reward="flops")
    u = env.unwrapped
    assert u.budget == Budget("params", 0.4) and u.max_ratio == 0.7 and u.reward_name == "flops"


class ConstantScorer(Scorer):
    """The budget does not depend on accuracy: skip the (slow) pruned-model evaluation."""

    def score(self, ratios, can_beat=None) -> Score:
        return Score(50.0, len(self.y), len(self.y))


@pytest.mark.parametrize("budget", ["flops:0.5", "params:0.4"])
def test_every_random_episode_meets_budget(scorer, budget):
    fast = ConstantScorer(scorer.pm, scorer.x, scorer.y)
    env = AMCPruningEnv(fast, budget=budget, max_ratio=0.8)
    rng = np.random.default_rng(0)
    kind = Budget.parse(budget)
    fractions = []
    for ep in range(1000):
        obs, _ = env.reset(seed=ep)
        done = False
        while not done:
            assert env.observation_space.contains(obs)
            obs, reward, done, _, info = env.step(rng.uniform(0, 1, 1).astype(np.float32))
            assert 0.0 <= info["raw_ratio"] <= 0.8 and 0.0 <= info["ratio"] <= 0.8
            assert info["ratio"] >= info["raw_ratio"] - 1e-12  # clipping only prunes more
        res = info["episode_result"]
        frac = res["macs_ratio"] if kind.kind == "flops" else res["params_ratio"]
        assert frac <= kind.fraction + 1e-9, (ep, frac)
        fractions.append(frac)
    assert max(fractions) > kind.fraction - 0.05  # the clip does not over-prune every time


def test_observation_features_follow_the_episode(scorer):
    env = AMCPruningEnv(scorer, budget="flops:0.5")
    obs, _ = env.reset(seed=0)
    assert obs[FEATURES.index("index")] == 0.0
    assert obs[FEATURES.index("reduced")] == 0.0 and obs[FEATURES.index("prev_action")] == 0.0
    obs2, *_ = env.step(np.array([0.5], np.float32))
    assert obs2[FEATURES.index("index")] > 0.0
    assert obs2[FEATURES.index("reduced")] > 0.0
    assert obs2[FEATURES.index("rest")] < obs[FEATURES.index("rest")]
    assert obs2[FEATURES.index("prev_action")] == pytest.approx(0.5, abs=1e-6)


def test_final_reward_is_minus_error(scorer):
    env = AMCPruningEnv(scorer, budget="flops:0.7", reward="err")
    env.reset(seed=1)
    done, reward, info = False, 0.0, {}
    while not done:
        _, reward, done, _, info = env.step(np.array([0.0], np.float32))
    top1 = info["episode_result"]["val_top1"]
    assert reward == pytest.approx(-(1 - top1 / 100))


def test_unreachable_budget_is_a_user_error(scorer):
    from amc.utils.errors import AmcError

    with pytest.raises(AmcError, match="out of reach"):
        AMCPruningEnv(scorer, budget="flops:0.01", max_ratio=0.5)
