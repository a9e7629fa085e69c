"""A user's own model factory, loaded by the tests as ``userfactory:tiny``."""

from torch import nn


def tiny(num_classes: int = 10) -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                         nn.Flatten(), nn.Linear(4, num_classes))


NOT_CALLABLE = 3


class _Twice(nn.Module):
    """conv2 called twice (issue #13: its cost must count twice, dense and pruned)."""

    def __init__(self, num_classes: int):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16)
        self.conv2, self.fc = nn.Conv2d(16, 16, 3, padding=1), nn.Linear(16, num_classes)

    def forward(self, x):
        x = self.bn1(self.conv1(x)).relu()
        return self.fc(self.conv2(self.conv2(x).relu()).relu().mean((2, 3)))


class _Grouped(nn.Module):
    """A grouped conv with 4 groups of 4 channels (issue #13: not depthwise)."""

    def __init__(self, num_classes: int):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16)
        self.conv2, self.bn2 = nn.Conv2d(16, 32, 3, padding=1, groups=4), nn.BatchNorm2d(32)
        self.conv3, self.fc = nn.Conv2d(32, 32, 1), nn.Linear(32, num_classes)

    def forward(self, x):
        x = self.bn2(self.conv2(self.bn1(self.conv1(x)).relu())).relu()
        return self.fc(self.conv3(x).relu().mean((2, 3)))


class _Normed(nn.Module):
    """Every prunable channel meets a LayerNorm: nothing can be pruned exactly."""

    def __init__(self, num_classes: int):
        super().__init__()
        self.proj, self.norm = nn.Linear(8, 16), nn.LayerNorm(16)
        self.fc = nn.Linear(16, num_classes)

    def forward(self, x):
        return self.fc(self.norm(self.proj(x.mean((1, 2)))))


def twice(num_classes: int = 10) -> nn.Module:
    return _Twice(num_classes)


def grouped(num_classes: int = 10) -> nn.Module:
    return _Grouped(num_classes)


def normed(num_classes: int = 10) -> nn.Module:
    return _Normed(num_classes)
