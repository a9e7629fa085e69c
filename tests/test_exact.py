"""Exact structured pruning on hand-made networks (issue #13, items 1-3 and 5).

Each network exercises one pattern: a module called twice, a concatenation (and a flatten
into a linear layer), a grouped conv, a depthwise conv, a layer-scale parameter. For every
one the analytic cost equals the cost measured on the physically pruned network, and the
pruned network computes what the dense network computes with the same channels masked
(relative to the output's scale). Patterns that cannot be pruned exactly (LayerNorm over the
pruned channels, attention, a channel shuffle) are left out with a one-line notice or, when
nothing is left, refused in one line before any pruning.
"""

from __future__ import annotations

import copy
import logging

import pytest
import torch
from torch import nn

from amc.cost.macs import FUNCTIONAL, layer_costs, model_cost
from amc.prune.budget import Budget, uniform_ratio
from amc.prune.conformance import check_uniform, conformance, diversify
from amc.prune.masks import ChannelPruner, apply_masks, channel_masks
from amc.prune.units import PrunableModel
from amc.utils.errors import AmcError
from amc.utils.tolerance import RTOL, relative_diff

SIZE = (3, 8, 8)


class Twice(nn.Module):
    """conv2 is called twice (the cost of both calls must count, dense and pruned)."""

    def __init__(self):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16)
        self.conv2 = nn.Conv2d(16, 16, 3, padding=1)
        self.fc = nn.Linear(16, 10)

    def forward(self, x):
        x = torch.relu(self.bn1(self.conv1(x)))
        x = torch.relu(self.conv2(torch.relu(self.conv2(x))))
        return self.fc(x.mean((2, 3)))


class Cat(nn.Module):
    """Two convs concatenated into one consumer, then a flatten into the classifier."""

    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Conv2d(3, 8, 3, padding=1), nn.Conv2d(3, 12, 3, padding=1)
        self.bn, self.c = nn.BatchNorm2d(20), nn.Conv2d(20, 16, 3, padding=1)
        self.fc = nn.Linear(16 * 4 * 4, 10)

    def forward(self, x):
        x = torch.relu(self.bn(torch.cat([self.a(x), self.b(x)], 1)))
        return self.fc(nn.functional.max_pool2d(torch.relu(self.c(x)), 2).flatten(1))


class Grouped(nn.Module):
    """A grouped conv (4 groups, 4 input channels each; not depthwise)."""

    def __init__(self):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16)
        self.conv2 = nn.Conv2d(16, 32, 3, padding=1, groups=4)
        self.bn2, self.conv3 = nn.BatchNorm2d(32), nn.Conv2d(32, 32, 1)
        self.fc = nn.Linear(32, 10)

    def forward(self, x):
        x = torch.relu(self.bn1(self.conv1(x)))
        x = torch.relu(self.bn2(self.conv2(x)))
        return self.fc(torch.relu(self.conv3(x)).mean((2, 3)))


class Depthwise(nn.Module):
    """A MobileNet-style block: 1x1 expand, depthwise 3x3, 1x1 project, residual add."""

    def __init__(self):
        super().__init__()
        self.stem, self.bn0 = nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8)
        self.expand, self.bn1 = nn.Conv2d(8, 24, 1), nn.BatchNorm2d(24)
        self.dw, self.bn2 = nn.Conv2d(24, 24, 3, padding=1, groups=24), nn.BatchNorm2d(24)
        self.project, self.bn3 = nn.Conv2d(24, 8, 1), nn.BatchNorm2d(8)
        self.fc = nn.Linear(8, 10)

    def forward(self, x):
        x = nn.functional.relu6(self.bn0(self.stem(x)))
        y = nn.functional.relu6(self.bn1(self.expand(x)))
        y = nn.functional.relu6(self.bn2(self.dw(y)))
        return self.fc((x + self.bn3(self.project(y))).mean((2, 3)))


class LayerScale(nn.Module):
    """A residual block scaled by a per-channel parameter of no layer (ConvNeXt's style)."""

    def __init__(self):
        super().__init__()
        self.stem, self.bn = nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16)
        self.conv1, self.conv2 = nn.Conv2d(16, 32, 1), nn.Conv2d(32, 16, 1)
        self.gamma = nn.Parameter(torch.full((16, 1, 1), 0.5))
        self.fc = nn.Linear(16, 10)

    def forward(self, x):
        x = torch.relu(self.bn(self.stem(x)))
        x = x + self.gamma * self.conv2(torch.relu(self.conv1(x)))
        return self.fc(x.mean((2, 3)))


class Shuffle(nn.Module):
    """Two branches concatenated and channel-shuffled (ShuffleNet's pattern)."""

    def __init__(self):
        super().__init__()
        self.stem, self.inner = nn.Conv2d(3, 8, 3, padding=1), nn.Conv2d(8, 8, 1)
        self.a, self.b = nn.Conv2d(8, 8, 1), nn.Conv2d(8, 8, 3, padding=1)
        self.fc = nn.Linear(16, 10)

    def forward(self, x):
        x = torch.relu(self.stem(x))
        y = torch.cat([self.a(x), self.b(torch.relu(self.inner(x)))], 1)
        n, c, h, w = y.shape
        y = y.view(n, 2, c // 2, h, w).transpose(1, 2).reshape(n, c, h, w)
        return self.fc(torch.relu(y).mean((2, 3)))


class Normed(nn.Module):
    """Every channel meets a LayerNorm over the channels (nothing prunable exactly)."""

    def __init__(self):
        super().__init__()
        self.proj, self.norm = nn.Linear(8, 16), nn.LayerNorm(16)
        self.fc = nn.Linear(16, 10)

    def forward(self, x):
        return self.fc(self.norm(self.proj(x.mean((1, 2)))))


class Attention(nn.Module):
    """Channels that enter nn.MultiheadAttention (nothing prunable exactly)."""

    def __init__(self):
        super().__init__()
        self.proj, self.attn = nn.Linear(8, 16), nn.MultiheadAttention(16, 4, batch_first=True)
        self.fc = nn.Linear(16, 10)

    def forward(self, x):
        t = self.proj(x.mean(1))  # (N, 8 tokens, 16)
        return self.fc(self.attn(t, t, t, need_weights=False)[0].mean(1))


CASES = {"twice": Twice, "cat": Cat, "grouped": Grouped, "depthwise": Depthwise,
         "layer_scale": LayerScale, "shuffle": Shuffle}


@pytest.fixture(autouse=True, scope="module")
def _one_thread(one_thread):
    """Every test of this module on one torch thread (the conftest fixture)."""


def _net(cls: type[nn.Module]) -> nn.Module:
    torch.manual_seed(0)
    return diversify(cls().eval())


def _x(n: int = 4) -> torch.Tensor:
    return torch.randn(n, *SIZE, generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("round_to", [None, 4])
@pytest.mark.parametrize("name", list(CASES))
@pytest.mark.parametrize("fraction", [0.5, 0.8])
def test_pruned_cost_and_output_are_exact(name, round_to, fraction):
    pm = PrunableModel(_net(CASES[name]), SIZE, "all", round_to=round_to)
    r = uniform_ratio(pm, Budget("flops", fraction))
    c = conformance(pm, [r] * len(pm.units), _x())
    assert c.claimed_macs == c.measured_macs <= fraction
    assert c.claimed_params == c.measured_params < 1
    assert c.rel_diff <= RTOL and c.scale > 0 and c.exact


@pytest.mark.parametrize("name", list(CASES))
def test_cost_and_output_are_exact_at_a_different_ratio_per_unit(name):
    pm = PrunableModel(_net(CASES[name]), SIZE, "all")
    g = torch.Generator().manual_seed(2)
    for _ in range(3):
        ratios = (0.8 * torch.rand(len(pm.units), generator=g)).tolist()
        c = conformance(pm, ratios, _x())
        assert (c.claimed_macs, c.claimed_params) == (c.measured_macs, c.measured_params)
        assert c.exact


def test_concatenated_producers_are_units_of_their_own():
    pm = PrunableModel(_net(Cat), SIZE, "all")
    assert [(u.name, u.n) for u in pm.units] == [("a", 8), ("b", 12), ("c", 16)]
    net = pm.prune([0.5, 0.25, 0.0])  # the consumer loses 4 + 3 of its 20 inputs
    assert (net.a.out_channels, net.b.out_channels, net.bn.num_features) == (4, 9, 13)
    assert net.c.in_channels == 13 and net.fc.in_features == 16 * 16


def test_module_called_twice_costs_twice_dense_and_pruned():
    model = _net(Twice)
    rows = [r for r in layer_costs(model, SIZE) if r.name == "conv2"]
    assert len(rows) == 2 and rows[0].macs == rows[1].macs == 16 * 64 * 16 * 9
    pm = PrunableModel(model, SIZE, "all")
    ratios = [0.5] * len(pm.units)
    assert pm.cost(ratios) == model_cost(pm.prune(ratios), SIZE)


def test_grouped_conv_loses_the_same_positions_in_every_group():
    pm = PrunableModel(_net(Grouped), SIZE, "all")
    by = {u.name: u for u in pm.units}
    assert by["conv1"].groups == by["conv2"].groups == 4 and by["conv3"].groups == 1
    i = by["conv1"].index
    kept = pm.kept(i, 0.5)
    assert kept % 4 == 0
    pruned = set(pm.rankings[i][:16 - kept].tolist())
    offsets = [{c % 4 for c in pruned if c // 4 == g} for g in range(4)]
    assert all(o == offsets[0] for o in offsets) and len(offsets[0]) == (16 - kept) // 4
    net = pm.prune([0.5] * len(pm.units))
    assert net.conv2.in_channels == kept and net.conv2.groups == 4
    with pytest.raises(AmcError, match="ratios given"):
        pm.prune([0.5])


def test_round_to_rounds_to_group_count_too():
    pm = PrunableModel(_net(Grouped), SIZE, "all", round_to=8)
    for i, u in enumerate(pm.units):
        for r in (0.1, 0.4, 0.7):
            k = pm.kept(i, r)
            assert (k % 8 == 0 or k == u.n) and k % u.groups == 0


def test_layer_scale_parameter_is_pruned_with_its_channels():
    pm = PrunableModel(_net(LayerScale), SIZE, "all")
    stream = next(u for u in pm.units if "stem" in u.layers)  # the residual stream's unit
    net = pm.prune([0.5 if u is stream else 0.0 for u in pm.units])
    assert net.gamma.shape == (8, 1, 1) and net.conv2.out_channels == 8


def test_unreachable_budget_is_refused_and_reachable_ones_are_met():
    pm = PrunableModel(_net(Twice), SIZE, "all")
    floor = pm.cost_fraction([0.8] * len(pm.units))[0]
    with pytest.raises(AmcError, match="unreachable budget"):
        uniform_ratio(pm, Budget("flops", floor - 0.01))
    r = uniform_ratio(pm, Budget("flops", floor + 0.01))
    measured = model_cost(pm.prune([r] * len(pm.units)), SIZE)[0] / pm.dense_macs
    assert measured <= floor + 0.01


def test_channel_shuffle_units_are_left_out_with_one_notice(caplog, monkeypatch):
    import amc.prune.units

    monkeypatch.setattr(amc.prune.units, "_NOTED", set())
    with caplog.at_level(logging.WARNING, logger="amc"):
        pm = PrunableModel(_net(Shuffle), SIZE, "all")
        PrunableModel(_net(Shuffle), SIZE, "all")  # the same notice is not repeated
    assert [u.name for u in pm.units] == ["stem", "inner"]
    assert {n for n, _ in pm.left_out} == {"a", "b"}
    assert all("reshape" in why or "Transpose" in why for _, why in pm.left_out)
    notes = [r.getMessage() for r in caplog.records]
    assert len(notes) == 1 and "\n" not in notes[0] and "2 unit(s)" in notes[0]


@pytest.mark.parametrize("cls, pattern", [(Normed, "LayerNorm norm normalises"),
                                          (Attention, "MultiheadAttention attn")])
def test_nothing_exact_is_refused_in_one_line_before_any_work(cls, pattern):
    with pytest.raises(AmcError, match=pattern) as e:
        PrunableModel(cls().eval(), SIZE, "all")
    assert "\n" not in str(e.value)


def test_attention_costs_are_counted():
    model = Attention().eval()
    rows = {r.name: r for r in layer_costs(model, SIZE)}
    e, t = 16, 8
    assert rows["attn"].macs == 4 * t * e * e + 2 * t * t * e
    assert FUNCTIONAL not in rows


def test_masks_zero_what_pruning_removes_also_through_cat_and_groups():
    for cls in (Cat, Grouped, LayerScale):
        model = _net(cls)
        pm = PrunableModel(model, SIZE, "all")
        ratios = [0.5] * len(pm.units)
        masks = channel_masks(pm, ratios)
        kept = sum(int(m.sum()) for m in masks.values())
        removed = sum(int((m == 0).sum()) for m in masks.values())
        assert removed == pm.dense_params - model_cost(pm.prune(ratios), SIZE)[1]
        assert kept + removed == sum(m.numel() for m in masks.values())
        if cls is LayerScale:
            assert "gamma" in masks


def test_channel_pruner_masks_equal_physical_pruning_on_grouped_net():
    model = _net(Grouped)
    pruner = ChannelPruner([0.5, 0.5, 0.25], SIZE, "all", "l1")
    masked = pruner.masks(model, 1.0)
    apply_masks(model, masked)
    small = pruner.physical(model)
    with torch.no_grad():
        assert relative_diff(model(_x()), small(_x())) <= RTOL


def test_the_equivalence_check_fails_on_a_mis_sliced_network():
    pm = PrunableModel(_net(Grouped), SIZE, "all")
    ratios = [0.5] * len(pm.units)
    good = pm.prune(ratios)
    masked = _net(Grouped)
    apply_masks(masked, channel_masks(pm, ratios))
    with torch.no_grad():
        ref = masked(_x())
        assert relative_diff(ref, good(_x())) <= RTOL
        bad = pm.prune(ratios)
        bad.conv2.weight.copy_(bad.conv2.weight.roll(1, dims=1))  # another group's inputs
        assert relative_diff(ref, bad(_x())) > 100 * RTOL


def test_relative_tolerance_sees_errors_at_any_output_scale():
    ref = torch.full((2, 3), 1e-10)
    assert relative_diff(ref, ref * 1.1) == pytest.approx(0.1)  # an absolute 1e-4 passes it
    assert relative_diff(ref * 1e12, ref * 1e12 * (1 + 1e-7)) <= RTOL
    assert relative_diff(torch.zeros(2), torch.zeros(2)) == 0.0
    assert relative_diff(torch.zeros(2), torch.ones(2)) == float("inf")
    assert relative_diff(ref, ref * float("nan")) == float("inf")


def test_check_uniform_refuses_with_the_budget_reason():
    with pytest.raises(AmcError, match="unreachable budget"):
        check_uniform(_net(Twice), SIZE, "all", Budget("flops", 0.01), _x())


# --------------------------------------------------------------------------- the CLI


@pytest.mark.cli
@pytest.mark.parametrize("factory, extra", [("twice", []), ("grouped", []),
                                            ("grouped", ["--round-to", "4"])])
def test_cli_baseline_reports_the_measured_macs(factory, extra, tmp_path, capsys):
    """`amc baseline` on the issue's networks: the MACs ratio it reports is the one the
    pruned network measures, and the masked network computes the same."""
    from amc.cli import main
    from amc.models.registry import create_model
    from amc.prune.policy import apply_policy, load_policy

    out = tmp_path / "p.json"
    rc = main(["baseline", "--model", f"userfactory:{factory}", "--data", "digits",
               "--budget", "flops:0.5", "--val-limit", "64", "--out", str(out), *extra])
    assert rc == 0, capsys.readouterr().err
    pol = load_policy(out)
    dense = create_model(f"userfactory:{factory}")
    pruned = apply_policy(dense, pol)
    measured = model_cost(pruned, (1, 8, 8))[0] / model_cost(dense, (1, 8, 8))[0]
    assert pol.achieved["macs_ratio"] == pytest.approx(measured, abs=1e-9) and measured <= 0.5
    assert f"MACs {measured:.3f}" in capsys.readouterr().out


@pytest.mark.cli
def test_cli_refuses_a_network_with_nothing_exact_in_one_line(tmp_path, capsys):
    from amc.cli import main

    rc = main(["baseline", "--model", "userfactory:normed", "--data", "digits",
               "--budget", "flops:0.5", "--out", str(tmp_path / "p.json")])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith("amc: error: no unit of _Normed can be pruned exactly")
    assert "LayerNorm norm normalises" in err and not (tmp_path / "p.json").exists()


class Tied(nn.Module):
    """conv2 and conv3 are separate layers sharing one weight tensor."""

    def __init__(self):
        super().__init__()
        self.conv0, self.conv1 = nn.Conv2d(3, 8, 3, padding=1), nn.Conv2d(8, 16, 3, padding=1)
        self.conv2, self.conv3 = nn.Conv2d(16, 16, 3, padding=1), nn.Conv2d(16, 16, 3, padding=1)
        self.conv3.weight = self.conv2.weight
        self.fc = nn.Linear(16, 10)

    def forward(self, x):
        x = torch.relu(self.conv2(torch.relu(self.conv1(torch.relu(self.conv0(x))))))
        return self.fc(torch.relu(self.conv3(x)).mean((2, 3)))


def test_tied_weights_are_left_out_not_untied():
    """Pruning one of two layers that share a weight would untie them."""
    pm = PrunableModel(_net(Tied), SIZE, "all", round_to=None)
    assert [u.name for u in pm.units] == ["conv0"]  # the only one that meets no tied layer
    assert {n for n, _ in pm.left_out} == {"conv1", "conv2", "conv3"}
    assert all("shares its parameters with" in why for _, why in pm.left_out)
    c = conformance(pm, [0.5], _x())
    assert c.exact and c.claimed_params == c.measured_params < 1


def test_units_all_prunes_an_option_a_resnet_exactly_through_selection_convs():
    """``all`` mode on a CIFAR ResNet: its option-A shortcuts become 1x1 convs selecting the
    same channels (the same output bit for bit; a selection one channel off differs), the
    residual stream becomes one unit per stage, and pruning it is exact, claimed cost
    included, for the one-shot path and for the masks of iterative pruning."""
    from amc.models.cifar import PadShortcut, conv_shortcuts
    from amc.models.registry import create_model

    torch.manual_seed(0)
    dense = diversify(create_model("resnet20"))
    x = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    conv, names = conv_shortcuts(dense)
    assert names == ["layer2.0.shortcut", "layer3.0.shortcut"]
    assert isinstance(dense.layer2[0].shortcut, PadShortcut)  # the user's network untouched
    with torch.no_grad():
        ref = dense.eval()(x)
        assert torch.equal(conv.eval()(x), ref)
        off = conv_shortcuts(dense)[0].eval()
        off.layer2[0].shortcut.weight.copy_(off.layer2[0].shortcut.weight.roll(1, dims=0))
        assert relative_diff(ref, off(x)) > 100 * RTOL
    pm = PrunableModel(dense, (3, 32, 32), "all")
    internal = PrunableModel(dense, (3, 32, 32), "internal")
    assert pm.converted == names and len(pm.units) == len(internal.units) + 3
    ratios = [0.1 + 0.7 * i / len(pm.units) for i in range(len(pm.units))]
    c = conformance(pm, ratios, x)
    assert c.claimed_macs == c.measured_macs and c.claimed_params == c.measured_params
    assert c.rel_diff <= RTOL and c.dense_diff > 100 * RTOL
    small = pm.prune(ratios)
    assert small.layer1[0].conv2.out_channels < 16 and small.layer3[0].shortcut.out_channels < 64
    # iterative pruning masks the converted network as the physical pruning cuts it
    pruner = ChannelPruner(ratios, (3, 32, 32), "all", "l1")
    model = pm.model
    masks = pruner.masks(model, 1.0)
    assert {"layer2.0.shortcut.weight", "layer3.0.shortcut.weight"} <= set(masks)
    assert conv_shortcuts(model)[0] is model  # nothing left to convert
    masked = copy.deepcopy(model)
    apply_masks(masked, masks)
    with torch.no_grad():
        assert relative_diff(masked(x), pruner.physical(model)(x)) <= RTOL


def test_an_option_a_resnet_pruned_in_all_mode_reloads_from_its_file(tmp_path):
    """The pruned file stores the selection convs' weights; loading it into the registry's
    dense architecture puts such convs in place of the zero-padding shortcuts."""
    from amc.models.checkpoint import save_model
    from amc.models.registry import create_model

    torch.manual_seed(0)
    pm = PrunableModel(diversify(create_model("resnet20")), (3, 32, 32), "all")
    small = pm.prune([0.5] * len(pm.units)).eval()
    back = create_model("resnet20", checkpoint=str(save_model(small, tmp_path / "p.pt",
                                                               "resnet20"))).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(back(x), small(x))
    assert isinstance(back.layer2[0].shortcut, nn.Conv2d)
