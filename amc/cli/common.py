"""Options and helpers shared by several sub-commands."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from torch import nn

from amc.config.args import add_dataclass_args
from amc.config.blocks import DataConfig, ModelConfig, RunConfig
from amc.data.datasets import Dataset, load_dataset
from amc.models.registry import create_model, input_size_of, model_spec
from amc.utils.errors import AmcError, and_more


def add_model_args(p: argparse.ArgumentParser) -> None:
    """``--model`` (read by :func:`model_name`), ``--checkpoint``, ... (the
    :class:`~amc.config.blocks.ModelConfig` block) and ``--input-size``."""
    add_dataclass_args(p, ModelConfig, **model_option())
    p.add_argument("--input-size", type=int, nargs=3, default=None, metavar=("C", "H", "W"),
                   help="input size for profiling, and the size an image folder's images are "
                        "cropped to (default: the model's own)")


def add_data_args(p: argparse.ArgumentParser, default: str | None = "digits") -> None:
    """The :class:`~amc.config.blocks.DataConfig` block, ``--data`` defaulting to ``default``
    (its ``--input-size`` comes with :func:`add_model_args`)."""
    add_dataclass_args(p, DataConfig, defaults={"data": default}, skip=("input_size",))


def add_threads(p: argparse.ArgumentParser) -> None:
    """``--threads`` (of the :class:`~amc.config.blocks.RunConfig` block)."""
    add_dataclass_args(p, RunConfig, skip=("seed",))


def model_option(fallback: str | None = None) -> dict[str, dict[str, Any]]:
    """``add_dataclass_args``' keywords for a ``--model`` read by :func:`model_name` with
    this ``fallback``: no default value (not given), and the help says what it falls to."""
    text = "the model an amc checkpoint names" + (f", else {fallback}" if fallback else "")
    return {"defaults": {"model": None}, "shown": {"model": text}}


def model_name(args: argparse.Namespace, checkpoint: str | None = None,
               fallback: str | None = None, what: str = "the checkpoint") -> str:
    """The model a command works on: ``--model`` when given, else the one an amc model file
    (``checkpoint``, default ``--checkpoint``; ``what``, in the message) names, else
    ``fallback`` (the command's own default; None: ``--model`` is needed). Sets
    ``args.model`` to it."""
    from amc.models.checkpoint import checkpoint_model_name

    ckpt = checkpoint or args.checkpoint
    name = args.model
    if name is None and ckpt:
        name = checkpoint_model_name(ckpt, args.unsafe_load)
    name = name or fallback
    if name is None:
        why = f"{what} does not name one" if ckpt else "no amc checkpoint names one"
        raise AmcError(f"no --model given and {why}; pass --model")
    args.model = name
    return name


def model_from_args(args: argparse.Namespace, checkpoint: str | None = None) -> nn.Module:
    """The network of ``--model`` (see :func:`model_name`) with the checkpoint's weights."""
    ckpt = checkpoint or args.checkpoint
    return create_model(model_name(args, ckpt), num_classes=args.num_classes, checkpoint=ckpt,
                        unsafe_load=args.unsafe_load)


def input_size(args: argparse.Namespace, data: Dataset | None = None) -> tuple[int, int, int]:
    if getattr(args, "input_size", None):
        return tuple(args.input_size)  # type: ignore[return-value]
    if data is not None:
        return data.input_size
    return model_spec(args.model).input_size


def data_from_args(args: argparse.Namespace) -> Dataset:
    """The dataset of the options; an image folder is cropped to ``--input-size`` or to the
    model's input size."""
    size = input_size_of(getattr(args, "model", None), getattr(args, "input_size", None))
    return load_dataset(args.data, data_dir=args.data_dir, val_size=args.val_size,
                        seed=args.split_seed, download=args.download, input_size=size,
                        loader_workers=getattr(args, "loader_workers", None))


def refuse_overwrite(force: bool, *paths: str | Path, option: str = "--out") -> None:
    """Refuse, before any work, to replace an existing output file unless ``force``."""
    held = [p for p in paths if Path(p).exists()]
    if held and not force:
        raise AmcError(f"{held[0]} already exists; pass --force to overwrite it or choose "
                       f"another {option}")


def refuse_options_with_resume(args: argparse.Namespace, command: str) -> None:
    """``--resume DIR`` continues the run with the settings of ``DIR/config.json``: refuse, in
    one line, any other option given with it (it would be silently ignored)."""
    from amc.cli import build_parser

    defaults = vars(build_parser().parse_args([command]))
    given = ["--" + k.replace("_", "-") for k, v in vars(args).items()
             if k not in ("resume", "func") and k in defaults and v != defaults[k]]
    if given:
        raise AmcError(f"--resume {args.resume} continues the run with the settings in its "
                       f"config.json; drop {and_more(given)} (a run with other settings needs "
                       "its own --out)")
