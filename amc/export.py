"""Export of (pruned) models to ONNX, TorchScript or a weights-only ``.pt``, each verified.

Every export is written to a temporary file, reloaded and checked against the PyTorch model
before it replaces the target (a failed export overwrites nothing):

* outputs: the reloaded model (onnxruntime on the CPU for ONNX) runs a real or random batch
  whose size differs from the export batch; the max abs difference must be within ``atol``;
* pruned shapes: the multiset of output-channel counts of the Conv/Gemm weights in the file
  must equal that of the model's conv/linear layers (BatchNorm is folded into the convs, so
  ONNX weights are matched to layers by name, else by shape and per-channel cosine);
* unstructured sparsity: zero fraction per layer in PyTorch and in the file; a layer with
  >= 10 % zeros that has clearly fewer in the file sets ``densified`` and adds a warning.

INT8 after pruning (:func:`quantize_int8`) uses onnxruntime's static post-training
quantization (QDQ, per-channel int8 weights, uint8 activations, MinMax calibration on
training batches). Measured by ``scripts/bench_int8.py`` (results/int8_choice.json) on the
pretrained CIFAR ResNet-20 (2,000 test images, 512 calibration images, 2 threads), against
torch.ao FX static quantization (x86 backend):

    ======================  =======  ======  ============  =============  ========
    route                   top-1 %  file    batch-1 ms    2k images s    quant. s
    ======================  =======  ======  ============  =============  ========
    fp32, onnxruntime       80.9     1.16MB  0.8           1.5            -
    ORT QDQ int8            80.8     0.37MB  0.45          0.65           1.2
    FX int8 (PyTorch)       80.6     0.33MB  4.4 (2.3 TS)  0.55           14
    ======================  =======  ======  ============  =============  ========

Both keep accuracy within 0.3 points; the ORT route is 5-10x faster at batch 1 (FX runs
through Python per op), equal in throughput, 10x faster to produce, works on any graph that
already exported to ONNX (FX needs a symbolically traceable model), and gives a portable
file, while torch.ao quantization is deprecated. See results/int8_choice.json for the run.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import sys
import tempfile
import warnings
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from amc.errors import AmcError

_LAYERS = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d,
           nn.ConvTranspose3d, nn.Linear)
SPARSE_MIN = 0.10  # layers with at least this zero fraction are checked for densification


@dataclass
class ExportReport:
    """What an export wrote and how it compares with the PyTorch model.

    Attributes:
        path: The written file.
        format: ``onnx``, ``onnx-int8``, ``torchscript`` or ``pt``.
        exporter: Tool that wrote the file (e.g. ``torch.onnx dynamo``).
        file_bytes: Size of the file.
        max_abs_diff: Max abs output difference to the reference (None: not measured).
        atol: Tolerance the difference was held to (None: informational only).
        channels_ok: Output-channel counts of the file equal the model's (None: unknown).
        channels: ``torch`` and ``export`` channel lists and unmatched layer names.
        sparsity: Per layer: name, export name, channels, zero fraction in torch and file.
        densified: A layer with >= 10 % zeros lost a clear part of them in the file.
        warnings: Human-readable problems that did not stop the export.
        extra: Format-specific facts (INT8: fp32 size, top-1 agreement, settings).
    """

    path: str
    format: str
    exporter: str
    file_bytes: int = 0
    max_abs_diff: float | None = None
    atol: float | None = None
    channels_ok: bool | None = None
    channels: dict = field(default_factory=dict)
    sparsity: list[dict] = field(default_factory=list)
    densified: bool = False
    warnings: list[str] = field(default_factory=list)
    extra: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(eq=False)
class _Weight:
    name: str
    out_channels: int
    weight: np.ndarray  # PyTorch layout (Gemm/MatMul weights transposed to [out, in])


# ----------------------------------------------------------------------------- helpers


def _one_line(e: BaseException) -> str:
    while e.__cause__ is not None:  # the innermost cause names the real problem
        e = e.__cause__
    lines = re.sub(r"\x1b\[[0-9;]*m", "", str(e)).strip().splitlines()
    msg = lines[0] if lines else type(e).__name__
    return msg if len(msg) <= 200 else msg[:197] + "..."


@contextlib.contextmanager
def _quiet() -> Iterator[list[warnings.WarningMessage]]:
    """Silence stdout/stderr at the file-descriptor level (the exporters print from C++)
    and collect Python warnings."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with tempfile.TemporaryFile() as sink, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        os.dup2(sink.fileno(), 1)
        os.dup2(sink.fileno(), 2)
        try:
            with contextlib.redirect_stdout(io.StringIO()), \
                    contextlib.redirect_stderr(io.StringIO()):
                yield caught
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])


def _batch(input_size: tuple[int, ...], example: np.ndarray | torch.Tensor | None,
           n: int = 3) -> torch.Tensor:
    if example is not None:
        x = torch.as_tensor(np.asarray(example) if not torch.is_tensor(example) else example)
        return x.detach().float().cpu().contiguous()
    return torch.randn(n, *input_size, generator=torch.Generator().manual_seed(0))


def _outputs(out: object) -> list[torch.Tensor]:
    if torch.is_tensor(out):
        return [out]
    if isinstance(out, list | tuple):
        return [t for o in out for t in _outputs(o)]
    if isinstance(out, dict):
        return [t for o in out.values() for t in _outputs(o)]
    return []


def _out_channels(m: nn.Module, w: torch.Tensor) -> int:
    if isinstance(m, nn.ConvTranspose1d | nn.ConvTranspose2d | nn.ConvTranspose3d):
        return int(w.shape[1]) * m.groups
    return int(w.shape[0])


def _reference(model: nn.Module, x: torch.Tensor) -> tuple[list[torch.Tensor], list[_Weight]]:
    """Outputs of ``model`` on ``x`` and its conv/linear layers in first-call order."""
    names = {m: n for n, m in model.named_modules()}
    seen: dict[nn.Module, _Weight] = {}

    def hook(m: nn.Module, args: tuple, out: object) -> None:
        if m not in seen and isinstance(getattr(m, "weight", None), torch.Tensor):
            w = m.weight.detach().cpu()
            seen[m] = _Weight(names[m], _out_channels(m, w), w.numpy().copy())

    hooks = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, _LAYERS)]
    try:
        with torch.no_grad():
            out = _outputs(model(x))
    except Exception as e:
        raise AmcError(f"{type(model).__name__} fails on a batch of shape {tuple(x.shape)} "
                       f"({_one_line(e)}); check --input-size and the data") from e
    finally:
        for h in hooks:
            h.remove()
    if not out:
        raise AmcError(f"{type(model).__name__}.forward() returns no tensor; only models that "
                       "map tensors to tensors can be exported")
    return [o.detach().float() for o in out], list(seen.values())


def _zeros(a: np.ndarray) -> float:
    return float((a == 0).mean()) if a.size else 0.0


def _similarity(a: np.ndarray, b: np.ndarray) -> float:
    """Mean |cosine| of rows: 1 for a weight whose channels were rescaled (folded BN)."""
    a, b = a.reshape(len(a), -1).astype(np.float64), b.reshape(len(b), -1).astype(np.float64)
    den = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    cos = np.where(den > 0, np.abs((a * b).sum(1)) / np.maximum(den, 1e-30), 1.0)
    return float(cos.mean())


def _match(layers: list[_Weight], found: list[_Weight]) -> list[_Weight | None]:
    """For each PyTorch layer the file's weight that holds it: same name if present, else the
    unused weight of the same shape whose channels are most alike (ties: graph order)."""
    free = list(found)
    by_name = {w.name: w for w in found}
    result: list[_Weight | None] = []
    for t in layers:
        cand = by_name.get(t.name + ".weight") or by_name.get(t.name)
        if cand is None or cand not in free or cand.weight.shape != t.weight.shape:
            same = [w for w in free if w.weight.shape == t.weight.shape]
            cand = (same[0] if len(same) == 1 else
                    max(same, key=lambda w: _similarity(t.weight, w.weight), default=None))
        if cand is not None:
            free.remove(cand)
        result.append(cand)
    return result


def _structure(report: ExportReport, layers: list[_Weight], found: list[_Weight]) -> None:
    """Fill the channel and sparsity checks of ``report``."""
    pairs = _match(layers, found)
    used = {id(w) for w in pairs if w is not None}
    report.channels = {
        "torch": [t.out_channels for t in layers], "export": [w.out_channels for w in found],
        "unmatched_torch": [t.name for t, w in zip(layers, pairs) if w is None],
        "unmatched_export": [w.name for w in found if id(w) not in used]}
    report.channels_ok = Counter(report.channels["torch"]) == Counter(report.channels["export"])
    if not report.channels_ok:
        report.warnings.append(f"output channels differ: model {report.channels['torch']}, "
                               f"file {report.channels['export']}")
    for t, w in zip(layers, pairs):
        tz, ez = _zeros(t.weight), None if w is None else _zeros(w.weight)
        report.sparsity.append({"layer": t.name, "export_name": None if w is None else w.name,
                                "out_channels": t.out_channels, "torch_zeros": round(tz, 4),
                                "export_zeros": None if ez is None else round(ez, 4)})
        if ez is not None and tz >= SPARSE_MIN and ez < tz - max(0.02, 0.1 * tz):
            report.densified = True
            report.warnings.append(f"{t.name}: {tz:.0%} zeros in PyTorch but {ez:.0%} in the "
                                   "file (unstructured sparsity lost)")


def _finish(tmp: Path, path: Path, report: ExportReport) -> ExportReport:
    tmp.replace(path)
    report.path, report.file_bytes = str(path), path.stat().st_size
    return report


def _tmp_for(path: str | Path) -> tuple[Path, Path]:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    return p, p.with_name(p.name + ".tmp")


def _max_diff(ref: list[torch.Tensor], got: list[np.ndarray | torch.Tensor], what: str) -> float:
    if len(ref) != len(got):
        raise AmcError(f"{what} has {len(got)} outputs but the model {len(ref)}; re-export it")
    diff = 0.0
    for r, g in zip(ref, got):
        g = torch.as_tensor(np.asarray(g)).float()
        if g.shape != r.shape:
            raise AmcError(f"{what} gives an output of shape {tuple(g.shape)}, the model "
                           f"{tuple(r.shape)}; re-export it")
        diff = max(diff, float((g - r).abs().max()) if r.numel() else 0.0)
    return diff if np.isfinite(diff) else float("inf")


def _hold(report: ExportReport, what: str, strict: bool) -> None:
    d, atol = report.max_abs_diff, report.atol
    if strict and d is not None and atol is not None and not d <= atol:
        raise AmcError(f"{what} differs from the PyTorch model by up to {d:.3g} (atol {atol:g}); "
                       "the export is not faithful: check the model or raise --atol")


# ----------------------------------------------------------------------------- ONNX


def _load_onnx(path: str | Path):
    import onnx

    p = Path(path)
    if not p.is_file():
        raise AmcError(f"ONNX file {str(p)!r} does not exist; pass an exported .onnx file")
    try:
        mp = onnx.load(str(p))
        onnx.checker.check_model(mp)
        if not mp.graph.node:
            raise ValueError("the graph is empty")
    except Exception as e:
        raise AmcError(f"{p} is not a valid ONNX model ({_one_line(e)}); re-export it") from e
    return mp


def _session(path: str | Path):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 3
    so.intra_op_num_threads = torch.get_num_threads()
    try:
        return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    except Exception as e:
        raise AmcError(f"{path} is not a valid ONNX model (onnxruntime: {_one_line(e)}); "
                       "re-export it") from e


def _run(sess, x: np.ndarray) -> list[np.ndarray]:
    inputs = sess.get_inputs()
    if len(inputs) != 1:
        raise AmcError(f"the ONNX model takes {len(inputs)} inputs; only one image input is "
                       "supported")
    return sess.run(None, {inputs[0].name: np.ascontiguousarray(x, dtype=np.float32)})


def _onnx_weights(mp) -> list[_Weight]:
    """Conv/ConvTranspose/Gemm/MatMul weights of the graph in node order, resolved through
    Constant, Identity, Transpose, Mul and DequantizeLinear nodes."""
    from onnx import helper, numpy_helper

    const = {i.name: numpy_helper.to_array(i) for i in mp.graph.initializer}
    out: list[_Weight] = []
    seen: set[str] = set()
    for n in mp.graph.node:
        attrs = {a.name: helper.get_attribute_value(a) for a in n.attribute}
        ins = [const.get(i) for i in n.input]
        if n.op_type == "Constant" and "value" in attrs:
            const[n.output[0]] = numpy_helper.to_array(attrs["value"])
        elif n.op_type == "Identity" and ins[0] is not None:
            const[n.output[0]] = ins[0]
        elif n.op_type == "Transpose" and ins[0] is not None:
            const[n.output[0]] = np.transpose(ins[0], attrs.get("perm"))
        elif n.op_type == "Mul" and len(ins) == 2 and all(i is not None for i in ins):
            const[n.output[0]] = ins[0] * ins[1]
        elif n.op_type == "DequantizeLinear" and ins[0] is not None and ins[1] is not None:
            q, scale = ins[0].astype(np.float32), ins[1].astype(np.float32)
            zp = ins[2].astype(np.float32) if len(ins) > 2 and ins[2] is not None else 0.0
            if scale.ndim == 1 and q.ndim > 1:
                shape = [1] * q.ndim
                shape[attrs.get("axis", 1)] = -1
                scale = scale.reshape(shape)
                zp = np.reshape(zp, shape) if np.ndim(zp) else zp
            const[n.output[0]] = (q - zp) * scale
        if len(n.input) < 2 or ins[1] is None or n.input[1] in seen:
            continue
        w = ins[1]
        if n.op_type == "Conv":
            oc = w.shape[0]
        elif n.op_type == "ConvTranspose":
            oc = w.shape[1] * attrs.get("group", 1)
        elif n.op_type == "Gemm" and w.ndim == 2:
            w = w if attrs.get("transB", 0) else w.T
            oc = w.shape[0]
        elif n.op_type == "MatMul" and w.ndim == 2:
            w, oc = w.T, w.shape[1]
        else:
            continue
        seen.add(n.input[1])
        name = n.input[1].removesuffix("_DequantizeLinear_Output").removesuffix("_quantized")
        out.append(_Weight(name, int(oc), np.ascontiguousarray(w)))
    return out


def check_onnx(path: str | Path, model: nn.Module, input_size: tuple[int, ...],
               example: np.ndarray | torch.Tensor | None = None, atol: float | None = 1e-4,
               strict: bool = True) -> ExportReport:
    """Verify an ONNX file against the PyTorch model it should hold.

    Args:
        path: The ONNX file.
        model: The PyTorch model (put in eval mode).
        input_size: (C, H, W) of one input, used when ``example`` is None.
        example: A real input batch (array or tensor); random inputs when None.
        atol: Tolerance of the max abs output difference (None: do not check).
        strict: Raise when the outputs differ by more than ``atol``.

    Returns:
        The report (``format`` ``onnx``, ``exporter`` read from the file's producer).

    Raises:
        AmcError: if the file is not a valid ONNX model or (strict) outputs differ.
    """
    mp = _load_onnx(path)
    sess = _session(path)
    x = _batch(input_size, example)
    dim0 = sess.get_inputs()[0].shape[0] if sess.get_inputs() else None
    if isinstance(dim0, int) and dim0 != len(x):  # a fixed-batch file: run its own batch size
        x = x.repeat((dim0 + len(x) - 1) // len(x), *[1] * (x.dim() - 1))[:dim0]
    ref, layers = _reference(model.eval(), x)
    try:
        got = _run(sess, x.numpy())
    except AmcError:
        raise
    except Exception as e:
        raise AmcError(f"{path} does not run on a batch of shape {tuple(x.shape)} in "
                       f"onnxruntime ({_one_line(e)}); re-export it") from e
    report = ExportReport(str(path), "onnx", f"{mp.producer_name} {mp.producer_version}".strip(),
                          Path(path).stat().st_size, _max_diff(ref, got, str(path)), atol)
    _structure(report, layers, _onnx_weights(mp))
    _hold(report, str(path), strict)
    return report


def export_onnx(model: nn.Module, path: str | Path, input_size: tuple[int, ...],
                example: np.ndarray | torch.Tensor | None = None, opset: int | None = None,
                dynamic_batch: bool = True, atol: float = 1e-4) -> ExportReport:
    """Export ``model`` to one self-contained ONNX file and verify it in onnxruntime.

    Tries the torch.export-based exporter first, then the TorchScript-based one.

    Args:
        model: The (pruned) model; exported in eval mode.
        path: Target file; replaced only when the export passes the output check.
        input_size: (C, H, W) of one input.
        example: A real batch for the check (random inputs when None).
        opset: ONNX opset (default: the exporter's).
        dynamic_batch: Make the batch dimension dynamic.
        atol: Tolerance of the max abs difference to PyTorch in onnxruntime.

    Returns:
        The :class:`ExportReport`.

    Raises:
        AmcError: if neither exporter handles the model or the outputs differ.
    """
    path, tmp = _tmp_for(path)
    x = _batch(input_size, example)
    x2 = x[:2] if len(x) >= 2 else x.repeat(2, *[1] * (x.dim() - 1))
    was_training = model.training
    model.eval()
    _reference(model, x2)  # a model that cannot even run fails here with a clear message
    errors: list[str] = []
    exporter = ""
    try:
        for dynamo in (True, False):
            kw: dict = {"dynamo": dynamo, "input_names": ["input"], "opset_version": opset}
            if dynamo:
                kw.update(external_data=False, report=False, verbose=False, dynamic_shapes=(
                    {0: torch.export.Dim("batch", min=1)},) if dynamic_batch else None)
            elif dynamic_batch:
                kw["dynamic_axes"] = {"input": {0: "batch"}}
            try:
                with _quiet():
                    torch.onnx.export(model, (x2,), str(tmp), **kw)
                exporter = "torch.onnx dynamo" if dynamo else "torch.onnx torchscript"
                break
            except Exception as e:
                errors.append(f"{'dynamo' if dynamo else 'torchscript'} exporter: "
                              f"{_one_line(e)}")
        if not exporter:
            raise AmcError(f"cannot export {type(model).__name__} to ONNX ({'; '.join(errors)}); "
                           "forward() must map tensors to tensors with ops ONNX supports")
        report = check_onnx(tmp, model, input_size, x, atol)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    finally:
        model.train(was_training)
    report.exporter = exporter
    if errors:
        report.warnings.insert(0, f"dynamo exporter failed, used the torchscript one ({errors[0]})")
    return _finish(tmp, path, report)


# ----------------------------------------------------------------------------- TorchScript, pt


def _state_check(report: ExportReport, layers: list[_Weight], state: dict) -> None:
    found = [_Weight(t.name, t.out_channels if tuple(w.shape) == t.weight.shape
                     else int(w.shape[0]), w.detach().cpu().numpy())
             for t in layers if isinstance(w := state.get(t.name + ".weight"), torch.Tensor)]
    _structure(report, layers, found)


def export_torchscript(model: nn.Module, path: str | Path, input_size: tuple[int, ...],
                       example: np.ndarray | torch.Tensor | None = None,
                       atol: float = 1e-4) -> ExportReport:
    """Trace ``model`` with ``torch.jit.trace``, save it, reload it and verify the outputs.

    Raises:
        AmcError: if tracing fails or the reloaded module's outputs differ.
    """
    path, tmp = _tmp_for(path)
    x = _batch(input_size, example)
    was_training = model.training
    model.eval()
    try:
        ref, layers = _reference(model, x)
        try:
            with _quiet() as caught, torch.no_grad():
                torch.jit.save(torch.jit.trace(model, x[:2] if len(x) > 2 else x), str(tmp))
                loaded = torch.jit.load(str(tmp), map_location="cpu")
            with torch.no_grad():
                got = _outputs(loaded(x))
        except Exception as e:
            raise AmcError(f"cannot export {type(model).__name__} to TorchScript "
                           f"({_one_line(e)}); forward() must map tensors to tensors") from e
        report = ExportReport(str(path), "torchscript", "torch.jit.trace", 0,
                              _max_diff(ref, got, "the TorchScript module"), atol)
        report.warnings += sorted({str(w.message).splitlines()[0] for w in caught
                                   if issubclass(w.category, torch.jit.TracerWarning)})
        _state_check(report, layers, loaded.state_dict())
        _hold(report, "the TorchScript module", True)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    finally:
        model.train(was_training)
    return _finish(tmp, path, report)


def export_pt(model: nn.Module, path: str | Path, model_name: str,
              input_size: tuple[int, ...] | None = None,
              example: np.ndarray | torch.Tensor | None = None,
              atol: float = 1e-6) -> ExportReport:
    """Save a weights-only file that ``create_model(model_name, checkpoint=path)`` restores
    (pruned shapes included, no pickled code), reload it that way and verify it.

    Raises:
        AmcError: if the reloaded model's weights or outputs differ.
    """
    from amc.checkpoint import save_model
    from amc.models import create_model

    path, tmp = _tmp_for(path)
    try:
        save_model(model, tmp, model_name)
        loaded = create_model(model_name, checkpoint=tmp)
        report = ExportReport(str(path), "pt", "amc.checkpoint.save_model (weights only)")
        if input_size is not None or example is not None:
            x = _batch(input_size or (), example)
            was_training = model.training
            ref, layers = _reference(model.eval(), x)
            model.train(was_training)
            report.max_abs_diff = _max_diff(ref, _reference(loaded, x)[0], "the reloaded model")
            report.atol = atol
            _state_check(report, layers, loaded.state_dict())
            _hold(report, "the reloaded model", True)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return _finish(tmp, path, report)


# ----------------------------------------------------------------------------- INT8


def quantize_int8(source: str | Path | nn.Module, out_path: str | Path,
                  calib_batches: Iterable[np.ndarray | torch.Tensor],
                  input_size: tuple[int, ...] | None = None, model: nn.Module | None = None,
                  per_channel: bool = True) -> ExportReport:
    """Post-training static INT8 quantization with onnxruntime (QDQ, calibrated).

    Args:
        source: An fp32 ONNX file, or a PyTorch model (exported with :func:`export_onnx`).
        out_path: The INT8 ONNX file to write.
        calib_batches: Training batches (N, C, H, W) for the activation ranges.
        input_size: (C, H, W); needed only when ``source`` is a model.
        model: The PyTorch model, for the channel/sparsity check (default: ``source``).
        per_channel: Per-output-channel weight scales.

    Returns:
        Report with the file size, ``extra['fp32_bytes']``, and the max abs difference and
        top-1 agreement (``extra['top1_agreement']``) to the fp32 ONNX on calibration data.

    Raises:
        AmcError: without calibration batches, or when the source is not valid.
    """
    import onnxruntime.quantization as oq

    batches = [np.ascontiguousarray(np.asarray(b.detach().cpu() if torch.is_tensor(b) else b),
                                    dtype=np.float32) for b in calib_batches]
    if not batches:
        raise AmcError("INT8 quantization needs calibration batches; pass training data")
    out, tmp = _tmp_for(out_path)
    with tempfile.TemporaryDirectory() as d:
        if isinstance(source, nn.Module):
            model = model or source
            size = input_size or tuple(batches[0].shape[1:])
            fp32 = export_onnx(source, Path(d) / "fp32.onnx", size, batches[0][:64]).path
        else:
            fp32 = str(source)
            _load_onnx(fp32)
        sess = _session(fp32)
        name = sess.get_inputs()[0].name
        pre = Path(d) / "pre.onnx"
        warn: list[str] = []
        try:
            with _quiet():
                oq.quant_pre_process(fp32, str(pre))
        except Exception as e:
            warn.append(f"onnxruntime pre-processing skipped ({_one_line(e)})")
            pre = Path(fp32)

        class Reader(oq.CalibrationDataReader):
            def __init__(self) -> None:
                self.it = iter(batches)

            def get_next(self) -> dict | None:
                b = next(self.it, None)
                return None if b is None else {name: b}

        try:
            with _quiet():
                oq.quantize_static(str(pre), str(tmp), Reader(), quant_format=oq.QuantFormat.QDQ,
                                per_channel=per_channel, activation_type=oq.QuantType.QUInt8,
                                weight_type=oq.QuantType.QInt8)
            qsess = _session(tmp)
            fp_out = [_run(sess, b)[0] for b in batches[:4]]
            q_out = [_run(qsess, b)[0] for b in batches[:4]]
        except AmcError:
            tmp.unlink(missing_ok=True)
            raise
        except Exception as e:
            tmp.unlink(missing_ok=True)
            raise AmcError(f"INT8 quantization of {fp32} failed ({_one_line(e)})") from e
        fp32_bytes = Path(fp32).stat().st_size
    a, b = np.concatenate(fp_out), np.concatenate(q_out)
    report = ExportReport(str(out), "onnx-int8", "onnxruntime quantize_static (QDQ, "
                          f"{'per-channel' if per_channel else 'per-tensor'}, U8S8, MinMax)",
                          max_abs_diff=float(np.abs(a - b).max()), warnings=warn)
    report.extra = {"fp32_bytes": fp32_bytes, "calib_batches": len(batches),
                    "calib_images": int(sum(len(x) for x in batches)), "diff_vs": "fp32 onnx"}
    if a.ndim == 2 and a.shape[1] > 1:
        report.extra["top1_agreement"] = float((a.argmax(1) == b.argmax(1)).mean())
    if model is not None:
        _structure(report, _reference(model.eval(), torch.from_numpy(batches[0][:8]))[1],
                   _onnx_weights(_load_onnx(tmp)))
    return _finish(tmp, out, report)


def compression_ratio(dense_params: int, pruned_params: int, bits: int = 32) -> float:
    """Storage of the dense fp32 model over that of ``pruned_params`` at ``bits`` each."""
    if pruned_params <= 0 or bits <= 0:
        raise AmcError("compression ratio needs positive parameter and bit counts")
    return dense_params * 32 / (pruned_params * bits)
