"""A user's own model factory, loaded by the tests as ``userfactory:tiny``."""

from torch import nn


def tiny(num_classes: int = 10) -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                         nn.Flatten(), nn.Linear(4, num_classes))


NOT_CALLABLE = 3
