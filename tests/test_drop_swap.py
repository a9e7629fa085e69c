"""``--drop-swap``: episodes after the warm-up that swap a block the actor dropped with one it
kept (the exploration noise alone keeps the drops of the policy the actor was fitted to)."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import noise_episodes

from amc.agents.noise import TruncatedNormalNoise

MU = [0.5, 0.9, 0.4, 0.9, 0.3]
"""The actor's actions in [0, 1] per unit: units 1 and 3 dropped (at or above 0.75), 2 and 4
kept; unit 0 cannot be dropped."""
DROPPABLE = (1, 2, 3, 4)


def episodes(noise: TruncatedNormalNoise, n: int) -> np.ndarray:
    """The actions in [0, 1] (μ + noise) of ``n`` episodes, one row each."""
    return noise_episodes(noise, MU, n)


def make(swap: float, droppable=DROPPABLE) -> TruncatedNormalNoise:
    return TruncatedNormalNoise(n_envs=1, sigma0=0.02, decay=1.0, warmup_episodes=0, seed=3,
                                droppable=droppable, swap=swap)


def test_every_swapping_episode_keeps_one_dropped_block_and_drops_one_kept():
    noise = make(1.0)
    acts = episodes(noise, 30)
    assert np.all(acts[0, [1, 3]] > 0.75) and np.all(acts[0, [2, 4]] < 0.75)  # no μ seen yet
    keep_at = np.mean([MU[2], MU[4]])
    for row in acts[1:]:
        dropped = [u for u in DROPPABLE if row[u] >= 0.75]
        assert len(dropped) == 2 and len(set(dropped) & {2, 4}) == 1  # one kept -> dropped
        assert len(set(dropped) & {1, 3}) == 1  # one dropped -> kept
        kept_now = ({1, 3} - set(dropped)).pop()
        assert row[kept_now] == pytest.approx(keep_at, abs=1e-6)
        assert row[({2, 4} & set(dropped)).pop()] == pytest.approx(1.0)
    assert noise.swaps == 29
    # which blocks swap varies: all four pairs occur
    pairs = {(tuple(u for u in (1, 3) if r[u] < 0.75), tuple(u for u in (2, 4) if r[u] >= 0.75))
             for r in acts[1:]}
    assert len(pairs) == 4


def test_without_swaps_the_drops_never_move_and_the_draws_are_unchanged():
    plain = TruncatedNormalNoise(n_envs=1, sigma0=0.02, decay=1.0, warmup_episodes=0, seed=3)
    off = make(0.0)
    a, b = episodes(plain, 20), episodes(off, 20)
    assert np.array_equal(a, b)  # swap 0: the same seed gives the same actions as before
    assert np.all(a[:, [1, 3]] >= 0.75) and np.all(a[:, [2, 4]] < 0.75)
    assert off.swaps == 0


def test_a_share_of_episodes_swaps_and_none_without_droppable_units():
    some = make(0.3)
    episodes(some, 201)
    assert 40 <= some.swaps <= 80  # 0.3 of 200, binomial sd 6.5
    none = make(1.0, droppable=())
    acts = episodes(none, 10)
    assert none.swaps == 0 and np.all(acts[:, [1, 3]] >= 0.75)


def test_the_search_config_reaches_the_noise():
    from amc.agents import SearchConfig
    from amc.agents.ddpg import make_noise
    from amc.envs import ActionMap

    noise = make_noise(SearchConfig(drop_swap=0.25), 1, actions=ActionMap(0.8, frozenset({4, 2})))
    assert (noise.swap, noise.droppable, noise.drop_at) == (0.25, [2, 4], 0.75)

