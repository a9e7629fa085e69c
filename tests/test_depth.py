"""Dropping whole residual blocks (amc.prune.depth): exact against the dense network with the
blocks' inner channels masked."""

import pytest
import torch
from helpers import randomise_bn
from torch import nn

from amc.models.cifar import CifarResNet
from amc.prune.depth import (
    DroppedBlock,
    drop_blocks,
    droppable_blocks,
    masked_equivalent,
)
from amc.utils.tolerance import RTOL, relative_diff


@pytest.fixture(scope="module")
def cifar_net() -> nn.Module:
    torch.manual_seed(0)
    # two blocks per stage, downsampling ones included; BN away from its defaults (default
    # BN would make every dropped block's shift zero)
    return randomise_bn(CifarResNet(14), torch.Generator().manual_seed(0), 0.5).eval()


def test_droppable_blocks_are_the_residual_blocks(cifar_net):
    assert droppable_blocks(cifar_net) == [f"layer{s}.{i}" for s in (1, 2, 3) for i in (0, 1)]
    assert droppable_blocks(CifarResNet(14, shortcut=False)) == []  # no path to keep


@pytest.mark.parametrize("names", [["layer1.1"], ["layer2.0"], ["layer1.0", "layer2.0",
                                                                 "layer3.1"]])
def test_dropped_blocks_compute_the_masked_dense_network(cifar_net, names):
    x = torch.randn(4, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ref = masked_equivalent(cifar_net, names)(x)
        got = drop_blocks(cifar_net, names)(x)
        dense = cifar_net(x)
    assert relative_diff(ref, got) < RTOL
    assert relative_diff(dense, ref) > 1e-2  # the blocks mattered: the check can fail


def test_a_dropped_block_without_its_shift_is_not_exact(cifar_net):
    names = ["layer2.1"]
    x = torch.randn(4, 3, 8, 8, generator=torch.Generator().manual_seed(2))
    net = drop_blocks(cifar_net, names)
    with torch.no_grad():
        net.get_submodule(names[0]).shift.zero_()
        assert relative_diff(masked_equivalent(cifar_net, names)(x), net(x)) > 1e-2


def test_torchvision_blocks_drop_exactly():
    from torchvision.models import resnet18

    torch.manual_seed(0)
    net = randomise_bn(resnet18(num_classes=10), torch.Generator().manual_seed(0), 0.5).eval()
    names = ["layer1.1", "layer2.0", "layer4.0"]  # layer2.0 / layer4.0: conv downsample
    assert {"layer1.0", "layer2.0", "layer4.1"} <= set(droppable_blocks(net))
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        assert relative_diff(masked_equivalent(net, names)(x),
                             drop_blocks(net, names)(x)) < RTOL


def test_only_droppable_blocks_are_dropped(cifar_net):
    with pytest.raises(ValueError, match="not a droppable"):
        DroppedBlock.of(cifar_net.layer1[0].conv1)


def test_a_block_dropped_network_exports_to_onnx_exactly(cifar_net, tmp_path):
    """What a delivered network goes through: the ONNX file (checked by the exporter), run
    again in onnxruntime here against PyTorch, relative to the output's scale."""
    from amc.deploy.export import export_onnx
    from amc.utils.onnxrt import ort_session

    net = drop_blocks(cifar_net, ["layer1.1", "layer2.0"])
    path = tmp_path / "dropped.onnx"
    export_onnx(net, path, (3, 8, 8))
    sess = ort_session(path.read_bytes(), 1)
    x = torch.randn(3, 3, 8, 8, generator=torch.Generator().manual_seed(4))
    got = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})[0]
    with torch.no_grad():
        assert relative_diff(net(x), got) < RTOL
        assert relative_diff(cifar_net(x), got) > 1e-2  # the dropped blocks mattered
