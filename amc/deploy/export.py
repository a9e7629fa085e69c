"""Verified export of (pruned) models to ONNX, TorchScript or a weights-only ``.pt``.

Each export is written to a temporary file, reloaded and checked, and only then replaces the
target. Checks: max abs output difference, relative to the model's max abs output, within
``rtol`` (:data:`amc.utils.tolerance.RTOL` by default) on a batch whose size differs from
the export batch (onnxruntime on the CPU for ONNX); the multiset of output-channel counts of
the file's Conv/Gemm weights equals the model's conv/linear layers (pruned shapes survived);
per-layer zero fractions, ``densified`` when a layer with >= 10 % zeros has clearly fewer in
the file. BatchNorm is folded into the convs and initializer names may differ, so file
weights are matched to layers by name, else by shape and per-channel |cosine| (folding only
rescales output channels), ties in graph order.

INT8 quantization of an exported model lives in :mod:`amc.deploy.quantize`.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from amc.deploy.verify import (
    Batch,
    ExportReport,
    LayerWeight,
    check_structure,
    compare_outputs,
    finish,
    input_batch,
    one_line,
    onnx_weights,
    open_onnx,
    quiet,
    reference,
    run_onnx,
    tensor_outputs,
)
from amc.utils.errors import AmcError
from amc.utils.io import atomic_write
from amc.utils.tolerance import RTOL

__all__ = ["ExportReport", "check_onnx", "export_onnx", "export_pt", "export_torchscript"]


def check_onnx(path: str | Path, model: nn.Module, input_size: tuple[int, ...],
               example: Batch | None = None, rtol: float | None = RTOL,
               strict: bool = True) -> ExportReport:
    """Verify an ONNX file against the PyTorch model it should hold.

    Args:
        path: The ONNX file.
        model: The PyTorch model (left in eval mode).
        input_size: (C, H, W) of one input, for random inputs when ``example`` is None.
        example: A real input batch.
        rtol: Tolerance of the max abs output difference relative to the model's max abs
            output (None: not checked).
        strict: Raise when the outputs differ by more than ``rtol``.

    Raises:
        AmcError: if the file is not a valid ONNX model, or (strict) the outputs differ.
    """
    mp, sess = open_onnx(path)
    x = input_batch(input_size, example)
    dim0 = sess.get_inputs()[0].shape[0]
    if isinstance(dim0, int) and dim0 != len(x):  # a fixed-batch file: feed its batch size
        x = x.repeat(-(-dim0 // len(x)), *[1] * (x.dim() - 1))[:dim0]
    ref, layers = reference(model, x)
    report = ExportReport(str(path), "onnx", f"{mp.producer_name} {mp.producer_version}".strip(),
                          Path(path).stat().st_size, rtol=rtol)
    got = run_onnx(sess, x, str(path))
    check_structure(report, layers, onnx_weights(mp))
    compare_outputs(report, ref, got, str(path), strict)
    return report


def export_onnx(model: nn.Module, path: str | Path, input_size: tuple[int, ...],
                example: Batch | None = None, opset: int | None = None,
                dynamic_batch: bool = True, rtol: float = RTOL) -> ExportReport:
    """Export ``model`` to one self-contained ONNX file and verify it in onnxruntime.

    The torch.export-based (dynamo) exporter is tried first, then the TorchScript-based one.

    Args:
        model: The (pruned) model; exported in eval mode, its mode restored afterwards.
        path: Target file; replaced only when the export passes the checks.
        input_size: (C, H, W) of one input.
        example: A real batch for the check (random inputs when None).
        opset: ONNX opset (default: the exporter's).
        dynamic_batch: Make the batch dimension dynamic.
        rtol: Tolerance of the max abs difference to PyTorch, relative to PyTorch's max abs
            output.

    Raises:
        AmcError: if neither exporter handles the model or the outputs differ.
    """
    x = input_batch(input_size, example)
    x2 = x[:2] if len(x) >= 2 else x.repeat(2, *[1] * (x.dim() - 1))
    was_training, errors, exporter = model.training, [], ""
    try:
        reference(model, x2)  # a model that cannot even run fails here with a clear message
        with atomic_write(path) as tmp:
            for dynamo in (True, False):
                kw: dict = {"dynamo": dynamo, "input_names": ["input"], "opset_version": opset}
                if dynamo:
                    kw.update(external_data=False, report=False, verbose=False, dynamic_shapes=(
                        {0: torch.export.Dim("batch", min=1)},) if dynamic_batch else None)
                elif dynamic_batch:
                    kw["dynamic_axes"] = {"input": {0: "batch"}}
                try:
                    with quiet():
                        torch.onnx.export(model, (x2,), str(tmp), **kw)
                    exporter = f"torch.onnx {'dynamo' if dynamo else 'torchscript'}"
                    break
                except Exception as e:
                    errors.append(f"{'dynamo' if dynamo else 'torchscript'}: {one_line(e)}")
            if not exporter:
                raise AmcError(f"cannot export {type(model).__name__} to ONNX ("
                               f"{'; '.join(errors)}); forward() must map tensors to tensors "
                               "with operators ONNX supports")
            report = check_onnx(tmp, model, input_size, x, rtol)
    finally:
        model.train(was_training)
    report.exporter = exporter
    if errors:
        report.warnings.insert(0, f"fell back to the torchscript exporter ({errors[0]})")
    return finish(report, path)


def _check_loaded(report: ExportReport, model: nn.Module, loaded: nn.Module, x: torch.Tensor,
                  what: str) -> None:
    """Compare a reloaded module with ``model``: outputs on ``x``, weight shapes, zeros."""
    was_training = model.training
    ref, layers = reference(model, x)
    model.train(was_training)
    try:
        with torch.no_grad():
            got = tensor_outputs(loaded(x))
    except Exception as e:
        raise AmcError(f"{what} does not run on a batch of shape {tuple(x.shape)} "
                       f"({one_line(e)}); the model is not exportable this way") from e
    state = loaded.state_dict()
    found = [LayerWeight(t.name, w.shape[0], w.detach().cpu().numpy()) for t in layers
             if torch.is_tensor(w := state.get(t.name + ".weight"))]
    check_structure(report, layers, found)
    compare_outputs(report, ref, got, what)


def export_torchscript(model: nn.Module, path: str | Path, input_size: tuple[int, ...],
                       example: Batch | None = None, rtol: float = RTOL) -> ExportReport:
    """Trace ``model`` (``torch.jit.trace``) on 2 inputs, save, reload and verify it.

    Raises:
        AmcError: if tracing fails or the reloaded module's outputs differ.
    """
    x, was_training = input_batch(input_size, example), model.training
    report = ExportReport(str(path), "torchscript", "torch.jit.trace", rtol=rtol)
    with atomic_write(path) as tmp:
        try:
            with quiet() as caught, torch.no_grad():
                torch.jit.save(torch.jit.trace(model.eval(), x[:2]), str(tmp))
                loaded = torch.jit.load(str(tmp), map_location="cpu")
        except Exception as e:
            raise AmcError(f"cannot export {type(model).__name__} to TorchScript "
                           f"({one_line(e)}); forward() must map tensors to tensors") from e
        finally:
            model.train(was_training)
        report.warnings += sorted({str(w.message).splitlines()[0] for w in caught
                                   if issubclass(w.category, torch.jit.TracerWarning)})
        _check_loaded(report, model, loaded, x, "the TorchScript module")
    return finish(report, path)


def export_pt(model: nn.Module, path: str | Path, model_name: str,
              input_size: tuple[int, ...] | None = None, example: Batch | None = None,
              rtol: float = 1e-6) -> ExportReport:
    """Save a weights-only file that ``create_model(model_name, checkpoint=path)`` restores,
    pruned shapes included and no pickled code; reload it that way and verify it.

    Raises:
        AmcError: if the reloaded model's weights or outputs differ.
    """
    from amc.models.checkpoint import save_model
    from amc.models.registry import create_model, model_spec

    report = ExportReport(str(path), "pt", "amc.models.checkpoint.save_model (weights only)",
                          rtol=rtol)
    with atomic_write(path) as tmp:
        save_model(model, tmp, model_name)
        loaded = create_model(model_name, checkpoint=tmp)
        x = input_batch(input_size or model_spec(model_name).input_size, example)
        _check_loaded(report, model, loaded, x, "the reloaded model")
    return finish(report, path)


def export(model: nn.Module, path: str | Path, input_size: tuple[int, ...],
           model_name: str | None = None, example: Batch | None = None) -> ExportReport:
    """Export and verify ``model`` in the format ``path``'s suffix names (``amc.export``):
    ``.onnx`` (checked in ONNX Runtime), ``.ts``/``.torchscript`` or ``.pt`` (weights only,
    needs ``model_name``)."""
    suffix = Path(path).suffix.lower()
    if suffix == ".onnx":
        return export_onnx(model, path, input_size, example)
    if suffix in (".ts", ".torchscript"):
        return export_torchscript(model, path, input_size, example)
    if suffix == ".pt":
        if model_name is None:
            raise AmcError("a .pt export needs model_name (the registry name that rebuilds it)")
        return export_pt(model, path, model_name, input_size, example)
    raise AmcError(f"cannot tell the export format of {str(path)!r}; end it in .onnx, .ts or .pt")
