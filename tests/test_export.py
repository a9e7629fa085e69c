"""Export: ONNX round trips (dense, structured- and unstructured-pruned), densification and
bad-file detection, unexportable models, TorchScript and weights-only .pt, INT8, the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
import torch_pruning as tp
from onnx import numpy_helper
from torch import nn
from torch.nn.utils import prune

from amc.deploy.export import check_onnx, export_onnx, export_pt, export_torchscript
from amc.deploy.quantize import compression_ratio, quantize_int8
from amc.models import DigitsCNN, create_model
from amc.utils.errors import AmcError

ROOT = Path(__file__).resolve().parents[1]
SIZE = (1, 8, 8)


def small_cnn() -> nn.Module:
    """digits_cnn at width 8 with non-trivial BatchNorm statistics (so folding matters)."""
    torch.manual_seed(0)
    model = DigitsCNN(width=8)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.normal_()
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.normal_()
            m.bias.data.normal_()
    return model.eval()


def sparsify(model: nn.Module, amount: float = 0.8) -> nn.Module:
    for m in model.modules():
        if isinstance(m, nn.Conv2d | nn.Linear):
            prune.l1_unstructured(m, "weight", amount=amount)
            prune.remove(m, "weight")
    return model


def ort_logits(path: Path, x: torch.Tensor) -> np.ndarray:
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: x.numpy()})[0]


@pytest.fixture(scope="module")
def dense(tmp_path_factory: pytest.TempPathFactory) -> tuple[nn.Module, Path, object]:
    """A dense model, its ONNX export and the export report (shared: exports take seconds)."""
    model = small_cnn()
    path = tmp_path_factory.mktemp("dense") / "dense.onnx"
    return model, path, export_onnx(model, path, SIZE)


def test_onnx_round_trip_dense(dense):
    model, path, rep = dense
    assert rep.exporter == "torch.onnx dynamo" and rep.format == "onnx"
    assert rep.max_abs_diff < 1e-4 and rep.channels_ok and not rep.densified
    assert rep.file_bytes == path.stat().st_size and not rep.warnings
    assert not list(path.parent.glob("*.data")) and not list(path.parent.glob("*.tmp"))
    x = torch.randn(5, *SIZE)  # a batch size the export never saw: the batch is dynamic
    with torch.no_grad():
        np.testing.assert_allclose(ort_logits(path, x), model(x).numpy(), atol=1e-4)
    assert {s["layer"] for s in rep.sparsity} == {"features.0", "features.3", "features.7",
                                                  "features.10", "classifier"}
    assert rep.as_dict()["channels"]["export"] == [8, 16, 16, 32, 10]


def test_onnx_round_trip_structured(tmp_path):
    model = small_cnn()
    dg = tp.DependencyGraph().build_dependency(model, example_inputs=torch.randn(1, *SIZE))
    dg.get_pruning_group(model.features[3], tp.prune_conv_out_channels, idxs=[0, 2, 5]).prune()
    dg.get_pruning_group(model.features[10], tp.prune_conv_out_channels,
                         idxs=list(range(0, 32, 4))).prune()
    example = torch.randn(16, *SIZE)
    rep = export_onnx(model, tmp_path / "s.onnx", SIZE, example=example)
    assert rep.max_abs_diff < 1e-4 and rep.channels_ok
    assert sorted(rep.channels["export"]) == sorted([8, 13, 16, 24, 10])
    assert [s["out_channels"] for s in rep.sparsity] == [8, 13, 16, 24, 10]
    with torch.no_grad():
        np.testing.assert_allclose(ort_logits(tmp_path / "s.onnx", example), model(example),
                                   atol=1e-4)


@pytest.fixture(scope="module")
def sparse(tmp_path_factory: pytest.TempPathFactory) -> tuple[nn.Module, Path, object]:
    """The same model with 80 % of each layer's weights zeroed, exported."""
    model = sparsify(small_cnn())
    path = tmp_path_factory.mktemp("sparse") / "sparse.onnx"
    return model, path, export_onnx(model, path, SIZE)


def test_onnx_round_trip_unstructured(sparse):
    rep = sparse[2]
    assert rep.max_abs_diff < 1e-4 and rep.channels_ok and not rep.densified
    for s in rep.sparsity:  # zeros stay zeros through BatchNorm folding
        assert s["torch_zeros"] >= 0.79 and s["export_zeros"] == pytest.approx(s["torch_zeros"])


def test_densified_export_is_detected(dense, sparse, tmp_path):
    # the dense copy's export checked against the pruned model: every zero is gone
    rep = check_onnx(dense[1], sparse[0], SIZE, strict=False)
    assert rep.densified and rep.channels_ok
    assert sum("sparsity lost" in w for w in rep.warnings) == 5
    with pytest.raises(AmcError, match="differs from the PyTorch model"):
        check_onnx(dense[1], sparse[0], SIZE)
    # an export that still matches numerically but stores tiny values instead of zeros
    mp = onnx.load(str(sparse[1]))
    for init in mp.graph.initializer:
        w = numpy_helper.to_array(init).copy()
        if w.ndim >= 2:
            w[w == 0] = 1e-9
            init.CopyFrom(numpy_helper.from_array(w, init.name))
    onnx.save(mp, tmp_path / "eps.onnx")
    rep = check_onnx(tmp_path / "eps.onnx", sparse[0], SIZE)
    assert rep.max_abs_diff < 1e-4 and rep.densified
    assert all(s["export_zeros"] == 0 for s in rep.sparsity)


@pytest.mark.parametrize("content", [b"", b"not an onnx file at all", b"\x08\x07\x12\xff\xff"])
def test_corrupted_onnx_is_a_user_error(tmp_path, content):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(content)
    with pytest.raises(AmcError, match="is not a valid ONNX model") as e:
        check_onnx(bad, small_cnn(), SIZE)
    assert "\n" not in str(e.value)
    with pytest.raises(AmcError, match="does not exist"):
        check_onnx(tmp_path / "missing.onnx", small_cnn(), SIZE)


def test_truncated_onnx_is_a_user_error(dense, tmp_path):
    bad = tmp_path / "cut.onnx"
    bad.write_bytes(dense[1].read_bytes()[:3000])
    with pytest.raises(AmcError, match="is not a valid ONNX model"):
        check_onnx(bad, dense[0], SIZE)


def test_outputs_are_checked_relative_to_their_scale(tmp_path):
    """A randomly initialised network can output ~1e-10: an absolute tolerance of 1e-4 would
    pass a file whose classifier weights are doubled; the relative check refuses it."""
    model = small_cnn()
    with torch.no_grad():
        model.classifier.weight.mul_(1e-10)
        model.classifier.bias.mul_(1e-10)
    path = tmp_path / "tiny.onnx"
    rep = export_onnx(model, path, SIZE)
    assert rep.max_abs_diff < 1e-12 and rep.rel_diff <= 1e-4 and rep.rtol == 1e-4
    proto = onnx.load(str(path))
    big = max(proto.graph.initializer, key=lambda t: (len(t.dims) == 2, np.prod(t.dims)))
    assert tuple(big.dims) == (10, 32)  # the classifier's weight
    big.CopyFrom(numpy_helper.from_array(2 * numpy_helper.to_array(big), big.name))
    bad = tmp_path / "doubled.onnx"
    onnx.save(proto, str(bad))
    with pytest.raises(AmcError, match="of the output scale") as e:
        check_onnx(bad, model, SIZE)
    assert "\n" not in str(e.value)
    lax = check_onnx(bad, model, SIZE, rtol=None)  # informational: measured, not held
    assert lax.max_abs_diff < 1e-4 and lax.rel_diff > 0.1


class SvdNet(nn.Module):
    """Singular values have no ONNX operator: both exporters refuse it."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.linalg.svdvals(self.conv(x))


class Labels(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3)

    def forward(self, x: torch.Tensor) -> list[str]:
        return [str(int(i)) for i in self.conv(x).flatten(1).argmax(1)]


def test_unexportable_models_are_user_errors(tmp_path):
    with pytest.raises(AmcError, match="cannot export SvdNet to ONNX") as e:
        export_onnx(SvdNet(), tmp_path / "svd.onnx", SIZE)
    assert "\n" not in str(e.value) and "svdvals" in str(e.value)
    with pytest.raises(AmcError, match="returns no tensor"):
        export_onnx(Labels(), tmp_path / "labels.onnx", SIZE)
    with pytest.raises(AmcError, match="cannot export Labels to TorchScript"):
        export_torchscript(Labels(), tmp_path / "labels.ts", SIZE)
    assert not list(tmp_path.iterdir())  # nothing written, no temporary left


def test_torchscript_and_pt_keep_pruned_shapes(tmp_path):
    model = create_model("digits_cnn")
    dg = tp.DependencyGraph().build_dependency(model, example_inputs=torch.randn(1, *SIZE))
    dg.get_pruning_group(model.features[0], tp.prune_conv_out_channels,
                         idxs=list(range(10))).prune()
    sparsify(model, 0.5)
    ts = export_torchscript(model, tmp_path / "m.ts", SIZE)
    assert ts.max_abs_diff < 1e-5 and ts.channels_ok and not ts.densified
    pt = export_pt(model, tmp_path / "m.pt", "digits_cnn", SIZE)
    assert pt.max_abs_diff == 0 and pt.channels_ok and pt.channels["export"][0] == 22
    reloaded = create_model("digits_cnn", checkpoint=tmp_path / "m.pt")  # weights only
    assert reloaded.features[0].out_channels == 22
    assert all(s["export_zeros"] == s["torch_zeros"] for s in pt.sparsity)


def test_int8_quantization_runs_and_shrinks(dense, tmp_path):
    model, path, _ = dense
    calib = [torch.randn(32, *SIZE) for _ in range(4)]
    rep = quantize_int8(path, tmp_path / "q.onnx", calib, model=model)
    assert rep.format == "onnx-int8" and rep.channels_ok
    assert rep.file_bytes < 0.6 * path.stat().st_size  # 3-4x smaller on real models
    assert rep.extra["top1_agreement"] >= 0.8
    logits = ort_logits(tmp_path / "q.onnx", torch.randn(7, *SIZE))
    assert logits.shape == (7, 10) and np.isfinite(logits).all()
    ops = {n.op_type for n in onnx.load(str(tmp_path / "q.onnx")).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    with pytest.raises(AmcError, match="calibration"):
        quantize_int8(path, tmp_path / "q2.onnx", [])


def _int8_weights(path: Path) -> list[np.ndarray]:
    """The int8 weight tensors of a QDQ model."""
    from onnx import numpy_helper

    return [numpy_helper.to_array(t) for t in onnx.load(str(path)).graph.initializer
            if t.data_type == onnx.TensorProto.INT8 and len(t.dims) > 1]


TOP7 = 64
"""The largest weight magnitude of onnxruntime's symmetric int8 range with ``reduce_range``
([-64, 64]; the product pairs of uint8 activations stay within 16 bits)."""


def test_int8_weights_take_7_bits_unless_full_range(dense, tmp_path):
    """By default every weight lies in [-64, 64] (7 bits: x86 CPUs without VNNI add pairs of
    uint8 x int8 products in 16 bits, which full 8-bit weights saturate); per-channel MinMax
    with ``full_range`` maps each channel's largest weight to +-127."""
    model, path, _ = dense
    calib = [torch.randn(32, *SIZE) for _ in range(4)]
    for full, top in ((False, TOP7), (True, 127)):
        out = tmp_path / f"q{full}.onnx"
        rep = quantize_int8(path, out, calib, model=model, full_range=full)
        ws = _int8_weights(out)
        assert len(ws) >= 3 and rep.extra["weight_bits"] == (8 if full else 7)
        peaks = [int(np.abs(w).max()) for w in ws]
        assert max(peaks) == top, peaks
        assert f"{rep.extra['weight_bits']}-bit weights" in rep.exporter


def test_cpu_int8_dot_reads_the_flags(tmp_path):
    from amc.utils.precision import cpu_int8_dot

    for flags, expected in (("fpu sse4_1 avx2 fma", False), ("sse4_1 avx2 avx512f avx512_vnni",
                                                              True),
                            ("sse4_1 avx2 avx_vnni", True), ("sse4_1 avx2 amx_int8", True),
                            ("fp asimd asimddp", True)):
        f = tmp_path / f"{abs(hash(flags))}.txt"
        f.write_text(f"flags\t\t: {flags}\n")
        assert cpu_int8_dot(str(f)) is expected, flags


def test_compression_ratio():
    assert compression_ratio(1000, 1000, 32) == 1.0
    assert compression_ratio(1000, 500, 8) == 8.0
    with pytest.raises(AmcError):
        compression_ratio(1000, 0, 8)


# ----------------------------------------------------------------------------- CLI


def amc_cli(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-m", "amc.cli", "export", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)


def run_main(capsys: pytest.CaptureFixture, *args: str) -> tuple[int, str, str]:
    """``amc export ARGS`` in this process (no interpreter start-up: the tests stay fast)."""
    from amc.cli import main

    rc = main(["export", *args])
    out, err = capsys.readouterr()
    return rc, out, err


def assert_one_line_error(rc: int, err: str, text: str) -> None:
    assert rc == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("amc: error: ") and text in lines[0], lines
    assert "Traceback" not in err


@pytest.mark.cli
def test_cli_corrupt_checkpoint(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"garbage")
    res = amc_cli("--model", "digits_cnn", "--checkpoint", str(bad), "--out",
                  str(tmp_path / "m.onnx"))
    assert_one_line_error(res.returncode, res.stderr, "is not a PyTorch checkpoint")
    assert "Traceback" not in res.stdout and not (tmp_path / "m.onnx").exists()


def test_cli_unexportable_model(tmp_path, capsys, monkeypatch):
    (tmp_path / "svdfactory.py").write_text(textwrap.dedent("""
        import torch
        from torch import nn


        class SvdNet(nn.Module):
            def __init__(self):
                super().__init__()
                self.conv = nn.Conv2d(1, 4, 3)

            def forward(self, x):
                return torch.linalg.svdvals(self.conv(x))


        def make(num_classes=10):
            return SvdNet()
        """))
    monkeypatch.syspath_prepend(str(tmp_path))
    rc, _, err = run_main(capsys, "--model", "svdfactory:make", "--input-size", "1", "8", "8",
                          "--out", str(tmp_path / "svd.onnx"))
    assert_one_line_error(rc, err, "cannot export SvdNet to ONNX")
    assert not (tmp_path / "svd.onnx").exists() and not (tmp_path / "svd.onnx.tmp").exists()


def test_cli_export_int8_and_refuse_overwrite(tmp_path, capsys):
    out = tmp_path / "d.onnx"
    rc, stdout, err = run_main(capsys, "--model", "digits_cnn", "--out", str(out), "--int8",
                               "--calib-images", "128")
    assert rc == 0, err
    assert "channels: ok" in stdout and "int8 -> " in stdout and "[7-bit weights" in stdout
    report = json.loads((tmp_path / "d.onnx.json").read_text())
    assert report["int8"]["extra"]["weight_bits"] == 7
    assert report["export"]["max_abs_diff"] < 1e-4
    assert report["checked_on"] == "64 digits test images"
    assert report["int8"]["file_bytes"] < report["export"]["file_bytes"]
    before = out.read_bytes()
    rc, _, err = run_main(capsys, "--model", "digits_cnn", "--out", str(out))
    assert_one_line_error(rc, err, "already exists; pass --force")
    assert out.read_bytes() == before
    rc, _, err = run_main(capsys, "--model", "digits_cnn", "--out", str(tmp_path / "x.pt"),
                          "--int8")
    assert_one_line_error(rc, err, "--int8 writes an ONNX file")
    rc, _, err = run_main(capsys, "--model", "digits_cnn", "--out", str(tmp_path / "y.onnx"),
                          "--int8-full-range")
    assert_one_line_error(rc, err, "--int8-full-range sets the INT8 copy's weights")
    rc, stdout, err = run_main(capsys, "--model", "digits_cnn", "--out", str(tmp_path / "x.pt"))
    assert rc == 0 and "[pt, amc.models.checkpoint.save_model" in stdout, err  # format from suffix
    rc, _, err = run_main(capsys, "--model", "digits_cnn", "--out", str(tmp_path / "x.pt"),
                          "--force")
    assert rc == 0, err
