"""The short fine-tune proxy reward (amc.prune.proxy): it trains, and without steps it is the
plain scorer."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from amc.models.registry import create_model
from amc.prune.proxy import FinetuneScorer, short_finetune
from amc.prune.scoring import Scorer
from amc.prune.units import PrunableModel


@pytest.fixture(scope="module")
def parts():
    g = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    pm = PrunableModel(create_model("digits_cnn"), (1, 8, 8), "all")
    x, y = torch.randn(64, 1, 8, 8, generator=g), torch.randint(0, 10, (64,), generator=g)
    cx, cy = torch.randn(128, 1, 8, 8, generator=g), torch.randint(0, 10, (128,), generator=g)
    return pm, x, y, cx, cy


def test_short_finetune_lowers_the_training_loss(parts):
    pm, _, _, cx, cy = parts
    net = pm.prune([0.5] * len(pm.units))
    with torch.no_grad():
        before = float(F.cross_entropy(net.eval()(cx), cy))
    short_finetune(net, cx, cy, steps=30, batch_size=64, lr=0.05)
    with torch.no_grad():
        after = float(F.cross_entropy(net(cx), cy))
    assert after < 0.9 * before
    assert not net.training


def test_no_steps_is_the_plain_scorer_and_steps_change_the_score(parts):
    pm, x, y, cx, cy = parts
    plain = Scorer(pm, x, y, calib=cx, calib_y=cy, bn_recalib=True, recal_size=64)
    ratios = [0.4] * len(pm.units)
    same = FinetuneScorer.from_scorer(plain, cx, cy, ft_steps=0)
    assert same.score(ratios).top1 == plain.score(ratios).top1
    n0 = plain.pruned(ratios)
    n1 = FinetuneScorer.from_scorer(plain, cx, cy, ft_steps=10, ft_lr=0.05).pruned(ratios)
    w0, w1 = (next(m.parameters()).detach() for m in (n0, n1))
    assert (w0 - w1).abs().max() > 1e-4 * w0.abs().max()  # the steps moved the weights
