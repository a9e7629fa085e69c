"""``amc.utils.device.placed``: an evaluation on a device moves a network kept elsewhere there
for the call and back after it, and leaves one already there alone (checked on the CPU with a
network that records its moves instead of making them)."""

from __future__ import annotations

import torch
from torch import nn

from amc.models.evaluate import predict
from amc.utils.device import placed


class Recorder(nn.Linear):
    """A linear layer that records ``.to`` calls and stays on the CPU."""

    def __init__(self):
        super().__init__(4, 3)
        self.moves: list[torch.device] = []

    def to(self, *args, **kwargs):
        self.moves.append(torch.device(args[0]))
        return self


def test_placed_moves_there_and_back():
    m = Recorder()
    with placed(m, "cuda:0") as inner:
        assert inner is m and m.moves == [torch.device("cuda:0")]
    assert m.moves == [torch.device("cuda:0"), torch.device("cpu")]


def test_placed_moves_back_after_an_error():
    m = Recorder()
    try:
        with placed(m, "cuda"):
            raise RuntimeError("boom")
    except RuntimeError:
        pass
    assert m.moves[-1] == torch.device("cpu")


def test_placed_leaves_a_network_on_its_device_alone():
    m = Recorder()
    out = predict(m, torch.randn(5, 4), device="cpu")
    assert m.moves == [] and out.shape == (5, 3)
