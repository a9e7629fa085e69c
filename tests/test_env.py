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


@pytest.mark.parametrize("fill", [True, False])
def test_latency_episodes_fill_partial_vectors_within_the_budget(scorer, monkeypatch, fill):
    """At a latency budget with 8-lane vectors (a stand-in table: every conv's time linear in
    its counted channels), a unit keeps a partial vector past the first only where filling it
    would break the budget (below the budget rule's lowest ratio), and every episode meets
    the budget; without ``fill_vectors`` the agent's own ratios leave partial vectors."""
    from amc.prune.budget import clip_range
    from amc.prune.latency_table import FRACTIONS, LatencySpec, LatencyTable, _varying

    pm = scorer.pm
    dims = [int(o) + int(i) for o, i in _varying(pm)]
    points = [[f ** d for f in FRACTIONS] if d else [0.1] for d in dims]
    table = LatencyTable(points, dims, 0.5, 0.0, pm=pm, lanes=8)
    table = LatencyTable(points, dims, 0.5, table.predict([0.0] * len(pm.units)), pm=pm,
                         lanes=8)
    monkeypatch.setattr(LatencySpec, "table", lambda self, _pm: table)
    budget = Budget.parse("latency:0.6")
    env = AMCPruningEnv(ConstantScorer(pm, scorer.x, scorer.y), budget=budget,
                        max_ratio=0.8, fill_vectors=fill)
    rng = np.random.default_rng(0)
    fillable = filled = 0
    for ep in range(200):
        env.reset(seed=ep)
        chosen: list[float] = []
        for u in range(len(pm.units)):
            lo, _ = clip_range(pm, budget, chosen, u, 0.8, table.fraction)
            _, _, done, _, info = env.step(rng.uniform(0, 1, 1).astype(np.float32))
            chosen.append(info["ratio"])
            fillable += table.fill(u, info["ratio"]) >= lo and \
                table.fill(u, info["ratio"]) != info["ratio"]
            filled += info["ratio"] < info["raw_ratio"] - 1e-12
        assert done and table.fraction(chosen) <= 0.6 + 1e-9
    assert (fillable == 0 and filled > 0) if fill else (fillable > 0 and filled == 0)


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
