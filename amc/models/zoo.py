"""torchvision classifiers at the smallest input each architecture accepts.

The conformance benchmark (``scripts/bench_zoo.py``) and its CI test prune every classifier
of ``torchvision.models`` with random weights; small inputs keep that affordable on a CPU.
Most networks run at 32x32; AlexNet needs 64 and Inception-v3 75; MaxViT's partition grid
fixes it at 224; ViTs are built for an image of 2x2 patches (``image_size`` changes only the
position embedding).
"""

from __future__ import annotations

import warnings

from torch import nn

DEFAULT_SIZE = 32
SIZES = {"alexnet": 64, "inception_v3": 75, "maxvit_t": 224}
VIT_PATCH = {"vit_b_16": 16, "vit_b_32": 32, "vit_l_16": 16, "vit_l_32": 32, "vit_h_14": 14}


def classifier_names() -> list[str]:
    """Every classifier of ``torchvision.models``, sorted."""
    import torchvision

    return sorted(torchvision.models.list_models(module=torchvision.models))


def family(name: str) -> str:
    """The architecture family of a torchvision classifier (``resnet50`` -> ``resnet``,
    ``efficientnet_v2_s`` -> ``efficientnet_v2``, ``regnet_y_400mf`` -> ``regnet_y``)."""
    parts = name.split("_")
    if parts[0] in ("efficientnet", "swin") and len(parts) > 2 or parts[0] in (
            "mobilenet", "regnet"):
        return "_".join(parts[:2])
    return "wide_resnet" if parts[0] == "wide" else parts[0].rstrip("0123456789")


def small_input(name: str) -> tuple[tuple[int, int, int], dict]:
    """(input size, extra ``get_model`` keyword arguments) of a classifier's small build."""
    if name in VIT_PATCH:
        size = 2 * VIT_PATCH[name]
        return (3, size, size), {"image_size": size}
    size = SIZES.get(name, DEFAULT_SIZE)
    kwargs = {"init_weights": True} if name in ("googlenet", "inception_v3") else {}
    return (3, size, size), kwargs


def build_small(name: str, num_classes: int = 1000) -> tuple[nn.Module, tuple[int, int, int],
                                                              dict]:
    """A randomly initialised classifier at its small input: (model in eval mode, input
    size, the keyword arguments it was built with)."""
    import torchvision

    size, kwargs = small_input(name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = torchvision.models.get_model(name, weights=None, num_classes=num_classes,
                                             **kwargs)
    return model.eval(), size, kwargs
