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


class Elsewhere(nn.Module):
    """A classifier whose parameters report another device: records where its inputs were
    asked to go (``Tensor.to`` to that device is patched to stay on the CPU)."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        return self.fc(x)


def test_top1_moves_the_batches_to_the_model(monkeypatch):
    """``top1`` of a model on a device with data on the CPU (a comparison's delivered
    network scored on the GPU) sends every batch and its labels where the model is."""
    from amc.models.evaluate import top1

    m = Elsewhere()
    x, y = torch.randn(10, 4), torch.randint(0, 3, (10,))
    ref = top1(m, x, y, batch_size=4)
    asked = []
    real_to = torch.Tensor.to

    def to(self, *args, **kwargs):
        if args and isinstance(args[0], torch.device):
            asked.append(args[0])
            return real_to(self, "cpu")
        return real_to(self, *args, **kwargs)

    fake = torch.device("meta")
    monkeypatch.setattr(torch.Tensor, "to", to)
    monkeypatch.setattr(Elsewhere, "parameters",
                        lambda self, recurse=True: iter([torch.empty(0, device=fake)]))
    assert top1(m, x, y, batch_size=4) == ref
    assert asked == [fake] * 6  # 3 batches: inputs and labels
