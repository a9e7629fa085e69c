"""Model registry in the style of timm: ``create_model(name, **kwargs)`` and ``list_models()``.

Names:
    * ``resnet20/32/44/56/110``: CIFAR ResNets of He et al. (2016) with option-A shortcuts,
      state-dict compatible with the public checkpoints in ``../shared/models``;
    * ``plain20``: ResNet-20 without shortcuts; ``vgg16_cifar``: VGG-16 with BatchNorm;
    * ``digits_cnn``: a small CNN for the embedded 8x8 ``digits`` dataset;
    * ``tv:<name>``: any torchvision classification model (``weights=None`` by default);
    * ``package.module:factory``: a user's own model factory.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from amc.utils.errors import AmcError


@dataclass(frozen=True)
class ModelSpec:
    """What the registry knows about a model name.

    Attributes:
        name: Registry name.
        input_size: Default (C, H, W) input.
        num_classes: Default number of classes.
        dataset: Dataset the model is meant for (informational).
    """

    name: str
    input_size: tuple[int, int, int]
    num_classes: int
    dataset: str


# ----------------------------------------------------------------------------- CIFAR ResNets


class PadShortcut(nn.Module):
    """Option-A shortcut: subsample by the stride and zero-pad the missing channels."""

    def __init__(self, stride: int, pad: int):
        super().__init__()
        self.stride = stride
        self.pad = pad

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x[:, :, :: self.stride, :: self.stride]
        return F.pad(x, (0, 0, 0, 0, self.pad, self.pad))


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
            self.shortcut: nn.Module = PadShortcut(stride, (planes - in_planes) // 2)
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


# ----------------------------------------------------------------------------- registry

_REGISTRY: dict[str, tuple[Callable[..., nn.Module], ModelSpec]] = {}


def register(name: str, input_size: tuple[int, int, int], num_classes: int, dataset: str):
    """Decorator that adds a factory to the registry under ``name``."""

    def wrap(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        _REGISTRY[name] = (fn, ModelSpec(name, input_size, num_classes, dataset))
        return fn

    return wrap


for _d in (20, 32, 44, 56, 110):
    register(f"resnet{_d}", (3, 32, 32), 10, "cifar10")(
        lambda num_classes=10, _d=_d: CifarResNet(_d, num_classes))
register("plain20", (3, 32, 32), 10, "cifar10")(
    lambda num_classes=10: CifarResNet(20, num_classes, shortcut=False))
register("vgg16_cifar", (3, 32, 32), 10, "cifar10")(lambda num_classes=10: VGGCifar(num_classes))
register("digits_cnn", (1, 8, 8), 10, "digits")(lambda num_classes=10: DigitsCNN(num_classes))


def _torchvision_names() -> list[str]:
    import torchvision

    return sorted(torchvision.models.list_models(module=torchvision.models))


def list_models(include_torchvision: bool = False) -> list[str]:
    """Names that :func:`create_model` accepts (torchvision ones as ``tv:<name>``)."""
    names = sorted(_REGISTRY)
    if include_torchvision:
        names += [f"tv:{n}" for n in _torchvision_names()]
    return names


def model_spec(name: str) -> ModelSpec:
    """Default input size and class count for ``name`` (torchvision/user: ImageNet sizes)."""
    if name in _REGISTRY:
        return _REGISTRY[name][1]
    if name.startswith("tv:"):
        return ModelSpec(name, (3, 224, 224), 1000, "imagenet")
    if ":" in name:
        return ModelSpec(name, (3, 32, 32), 10, "user")
    raise _unknown(name)


def _unknown(name: str) -> AmcError:
    return AmcError(f"unknown model {name!r}; choose one of {', '.join(list_models())}, "
                    "tv:<torchvision name> or package.module:factory (see `amc models`)")


def create_model(name: str, num_classes: int | None = None, checkpoint: str | Path | None = None,
                 pretrained: bool = False, unsafe_load: bool = False) -> nn.Module:
    """Build a model by registry name and optionally load a checkpoint.

    Args:
        name: A registry name, ``tv:<torchvision name>`` or ``package.module:factory``.
        num_classes: Output classes (default: the model's own).
        checkpoint: A checkpoint file (state dict, ``{"state_dict": ...}``, or a pruned
            model saved by ``amc apply``); pruned shapes are restored from it.
        pretrained: For ``tv:`` models, download torchvision's default weights (needs network).
        unsafe_load: Allow pickled objects in the checkpoint (only for files you trust).

    Returns:
        The model in eval mode.
    """
    spec = model_spec(name)
    nc = num_classes or spec.num_classes
    if name in _REGISTRY:
        model = _REGISTRY[name][0](num_classes=nc)
    elif name.startswith("tv:"):
        import torchvision

        tv_name = name[3:]
        if tv_name not in _torchvision_names():
            raise _unknown(name)
        weights = "DEFAULT" if pretrained else None
        kwargs = {} if pretrained else {"num_classes": nc}
        try:
            model = torchvision.models.get_model(tv_name, weights=weights, **kwargs)
        except Exception as e:  # network or weights problems
            raise AmcError(f"could not build {name}: {e}; without network use weights=None "
                           "and --checkpoint") from e
    else:
        model = _user_factory(name)(num_classes=nc)
    if checkpoint is not None:
        from amc.models.checkpoint import load_into

        load_into(model, checkpoint, unsafe_load=unsafe_load)
    return model.eval()


def _user_factory(name: str) -> Callable[..., nn.Module]:
    mod_name, _, attr = name.partition(":")
    try:
        fn = getattr(importlib.import_module(mod_name), attr)
    except (ImportError, AttributeError, ValueError) as e:
        raise _unknown(name) from e
    if not callable(fn):
        raise AmcError(f"{name} is not callable; give package.module:factory")
    return fn
