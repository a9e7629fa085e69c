"""``amc models``, ``amc profile``, ``amc eval`` and ``amc demo``."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from amc.cli.common import (
    add_data_args,
    add_model_args,
    add_threads,
    data_from_args,
    input_size,
    model_from_args,
    refuse_overwrite,
)
from amc.models.evaluate import check_model_data
from amc.utils.errors import AmcError
from amc.utils.io import write_json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("models", help="list the model registry")
    p.add_argument("--torchvision", action="store_true", help="also list tv:<name> models")
    p.set_defaults(func=cmd_models)

    p = sub.add_parser("profile", help="per-layer MACs and parameters of a model")
    add_model_args(p)
    p.add_argument("--json", default=None, help="also write the rows to this JSON file")
    p.add_argument("--force", action="store_true", help="replace an existing --json file")
    p.set_defaults(func=cmd_profile)

    p = sub.add_parser("eval", help="top-1/top-5, MACs, params and images/s of a model")
    add_model_args(p)
    add_data_args(p)
    add_threads(p)
    p.add_argument("--split", default="test", help="train, val or test (default: test)")
    p.add_argument("--batch-size", type=int, default=None, help="evaluation batch (default: "
                   "about two million pixels: 500 images at 64 px, 40 at 224 px)")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("demo", help="the embedded end-to-end demo on digits (no files needed)")
    p.add_argument("--out", default="runs/demo", help="run directory")
    p.add_argument("--episodes", type=int, default=100, help="AMC search episodes")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--budget", default="flops:0.5",
                   help="the search's budget (e.g. flops:0.2: tighter, where policies differ)")
    p.set_defaults(func=cmd_demo)


def cmd_models(args: argparse.Namespace) -> int:
    from amc.models.registry import list_models, model_spec

    for name in list_models(include_torchvision=args.torchvision):
        s = model_spec(name)
        print(f"{name:28s} input {'x'.join(map(str, s.input_size)):10s} "
              f"classes {s.num_classes:<5d} {s.dataset}")
    return 0


def cmd_profile(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from amc.cost.macs import count_params, layer_costs

    if args.json:
        refuse_overwrite(args.force, args.json, option="--json")
    model = model_from_args(args)
    size = input_size(args)
    try:
        rows = layer_costs(model, size)
    except RuntimeError as e:
        raise AmcError(f"model {args.model} cannot take inputs of size "
                       f"{'x'.join(map(str, size))} ({str(e).splitlines()[0][:120]}); pass "
                       "the --input-size C H W it was made for") from e
    total_macs = sum(r.macs for r in rows)
    total_params = count_params(model)
    table = Table(title=f"{args.model} at {'x'.join(map(str, size))}")
    for col in ("layer", "type", "in", "out", "k", "s", "output", "MACs", "params", "share"):
        table.add_column(col, justify="left" if col in ("layer", "type") else "right")
    for r in rows:
        table.add_row(r.name, r.type, str(r.in_channels), str(r.out_channels), str(r.kernel),
                      str(r.stride), f"{r.out_hw[0]}x{r.out_hw[1]}", f"{r.macs:,}",
                      f"{r.params:,}", f"{100 * r.macs / max(total_macs, 1):.1f}%")
    Console(width=140).print(table)
    print(f"total: {total_macs / 1e6:.2f}M MACs, {total_params / 1e6:.3f}M params")
    if args.json:
        write_json(args.json, {"model": args.model, "input_size": size, "macs": total_macs,
                               "params": total_params, "layers": [r.as_dict() for r in rows]})
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from amc.cost.macs import model_cost
    from amc.data.datasets import check_split
    from amc.models.evaluate import evaluate_split
    from amc.utils.device import resolve_device

    check_split(args.split)
    model = model_from_args(args)
    data = data_from_args(args)
    check_model_data(model, data, args.model)
    macs, params = model_cost(model, data.input_size)
    # a streamed split (an image folder's test images) is read batch by batch
    res = evaluate_split(model.to(resolve_device(args.device)), data, args.split,
                         resolve_device(args.device), args.batch_size, show_progress=True)
    print(f"{args.model} on {args.data}/{args.split} ({res.n} images): top-1 {res.top1:.2f}%  "
          f"top-5 {res.top5:.2f}%  MACs {macs / 1e6:.2f}M  params {params / 1e6:.3f}M  "
          f"{res.images_per_s:.0f} images/s")
    if not args.checkpoint:
        print("note: no --checkpoint, so these are the model's randomly initialised weights; "
              "pass --checkpoint to evaluate trained ones")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from amc.cli.demo import run_demo

    t = time.perf_counter()
    run_demo(Path(args.out), episodes=args.episodes, seed=args.seed, budget=args.budget)
    print(f"demo finished in {time.perf_counter() - t:.0f} s")
    return 0
