"""amc.utils.stats: the mean ± std the benchmarks record."""

import pytest

from amc.utils.stats import mean_std


def test_mean_std_is_the_sample_std():
    d = mean_std([1.0, 2.0, 4.0])
    assert d["mean"] == pytest.approx(7 / 3)
    assert d["std"] == pytest.approx(((16 / 9 + 1 / 9 + 25 / 9) / 2) ** 0.5)  # ddof 1
    assert d["n"] == 3 and d["values"] == [1.0, 2.0, 4.0]


def test_one_value_has_no_std():
    assert mean_std([3])["std"] is None
