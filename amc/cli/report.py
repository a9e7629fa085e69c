"""``amc report``: dense vs pruned (and INT8) on accuracy, speed, size and memory, with a
verdict; exit code 1 when the verdict fails, so the report can gate a pipeline."""

from __future__ import annotations

import argparse
import shlex

from amc.config.args import add_dataclass_args, from_args
from amc.report.build import ReportConfig
from amc.utils.errors import AmcError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "report", help="compare a dense and a pruned model (and an INT8 ONNX file): accuracy, "
        "per-class, near-boundary slice, latency, size, memory; exit 1 if the verdict fails",
        description="Writes report.md, report.json and PNGs into --out, and the dense/pruned "
        "ONNX exports into --onnx-dir (default --out). Exit codes: 0 pass, 1 the verdict "
        "fails, 2 bad input.")
    add_dataclass_args(p, ReportConfig, skip=("seed", "command", "val_size", "split_seed"),
                       defaults={"model": None, "data": None},
                       shown={"model": "the model the --pruned file names"})
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
    from pathlib import Path

    import torch

    from amc.cli.common import model_name
    from amc.report.build import build_report
    from amc.report.render import write_report

    if args.data is None:
        raise AmcError("amc report needs the test images; pass --data (digits, cifar10 or "
                       "imagefolder:PATH) and --data-dir")
    if args.model is None and not Path(args.pruned).is_file():
        raise AmcError(f"--pruned file {args.pruned!r} does not exist; pass an existing "
                       "checkpoint")
    model = model_name(args, args.pruned, what=f"--pruned {args.pruned}")
    cfg = from_args(ReportConfig, args, model=model, command=_command(args),
                    threads=args.threads or torch.get_num_threads())
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
