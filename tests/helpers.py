"""Helpers shared by the tests (the tests folder is on ``sys.path``, as for ``userfactory``)."""

import torch
from torch import nn


def randomise_bn(model: nn.Module, gen: torch.Generator, scale: float = 0.1) -> nn.Module:
    """Draw every BatchNorm2d's statistics and affine parameters away from their defaults
    (means and shifts ~ N(0, scale²), variances and scales in [0.5, 1.5)); returns ``model``."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.num_features, generator=gen) * scale)
                m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
                m.weight.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
                m.bias.copy_(torch.randn(m.num_features, generator=gen) * scale)
    return model
