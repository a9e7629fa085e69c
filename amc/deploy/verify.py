"""Checks shared by the exporters (:mod:`amc.deploy.export`) and INT8 quantization
(:mod:`amc.deploy.quantize`): reference outputs and layer weights of a PyTorch model, the weights
of an ONNX file, matching the two (output channels, sparsity), output comparison, atomic
writes and quiet exporter calls.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
import tempfile
import warnings
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from amc.utils.errors import AmcError, one_line
from amc.utils.onnxrt import ort_session
from amc.utils.tolerance import relative_diff

_LAYERS = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)
SPARSE_MIN = 0.10  # layers with at least this zero fraction are checked for densification
Batch = np.ndarray | torch.Tensor


@dataclass
class ExportReport:
    """What an export wrote and how it compares with the PyTorch model.

    Attributes:
        path: The written file.
        format: ``onnx``, ``onnx-int8``, ``torchscript`` or ``pt``.
        exporter: Tool that wrote it (``torch.onnx dynamo``, ``torch.onnx torchscript``, ...).
        file_bytes: Size of the file.
        max_abs_diff: Max abs output difference to the reference (None: not measured).
        rel_diff: That difference over the reference's max abs output (the checked figure;
            outputs of randomly initialised networks can be ~1e-10, so an absolute
            tolerance would pass any file).
        rtol: Tolerance ``rel_diff`` was held to (None: informational only).
        channels_ok: The file's output-channel counts equal the model's (None: not checked).
        channels: ``torch`` and ``export`` channel lists, unmatched layer/weight names.
        sparsity: Per layer: name, export name, channels, zero fraction in torch and file.
        densified: A layer with >= 10 % zeros lost a clear part of them in the file.
        warnings: Problems that did not stop the export.
        extra: Format-specific facts (INT8: fp32 size, top-1 agreement, calibration).
    """

    path: str
    format: str
    exporter: str
    file_bytes: int = 0
    max_abs_diff: float | None = None
    rel_diff: float | None = None
    rtol: float | None = None
    channels_ok: bool | None = None
    channels: dict = field(default_factory=dict)
    sparsity: list[dict] = field(default_factory=list)
    densified: bool = False
    warnings: list[str] = field(default_factory=list)
    extra: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(eq=False)
class LayerWeight:
    name: str
    out_channels: int  # weight.shape[0]
    weight: np.ndarray  # PyTorch layout (Gemm/MatMul weights as [out, in])


@contextlib.contextmanager
def quiet() -> Iterator[list[warnings.WarningMessage]]:
    """Silence fds 1 and 2 (the exporters print from C++) and collect Python warnings."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with tempfile.TemporaryFile() as sink, warnings.catch_warnings(record=True) as caught, \
            contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        warnings.simplefilter("always")
        os.dup2(sink.fileno(), 1)
        os.dup2(sink.fileno(), 2)
        try:
            yield caught
        finally:
            for fd, old in ((1, saved[0]), (2, saved[1])):
                os.dup2(old, fd)
                os.close(old)


def input_batch(input_size: tuple[int, ...], example: Batch | None) -> torch.Tensor:
    if example is None:
        return torch.randn(3, *input_size, generator=torch.Generator().manual_seed(0))
    x = example if torch.is_tensor(example) else torch.from_numpy(np.asarray(example))
    return x.detach().float().cpu().contiguous()


def tensor_outputs(out: object) -> list[torch.Tensor]:
    if isinstance(out, dict):
        out = list(out.values())
    if torch.is_tensor(out):
        return [out.detach().float()]
    return [t for o in out for t in tensor_outputs(o)] if isinstance(out, list | tuple) else []


def reference(model: nn.Module, x: torch.Tensor) -> tuple[list[torch.Tensor], list[LayerWeight]]:
    """Outputs of ``model`` (put in eval mode) on ``x``; conv/linear layers in call order."""
    names, seen = {m: n for n, m in model.named_modules()}, {}

    def hook(m: nn.Module, args: tuple, out: object) -> None:
        if m not in seen and isinstance(w := getattr(m, "weight", None), torch.Tensor):
            seen[m] = LayerWeight(names[m], w.shape[0], w.detach().cpu().numpy().copy())

    hooks = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, _LAYERS)]
    try:
        with torch.no_grad():
            out = tensor_outputs(model.eval()(x))
    except Exception as e:
        raise AmcError(f"{type(model).__name__} fails on a batch of shape {tuple(x.shape)} "
                       f"({one_line(e)}); check --input-size and the data") from e
    finally:
        for h in hooks:
            h.remove()
    if not out:
        raise AmcError(f"{type(model).__name__}.forward() returns no tensor; only models that "
                       "map tensors to tensors can be exported")
    return out, list(seen.values())


def channel_similarity(a: np.ndarray, b: np.ndarray) -> float:
    """Mean |cosine| of output channels: 1 when channels were only rescaled (folded BN)."""
    a, b = a.reshape(len(a), -1).astype(np.float64), b.reshape(len(b), -1).astype(np.float64)
    den = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    return float(np.where(den > 0, np.abs((a * b).sum(1)) / np.maximum(den, 1e-30), 1).mean())


def check_structure(report: ExportReport, layers: list[LayerWeight],
                    found: list[LayerWeight]) -> None:
    """Match file weights to layers; fill the channel and sparsity checks of ``report``."""
    free, by_name, pairs = list(found), {w.name: w for w in found}, []
    for t in layers:
        w = by_name.get(t.name + ".weight") or by_name.get(t.name)
        if w is None or w not in free or w.weight.shape != t.weight.shape:
            same = [f for f in free if f.weight.shape == t.weight.shape]
            w = same[0] if len(same) == 1 else max(
                same, key=lambda f: channel_similarity(t.weight, f.weight), default=None)
        if w is not None:
            free.remove(w)
        pairs.append(w)
    ch = report.channels = {"torch": [t.out_channels for t in layers],
                            "export": [w.out_channels for w in found],
                            "unmatched_torch": [t.name for t, w in zip(layers, pairs) if not w],
                            "unmatched_export": [w.name for w in free]}
    report.channels_ok = Counter(ch["torch"]) == Counter(ch["export"])
    if not report.channels_ok:
        report.warnings.append(f"output channels differ: model {ch['torch']}, file "
                               f"{ch['export']}")
    for t, w in zip(layers, pairs):
        tz = float((t.weight == 0).mean())
        ez = None if w is None else float((w.weight == 0).mean())
        report.sparsity.append({"layer": t.name, "export_name": w and w.name,
                                "out_channels": t.out_channels, "torch_zeros": round(tz, 4),
                                "export_zeros": None if ez is None else round(ez, 4)})
        if ez is not None and tz >= SPARSE_MIN and ez < tz - max(0.02, 0.1 * tz):
            report.densified = True
            report.warnings.append(f"{t.name}: {tz:.0%} zeros in PyTorch but {ez:.0%} in the "
                                   "file (unstructured sparsity lost)")


def compare_outputs(report: ExportReport, ref: list[torch.Tensor], got: list, what: str,
             strict: bool = True) -> None:
    """Set ``report.max_abs_diff`` and ``report.rel_diff``; raise (``strict``) when the
    relative difference exceeds ``report.rtol``."""
    got = [torch.as_tensor(np.asarray(g)).float() for g in got]
    if [g.shape for g in got] != [r.shape for r in ref]:
        raise AmcError(f"{what} gives outputs of shapes {[tuple(g.shape) for g in got]}, the "
                       f"model {[tuple(r.shape) for r in ref]}; re-export it")
    d = max((float((g - r).abs().max()) for r, g in zip(ref, got) if r.numel()), default=0.0)
    report.max_abs_diff = d if np.isfinite(d) else float("inf")
    report.rel_diff = relative_diff(ref, got)
    if strict and report.rtol is not None and not report.rel_diff <= report.rtol:
        scale = max((float(r.abs().max()) for r in ref if r.numel()), default=0.0)
        raise AmcError(f"{what} differs from the PyTorch model by up to {d:.3g}, "
                       f"{report.rel_diff:.3g} of the output scale {scale:.3g} (rtol "
                       f"{report.rtol:g}); the export is not faithful: check the model or --rtol")


def finish(report: ExportReport, path: str | Path) -> ExportReport:
    report.path, report.file_bytes = str(path), Path(path).stat().st_size
    return report


def open_onnx(path: str | Path):
    """(ModelProto, onnxruntime CPU session) of a checked, single-input ONNX file."""
    import onnx

    if not Path(path).is_file():
        raise AmcError(f"ONNX file {str(path)!r} does not exist; pass an exported .onnx file")
    try:
        mp = onnx.load(str(path))
        onnx.checker.check_model(mp)
        if not mp.graph.node:
            raise ValueError("the graph is empty")
        sess = ort_session(path, torch.get_num_threads())
    except Exception as e:
        raise AmcError(f"{path} is not a valid ONNX model ({one_line(e)}); re-export it") from e
    if len(sess.get_inputs()) != 1:
        raise AmcError(f"{path} has {len(sess.get_inputs())} inputs; give a one-input model")
    return mp, sess


def run_onnx(sess, x: Batch, what: str) -> list[np.ndarray]:
    try:
        return sess.run(None, {sess.get_inputs()[0].name: np.ascontiguousarray(x, np.float32)})
    except Exception as e:
        raise AmcError(f"{what} does not run on a batch of shape {tuple(x.shape)} in "
                       f"onnxruntime ({one_line(e)}); re-export it") from e


def onnx_weights(mp) -> list[LayerWeight]:
    """Conv/Gemm/MatMul weights in node order, also behind (per-channel) DequantizeLinear."""
    from onnx import helper, numpy_helper

    const = {i.name: numpy_helper.to_array(i) for i in mp.graph.initializer}
    out: list[LayerWeight] = []
    for n in mp.graph.node:
        at = {a.name: helper.get_attribute_value(a) for a in n.attribute}
        ins = [const.get(i) for i in n.input]
        if n.op_type == "DequantizeLinear" and ins[0] is not None and ins[1] is not None:
            q, scale = ins[0].astype(np.float32), ins[1].astype(np.float32)
            zp = ins[2].astype(np.float32) if len(ins) > 2 and ins[2] is not None else 0.0
            if scale.ndim == 1 and q.ndim > 1:  # per channel along ``axis``
                shape = [-1 if i == at.get("axis", 1) % q.ndim else 1 for i in range(q.ndim)]
                scale, zp = scale.reshape(shape), np.reshape(zp, shape) if np.ndim(zp) else zp
            const[n.output[0]] = (q - zp) * scale
        w = ins[1] if len(ins) > 1 else None
        if w is None or any(n.input[1] == x.name for x in out):
            continue
        if n.op_type in ("Gemm", "MatMul") and w.ndim == 2:
            w = w if n.op_type == "Gemm" and at.get("transB", 0) else w.T
        elif n.op_type != "Conv":
            continue
        out.append(LayerWeight(n.input[1], w.shape[0], w))
    for w in out:  # QDQ graphs feed the layers through "<name>_DequantizeLinear_Output"
        w.name = w.name.removesuffix("_DequantizeLinear_Output")
    return out
