"""The ``amc`` command line: one console script with sub-commands.

Every user error ends with a one-line ``amc: error: ...`` message and exit code 2. Heavy
imports (the RL side, Ray) happen inside the commands that need them.
"""

from __future__ import annotations

import argparse
import sys

from amc.utils import allocator
from amc.utils.errors import AmcError


class OneLineParser(argparse.ArgumentParser):
    """argparse that reports a bad command line on one line, exit code 2."""

    def error(self, message: str):  # type: ignore[override]
        sys.stderr.write(f"amc: error: {message} (see `{self.prog} --help`)\n")
        raise SystemExit(2)


def build_parser() -> argparse.ArgumentParser:
    from amc.cli import core

    parser = OneLineParser(prog="amc", description="AutoML compression: find per-layer pruning "
                           "ratios (AMC), then fine-tune, verify and export the smaller model.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=OneLineParser)
    core.register(sub)
    for name in ("prune", "search", "finetune", "export", "report", "compare", "submit", "jobs"):
        mod = _optional(name)
        if mod is not None:
            mod.register(sub)
    return parser


def _optional(name: str):
    import importlib

    try:
        return importlib.import_module(f"amc.cli.{name}")
    except ModuleNotFoundError as e:
        if e.name == f"amc.cli.{name}":
            return None
        raise


OUTPUT_OPTIONS = ("out", "json", "onnx_dir")
"""Options that name a file or folder a command writes: checked before the command runs."""


def check_args(args: argparse.Namespace) -> None:
    """Checks every command shares, before it reads or writes anything: counts and sizes
    (:func:`~amc.config.args.check_counts`), that ``--device`` exists here (not for a
    cluster's workers, which have their own) and that each output can be written."""
    from amc.config.args import check_counts
    from amc.utils.device import resolve_device
    from amc.utils.io import check_writable

    check_counts(args)
    if getattr(args, "device", None) and not getattr(args, "address", None):
        resolve_device(args.device)
    if getattr(args, "resume", None):
        return  # the run folder exists; its own config names it
    for name in OUTPUT_OPTIONS:
        if getattr(args, name, None):
            check_writable(args.__dict__[name], "--" + name.replace("_", "-"))


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``amc`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        check_args(args)
        allocator.settle()  # process-wide, like the thread count: here, at the entry point
        if getattr(args, "threads", None):
            import torch

            torch.set_num_threads(args.threads)
        rc = args.func(args)
    except AmcError as e:
        msg = " ".join(line.strip() for line in str(e).splitlines() if line.strip())
        sys.stderr.write(f"amc: error: {msg}\n")
        return 2
    except OSError as e:  # a file-system refusal the checks above could not foresee
        if not e.filename:
            raise
        sys.stderr.write(f"amc: error: {e.strerror or e}: {e.filename}; check that path and "
                         "its permissions\n")
        return 2
    except KeyboardInterrupt:
        sys.stderr.write("amc: interrupted\n")
        return 130
    return int(rc or 0)

