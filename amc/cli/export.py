"""``amc export``: write a (pruned) model as ONNX, TorchScript or a weights-only ``.pt``,
verified against PyTorch, optionally with a calibrated INT8 ONNX copy."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from amc.cli.common import (
    add_data_args,
    add_model_args,
    add_threads,
    data_from_args,
    input_size,
    model_from_args,
)
from amc.utils.errors import AmcError
from amc.utils.io import write_json

FORMATS = ("onnx", "torchscript", "pt")
TORCH_SUFFIXES = {".pt": "pt", ".pth": "pt", ".ts": "torchscript", ".jit": "torchscript"}
"""The --out suffixes of PyTorch files and the --format each picks by default (else onnx)."""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="export a (pruned) model to ONNX, TorchScript or .pt, "
                       "verified against PyTorch; --int8 adds a calibrated INT8 ONNX copy",
                       description="Without --data, digits is used when the model takes 1x8x8 "
                       "images; otherwise the check runs on random inputs (and --int8 needs "
                       "--data for calibration).")
    add_model_args(p)
    add_data_args(p, default=None)
    add_threads(p)
    p.add_argument("--format", choices=FORMATS, default=None, help="file format (default: from "
                   "the --out suffix, .pt/.pth -> pt, .ts/.jit -> torchscript, else onnx)")
    p.add_argument("--out", required=True, help="file to write; its report goes to OUT.json")
    p.add_argument("--int8", action="store_true", help="also write <out stem>.int8.onnx: static "
                   "INT8 (onnxruntime QDQ, per-channel) calibrated on training images")
    p.add_argument("--int8-full-range", action="store_true", help="INT8 weights of 8 bits "
                   "instead of 7: only for a target whose CPU has VNNI, AMX or ARM dot "
                   "products (x86 CPUs without them saturate: -3.7 top-1 points on an AVX2 "
                   "CPU, results/int8_choice_avx2.json)")
    p.add_argument("--calib-images", type=int, default=512, help="training images for INT8 "
                   "calibration (default 512)")
    p.add_argument("--batch-size", type=int, default=64, help="images per check/calibration "
                   "batch (default 64)")
    p.add_argument("--rtol", type=float, default=1e-4, help="largest max abs output difference "
                   "between the file and PyTorch allowed, relative to PyTorch's max abs output "
                   "(default 1e-4)")
    p.add_argument("--force", action="store_true", help="overwrite existing output files")
    p.set_defaults(func=cmd_export)


def _batches(args: argparse.Namespace, size: tuple[int, int, int]):
    """(check batch, calibration batches, description) from --data, or random inputs."""
    name = args.data or ("digits" if tuple(size) == (1, 8, 8) else None)
    if name is None:
        if args.int8:
            raise AmcError("--int8 needs training images for calibration; pass --data (digits, "
                           "cifar10 or imagefolder:PATH) and --data-dir")
        return None, [], "random inputs"
    args.data = name
    data = data_from_args(args)
    rng = np.random.default_rng(0)
    x_test = data.tensors("test")[0]
    example = x_test[np.sort(rng.permutation(len(x_test))[:args.batch_size])]
    calib = list(data.calibration(args.calib_images, 0)[0].split(args.batch_size))
    return example, calib, f"{len(example)} {name} test images"


def cmd_export(args: argparse.Namespace) -> int:
    from amc.cost.macs import count_params
    from amc.deploy.export import export_onnx, export_pt, export_torchscript
    from amc.deploy.quantize import compression_ratio, quantize_int8
    from amc.models.registry import create_model

    out = Path(args.out)
    suffix = out.suffix.lower()
    args.format = args.format or TORCH_SUFFIXES.get(suffix, "onnx")
    # a PyTorch suffix holds pt or TorchScript (.pt is common for both); none or another: any
    if (suffix == ".onnx" and args.format != "onnx") or (
            suffix in TORCH_SUFFIXES and args.format == "onnx"):
        raise AmcError(f"--out {out} and --format {args.format} disagree (an ONNX file and "
                       "a PyTorch one); change the suffix or --format")
    if args.int8_full_range and not args.int8:
        raise AmcError("--int8-full-range sets the INT8 copy's weights; pass --int8 with it")
    if args.int8 and args.format != "onnx":
        raise AmcError("--int8 writes an ONNX file; use it with --format onnx")
    if args.batch_size < 1 or args.rtol < 0:
        raise AmcError("--batch-size must be >= 1 and --rtol >= 0")
    int8_out = out.with_name(out.stem + ".int8.onnx") if args.int8 else None
    targets = [out, out.with_name(out.name + ".json")] + ([int8_out] if int8_out else [])
    existing = [str(p) for p in targets if p.exists()]
    if existing and not args.force:
        raise AmcError(f"{existing[0]} already exists; pass --force to overwrite it or choose "
                       "another --out")
    model = model_from_args(args)
    example, calib, checked_on = _batches(args, input_size(args))
    size = tuple(example.shape[1:]) if example is not None else input_size(args)
    if args.format == "onnx":
        rep = export_onnx(model, out, size, example, rtol=args.rtol)
    elif args.format == "torchscript":
        rep = export_torchscript(model, out, size, example, rtol=args.rtol)
    else:
        rep = export_pt(model, out, args.model, size, example, rtol=args.rtol)
    q = (quantize_int8(out, int8_out, calib, model=model, full_range=args.int8_full_range)
         if int8_out else None)

    dense, params = count_params(create_model(args.model, num_classes=args.num_classes)), \
        count_params(model)
    summary = {"model": args.model, "checkpoint": args.checkpoint, "input_size": list(size),
               "checked_on": checked_on, "params": params, "dense_params": dense,
               "compression_fp32": round(compression_ratio(dense, params, 32), 3),
               "compression_int8": round(compression_ratio(dense, params, 8), 3) if q else None,
               "export": rep.as_dict(), "int8": q.as_dict() if q else None}
    report_path = write_json(out.with_name(out.name + ".json"), summary)

    print(f"{args.model} -> {out} [{rep.format}, {rep.exporter}, {rep.file_bytes / 1e6:.3f} MB]")
    print(f"  max abs diff {rep.max_abs_diff:.2g}, {rep.rel_diff:.2g} of the output scale "
          f"(rtol {args.rtol:g}) on {checked_on}")
    n = len(rep.channels.get("torch", []))
    print(f"  channels: {'ok' if rep.channels_ok else 'DIFFER'} ({n} conv/linear layers)")
    sparse = [s for s in rep.sparsity if s["torch_zeros"] >= 0.10]
    if sparse:
        mean = sum(s["torch_zeros"] for s in sparse) / len(sparse)
        kept = "LOST in some layers" if rep.densified else "kept (stored, so no smaller file)"
        print(f"  sparsity: {len(sparse)}/{len(rep.sparsity)} layers >= 10% zeros (mean "
              f"{mean:.0%}), {kept}")
    else:
        print("  sparsity: no layer has >= 10% zeros")
    print(f"  params {params / 1e6:.3f}M vs {dense / 1e6:.3f}M dense: "
          f"{summary['compression_fp32']:.2f}x smaller than dense fp32")
    if q:
        agree = q.extra.get("top1_agreement")
        print(f"  int8 -> {q.path} [{q.extra['weight_bits']}-bit weights, "
              f"{q.file_bytes / 1e6:.3f} MB, fp32 file / int8 file "
              f"{q.extra['fp32_bytes'] / q.file_bytes:.1f}x"
              + (f", top-1 agreement with fp32 {agree:.1%}" if agree is not None else "")
              + f"]; {summary['compression_int8']:.2f}x smaller than dense fp32")
    for w in rep.warnings + (q.warnings if q else []):
        print(f"  warning: {w}")
    print(f"  report -> {report_path}")
    return 0
