"""Options and helpers shared by several sub-commands."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from torch import nn

from amc.data.datasets import Dataset, load_dataset
from amc.models.registry import create_model, model_spec


def add_model_args(p: argparse.ArgumentParser, required: bool = True) -> None:
    p.add_argument("--model", required=required, help="registry name (see `amc models`), "
                   "tv:<torchvision name> or package.module:factory")
    p.add_argument("--checkpoint", default=None, help="checkpoint file (state dict or a model "
                   "saved by amc)")
    p.add_argument("--unsafe-load", action="store_true",
                   help="allow pickled objects in the checkpoint (only for files you trust)")
    p.add_argument("--num-classes", type=int, default=None, help="override the class count")
    p.add_argument("--input-size", type=int, nargs=3, default=None, metavar=("C", "H", "W"),
                   help="input size for profiling (default: the model's own)")


def add_data_args(p: argparse.ArgumentParser, default: str | None = "digits") -> None:
    p.add_argument("--data", default=default, help="digits, cifar10 or imagefolder:PATH")
    p.add_argument("--data-dir", default=None, help="folder holding the data (default "
                   "$AMC_DATA_DIR)")
    p.add_argument("--download", action="store_true", help="let torchvision download CIFAR-10")
    p.add_argument("--val-size", type=int, default=None, help="images of train held out as val")
    p.add_argument("--split-seed", type=int, default=0, help="seed of the val draw")


def add_threads(p: argparse.ArgumentParser) -> None:
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")


def model_from_args(args: argparse.Namespace, checkpoint: str | None = None) -> nn.Module:
    from amc.models.checkpoint import checkpoint_model_name

    ckpt = checkpoint or args.checkpoint
    name = args.model
    if name is None and ckpt:
        name = checkpoint_model_name(ckpt)
    if name is None:
        from amc.utils.errors import AmcError

        raise AmcError("no --model given and the checkpoint does not name one; pass --model")
    args.model = name
    return create_model(name, num_classes=args.num_classes, checkpoint=ckpt,
                        unsafe_load=args.unsafe_load)


def input_size(args: argparse.Namespace, data: Dataset | None = None) -> tuple[int, int, int]:
    if getattr(args, "input_size", None):
        return tuple(args.input_size)  # type: ignore[return-value]
    if data is not None:
        return data.input_size
    return model_spec(args.model).input_size


def data_from_args(args: argparse.Namespace) -> Dataset:
    return load_dataset(args.data, data_dir=args.data_dir, val_size=args.val_size,
                        seed=args.split_seed, download=args.download)


def write_json(path: str | Path, obj: object) -> Path:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(p.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, default=str) + "\n")
    tmp.replace(p)
    return p


def check_model_data(model: nn.Module, data: Dataset, name: str) -> None:
    """Fail with one line when the model cannot take the dataset's images or labels."""
    import torch

    from amc.utils.errors import AmcError

    try:
        with torch.inference_mode():
            out = model.eval()(torch.zeros(2, *data.input_size))
    except RuntimeError as e:
        raise AmcError(f"model {name} cannot take {data.name} images of size "
                       f"{'x'.join(map(str, data.input_size))} ({str(e).splitlines()[0][:120]})"
                       f"; pass a model made for {data.name}") from e
    if out.shape[-1] < data.num_classes:
        raise AmcError(f"model {name} has {out.shape[-1]} outputs but {data.name} has "
                       f"{data.num_classes} classes; pass --num-classes {data.num_classes}")
