"""Structured pruning: budgets met on the physically pruned network, the analytic cost model
equal to the measured one, unit modes, criteria, channel rounding, BatchNorm recalibration
and least-squares reconstruction.

Small inputs keep this fast: 32x32 for the CIFAR nets, 64x64 for torchvision ones.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from amc.cost.macs import count_params, model_cost
from amc.models.registry import create_model
from amc.prune.budget import Budget, uniform_ratio
from amc.prune.repair import recalibrate_bn, reconstruct
from amc.prune.units import PrunableModel
from amc.utils.errors import AmcError

CASES = {
    "resnet56": ("internal", (3, 32, 32)),
    "tv:resnet18": ("all", (3, 64, 64)),
    "tv:mobilenet_v2": ("all", (3, 64, 64)),
    "vgg16_cifar": ("all", (3, 32, 32)),
    "plain20": ("all", (3, 32, 32)),
}


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """One torch thread here: the 2-core machine is shared, and two threads under load are
    slower than one."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def _randomise_bn(model: nn.Module, seed: int = 0) -> nn.Module:
    """Give BatchNorm layers distinct affine weights (fresh ones are all 1, which makes
    ``bn_scale`` rankings degenerate)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.copy_(torch.rand(m.weight.shape, generator=g) + 0.05)
                m.bias.copy_(0.1 * torch.randn(m.bias.shape, generator=g))
    return model


@pytest.fixture(scope="module")
def prunables(request) -> dict[str, PrunableModel]:
    """One PrunableModel per case (discovery and ranking are the slow part: do them once)."""
    torch.manual_seed(0)
    out = {}
    for name, (mode, size) in CASES.items():
        model = (request.getfixturevalue("tv_resnet18") if name == "tv:resnet18"
                 else create_model(name))
        out[name] = PrunableModel(model, size, mode)
    return out


def _shapes(model: nn.Module) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


# --------------------------------------------------------------------------- budgets


@pytest.mark.parametrize("fraction", [0.3, 0.5, 0.7])
@pytest.mark.parametrize("name", list(CASES))
def test_uniform_ratio_meets_flops_budget(prunables, name, fraction):
    pm = prunables[name]
    size = pm.input_size
    dense_shapes = _shapes(pm.model)
    dense_macs, dense_params = model_cost(pm.model, size)
    assert (dense_macs, dense_params) == (pm.dense_macs, pm.dense_params)

    r = uniform_ratio(pm, Budget("flops", fraction))
    ratios = [r] * len(pm.units)
    pruned = pm.prune(ratios)
    macs, params = model_cost(pruned, size)

    assert macs <= fraction * dense_macs
    assert macs >= 0.98 * fraction * dense_macs, macs / dense_macs  # within 2 % of the budget
    assert params < dense_params
    assert pm.cost(ratios) == (macs, params)  # the analytic cost model is exact
    assert pm.cost_fraction(ratios) == (macs / dense_macs, params / dense_params)
    assert _shapes(pm.model) == dense_shapes  # pruning works on a copy

    with torch.inference_mode():
        out = pruned(torch.randn(2, *size))
    assert out.shape == (2, pm.model(torch.zeros(1, *size)).shape[1])
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", list(CASES))
def test_flops_fall_monotonically_with_uniform_ratio(prunables, name):
    pm = prunables[name]
    n = len(pm.units)
    grid = np.linspace(0.0, 0.95, 96)
    macs = [pm.cost([r] * n)[0] for r in grid]
    assert macs[0] == pm.dense_macs
    assert all(b <= a for a, b in zip(macs, macs[1:]))
    assert macs[-1] < 0.5 * pm.dense_macs
    measured = [model_cost(pm.prune([r] * n), pm.input_size)[0] for r in (0.0, 0.3, 0.6, 0.9)]
    assert measured[0] == pm.dense_macs
    assert all(b < a for a, b in zip(measured, measured[1:]))


# --------------------------------------------------------------------------- unit modes


def test_resnet20_all_mode_adds_one_residual_unit_per_stage():
    """Units ``all`` on an option-A ResNet: the internal convs and, per stage, the residual
    stream (rooted at the stem conv, then at each stage's selection shortcut)."""
    pm = PrunableModel(create_model("resnet20"), (3, 32, 32), "all")
    internal = [f"layer{s}.{b}.conv1" for s in (1, 2, 3) for b in range(3)]
    residual = ["conv1", "layer2.0.shortcut", "layer3.0.shortcut"]
    assert sorted(u.name for u in pm.units) == sorted(internal + residual)
    assert {u.name: u.n for u in pm.units if u.name in residual} == {
        "conv1": 16, "layer2.0.shortcut": 32, "layer3.0.shortcut": 64}


def test_resnet20_internal_units():
    pm = PrunableModel(create_model("resnet20"), (3, 32, 32), "internal")
    assert len(pm.units) == 9
    assert [u.name for u in pm.units] == [f"layer{s}.{b}.conv1" for s in (1, 2, 3)
                                          for b in range(3)]
    assert [u.n for u in pm.units] == [16] * 3 + [32] * 3 + [64] * 3
    for u in pm.units:
        block = u.name.rsplit(".", 1)[0]
        assert {f"{block}.conv1", f"{block}.bn1", f"{block}.conv2"} <= set(u.layers)
        assert f"{block}.bn2" not in u.layers  # conv2's outputs meet the residual add


def test_unknown_mode_and_criterion():
    m = create_model("digits_cnn")
    with pytest.raises(AmcError, match="mode"):
        PrunableModel(m, (1, 8, 8), "some")
    with pytest.raises(AmcError, match="criterion"):
        PrunableModel(m, (1, 8, 8), "all", "l3")


# --------------------------------------------------------------------------- criteria


@pytest.fixture(scope="module")
def resnet20_bn() -> nn.Module:
    torch.manual_seed(0)
    return _randomise_bn(create_model("resnet20"))


@pytest.mark.parametrize("criterion", ["l1", "l2", "bn_scale", "taylor"])
def test_criteria_prune(resnet20_bn, criterion):
    g = torch.Generator().manual_seed(1)
    calib = (torch.randn(16, 3, 32, 32, generator=g), torch.randint(0, 10, (16,), generator=g))
    pm = PrunableModel(resnet20_bn, (3, 32, 32), "internal", criterion,
                       calib=calib if criterion == "taylor" else None)
    assert all(p.grad is None for p in resnet20_bn.parameters())  # taylor cleans up
    ratios = [0.5] * len(pm.units)
    pruned = pm.prune(ratios)
    assert pm.cost(ratios) == model_cost(pruned, (3, 32, 32))
    for i, u in enumerate(pm.units):
        n_prune = u.n - pm.kept(i, 0.5)
        keep = sorted(pm.rankings[i][n_prune:].tolist())
        dense_w = resnet20_bn.get_submodule(u.name).weight
        new_w = pruned.get_submodule(u.name).weight
        assert new_w.shape[0] == len(keep) == u.n // 2
        assert torch.equal(new_w, dense_w[keep])  # the lowest-ranked channels went
        conv2 = u.name.replace("conv1", "conv2")
        assert torch.equal(pruned.get_submodule(conv2).weight,
                           resnet20_bn.get_submodule(conv2).weight[:, keep])
        if criterion == "bn_scale":  # exactly the smallest |gamma| of the unit's BatchNorm
            gamma = resnet20_bn.get_submodule(u.name.replace("conv1", "bn1")).weight.abs()
            assert set(pm.rankings[i][:n_prune].tolist()) == set(
                torch.argsort(gamma)[:n_prune].tolist())
    with torch.inference_mode():
        assert torch.isfinite(pruned(calib[0])).all()


def test_criteria_rank_differently(resnet20_bn):
    ranks = {c: PrunableModel(resnet20_bn, (3, 32, 32), "internal", c).rankings
             for c in ("l1", "bn_scale")}
    assert any(not torch.equal(a, b) for a, b in zip(ranks["l1"], ranks["bn_scale"]))


def test_taylor_needs_calibration_batch():
    with pytest.raises(AmcError, match="taylor"):
        PrunableModel(create_model("digits_cnn"), (1, 8, 8), "all", "taylor")


# --------------------------------------------------------------------------- rounding


@pytest.mark.parametrize("name, mode, size", [
    ("plain20", "all", (3, 32, 32)),
    ("tv:mobilenet_v2", "all", (3, 64, 64)),
])
def test_round_to_keeps_multiples(name, mode, size):
    torch.manual_seed(0)
    pm = PrunableModel(create_model(name), size, mode, round_to=8)
    for r in (0.1, 0.5, 0.95):
        ratios = [r] * len(pm.units)
        kept = [pm.kept(i, r) for i in range(len(pm.units))]
        assert all(k % 8 == 0 or k == u.n for k, u in zip(kept, pm.units)), kept
        pruned = pm.prune(ratios)
        assert [pruned.get_submodule(u.name).out_channels for u in pm.units] == kept
        assert pm.cost(ratios) == model_cost(pruned, size)
    with torch.inference_mode():
        assert torch.isfinite(pruned(torch.randn(2, *size))).all()


# --------------------------------------------------------------------------- repair


def test_bn_recalibration_changes_statistics_only():
    torch.manual_seed(0)
    pm = PrunableModel(create_model("resnet20"), (3, 32, 32), "internal")
    pruned = pm.prune([0.5] * len(pm.units))
    shapes = _shapes(pruned)
    params = {k: v.detach().clone() for k, v in pruned.named_parameters()}
    bns = {n: m for n, m in pruned.named_modules() if isinstance(m, nn.BatchNorm2d)}
    before = {n: (m.running_mean.clone(), m.running_var.clone()) for n, m in bns.items()}
    momenta = {n: m.momentum for n, m in bns.items()}
    x = 0.5 + 2.0 * torch.randn(32, 3, 32, 32)

    out = recalibrate_bn(pruned, [x])

    assert out is pruned and not pruned.training
    assert _shapes(pruned) == shapes
    assert all(torch.equal(v, params[k]) for k, v in pruned.named_parameters())
    for n, m in bns.items():
        assert not torch.equal(m.running_mean, before[n][0]), n
        assert not torch.equal(m.running_var, before[n][1]), n
        assert m.momentum == momenta[n]
    # one batch, cumulative average: the running statistics are that batch's statistics
    with torch.no_grad():
        a = pruned.conv1(x)
    assert torch.allclose(pruned.bn1.running_mean, a.mean((0, 2, 3)), atol=1e-5)
    assert torch.allclose(pruned.bn1.running_var, a.var((0, 2, 3), unbiased=True), rtol=1e-4)


def _outputs(model: nn.Module, names: list[str], x: torch.Tensor) -> dict[str, torch.Tensor]:
    """Outputs of the named modules in one forward pass."""
    box: dict[str, torch.Tensor] = {}
    hooks = [model.get_submodule(n).register_forward_hook(
        lambda m, a, out, n=n: box.__setitem__(n, out.detach().clone())) for n in names]
    try:
        with torch.no_grad():
            box["logits"] = model(x)
    finally:
        for h in hooks:
            h.remove()
    return box


def test_reconstruction_reduces_output_error():
    torch.manual_seed(0)
    dense = create_model("resnet20")
    size = (3, 16, 16)  # small maps keep the least-squares fits quick
    g = torch.Generator().manual_seed(0)
    x = torch.randn(128, *size, generator=g)
    recalibrate_bn(dense, [x])  # non-trivial BatchNorm statistics
    pm = PrunableModel(dense, size, "internal")
    ratios = [0.5] * len(pm.units)
    plain = pm.prune(ratios)
    rec = reconstruct(pm, pm.prune(ratios), ratios, x)
    assert _shapes(rec) == _shapes(plain)

    def mse(a: torch.Tensor, b: torch.Tensor) -> float:
        return float(((a - b) ** 2).mean())

    refit = [u.name.replace("conv1", "conv2") for u in pm.units]
    target, before, after = (_outputs(m, refit, x) for m in (dense, plain, rec))
    for name in refit:  # every refit conv matches the dense conv's output better
        assert mse(after[name], target[name]) < mse(before[name], target[name]), name
    # the first refit conv sees identical inputs either way: a direct least-squares gain
    first = refit[0]
    assert mse(after[first], target[first]) < 0.8 * mse(before[first], target[first])
    # and the whole network's logits move closer to the dense ones, also on unseen inputs
    assert mse(after["logits"], target["logits"]) < mse(before["logits"], target["logits"])
    held = torch.randn(64, *size, generator=g)
    with torch.no_grad():
        assert mse(rec(held), dense(held)) < mse(plain(held), dense(held))
    # layers that lost no input channels are untouched
    assert torch.equal(rec.conv1.weight, plain.conv1.weight)
    assert count_params(rec) == count_params(plain)


@pytest.mark.parametrize("kernel, stride, padding, dilation, hw", [
    (3, 1, 1, 1, (9, 9)), (3, 2, 1, 1, (9, 8)), (1, 1, 0, 1, (6, 7)), (1, 2, 0, 1, (8, 8)),
    ((3, 1), (2, 1), (1, 0), 1, (7, 5)), (3, 1, 2, 2, (8, 8))])
def test_patches_at_equals_unfold_at_the_picked_positions(kernel, stride, padding, dilation,
                                                           hw):
    """Reconstruction gathers each conv's input patches at the sampled output positions only;
    they are exactly unfold's columns there (so the refit is unchanged), for strides,
    padding, dilation and non-square kernels and maps."""
    from amc.prune.repair import _positions, _sample, patch_rows, patches_at

    g = torch.Generator().manual_seed(0)
    conv = nn.Conv2d(5, 4, kernel, stride, padding, dilation, bias=False)
    x = torch.randn(3, 5, *hw, generator=g)
    cols = F.unfold(x, conv.kernel_size, conv.dilation, conv.padding, conv.stride)
    pick = _positions(g, 3, cols.shape[2], 6)
    want = _sample(cols, pick)
    kh, kw = conv.kernel_size  # patches_at's (kh, kw, in) columns in unfold's (in, kh, kw)
    order = torch.arange(kh * kw * 5).view(kh, kw, 5).permute(2, 0, 1).flatten()
    for fmt in (torch.contiguous_format, torch.channels_last):
        got = patches_at(x.contiguous(memory_format=fmt), conv, pick)
        assert torch.equal(got[:, order], want)
        # the columns' order matters (unless 1x1) and the positions do: must fail
        assert conv.kernel_size == (1, 1) or not torch.equal(got, want)
        assert not torch.equal(got[:, order], _sample(cols, (pick + 1) % cols.shape[2]))
        # the gather's rows, computed once per layer, give the same patches
        assert torch.equal(patches_at(x.contiguous(memory_format=fmt), conv, pick,
                                      patch_rows(x.shape, conv, pick)), got)
    # a conv on the patches equals the conv at those positions, weights in the same order
    w = conv.weight.permute(0, 2, 3, 1).flatten(1)  # out, (kh, kw, in)
    assert torch.allclose(got @ w.T, _sample(conv(x).flatten(2), pick), atol=1e-5)


def test_reconstruction_under_autocast_fits_in_fp32():
    """A score in bf16 runs reconstruction's forward in bf16, but the dense targets and the
    least squares stay fp32: the refit weights are fp32 and the network is the fp32 refit's
    within bf16 rounding, far closer to it than the unrefitted network is."""
    torch.manual_seed(0)
    dense = create_model("resnet20")
    size = (3, 16, 16)
    x = torch.randn(64, *size, generator=torch.Generator().manual_seed(1))
    recalibrate_bn(dense, [x])
    pm = PrunableModel(dense, size, "internal")
    ratios = [0.5] * len(pm.units)
    cache: dict = {}
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = reconstruct(pm, pm.prune(ratios), ratios, x, dense_cache=cache)
    assert all(y.dtype == torch.float32 for _, y, _ in cache.values())  # (pick, y, rows)
    assert all(p.dtype == torch.float32 for p in low.parameters())
    full = reconstruct(pm, pm.prune(ratios), ratios, x)
    with torch.no_grad():
        ref, got, unfit = (m.eval()(x) for m in (full, low, pm.prune(ratios)))
    scale = float(ref.abs().max())
    assert float((got - ref).abs().max()) < 0.1 * scale  # measured 0.027
    assert float((unfit - ref).abs().max()) > 0.1 * scale  # 0.69: the check tells them apart


def _refit_convs(pm: PrunableModel) -> list[str]:
    return [u.name.replace("conv1", "conv2") for u in pm.units]


def test_reconstruction_in_the_recalibration_pass_is_self_consistent():
    """``reconstruct(..., recalibrate=True)`` refits and re-estimates BatchNorm in one pass:
    its statistics are what a recalibration afterwards gives, and each refit already fits the
    inputs the recalibrated network computes (refitting the result on its own inputs moves
    no weight), which refitting first and recalibrating after does not (must fail)."""
    import copy

    torch.manual_seed(0)
    dense = create_model("resnet20")
    size = (3, 16, 16)
    g = torch.Generator().manual_seed(2)
    x = 0.5 + torch.randn(128, *size, generator=g)
    recalibrate_bn(dense, [torch.randn(128, *size, generator=g)])  # stats of other images
    pm = PrunableModel(dense, size, "internal")
    ratios = [0.6] * len(pm.units)
    fused = reconstruct(pm, pm.prune(ratios), ratios, x, recalibrate=True)
    assert not fused.training
    again = recalibrate_bn(copy.deepcopy(fused), [x])
    for (n, a), b in zip(fused.named_buffers(), again.buffers()):
        if n.endswith(("running_mean", "running_var")):
            assert torch.allclose(a, b, rtol=1e-4, atol=1e-5 * float(b.abs().max())), n
    seq = recalibrate_bn(reconstruct(pm, pm.prune(ratios), ratios, x), [x])

    def moved(net: nn.Module) -> float:
        """Largest relative change of a refit conv's weights when refitted on its inputs."""
        refit = reconstruct(pm, copy.deepcopy(net), ratios, x)
        return max(float((refit.get_submodule(n).weight - net.get_submodule(n).weight).norm()
                         / net.get_submodule(n).weight.detach().norm()) for n in _refit_convs(pm))

    fixed, off = moved(fused), moved(seq)  # measured 5e-4 and 1.03
    assert fixed < 5e-3, fixed
    assert off > 10 * 5e-3, (off, fixed)  # the sequential fits saw other inputs


def test_scorer_reconstructs_in_the_recalibration_pass_when_it_can():
    """A scorer that reconstructs and recalibrates on the same images in one batch does both
    in one pass (the network it delivers is ``reconstruct(..., recalibrate=True)``'s); with
    the recalibration split into batches it refits first, then recalibrates."""
    from amc.prune.scoring import Scorer

    torch.manual_seed(0)
    dense = create_model("resnet20")
    size = (3, 16, 16)
    g = torch.Generator().manual_seed(3)
    calib = torch.randn(128, *size, generator=g)
    recalibrate_bn(dense, [torch.randn(128, *size, generator=g)])
    pm = PrunableModel(dense, size, "internal")
    x, y = torch.randn(64, *size, generator=g), torch.randint(0, 10, (64,), generator=g)
    ratios = [0.6] * len(pm.units)
    want = reconstruct(pm, pm.prune(ratios), ratios, calib.contiguous(
        memory_format=torch.channels_last), recalibrate=True)
    seq = recalibrate_bn(reconstruct(pm, pm.prune(ratios), ratios, calib), calib.split(64))
    with torch.no_grad():
        ref, other = want(x), seq(x)
        for recal_batch, close in ((None, True), (64, False)):
            s = Scorer(pm, x, y, calib=calib, bn_recalib=True, reconstruct=True,
                       recal_batch=recal_batch)
            got = s.pruned(ratios)(x)
            err = float((got - ref).abs().max()) / float(ref.abs().max())
            assert (err < 1e-4) == close, (recal_batch, err)
            if not close:
                assert float((got - other).abs().max()) < 1e-4 * float(other.abs().max())


def _recal_on_val_case():
    """A pruned ResNet-20 on 16x16 images with fresh BatchNorm statistics, and images."""
    torch.manual_seed(0)
    dense = _randomise_bn(create_model("resnet20"))
    size = (3, 16, 16)
    g = torch.Generator().manual_seed(5)
    recalibrate_bn(dense, [torch.randn(128, *size, generator=g)])
    pm = PrunableModel(dense, size, "internal")
    x = 0.5 + 2.0 * torch.randn(64, *size, generator=g)
    ratios = [0.5] * len(pm.units)
    with torch.no_grad():  # centre the classes so that predictions spread over them
        logits = recalibrate_bn(pm.prune(ratios), [x])(x)
        dense.linear.weight.mul_(10.0)
        dense.linear.bias.sub_(10.0 * logits.mean(0))
    return pm, ratios, x, 3.0 * torch.randn(64, *size, generator=g) - 1.0


def _undo_unbiased(net: nn.Module, x: torch.Tensor) -> None:
    """Scale each BatchNorm's stored (unbiased) variance back to the biased one its batch
    was normalised with (``m`` = images x positions that reached it from ``x``)."""
    seen = {}
    hooks = [m.register_forward_pre_hook(lambda m, a: seen.__setitem__(m, a[0].numel()
                                                                       / a[0].shape[1]))
             for m in net.modules() if isinstance(m, nn.BatchNorm2d)]
    with torch.no_grad():
        net(x)
    for h in hooks:
        h.remove()
    for bn, m in seen.items():
        bn.running_var.mul_((m - 1) / m)


def test_recalibrated_outputs_are_the_recalibrated_network_s_outputs():
    from amc.prune.repair import recalibrated_outputs

    pm, ratios, x, other = _recal_on_val_case()
    net = pm.prune(ratios)
    got = recalibrated_outputs(net, x)
    want_net = recalibrate_bn(pm.prune(ratios), [x])
    other_net = recalibrate_bn(pm.prune(ratios), [other])  # other statistics: must not match
    _assert_one_pass_outputs(got, net, want_net, x, [other_net])


def _assert_one_pass_outputs(got: torch.Tensor, net: nn.Module, want_net: nn.Module,
                             x: torch.Tensor, wrong_nets: list[nn.Module]) -> None:
    """``got``, the outputs of a pass that repaired ``net`` on ``x``, are ``want_net``'s
    (the same repair done apart) once its stored variances are made the biased ones the
    batch was normalised with, and not without that (tolerance relative to the outputs'
    scale); ``net``, left in eval mode, computes ``want_net``'s outputs; each of
    ``wrong_nets`` (another repair) differs by far more."""
    assert not net.training
    with torch.no_grad():
        want, kept = want_net(x), net(x)
        wrongs = [w(x) for w in wrong_nets]
        _undo_unbiased(want_net, x)
        exact = want_net(x)
    scale = float(want.abs().max())
    assert float((got - exact).abs().max()) < 1e-5 * scale
    assert float((got - want).abs().max()) > 1e-5 * scale  # the correction is seen
    for wrong in wrongs:
        assert float((wrong - want).abs().max()) > 1e-2 * scale
    assert float((kept - want).abs().max()) < 1e-5 * scale


def test_reconstructed_outputs_are_the_repaired_network_s_outputs():
    from amc.prune.repair import reconstructed_outputs

    pm, ratios, x, other = _recal_on_val_case()
    net = pm.prune(ratios)
    got = reconstructed_outputs(pm, net, ratios, x)
    want_net = reconstruct(pm, pm.prune(ratios), ratios, x, recalibrate=True)
    recal_only = recalibrate_bn(pm.prune(ratios), [x])  # no refit: must not match
    other_fit = reconstruct(pm, pm.prune(ratios), ratios, other, recalibrate=True)
    _assert_one_pass_outputs(got, net, want_net, x, [recal_only, other_fit])


def test_scorer_on_val_with_reconstruction_refits_on_the_images_it_scores():
    from amc.prune.scoring import Scorer, ScorerParts

    pm, ratios, x, calib = _recal_on_val_case()
    ref = reconstruct(pm, pm.prune(ratios), ratios, x[:24], recalibrate=True)
    with torch.no_grad():
        y = ref(x).argmax(1)  # labels: the val-repaired network's predictions
    kw = dict(calib=calib, bn_recalib=True, recal_size=24, reconstruct=True)
    on_val = Scorer(pm, x, y, recal_on="val", **kw)
    got = on_val.score(ratios)
    assert (got.images, got.recal_images) == (64, 24)
    assert got.top1 >= 100.0 - 100.0 / 64  # at most one near-tie flipped by m/(m-1)
    assert Scorer(pm, x, y, **kw).score(ratios).top1 < 90.0  # fitted on calibration images
    assert Scorer(pm, x, y, recal_on="val", calib=calib, bn_recalib=True,
                  recal_size=24).score(ratios).top1 < 90.0  # recalibrated, not refitted
    assert ScorerParts.of(on_val).build().score(ratios).top1 == got.top1
    assert on_val.score(ratios).top1 == got.top1  # the val targets' cache changes nothing
    # the delivered network is still repaired on the calibration images
    with torch.no_grad():
        assert torch.equal(on_val.pruned(ratios)(x), Scorer(pm, x, y, **kw).pruned(ratios)(x))
    # the short-fine-tune proxy fits on calibration images before its SGD steps (none
    # here), then recalibrates on val in the scoring pass
    from amc.prune.proxy import FinetuneScorer

    proxy = FinetuneScorer.from_scorer(on_val, calib, y, ft_steps=0)
    calib_fit = reconstruct(pm, pm.prune(ratios), ratios, calib)  # all 64: recon images
    with torch.no_grad():
        y2 = recalibrate_bn(calib_fit, [x[:24]])(x).argmax(1)
    assert replace(proxy, y=y2).score(ratios).top1 >= 100.0 - 100.0 / 64
    assert replace(on_val, y=y2).score(ratios).top1 < 90.0


def test_scorer_recalibrates_on_val_and_scores_those_images_in_the_same_pass():
    from amc.prune.scoring import Scorer, ScorerParts

    pm, ratios, x, calib = _recal_on_val_case()
    ref = recalibrate_bn(pm.prune(ratios), [x[:24]])
    with torch.no_grad():
        y = ref(x).argmax(1)  # labels: the reference network's predictions (top-1 100 %)
    on_val = Scorer(pm, x, y, calib=calib, bn_recalib=True, recal_size=24, recal_on="val")
    on_calib = Scorer(pm, x, y, calib=calib, bn_recalib=True, recal_size=24)
    got = on_val.score(ratios)
    assert (got.images, got.recal_images) == (64, 24)
    assert got.top1 >= 100.0 - 100.0 / 64  # at most one near-tie flipped by m/(m-1)
    assert on_calib.score(ratios).top1 < 90.0  # other statistics, other predictions
    assert ScorerParts.of(on_val).build().score(ratios).top1 == got.top1  # shipped to workers
    # racing looks first right after the recalibration images (then at 32 of 64)
    assert on_val.score(ratios, lambda ub: False).images == 24
    assert on_calib.score(ratios, lambda ub: False).images == 32
    # the delivered network still recalibrates on the calibration images
    with torch.no_grad():
        assert torch.equal(on_val.pruned(ratios)(x), on_calib.pruned(ratios)(x))
    with pytest.raises(ValueError, match="recal_on"):
        Scorer(pm, x, y, recal_on="test")
