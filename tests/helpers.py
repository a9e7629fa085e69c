"""Helpers shared by the tests (the tests folder is on ``sys.path``, as for ``userfactory``)."""

from collections.abc import Sequence

import numpy as np
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


def noise_episodes(noise, mu: Sequence[float], n: int) -> np.ndarray:
    """The actions in [0, 1] (μ + noise) that an :class:`amc.agents.noise.TruncatedNormalNoise`
    gives ``n`` episodes of one env whose actor always asks ``mu`` (one action per unit), one
    row per episode."""
    step = {"t": 0}

    def actor(obs):
        return np.array([[2.0 * mu[step["t"] % len(mu)] - 1.0]])

    noise.actor = actor
    noise.observe(np.zeros((1, 11), np.float32))
    rows = []
    for _ in range(n):
        row = []
        for _ in mu:
            row.append(mu[step["t"] % len(mu)] + float(noise()[0, 0]) / 2.0)
            step["t"] += 1
        noise.episodes_ended([0])
        rows.append(row)
    return np.array(rows)
