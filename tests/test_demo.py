"""The demo's verdict line: counted in val images, and a tie at the dense network's own
top-1 explained rather than reported as a loss."""

from __future__ import annotations

from amc.cli.demo import verdict


def test_verdict_counts_images_and_explains_a_tie_at_the_ceiling():
    n = 143  # the digits demo's val split: one image is 0.70 points
    win = verdict(100.0, 100 * 141 / n, 100 * 142 / n, n)
    assert win.startswith("AMC beats uniform") and "143 vs 141 of 143" in win
    loss = verdict(100 * 139 / n, 100 * 141 / n, 100 * 142 / n, n)
    assert loss.startswith("AMC does NOT beat") and "-1.40 points" in loss
    ceiling = verdict(100 * 142 / n, 100 * 142 / n, 100 * 142 / n, n)
    assert ceiling.startswith("AMC ties uniform") and "nothing to win" in ceiling
    assert "both keep the dense" in ceiling
    above = verdict(100 * 142 / n, 100 * 142 / n, 100 * 141 / n, n)  # pruning lost nothing
    assert "both score above the dense network's 98.60%" in above and "nothing to win" in above
    below = verdict(100 * 130 / n, 100 * 130 / n, 100 * 142 / n, n)
    assert below.startswith("AMC ties uniform") and "nothing to win" not in below
