"""Budgets: parsing, the uniform ratio, and AMC's clipping rule (every episode meets the
budget whatever the agent proposes)."""

from __future__ import annotations

import zlib
from functools import cache

import numpy as np
import pytest
import torch

from amc.cost.macs import model_cost
from amc.models.registry import create_model
from amc.prune.budget import Budget, clip_range, meets, resource_fn, uniform_ratio
from amc.prune.units import PrunableModel
from amc.utils.errors import AmcError

# --------------------------------------------------------------------------- parsing


@pytest.mark.parametrize("text, kind, frac", [
    ("flops:0.5", "flops", 0.5),
    ("params:0.4", "params", 0.4),
    ("latency:0.6", "latency", 0.6),
    ("flops:1", "flops", 1.0),
    ("flops:1e-1", "flops", 0.1),
    ("params:.25", "params", 0.25),
])
def test_parse_good(text, kind, frac):
    b = Budget.parse(text)
    assert (b.kind, b.fraction) == (kind, frac)
    assert Budget.parse(str(b)) == b  # str() round-trips


@pytest.mark.parametrize("text", [
    "", "flops", "flops:", "0.5", ":0.5", "macs:0.5", "FLOPS:0.5", "flops:0", "flops:-0.2",
    "flops:1.01", "flops:abc", "flops:0.5:1", "flops=0.5", "flops:nan", "flops:inf",
])
def test_parse_bad(text):
    with pytest.raises(AmcError, match="kind:fraction"):
        Budget.parse(text)


# --------------------------------------------------------------------------- models

SMALL = {
    "digits_cnn": ("all", (1, 8, 8)),
    "resnet20": ("internal", (3, 32, 32)),
}


@pytest.fixture(scope="module")
def pms() -> dict[str, PrunableModel]:
    import torch

    torch.manual_seed(0)
    return {name: PrunableModel(create_model(name), size, mode)
            for name, (mode, size) in SMALL.items()}


def _cached(pm: PrunableModel, budget: Budget):
    """The exact resource function, memoised on the kept channel counts.

    The cost model depends on the ratios only through the channels each unit keeps, so this
    returns exactly what :func:`resource_fn` returns; it only saves recomputing repeated
    points of the bisections.
    """
    f = resource_fn(pm, budget)
    n = len(pm.units)

    @cache
    def by_kept(kept: tuple[int, ...]) -> float:
        return f([1.0 - k / u.n for k, u in zip(kept, pm.units)])

    def fn(ratios) -> float:
        return by_kept(tuple(pm.kept(i, r) for i, r in zip(range(n), ratios)))

    return fn


# --------------------------------------------------------------------------- clipping rule


def _episodes(pm: PrunableModel, budget: Budget, n_episodes: int, max_ratio: float,
              seed: int) -> list[list[float]]:
    rng = np.random.default_rng(seed)
    fn = _cached(pm, budget)
    exact = resource_fn(pm, budget)
    n = len(pm.units)
    out = []
    for e in range(n_episodes):
        actions = rng.uniform(0.0, max_ratio, n)
        chosen: list[float] = []
        for t in range(n):
            lo, hi = clip_range(pm, budget, chosen, t, max_ratio, fn)
            assert 0.0 <= lo <= hi == max_ratio
            if e < 20 and lo > 1e-6:  # the lower end is tight: a little less misses the budget
                tail = [max_ratio] * (n - t - 1)
                assert exact(chosen + [lo - 1e-6] + tail) > budget.fraction
            chosen.append(max(float(actions[t]), lo))
        assert exact(chosen) <= budget.fraction + 1e-9, (e, chosen)
        out.append(chosen)
    return out


# 1,000 episodes per budget; ResNet-20's 9 units x 30 bisection steps make its episodes
# ~10x dearer than the digits CNN's, so the default run draws 300 there and the `slow` run
# (`pytest -m slow`) the full 1,000.
CASES = [pytest.param("digits_cnn", 1000, id="digits_cnn-1000"),
         pytest.param("resnet20", 300, id="resnet20-300"),
         pytest.param("resnet20", 1000, id="resnet20-1000", marks=pytest.mark.slow)]


@pytest.mark.parametrize("name, n_episodes", CASES)
@pytest.mark.parametrize("budget", ["flops:0.5", "params:0.4", "flops:0.3"])
def test_clipping_rule_always_meets_budget(pms, name, n_episodes, budget):
    pm, b = pms[name], Budget.parse(budget)
    seed = zlib.crc32(f"{name} {budget}".encode())
    episodes = _episodes(pm, b, n_episodes, max_ratio=0.8, seed=seed)
    assert all(meets(pm, b, r) for r in episodes)
    # the exact cost model is the physical one: check a few episodes on the pruned network
    for r in episodes[:3]:
        macs, params = model_cost(pm.prune(r), pm.input_size)
        used = macs / pm.dense_macs if b.kind == "flops" else params / pm.dense_params
        assert used <= b.fraction + 1e-9
    # the rule only raises ratios: episodes whose actions are all 0 sit at the budget
    chosen: list[float] = []
    for t_ in range(len(pm.units)):
        chosen.append(clip_range(pm, b, chosen, t_, 0.8)[0])
    used = resource_fn(pm, b)(chosen)
    assert used <= b.fraction + 1e-9
    assert used >= 0.9 * b.fraction  # the last unit takes up the slack: close to the budget


def test_clipping_unreachable_budget_raises(pms):
    pm = pms["resnet20"]  # internal units: at most about 80 % of the MACs can go
    with pytest.raises(AmcError, match="out of reach"):
        clip_range(pm, Budget.parse("flops:0.05"), [], 0, 0.8)


# --------------------------------------------------------------------------- uniform ratio


def test_uniform_ratio_unreachable_budget_raises(pms):
    for pm in pms.values():
        with pytest.raises(AmcError, match="cannot be met"):
            uniform_ratio(pm, Budget.parse("flops:0.01"), max_ratio=0.5)


@pytest.mark.parametrize("name", list(SMALL))
@pytest.mark.parametrize("budget", ["flops:0.5", "params:0.5", "flops:1"])
def test_uniform_ratio_is_smallest_that_meets(pms, name, budget):
    pm, b = pms[name], Budget.parse(budget)
    f = resource_fn(pm, b)
    r = uniform_ratio(pm, b)
    n = len(pm.units)
    assert f([r] * n) <= b.fraction + 1e-9
    if r > 0:
        assert f([r - 1e-6] * n) > b.fraction
    else:
        assert b.fraction == 1


def test_latency_budget_from_measured_table(tmp_path, monkeypatch):
    """latency:F budgets use the per-layer lookup table (measured once, then cached)."""
    monkeypatch.setenv("AMC_CACHE_DIR", str(tmp_path))
    pm = PrunableModel(create_model("digits_cnn"), (1, 8, 8), "all")
    n = len(pm.units)
    f = resource_fn(pm, Budget("latency", 1.0))
    assert f([0.0] * n) == pytest.approx(1.0)
    floor = f([0.95] * n)  # on a tiny net the fixed overhead keeps this well above 0
    assert floor < 1.0
    assert list((tmp_path / "latency").glob("*.json"))  # cached on disk
    budget = Budget("latency", round((1.0 + floor) / 2, 4))  # reachable by construction
    r = uniform_ratio(pm, budget, max_ratio=0.95)
    assert meets(pm, budget, [r] * n) and 0 < r <= 0.95


# --------------------------------------------------------------------------- global ranking

def _is_global_cut(pm: PrunableModel, ratios, max_ratio: float) -> bool:
    """Whether a policy removes the lowest-scoring channel positions across all units (one
    threshold), except in units already at ``max_ratio``."""
    pruned, kept = [], []
    for i, (imp, r) in enumerate(zip(pm.importance, ratios)):
        u = pm.units[i]
        n_pruned = (u.n - pm.kept(i, r)) // u.groups
        pruned += imp[:n_pruned].tolist()
        if r < max_ratio - 1e-9:
            kept += imp[n_pruned:].tolist()
    return not pruned or not kept or max(pruned) <= min(kept)


@pytest.mark.parametrize("name", list(SMALL))
@pytest.mark.parametrize("frac", [0.3, 0.5, 0.7])
def test_global_ranking_cuts_one_threshold_at_the_budget(pms, name, frac):
    from types import SimpleNamespace

    from amc.prune.baselines import global_ranking, uniform

    pm = pms[name]
    b = Budget.parse(f"flops:{frac}")
    scorer = SimpleNamespace(pm=pm)  # the ranking needs no evaluation
    ratios = global_ranking(scorer, b, 0.8)
    assert meets(pm, b, ratios)
    assert _is_global_cut(pm, ratios, 0.8)
    # tight: one more channel position kept anywhere below the cap breaks the budget or
    # the threshold (the next cheaper threshold does not meet the budget)
    f = resource_fn(pm, b)
    assert f(ratios) > frac - 0.1
    # a uniform policy is not a global cut here (the check can fail)
    assert not _is_global_cut(pm, uniform(scorer, b, 0.8), 0.8)


class _IdentityResNet(torch.nn.Module):
    """One residual block with an identity shortcut: its residual channels can be pruned."""

    def __init__(self):
        super().__init__()
        self.stem = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.conv1 = torch.nn.Conv2d(8, 8, 3, padding=1)
        self.conv2 = torch.nn.Conv2d(8, 8, 3, padding=1)
        self.fc = torch.nn.Linear(8, 4)

    def forward(self, x):
        x = torch.relu(self.stem(x))
        x = torch.relu(self.conv2(torch.relu(self.conv1(x))) + x)
        return self.fc(x.mean((2, 3)))


class PadShortcut(torch.nn.Module):
    """Another library's option-A shortcut (named as amc's, but not amc's class: ``all``
    mode cannot convert it, so it refuses)."""

    def forward(self, x):
        return torch.nn.functional.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, 4, 4))


class _ForeignOptionA(torch.nn.Module):
    """One downsampling residual block with a foreign zero-padding shortcut."""

    def __init__(self):
        super().__init__()
        self.stem = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.conv1 = torch.nn.Conv2d(8, 16, 3, 2, 1)
        self.conv2 = torch.nn.Conv2d(16, 16, 3, padding=1)
        self.short = PadShortcut()
        self.fc = torch.nn.Linear(16, 4)

    def forward(self, x):
        x = torch.relu(self.stem(x))
        x = torch.relu(self.conv2(torch.relu(self.conv1(x))) + self.short(x))
        return self.fc(x.mean((2, 3)))


def test_unreachable_budget_suggests_units_all_only_where_it_is_accepted():
    """The one-line refusal of an unreachable budget may point to ``--units all`` only for a
    network that mode accepts: amc's option-A CIFAR ResNets and identity shortcuts, not a
    foreign zero-padding shortcut (refused there)."""
    torch.manual_seed(0)
    foreign = PrunableModel(_ForeignOptionA(), (3, 8, 8), "internal")
    with pytest.raises(AmcError, match="unreachable budget") as e:
        uniform_ratio(foreign, Budget.parse("flops:0.05"))
    assert "--units all" not in str(e.value) and "loosen the budget" in str(e.value)
    for net, size in ((_IdentityResNet(), (3, 8, 8)), (create_model("resnet20"), (3, 32, 32))):
        pm = PrunableModel(net, size, "internal")
        with pytest.raises(AmcError, match="unreachable budget.*or use --units all"):
            uniform_ratio(pm, Budget.parse("flops:0.05"))


def test_units_auto_chooses_by_residual_adds():
    import torch

    torch.manual_seed(0)
    res = PrunableModel(create_model("resnet20"), (3, 32, 32), "auto")
    assert res.mode == "internal"
    internal = PrunableModel(create_model("resnet20"), (3, 32, 32), "internal")
    assert [u.name for u in res.units] == [u.name for u in internal.units]
    assert "--units auto chose 'internal'" in res.notice and "\n" not in res.notice
    # option-A shortcuts: --units all prunes them as selection convs, so the notice says so
    assert "pass --units all" in res.notice
    assert "pass --units all" not in PrunableModel(_ForeignOptionA(), (3, 8, 8), "auto").notice
    identity = PrunableModel(_IdentityResNet(), (3, 8, 8), "auto")
    assert identity.mode == "internal" and "pass --units all" in identity.notice
    assert len(PrunableModel(_IdentityResNet(), (3, 8, 8), "all").units) > len(identity.units)
    plain = PrunableModel(create_model("digits_cnn"), (1, 8, 8), "auto")
    assert plain.mode == "all" and plain.notice is None
    assert len(plain.units) == len(PrunableModel(create_model("digits_cnn"), (1, 8, 8),
                                                 "all").units)


def test_units_all_on_a_foreign_zero_padding_shortcut_is_refused_in_one_line():
    """A zero-padding shortcut amc cannot convert couples layers of different widths: pruning
    across it cannot be exact, so ``--units all`` is refused, naming the mode that works."""
    with pytest.raises(AmcError, match="zero-padding shortcut.*use --units internal") as e:
        PrunableModel(_ForeignOptionA(), (3, 8, 8), "all")
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("name", list(SMALL))
def test_canonical_ratios_keep_the_same_channels_through_float32(pms, name):
    pm = pms[name]
    rng = np.random.default_rng(0)
    for _ in range(20):
        ratios = rng.uniform(0, 0.8, len(pm.units)).tolist()
        canon = pm.canonical(ratios)
        kept = [pm.kept(i, r) for i, r in enumerate(ratios)]
        assert [pm.kept(i, r) for i, r in enumerate(canon)] == kept
        a32 = np.float32(np.asarray(canon) / 0.8 + 1e-6) * 0.8  # an env's action path
        assert [pm.kept(i, float(r)) for i, r in enumerate(a32)] == kept
    # a ratio a hair below a boundary is not its own canonical form (the test can fail)
    u = pm.units[0]
    s = u.n // u.groups
    below = [2 / s - 1e-8] + [0.0] * (len(pm.units) - 1)
    assert pm.canonical(below)[0] == pytest.approx(1 / s)


def _reference_low(pm, budget, chosen, t, max_ratio):
    """The clipping rule's lower end by 30 halvings of [0, max_ratio] (the rule before it
    searched the unit's channel steps)."""
    from amc.utils.bisection import bisect

    f = resource_fn(pm, budget)
    tail = [max_ratio] * (len(pm.units) - t - 1)
    return bisect(lambda r: f(list(chosen) + [r] + tail) <= budget.fraction, 0.0, max_ratio,
                  iters=30)


@pytest.mark.parametrize("round_to", [None, 4])
@pytest.mark.parametrize("budget", ["flops:0.3", "params:0.5"])
def test_clipping_steps_match_the_continuous_bisection(budget, round_to):
    """The lower end searched over the unit's channel steps is the continuous bisection's:
    the same kept channels and within its tolerance of the same ratio."""
    import torch

    torch.manual_seed(0)
    pm = PrunableModel(create_model("resnet20"), (3, 32, 32), "internal", round_to=round_to)
    b = Budget.parse(budget)
    rng = np.random.default_rng(1)
    tight = 0
    for _ in range(4):
        chosen: list[float] = []
        for t in range(len(pm.units)):
            lo = clip_range(pm, b, chosen, t, 0.8)[0]
            ref = _reference_low(pm, b, chosen, t, 0.8)
            assert pm.kept(t, lo) == pm.kept(t, ref)
            assert abs(lo - ref) < 1e-6, (t, lo, ref)
            tight += lo > 0
            chosen.append(max(lo, float(rng.uniform(0.0, 0.8))))
    assert tight  # some steps were clipped (the comparison saw non-trivial lower ends)
    steps = pm.ratio_steps(0, 0.8)
    kept = [pm.kept(0, r) for r in steps]
    assert kept == sorted(set(kept), reverse=True)  # one ratio per kept count, falling
    # every ratio between two steps keeps the lower step's channels
    assert all(pm.kept(0, (a + c) / 2) == pm.kept(0, a) for a, c in zip(steps, steps[1:]))


@pytest.mark.parametrize("n", [0, 1, 2, 7, 64])
def test_first_true_finds_the_boundary_with_few_calls(n):
    from amc.utils.bisection import first_true

    for boundary in range(n + 1):  # n: no index is true
        calls = []

        def pred(i, b=boundary, calls=calls):
            calls.append(i)
            return i >= b

        assert first_true(pred, n) == boundary
        assert len(calls) <= (1 if boundary == 0 and n else 2 + n.bit_length())
