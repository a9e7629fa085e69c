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
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from torch import nn

from amc.models.cifar import CifarResNet, DigitsCNN, VGGCifar
from amc.utils.errors import AmcError, one_line


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


def input_size_of(name: str | None, override: Sequence[int] | None = None
                  ) -> tuple[int, ...] | None:
    """The input size data is prepared at: ``override`` (``--input-size``) when given, else
    model ``name``'s own (None when neither is known)."""
    if override:
        return tuple(override)
    return model_spec(name).input_size if name else None


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
        try:
            model = _user_factory(name)(num_classes=nc)
        except TypeError as e:  # not a model factory taking num_classes
            raise AmcError(f"{name}(num_classes={nc}) failed ({one_line(e)}); "
                           "give a factory that takes num_classes and returns an nn.Module"
                           ) from e
        if not isinstance(model, nn.Module):
            raise AmcError(f"{name} returned a {type(model).__name__}, not a torch nn.Module; "
                           "give a factory that returns the model")
    if checkpoint is not None:
        from amc.models.checkpoint import load_into

        load_into(model, checkpoint, unsafe_load=unsafe_load, name=name)
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
