"""Dropped blocks inside the product: units that drop their block (``drop_blocks``), their
exact cost, their equivalence to the masked network, policies, the env and the scorer."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn

from amc.cost.macs import model_cost
from amc.models.cifar import CifarResNet
from amc.prune.budget import Budget, uniform_ratio
from amc.prune.conformance import conformance, diversify
from amc.prune.depth import DROP, DroppedBlock
from amc.prune.latency_table import LatencyTable
from amc.prune.policy import apply_policy, load_policy, make_policy, policy_from_dict
from amc.prune.scoring import Score, Scorer
from amc.prune.units import PrunableModel
from amc.utils.errors import AmcError
from amc.utils.tolerance import RTOL, relative_diff

SIZE = (3, 8, 8)


@pytest.fixture(scope="module")
def net() -> nn.Module:
    torch.manual_seed(0)
    return diversify(CifarResNet(14)).eval()  # two blocks per stage, BN off its defaults


@pytest.fixture(scope="module")
def pm(net) -> PrunableModel:
    return PrunableModel(net, SIZE, "internal", drop_blocks=True)


def _policies(pm: PrunableModel, n: int, seed: int = 0) -> list[list[float]]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        r = rng.uniform(0.0, 0.8, len(pm.units))
        r[rng.random(len(pm.units)) < 0.4] = DROP
        out.append(r.tolist())
    return out


def test_droppable_units_are_the_blocks_inner_widths(net, pm):
    assert pm.blocks == {u.index: u.name.rpartition(".")[0] for u in pm.units}
    assert all(u.name.endswith(".conv1") for u in pm.units) and len(pm.blocks) == 6
    assert PrunableModel(net, SIZE, "internal").blocks == {}  # only when asked for
    full = PrunableModel(net, SIZE, "all", drop_blocks=True)  # residual units stay whole
    assert sorted(full.blocks.values()) == sorted(pm.blocks.values())
    assert PrunableModel(CifarResNet(14, shortcut=False), SIZE, drop_blocks=True).blocks == {}


@pytest.mark.parametrize("mode", ["internal", "all"])
def test_claimed_cost_with_dropped_blocks_is_measured(net, mode):
    pm = PrunableModel(net, SIZE, mode, drop_blocks=True)
    for ratios in _policies(pm, 4):
        assert pm.cost(ratios) == model_cost(pm.prune(ratios), SIZE)
    one = [0.0] * len(pm.units)
    u = next(iter(pm.blocks))
    dropped, pruned = list(one), list(one)
    dropped[u], pruned[u] = DROP, 0.8
    assert pm.cost(dropped)[0] < pm.cost(pruned)[0]  # the drop takes the whole block


def test_torchvision_cost_with_dropped_blocks_is_measured(tv_resnet18):
    pm = PrunableModel(tv_resnet18, (3, 32, 32), "internal", drop_blocks=True)
    assert len(pm.blocks) == 8
    for ratios in _policies(pm, 2, seed=1):
        pruned = pm.prune(ratios)
        assert pm.cost(ratios) == model_cost(pruned, (3, 32, 32))
        assert sum(isinstance(m, DroppedBlock) for m in pruned.modules()) == sum(
            r >= DROP for r in ratios)


@pytest.mark.parametrize("mode", ["internal", "all"])
def test_dropped_blocks_compute_the_masked_network(net, mode):
    pm = PrunableModel(net, SIZE, mode, drop_blocks=True)
    x = torch.randn(4, *SIZE, generator=torch.Generator().manual_seed(1))
    for ratios in _policies(pm, 3, seed=2):
        with torch.no_grad():
            c = conformance(pm, ratios, x)
        assert c.exact and c.rel_diff < RTOL and c.dense_diff > 1e-2, c.as_dict()


def test_a_dropped_block_masked_as_pruned_is_not_the_dropped_network(net, pm):
    """The check can fail: the network that keeps one channel of the block instead of
    dropping it is another function."""
    from amc.prune.masks import apply_masks, bake, channel_masks

    x = torch.randn(4, *SIZE, generator=torch.Generator().manual_seed(3))
    ratios = [0.0] * len(pm.units)
    ratios[2] = DROP
    nearly = list(ratios)
    nearly[2] = 0.99  # all but one channel
    masked = bake(pm.model)
    apply_masks(masked, channel_masks(pm, nearly))
    with torch.no_grad():
        assert relative_diff(masked(x), pm.prune(ratios)(x)) > 1e-2


def test_policy_with_dropped_blocks_round_trips(net, pm, tmp_path):
    ratios = _policies(pm, 1, seed=4)[0]
    pol = make_policy(pm, ratios, "resnet14", "flops:0.5", "test")
    assert pol.drop_blocks and pol.to_dict()["version"] == 2
    assert [u["kept"] for u in pol.units if u["ratio"] >= DROP] == [0] * sum(
        r >= DROP for r in ratios)
    again = apply_policy(copy.deepcopy(net), load_policy(pol.save(tmp_path / "p.json")))
    x = torch.randn(2, *SIZE, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        assert relative_diff(pm.prune(ratios)(x), again(x)) < RTOL
    old = {**pol.to_dict(), "version": 1}  # a version-1 document: no dropped blocks
    old.pop("drop_blocks")
    old["units"] = [{**u, "ratio": 0.5} for u in old["units"]]
    assert policy_from_dict(old).drop_blocks is False


def test_drops_reach_budgets_channel_pruning_cannot(net, pm):
    budget = Budget("flops", 0.2)  # pruning every unit by 0.8 keeps 0.24
    with pytest.raises(AmcError, match="unreachable budget"):
        uniform_ratio(PrunableModel(net, SIZE, "internal"), budget)
    from amc.envs import DROP_AT, AMCPruningEnv

    x, y = torch.zeros(2, *SIZE), torch.zeros(2, dtype=torch.long)

    class Constant(Scorer):
        def score(self, ratios, can_beat=None) -> Score:
            return Score(50.0, 2, 2)

    env = AMCPruningEnv(Constant(pm, x, y), budget="flops:0.2")
    rng = np.random.default_rng(0)
    drops = 0
    for ep in range(40):
        env.reset(seed=ep)
        done = False
        while not done:
            _, _, done, _, info = env.step(rng.uniform(0, 1, 1).astype(np.float32))
            assert info["ratio"] >= info["raw_ratio"] - 1e-12
            assert info["ratio"] <= 0.8 or info["ratio"] == DROP
        res = info["episode_result"]
        assert res["macs_ratio"] <= 0.2 + 1e-9
        drops += sum(r >= DROP for r in res["ratios"])
    assert drops > 0
    env.reset(seed=0)
    assert env.step(np.array([DROP_AT], np.float32))[-1]["ratio"] == DROP
    env.reset(seed=0)
    assert env.step(np.array([DROP_AT - 0.01], np.float32))[-1]["raw_ratio"] < 0.8


def test_scorer_repairs_and_folds_networks_with_dropped_blocks(pm):
    g = torch.Generator().manual_seed(6)
    x, y = torch.randn(64, *SIZE, generator=g), torch.randint(0, 10, (64,), generator=g)
    s = Scorer(pm, x, y, calib=torch.randn(32, *SIZE, generator=g), bn_recalib=True,
               reconstruct=True)
    ratios = [0.5, DROP, 0.25, DROP, 0.0, 0.5]
    net = s.pruned(ratios)
    assert sum(isinstance(m, DroppedBlock) for m in net.modules()) == 2
    assert abs(s.score(ratios).top1 - s.reference(ratios)) <= 100 / 64 + 1e-9


def test_latency_table_counts_a_dropped_block_s_layers_as_gone(pm):
    points = [[float(i + 1)] * 6 for i in range(len(pm.layers))]
    dims = [1] * len(pm.layers)
    table = LatencyTable(points, dims, 0.0, 1.0, pm=pm)
    dense = [0.0] * len(pm.units)
    dropped = list(dense)
    dropped[1] = DROP
    block = pm.blocks[1]
    gone = sum(p[-1] for L, p in zip(pm.layers, points)
               if L.name in (f"{block}.conv1", f"{block}.bn1", f"{block}.conv2"))
    assert table.layer_sum(dense) - table.layer_sum(dropped) == pytest.approx(gone)


def test_blocks_strategy_drops_the_least_sensitive_blocks_that_score_best(net, pm):
    from amc.prune.baselines import blocks_then_uniform, run_strategy
    from amc.prune.budget import resource_fn

    g = torch.Generator().manual_seed(7)
    x, y = torch.randn(32, *SIZE, generator=g), torch.randint(0, 10, (32,), generator=g)
    scorer = Scorer(pm, x, y)
    budget = Budget("flops", 0.2)  # pruning every unit by 0.8 keeps 0.24
    ratios = blocks_then_uniform(scorer, budget)
    f = resource_fn(pm, budget)
    n = len(pm.units)
    gone = [u for u, r in enumerate(ratios) if r >= DROP]
    assert gone and f(ratios) <= 0.2 + 1e-9
    alone = {u: scorer([DROP if i == u else 0.0 for i in range(n)]) for u in pm.blocks}
    order = sorted(pm.blocks, key=lambda u: (-alone[u], u))
    assert sorted(gone) == sorted(order[:len(gone)])  # the least sensitive ones
    # no other count of dropped blocks (uniform on the rest, to the budget) scores better
    best = scorer(ratios)
    for k in range(1, n + 1):
        if f([DROP if u in order[:k] else 0.8 for u in range(n)]) <= 0.2:
            r = uniform_ratio_for(pm, budget, order[:k])
            assert scorer([DROP if u in order[:k] else r for u in range(n)]) <= best + 1e-9
    assert run_strategy("blocks", scorer, budget)[0] == ratios
    # ranked by another value of (ratios, val top-1), e.g. a search's reward: its best
    scored: list[tuple[list[float], float]] = []
    fewest = blocks_then_uniform(scorer, budget, scored=scored,
                                 value=lambda r, top1: -pm.cost(r)[0])
    assert len({pm.cost(c)[0] for c, _ in scored}) > 1  # the candidates keep different MACs
    assert pm.cost(fewest)[0] == min(pm.cost(c)[0] for c, _ in scored)
    assert fewest != ratios  # not the val top-1's pick here
    with pytest.raises(AmcError, match="--drop-blocks"):
        blocks_then_uniform(Scorer(PrunableModel(net, SIZE, "internal"), x, y), budget)


def test_blocks_candidates_are_filled_to_whole_vectors_at_a_latency_budget(pm, monkeypatch):
    """At a latency budget with 8-lane vectors (a stand-in table: convs' times linear in their
    counted channels, BatchNorm free), the blocks strategy's candidates are scored as they
    are delivered: their kept channels past one vector filled; without ``fill`` they are not."""
    from amc.prune.baselines import blocks_candidates
    from amc.prune.latency_table import FRACTIONS, LatencySpec, _varying

    dims = [int(o) + int(i) for o, i in _varying(pm)]
    points = [[0.0 if L.channelwise else f ** d for f in FRACTIONS] if d else [0.1]
              for L, d in zip(pm.layers, dims)]
    table = LatencyTable(points, dims, 0.5, 0.0, pm=pm, lanes=8)
    table = LatencyTable(points, dims, 0.5, table.predict([0.0] * len(pm.units)), pm=pm,
                         lanes=8)
    monkeypatch.setattr(LatencySpec, "table", lambda self, _pm: table)
    scorer = Scorer(pm, torch.randn(8, *SIZE), torch.randint(0, 10, (8,)))
    budget = Budget("latency", 0.62)

    def partial(c: list[float]) -> int:
        return sum(8 < k < u.n and k % 8 != 0
                   for k, u in ((pm.kept(i, r), u) for i, (r, u) in enumerate(zip(c, pm.units))))

    filled = blocks_candidates(scorer, budget, 0.8)
    plain = blocks_candidates(scorer, budget, 0.8, fill=False)
    assert len(filled) == len(plain) and sum(map(partial, filled)) == 0
    assert sum(map(partial, plain)) > 0
    assert all(table.fraction(c) <= 0.62 + 1e-9 for c in filled)


def uniform_ratio_for(pm: PrunableModel, budget: Budget, dropped: list[int]) -> float:
    """The smallest uniform ratio of the other units that meets ``budget`` (linear scan)."""
    from amc.prune.budget import resource_fn

    f = resource_fn(pm, budget)
    grid = np.linspace(0.0, 0.8, 801)
    return next(float(r) for r in grid if f([DROP if u in dropped else r
                                              for u in range(len(pm.units))]) <= 0.2 + 1e-9)


@pytest.mark.parametrize("arch", ["cifar", "torchvision"])
def test_a_checkpoint_with_dropped_blocks_loads_into_the_dense_architecture(
        net, pm, tv_resnet18, arch, tmp_path):
    from torchvision.models import resnet18

    from amc.models.checkpoint import load_into, save_model

    if arch == "cifar":
        p, fresh, size, ratios = pm, CifarResNet(14), SIZE, [0.5, DROP, 0.25, DROP, 0.0, 0.5]
    else:
        size = (3, 32, 32)
        p = PrunableModel(diversify(copy.deepcopy(tv_resnet18)), size, "internal",
                          drop_blocks=True)
        fresh = resnet18()
        ratios = [DROP if u in (1, 2) else 0.5 for u in range(len(p.units))]  # 2: layer2.0
    pruned = p.prune(ratios)
    save_model(pruned, tmp_path / "m.pt", arch)
    x = torch.randn(2, *size, generator=torch.Generator().manual_seed(8))
    with torch.no_grad():
        before = relative_diff(pruned(x), fresh.eval()(x))
        load_into(fresh, tmp_path / "m.pt")
        assert relative_diff(pruned(x), fresh.eval()(x)) < RTOL < before
    assert sum(isinstance(m, DroppedBlock) for m in fresh.modules()) == 2


def test_channel_masks_at_the_final_level_compute_the_dropped_network(net):
    from amc.prune.masks import ChannelPruner, apply_masks

    ratios = [0.5, DROP, 0.25, DROP, 0.0, 0.5]
    cp = ChannelPruner(ratios, SIZE, "internal", "l1", drop_blocks=True)
    x = torch.randn(4, *SIZE, generator=torch.Generator().manual_seed(9))
    half = copy.deepcopy(net)
    apply_masks(half, cp.masks(half, 0.5))  # on the way: the blocks' channels half pruned
    assert not any(isinstance(m, DroppedBlock) for m in cp.physical(half).modules())
    model = copy.deepcopy(net)
    apply_masks(model, cp.masks(model, 1.0))
    phys = cp.physical(model)
    assert sum(isinstance(m, DroppedBlock) for m in phys.modules()) == 2
    with torch.no_grad():
        assert relative_diff(model(x), phys(x)) < RTOL
        assert relative_diff(net(x), phys(x)) > 1e-2


def test_the_budget_rule_forces_drops_only_where_channel_pruning_cannot_reach(pm):
    from amc.envs import AMCPruningEnv

    x, y = torch.zeros(2, *SIZE), torch.zeros(2, dtype=torch.long)

    class Constant(Scorer):
        def score(self, ratios, can_beat=None) -> Score:
            return Score(50.0, 2, 2)

    for budget, forced in (("flops:0.3", False), ("flops:0.2", True)):  # 0.8: 0.24 left
        env = AMCPruningEnv(Constant(pm, x, y), budget=budget)
        env.reset(seed=0)
        done = False
        while not done:  # the agent asks for nothing: the rule prunes what the budget needs
            _, _, done, _, info = env.step(np.zeros(1, np.float32))
        res = info["episode_result"]
        assert res["macs_ratio"] <= float(budget[6:]) + 1e-9
        assert any(r >= DROP for r in res["ratios"]) == forced, res["ratios"]
