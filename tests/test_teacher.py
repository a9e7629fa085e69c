"""The distillation teacher: a folded copy of the dense model whose logits are the dense
model's (exactly in fp32, within bf16's rounding under ``amp``), the caller's model left
alone; and the training loop distils through it."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from amc.train.teacher import Teacher


def _cnn(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU(),
                        nn.Conv2d(8, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
                        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10))
    for m in net.modules():  # statistics that are not the identity, so folding matters
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-1, 1)
            m.running_var.uniform_(0.5, 2)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.5, 0.5)
    return net


def _max_rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max())


@pytest.mark.parametrize("channels_last", [False, True])
def test_teacher_logits_are_the_dense_models(channels_last):
    net = _cnn().train()  # the caller's model in training mode, on purpose
    before = copy.deepcopy(net.state_dict())
    x = torch.randn(16, 3, 8, 8)
    t = Teacher(net, torch.device("cpu"), channels_last, amp="off")
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in t.net.modules())  # folded
    ref = copy.deepcopy(net).eval()(x)
    assert _max_rel(t(x), ref) < 1e-5
    # the caller's model: same mode, weights and statistics, BatchNorm still there
    assert net.training and any(isinstance(m, nn.BatchNorm2d) for m in net.modules())
    assert all(torch.equal(v, before[k]) for k, v in net.state_dict().items())
    # a case that must fail: another model's logits are not within the tolerance
    assert _max_rel(Teacher(_cnn(1), torch.device("cpu"), amp="off")(x), ref) > 1e-2


def test_teacher_in_bf16_stays_within_bf16_rounding():
    net = _cnn()
    x = torch.randn(32, 3, 8, 8)
    t = Teacher(net, torch.device("cpu"), amp="bf16")
    assert t.precision.name == "bf16"
    out = t(x)
    assert out.dtype == torch.float32
    ref = copy.deepcopy(net).eval()(x)
    err = _max_rel(out, ref)
    assert 0 < err < 0.05  # rounded (so bf16 did run), by a few bf16 epsilons (2**-8) only


def test_distillation_pulls_the_student_towards_the_teacher():
    """kd_weight 1: the loss is the distillation term alone, so training moves the student's
    logits towards the (folded) teacher's; kd_weight 0 leaves it to the labels."""
    import numpy as np

    from amc.data.datasets import Dataset
    from amc.train.loop import TrainConfig, train

    rng = np.random.default_rng(0)
    images = {s: rng.integers(0, 256, (n, 8, 8, 3), dtype=np.uint8)
              for s, n in (("train", 256), ("val", 64), ("test", 64))}
    data = Dataset("noise", [str(i) for i in range(10)], (0.5,) * 3, (0.25,) * 3, images,
                   {s: rng.integers(0, 10, len(v)).astype(np.int64) for s, v in images.items()},
                   augment=False)
    teacher = _cnn(0).eval()
    x = data.tensors("val")[0]

    def gap(student: nn.Module) -> float:
        with torch.no_grad():
            return float(((student.eval()(x) - teacher(x)) ** 2).mean())

    gaps = {}
    for w in (0.0, 1.0):
        student = _cnn(1)
        start = gap(student)
        train(student, data, TrainConfig(epochs=10, lr=0.1, kd_weight=w, kd_temperature=1.0,
                                          amp="off", eval_splits=()), teacher=teacher)
        gaps[w] = gap(student) / start
    assert gaps[1.0] < 0.3 and gaps[1.0] < gaps[0.0] / 2  # measured 0.14 against 0.55
