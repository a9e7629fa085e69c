"""The demo's verdict line: counted in val images, a win only beyond the noise of the paired
difference, and a tie at the dense network's own top-1 explained rather than reported as a
loss."""

from __future__ import annotations

import math

import numpy as np
import pytest

from amc.cli.demo import verdict
from amc.utils.stats import paired_difference

N = 143  # the digits demo's val split: one image is 0.70 points


def _hits(wrong: set[int], n: int = N) -> list[bool]:
    return [i not in wrong for i in range(n)]


def _pct(hits: list[bool]) -> float:
    return 100.0 * sum(hits) / len(hits)


def test_paired_difference_matches_the_per_image_differences():
    rng = np.random.default_rng(0)
    a, b = rng.random(500) < 0.8, rng.random(500) < 0.7
    p = paired_difference(a, b)
    d = a.astype(float) - b.astype(float)
    assert p["diff"] == pytest.approx(100 * (a.mean() - b.mean()))
    assert p["se"] == pytest.approx(100 * d.std(ddof=1) / math.sqrt(len(d)), rel=1e-12)
    assert p["only_a"] == int((a & ~b).sum()) and p["only_b"] == int((b & ~a).sum())
    assert p["beyond_se"] == (abs(p["diff"]) > p["se"])
    # the count rule is the float rule away from the boundary, on many draws
    for seed in range(50):
        r = np.random.default_rng(seed)
        a, b = r.random(60) < 0.9, r.random(60) < 0.85
        q = paired_difference(a, b)
        if abs(abs(q["diff"]) - q["se"]) > 1e-9:
            assert q["beyond_se"] == (abs(q["diff"]) > q["se"]), q
    # agreeing on every image but one: a difference of one image is exactly one SE, never
    # beyond it; two images one way are
    one = paired_difference(_hits(set()), _hits({5}))
    assert one["se"] == pytest.approx(100 / N) and not one["beyond_se"]
    assert paired_difference(_hits(set()), _hits({5, 9}))["beyond_se"]
    assert not paired_difference(_hits({1}), _hits({5, 9, 11}))["beyond_se"]  # 3 vs 1
    with pytest.raises(ValueError, match="per-image hits"):
        paired_difference([True, False], [True])


def test_verdict_counts_images_and_wins_only_beyond_the_noise():
    dense = 100 * 142 / N
    win = verdict(_hits(set()), _hits({3, 4}), dense)
    assert win.startswith("AMC beats uniform") and "143 vs 141 of 143" in win
    assert "2 only AMC gets right, 0 only uniform" in win
    loss = verdict(_hits({1, 2, 3, 4}), _hits({1, 2}), dense)
    assert loss.startswith("AMC does NOT beat") and "-1.40 points" in loss
    one_up = verdict(_hits(set()), _hits({7}), dense)  # what the demo showed on one CPU
    assert "within the noise" in one_up and "no winner" in one_up and "beats" not in one_up
    assert "+0.70 points (143 vs 142 of 143 val images)" in one_up
    one_down = verdict(_hits({7}), _hits(set()), dense)
    assert "within the noise" in one_down and "NOT" not in one_down
    # the same counts, but the two policies get different images right: 3 vs 1 differing
    # images (2 apart) are within the noise where 2 vs 0 were not
    mixed = verdict(_hits({1}), _hits({5, 9, 11}), dense)
    assert "within the noise" in mixed and "they differ on 4" in mixed


def test_verdict_explains_a_tie_at_the_ceiling():
    ceiling = verdict(_hits({0}), _hits({0}), 100 * 142 / N)
    assert ceiling.startswith("AMC ties uniform") and "nothing to win" in ceiling
    assert "both keep the dense" in ceiling
    above = verdict(_hits({0}), _hits({0}), 100 * 141 / N)  # pruning lost nothing
    assert "both score above the dense network's 98.60%" in above and "nothing to win" in above
    below = verdict(_hits(set(range(13))), _hits(set(range(13))), 100 * 142 / N)
    assert below.startswith("AMC ties uniform") and "nothing to win" not in below
    # equal counts from different images are still a tie
    swapped = verdict(_hits({1, 2}), _hits({3, 4}), 100 * 142 / N)
    assert swapped.startswith("AMC ties uniform")
