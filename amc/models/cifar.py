"""Small networks for CIFAR-10 and the embedded digits data.

* :class:`CifarResNet`: ResNets of He et al. (2016) with option-A shortcuts, state-dict
  compatible with the public checkpoints in ``../shared/models`` (``shortcut=False``: plain);
* :class:`VGGCifar`: VGG-16 with BatchNorm;
* :class:`DigitsCNN`: a small CNN for the 8x8 ``digits`` dataset;
* :func:`conv_shortcuts`: option-A shortcuts as equivalent 1x1 selection convs (what
  ``--units all`` prunes).
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from amc.utils.errors import AmcError

# ----------------------------------------------------------------------------- CIFAR ResNets


class PadShortcut(nn.Module):
    """Option-A shortcut: subsample by the stride and zero-pad the missing channels
    (``in_channels`` in, ``in_channels + 2 * pad`` out)."""

    def __init__(self, stride: int, pad: int, in_channels: int):
        super().__init__()
        self.stride = stride
        self.pad = pad
        self.in_channels = in_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x[:, :, :: self.stride, :: self.stride]
        return F.pad(x, (0, 0, 0, 0, self.pad, self.pad))

    def as_conv(self) -> nn.Conv2d:
        """The 1x1 convolution (this stride, no bias) whose 0/1 weights select the same
        channels into the same places: the same output exactly (each output sums one input
        times 1 and zeros)."""
        c = self.in_channels
        conv = nn.Conv2d(c, c + 2 * self.pad, 1, self.stride, bias=False)
        with torch.no_grad():
            conv.weight.zero_()
            conv.weight[torch.arange(c) + self.pad, torch.arange(c), 0, 0] = 1.0
        return conv


def conv_shortcuts(model: nn.Module) -> tuple[nn.Module, list[str]]:
    """``model`` with every :class:`PadShortcut` replaced by its :meth:`~PadShortcut.as_conv`:
    the same function, and a shortcut Torch-Pruning can trace, so the residual channels of an
    option-A ResNet can be pruned (its in- and out-channels are separate, as for any conv).
    A copy when there is something to replace (the names replaced are returned), else
    ``model`` itself."""
    names = [name for name, m in model.named_modules() if isinstance(m, PadShortcut)]
    if not names:
        return model, []
    model = copy.deepcopy(model)
    p = next(model.parameters(), None)
    for name in names:
        conv = model.get_submodule(name).as_conv()
        model.set_submodule(name, conv.to(p.device, p.dtype) if p is not None else conv)
    return model, names


class BasicBlock(nn.Module):
    """Two 3x3 convs with BatchNorm; identity or option-A shortcut (none for plain nets)."""

    def __init__(self, in_planes: int, planes: int, stride: int = 1, shortcut: bool = True):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu1 = nn.ReLU(inplace=True)
        self.relu2 = nn.ReLU(inplace=True)
        self.use_shortcut = shortcut
        if shortcut and (stride != 1 or in_planes != planes):
            self.shortcut: nn.Module = PadShortcut(stride, (planes - in_planes) // 2,
                                                   in_planes)
        else:
            self.shortcut = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.use_shortcut:
            out = out + self.shortcut(x)
        return self.relu2(out)


class CifarResNet(nn.Module):
    """CIFAR ResNet (3 stages, widths 16/32/64) with key names of Idelbayev's checkpoints."""

    def __init__(self, depth: int, num_classes: int = 10, shortcut: bool = True):
        super().__init__()
        if (depth - 2) % 6:
            raise AmcError(f"CIFAR ResNet depth must be 6n+2, got {depth}")
        n = (depth - 2) // 6
        self.conv1 = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.relu = nn.ReLU(inplace=True)
        in_planes = 16
        stages = []
        for planes, stride in ((16, 1), (32, 2), (64, 2)):
            blocks = []
            for i in range(n):
                blocks.append(BasicBlock(in_planes, planes, stride if i == 0 else 1, shortcut))
                in_planes = planes
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3 = stages
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.linear = nn.Linear(64, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d | nn.Linear):
                nn.init.kaiming_normal_(m.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.linear(torch.flatten(self.pool(x), 1))


# ----------------------------------------------------------------------------- VGG / digits

VGG16_CFG: list[int | str] = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M",
                              512, 512, 512, "M", 512, 512, 512, "M"]


class VGGCifar(nn.Module):
    """VGG-16 with BatchNorm for 32x32 inputs, one linear classifier."""

    def __init__(self, num_classes: int = 10, cfg: list[int | str] | None = None):
        super().__init__()
        layers: list[nn.Module] = []
        c = 3
        for v in cfg or VGG16_CFG:
            if v == "M":
                layers.append(nn.MaxPool2d(2))
            else:
                layers += [nn.Conv2d(c, int(v), 3, padding=1, bias=False),
                           nn.BatchNorm2d(int(v)), nn.ReLU(inplace=True)]
                c = int(v)
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(c, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.pool(self.features(x)), 1))


class DigitsCNN(nn.Module):
    """A small CNN for 8x8 single-channel digits: four conv layers, global pooling, linear."""

    def __init__(self, num_classes: int = 10, width: int = 32):
        super().__init__()
        w = width

        def block(cin: int, cout: int) -> list[nn.Module]:
            return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout),
                    nn.ReLU(inplace=True)]

        self.features = nn.Sequential(
            *block(1, w), *block(w, 2 * w), nn.MaxPool2d(2),
            *block(2 * w, 2 * w), *block(2 * w, 4 * w),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(4 * w, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.pool(self.features(x)), 1))
