"""``--score-amp``: scores in mixed precision (bf16 where the device runs it natively), the
networks delivered in fp32."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch
from torch import nn

import amc.utils.precision as prec_mod
from amc.prune.repair import recalibrate_bn
from amc.prune.scoring import ScorerParts, build_scorer
from amc.utils.precision import Precision, cpu_bf16_native, precision

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def scorers(digits_ckpt):
    # recalibration and evaluation only (reconstruction's dense targets and solves are fp32
    # by design: tests/test_pruning.py)
    off = build_scorer("digits_cnn", digits_ckpt, amp="off", reconstruct=False)
    return off, replace(off, amp="bf16")


def _conv_dtypes(fn) -> set[torch.dtype]:
    """The output dtypes of every convolution that runs inside ``fn()``."""
    seen: set[torch.dtype] = set()

    def hook(module, args, out):
        if isinstance(module, nn.Conv2d):
            seen.add(out.dtype)

    handle = torch.nn.modules.module.register_module_forward_hook(hook)
    try:
        fn()
    finally:
        handle.remove()
    return seen


def _bn_buffers(net: nn.Module) -> list[torch.Tensor]:
    return [b for m in net.modules() if isinstance(m, nn.BatchNorm2d)
            for b in (m.running_mean, m.running_var)]


def test_bf16_scores_run_in_bf16_and_rank_like_fp32(scorers):
    off, bf16 = scorers
    n = len(off.pm.units)
    policies = [[0.1] * n, [0.5] * n, [0.8] * n]
    assert _conv_dtypes(lambda: off.score(policies[0])) == {torch.float32}
    assert _conv_dtypes(lambda: bf16.score(policies[0])) == {torch.bfloat16}
    a = [off(r) for r in policies]
    b = [bf16(r) for r in policies]
    # fp32 is the reference path's top-1 exactly; bf16 within 2 % of the images
    assert a == [off.reference(r) for r in policies]
    tol = 200.0 / len(off.y)
    assert max(abs(x - y) for x, y in zip(a, b)) <= max(2.0, tol)
    assert sorted(range(3), key=a.__getitem__) == sorted(range(3), key=b.__getitem__)


def test_delivered_network_is_recalibrated_in_fp32(scorers):
    """``pruned()`` (what compare evaluates and fine-tunes) keeps fp32 statistics whatever
    ``amp``; recalibrating in bf16 would give other ones (the case the check must see)."""
    off, bf16 = scorers
    r = [0.5] * len(off.pm.units)
    want = _bn_buffers(off.pruned(r))
    got = _bn_buffers(bf16.pruned(r))
    assert all(torch.equal(w, g) for w, g in zip(want, got))
    net = bf16.pm.prune(r)
    with bf16.precision.autocast(CPU):  # the scorer's recalibration, in bf16
        recalibrate_bn(net, [bf16.calib[:bf16.recal_size]])
    low = _bn_buffers(net)
    scale = max(float(w.abs().max()) for w in want)
    assert max(float((w - x).abs().max()) for w, x in zip(want, low)) > 1e-4 * scale


def test_amp_travels_to_workers(scorers):
    _, bf16 = scorers
    built = ScorerParts.of(bf16).build()
    assert built.amp == "bf16" and built.precision.dtype == torch.bfloat16


def test_auto_uses_bf16_on_a_cpu_only_for_inference_and_only_where_native(monkeypatch):
    monkeypatch.setattr(prec_mod, "cpu_bf16_native", lambda: True)
    assert precision("auto", CPU, inference=True) == Precision(torch.bfloat16)
    assert precision("auto", CPU) == Precision()  # training stays fp32 on the CPU
    monkeypatch.setattr(prec_mod, "cpu_bf16_native", lambda: False)
    assert precision("auto", CPU, inference=True) == Precision()
    assert precision("bf16", CPU, inference=True) == Precision(torch.bfloat16)
    assert precision("off", CPU, inference=True) == Precision()


def test_native_bf16_is_read_from_the_cpu_flags(tmp_path: Path):
    with_flag, without = tmp_path / "a", tmp_path / "b"
    with_flag.write_text("flags\t\t: fpu avx512f avx512_bf16 avx512_vnni\n")
    without.write_text("flags\t\t: fpu avx512f avx512_vnni\n")
    assert cpu_bf16_native(str(with_flag))
    assert not cpu_bf16_native(str(without))
    assert not cpu_bf16_native(str(tmp_path / "missing"))
