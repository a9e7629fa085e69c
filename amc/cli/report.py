"""``amc report``: dense vs pruned (and INT8) on accuracy, speed, size and memory, with a
verdict; exit code 1 when the verdict fails, so the report can gate a pipeline."""

from __future__ import annotations

import argparse
import shlex

from amc.cli.common import add_data_args, add_threads
from amc.utils.errors import AmcError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "report", help="compare a dense and a pruned model (and an INT8 ONNX file): accuracy, "
        "per-class, near-boundary slice, latency, size, memory; exit 1 if the verdict fails",
        description="Writes report.md, report.json and PNGs into --out, and the dense/pruned "
        "ONNX exports into --onnx-dir (default --out). Exit codes: 0 pass, 1 the verdict "
        "fails, 2 bad input.")
    p.add_argument("--dense", required=True, help="dense checkpoint file")
    p.add_argument("--pruned", required=True, help="pruned model file written by `amc apply`")
    p.add_argument("--int8", default=None, help="INT8 ONNX file (e.g. from `amc export --int8`)")
    p.add_argument("--model", default=None, help="registry name (default: the one stored in "
                   "--pruned)")
    p.add_argument("--num-classes", type=int, default=None, help="override the class count")
    p.add_argument("--unsafe-load", action="store_true", help="allow pickled objects in the "
                   "checkpoints (only for files you trust)")
    add_data_args(p, default=None)
    add_threads(p)
    p.add_argument("--out", required=True, help="folder for report.md, report.json and PNGs")
    p.add_argument("--onnx-dir", default=None, help="folder for dense.onnx and pruned.onnx "
                   "(default: --out)")
    p.add_argument("--max-drop", type=float, default=1.0, help="largest allowed top-1 drop in "
                   "points (default 1.0)")
    p.add_argument("--min-speedup", type=float, default=1.3, help="smallest allowed measured "
                   "PyTorch speed-up at batch 64 (default 1.3)")
    p.add_argument("--flag-points", type=float, default=2.0, help="flag classes that lost more "
                   "than this many points (default 2)")
    p.add_argument("--slice-fraction", type=float, default=0.1, help="share of test images in "
                   "the near-boundary slice (default 0.1)")
    p.add_argument("--runs", type=int, default=30, help="timed runs per model, engine and "
                   "batch size (default 30)")
    p.add_argument("--rounds", type=int, default=3, help="rounds the timed runs are "
                   "interleaved in (default 3)")
    p.add_argument("--force", action="store_true", help="overwrite an existing report")
    p.set_defaults(func=cmd_report)


def _command(args: argparse.Namespace) -> str:
    """The equivalent command line, for the report's provenance."""
    parts = ["amc", "report"]
    for key in ("dense", "pruned", "int8", "model", "num_classes", "data", "data_dir", "out",
                "onnx_dir", "threads", "max_drop", "min_speedup", "flag_points",
                "slice_fraction", "runs", "rounds"):
        if (v := getattr(args, key)) is not None:
            parts += [f"--{key.replace('_', '-')}", str(v)]
    parts += [f"--{f.replace('_', '-')}" for f in ("unsafe_load", "force") if getattr(args, f)]
    return shlex.join(parts)


def cmd_report(args: argparse.Namespace) -> int:
    import torch

    from amc.models.checkpoint import checkpoint_model_name
    from amc.report.build import ReportConfig, build_report
    from amc.report.render import write_report

    if args.data is None:
        raise AmcError("amc report needs the test images; pass --data (digits, cifar10 or "
                       "imagefolder:PATH) and --data-dir")
    model = args.model
    if model is None:
        from pathlib import Path

        if not Path(args.pruned).is_file():
            raise AmcError(f"--pruned file {args.pruned!r} does not exist; pass an existing "
                           "checkpoint")
        model = checkpoint_model_name(args.pruned)
        if model is None:
            raise AmcError(f"--pruned {args.pruned} names no model; pass --model")
    cfg = ReportConfig(model=model, dense=args.dense, pruned=args.pruned, data=args.data,
                       out=args.out, int8=args.int8, data_dir=args.data_dir,
                       onnx_dir=args.onnx_dir, threads=args.threads or torch.get_num_threads(),
                       max_drop=args.max_drop, min_speedup=args.min_speedup, runs=args.runs,
                       rounds=args.rounds, flag_points=args.flag_points,
                       slice_fraction=args.slice_fraction, num_classes=args.num_classes,
                       unsafe_load=args.unsafe_load, force=args.force, command=_command(args))
    rep = build_report(cfg)
    files = write_report(rep, cfg.out)

    acc, lat, v = rep["accuracy"]["models"], rep["latency"], rep["verdict"]
    print(f"{model} on {cfg.data} test: " + ", ".join(
        f"{k} top-1 {a['top1']:.2f}%" for k, a in acc.items()))
    print("speed-up (pruned vs dense, median): " + "; ".join(
        f"{e} " + ", ".join(f"b{b} {s:.2f}x" for b, s in lat["speedup"][e].items())
        for e in lat["speedup"]))
    flagged = rep["per_class"]["flagged"]
    print(f"classes that lost > {cfg.flag_points:g} points: {', '.join(flagged) or 'none'}")
    for c in v["checks"]:
        print(f"  {'pass' if c['pass'] else 'FAIL'}: {c['what']} = {c['value']:.3f} "
              f"({c['rule']} {c['limit']:g})")
    print(f"verdict: {'PASS' if v['pass'] else 'FAIL'} -> {files[0]}")
    return 0 if v["pass"] else 1
