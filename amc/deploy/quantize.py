"""Post-training static INT8 quantization of (pruned) models, and compression ratios.

:func:`quantize_int8` writes an INT8 ONNX file from an fp32 ONNX file or a PyTorch model
(exported first with :func:`amc.deploy.export.export_onnx`) and checks it in onnxruntime against the
fp32 file and, given the PyTorch model, that the pruned channel counts survived.

Route: onnxruntime static quantization (QDQ, per-channel int8 weights, uint8 activations,
MinMax calibration on training batches), chosen over torch.ao FX static quantization (x86) by
``scripts/bench_int8.py`` (results/int8_choice.json: CIFAR ResNet-20 pretrained and
25 %-pruned, 2,000 test / 512 calibration images, shared 2-core CPU). Top-1 is a tie (vs fp32:
ORT +0.25/-0.1 points, FX +0.3/-0.8; ORT agrees with fp32 on 97-99 % of images, FX on
94-97 %). Batch-1 latency (1 thread, 3 runs on the loaded CPU): ORT about 0.7 ms, 1.5-2.3x
faster than fp32 and 3.5-12x faster than FX even traced to TorchScript (eager FX runs Python
per op); at batch 500 FX is 1.1-1.9x faster. Files: ORT 3x smaller than fp32, FX 15-20 %
smaller still. ORT quantizes 1.1-2.5x faster, takes any model that exports to ONNX (FX needs
symbolic tracing), writes the format ``amc export`` writes, and torch.ao is deprecated.

Weights take 7 bits by default (onnxruntime's ``reduce_range``): on x86 CPUs without VNNI
(AVX2, AVX-512 before Cascade Lake) the u8s8 kernels add pairs of uint8 x int8 products in 16
bits, which saturate with full 8-bit weights. The ONNX file does not know where it will run,
so the default is the one that is safe on every CPU; ``full_range`` (8-bit weights) is for
targets with VNNI, AMX or ARM dot products. Measured by the same script on an AVX2-only CPU
(results/int8_choice_avx2.json).
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch
from torch import nn

from amc.deploy.export import export_onnx
from amc.deploy.verify import (
    Batch,
    ExportReport,
    check_structure,
    finish,
    one_line,
    onnx_weights,
    open_onnx,
    quiet,
    reference,
    run_onnx,
)
from amc.utils.errors import AmcError
from amc.utils.io import atomic_write
from amc.utils.precision import cpu_int8_dot
from amc.utils.tolerance import relative_diff


def quantize_int8(source: str | Path | nn.Module, out_path: str | Path,
                  calib_batches: Iterable[Batch], input_size: tuple[int, ...] | None = None,
                  model: nn.Module | None = None, per_channel: bool = True,
                  full_range: bool = False) -> ExportReport:
    """Post-training static INT8 quantization with onnxruntime (QDQ, U8S8, MinMax).

    Args:
        source: An fp32 ONNX file, or a PyTorch model (exported first with :func:`export_onnx`).
        out_path: The INT8 ONNX file to write.
        calib_batches: Training batches (N, C, H, W) that set the activation ranges.
        input_size: (C, H, W) of a ``source`` model (default: the batches' shape).
        model: The PyTorch model, for the channel/sparsity check (default: ``source``).
        per_channel: Per-output-channel weight scales.
        full_range: 8-bit weights instead of 7 (for targets whose CPU has VNNI, AMX or ARM
            dot products; x86 CPUs without them saturate).

    Returns:
        Report with the file size; max abs difference and top-1 agreement (``extra``) to the
        fp32 ONNX on up to 4 calibration batches; ``extra['fp32_bytes']``.

    Raises:
        AmcError: without calibration batches, or when the source is invalid or fails.
    """
    import onnxruntime.quantization as oq

    batches = [np.ascontiguousarray(b.detach().cpu().numpy() if torch.is_tensor(b) else b,
                                    dtype=np.float32) for b in calib_batches]
    if not batches:
        raise AmcError("INT8 quantization needs calibration batches; pass training data")
    if model is None and isinstance(source, nn.Module):
        model = source
    kind = "per-channel" if per_channel else "per-tensor"
    bits = 8 if full_range else 7
    report = ExportReport(str(out_path), "onnx-int8", f"onnxruntime quantize_static (QDQ, "
                          f"{kind}, U8S8, {bits}-bit weights, MinMax)")
    with tempfile.TemporaryDirectory() as d, atomic_write(out_path) as tmp:
        fp32, pre = str(source), Path(d) / "pre.onnx"
        if isinstance(source, nn.Module):
            fp32 = export_onnx(source, Path(d) / "fp32.onnx",
                               input_size or batches[0].shape[1:], batches[0][:64]).path
        sess = open_onnx(fp32)[1]
        try:
            with quiet():
                oq.quant_pre_process(fp32, str(pre))
        except Exception as e:
            report.warnings.append(f"onnxruntime pre-processing skipped ({one_line(e)})")
            pre = Path(fp32)
        feeds = iter([{sess.get_inputs()[0].name: b} for b in batches])
        reader = type("Calib", (oq.CalibrationDataReader,), {
            "get_next": lambda self: next(feeds, None)})()
        try:
            with quiet():
                oq.quantize_static(str(pre), str(tmp), reader, quant_format=oq.QuantFormat.QDQ,
                                   per_channel=per_channel, activation_type=oq.QuantType.QUInt8,
                                   weight_type=oq.QuantType.QInt8, reduce_range=not full_range)
        except Exception as e:
            raise AmcError(f"INT8 quantization of {fp32} failed ({one_line(e)})") from e
        qmp, qsess = open_onnx(tmp)
        ref = np.concatenate([run_onnx(sess, x, fp32)[0] for x in batches[:4]])
        got = np.concatenate([run_onnx(qsess, x, str(tmp))[0] for x in batches[:4]])
        report.max_abs_diff = float(np.abs(ref - got).max())
        report.rel_diff = relative_diff(ref, got)
        report.extra = {"fp32_bytes": Path(fp32).stat().st_size, "diff_vs": "fp32 onnx",
                        "calib_batches": len(batches), "calib_images": sum(map(len, batches)),
                        "weight_bits": bits, "checked_on_int8_dot_cpu": cpu_int8_dot()}
        if full_range and not cpu_int8_dot():
            report.warnings.append("8-bit weights checked on a CPU without VNNI, whose int8 "
                                   "kernels saturate with them: the agreement with fp32 here "
                                   "is lower than on the target it is meant for")
        if ref.ndim == 2 and ref.shape[1] > 1:
            report.extra["top1_agreement"] = float((ref.argmax(1) == got.argmax(1)).mean())
        if model is not None:
            layers = reference(model, torch.from_numpy(batches[0][:8]))[1]
            check_structure(report, layers, onnx_weights(qmp))
    return finish(report, out_path)


def compression_ratio(dense_params: int, pruned_params: int, bits: int = 32) -> float:
    """Storage of the dense fp32 model over that of ``pruned_params`` stored at ``bits`` each."""
    if pruned_params <= 0 or bits <= 0:
        raise AmcError("compression ratio needs positive parameter and bit counts")
    return dense_params * 32 / (pruned_params * bits)
