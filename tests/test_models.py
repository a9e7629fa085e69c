"""Model registry, torchvision and user factories, checkpoints (shared and pruned)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch_pruning as tp
from helpers import randomise_bn

from amc.cost.macs import model_cost
from amc.models.checkpoint import load_into, read_file, save_model
from amc.models.registry import create_model, list_models, model_spec
from amc.utils.errors import AmcError

TESTS = Path(__file__).resolve().parent
OWN = ["resnet20", "resnet32", "resnet44", "resnet56", "resnet110", "plain20", "vgg16_cifar",
       "digits_cnn"]


def test_list_models_has_the_registry():
    names = list_models()
    assert set(OWN) <= set(names)
    tv = list_models(include_torchvision=True)
    assert "tv:resnet18" in tv and "tv:mobilenet_v2" in tv


@pytest.mark.parametrize("name", OWN)
def test_create_model_forward_on_its_input_size(name):
    spec = model_spec(name)
    model = create_model(name)
    assert not model.training  # create_model returns eval mode
    with torch.inference_mode():
        out = model(torch.randn(2, *spec.input_size))
    assert out.shape == (2, spec.num_classes)
    assert torch.isfinite(out).all()
    assert create_model(name, num_classes=7)(torch.randn(1, *spec.input_size)).shape == (1, 7)


def test_digits_cnn_and_cifar_input_sizes():
    assert model_spec("digits_cnn").input_size == (1, 8, 8)
    assert model_spec("resnet56").input_size == (3, 32, 32)


def test_plain20_has_no_shortcut_but_resnet20_does():
    # same weights, different function: the shortcut must change the output
    res, plain = create_model("resnet20"), create_model("plain20")
    plain.load_state_dict(res.state_dict())
    x = torch.randn(2, 3, 32, 32)
    with torch.inference_mode():
        assert not torch.allclose(res(x), plain(x))


@pytest.mark.parametrize("name", ["tv:resnet18", "tv:mobilenet_v2"])
def test_torchvision_models_build_without_weights(name, tv_resnet18):
    model = tv_resnet18 if name == "tv:resnet18" else create_model(name)
    assert model_spec(name).input_size == (3, 224, 224)
    with torch.inference_mode():
        assert model(torch.randn(1, 3, 224, 224)).shape == (1, 1000)


def test_torchvision_num_classes():
    assert create_model("tv:mobilenet_v2", num_classes=10).classifier[-1].out_features == 10


def test_user_factory(monkeypatch):
    monkeypatch.syspath_prepend(str(TESTS))
    model = create_model("userfactory:tiny", num_classes=3)
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 3)
    with pytest.raises(AmcError, match="not callable"):
        create_model("userfactory:NOT_CALLABLE")
    with pytest.raises(AmcError, match="unknown model"):
        create_model("userfactory:missing")


@pytest.mark.parametrize("name", ["nope", "tv:nope", "no_such_module_xyz:factory", "resnet21"])
def test_unknown_model_raises(name):
    with pytest.raises(AmcError, match="unknown model"):
        create_model(name)


# ----------------------------------------------------------------------------- checkpoints


@pytest.mark.needs_shared
@pytest.mark.parametrize("depth", [20, 32, 44, 56])
def test_shared_checkpoints_load_strictly(depth, needs_shared):
    path = needs_shared / "models" / f"resnet{depth}-cifar10.th"
    raw = torch.load(path, map_location="cpu", weights_only=True)["state_dict"]
    state = {k.removeprefix("module."): v for k, v in raw.items()}
    model = create_model(f"resnet{depth}")
    own = model.state_dict()
    expected = {k for k in own if not k.endswith("num_batches_tracked")}
    assert expected <= set(state) and set(state) <= set(own)
    for k, v in state.items():
        assert own[k].shape == v.shape, k
    # create_model's own loader (strict on keys and shapes) gives the same weights
    loaded = create_model(f"resnet{depth}", checkpoint=path).state_dict()
    for k, v in state.items():
        assert torch.equal(loaded[k], v), k


def test_pruned_checkpoint_round_trip(tmp_path: Path):
    gen = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    model = create_model("digits_cnn")
    randomise_bn(model, gen)
    f = model.features  # conv0 bn1 relu2 conv3 bn4 relu5 pool6 conv7 bn8 relu9 conv10 bn11
    dense_macs, dense_params = model_cost(model, (1, 8, 8))
    drop = [0, 3, 5, 8, 9]
    tp.prune_conv_out_channels(f[0], drop)
    tp.prune_batchnorm_out_channels(f[1], drop)
    tp.prune_conv_in_channels(f[3], drop)
    drop2 = list(range(0, 128, 4))
    tp.prune_conv_out_channels(f[10], drop2)
    tp.prune_batchnorm_out_channels(f[11], drop2)
    tp.prune_linear_in_channels(model.classifier, drop2)
    assert f[0].weight.shape == (27, 1, 3, 3) and model.classifier.weight.shape == (10, 96)

    path = save_model(model, tmp_path / "sub" / "pruned.pt", "digits_cnn", {"note": "test"})
    assert path.is_file() and not path.with_suffix(".pt.tmp").exists()
    obj = read_file(path)  # weights-only readable: no pickled code in the file
    assert obj["format"] == "amc-model/1" and obj["model"] == "digits_cnn"

    reloaded = create_model("digits_cnn", checkpoint=path)
    for (k, a), (k2, b) in zip(model.state_dict().items(), reloaded.state_dict().items()):
        assert k == k2 and a.shape == b.shape and torch.equal(a, b), k
    x = torch.randn(16, 1, 8, 8, generator=gen)
    model.eval()
    with torch.inference_mode():
        assert torch.equal(model(x), reloaded(x))
    macs, params = model_cost(reloaded, (1, 8, 8))
    assert macs < dense_macs and params < dense_params
    assert load_into(create_model("digits_cnn"), path) == {"note": "test"}


def test_plain_state_dict_with_other_shape_is_rejected(tmp_path: Path):
    # a plain (non-amc) checkpoint is never resized: a shape mismatch is an error
    path = tmp_path / "d5.pt"
    torch.save(create_model("digits_cnn", num_classes=5).state_dict(), path)
    with pytest.raises(AmcError, match=r"classifier\.weight.*\(5, 128\).*\(10, 128\)"):
        create_model("digits_cnn", checkpoint=path)


def test_dataparallel_prefix_and_wrapper_keys_are_accepted(tmp_path: Path):
    model = create_model("resnet20")
    path = tmp_path / "dp.th"
    torch.save({"best_prec1": 1.0,
                "state_dict": {f"module.{k}": v for k, v in model.state_dict().items()}}, path)
    reloaded = create_model("resnet20", checkpoint=path)
    x = torch.randn(2, 3, 32, 32)
    with torch.inference_mode():
        assert torch.equal(model(x), reloaded(x))
