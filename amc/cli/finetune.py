"""``amc finetune``: dense or pruned fine-tuning with schedules (options derive from
FinetuneConfig)."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    from amc.cli.common import model_option
    from amc.config.args import add_dataclass_args
    from amc.train.finetune_config import FinetuneConfig

    p = sub.add_parser("finetune", help="fine-tune a dense model or prune it with a schedule "
                       "(oneshot, iterative, cubic, lottery) and fine-tune; --workers N: "
                       "data-parallel on Ray Train")
    add_dataclass_args(p, FinetuneConfig, **model_option(FinetuneConfig.model))
    p.add_argument("--resume", default=None, metavar="DIR",
                   help="continue the killed run in DIR from its last checkpoint with "
                        "the settings of its config.json (no other option with it)")
    p.set_defaults(func=cmd_finetune)


def cmd_finetune(args: argparse.Namespace) -> int:
    import json
    from dataclasses import replace
    from pathlib import Path

    from amc.cli.common import model_name, refuse_options_with_resume
    from amc.config.args import from_args, load_run_config
    from amc.train.finetune import run_finetune
    from amc.train.finetune_config import FinetuneConfig

    if args.resume:  # the folder named here (config.json may hold a path relative elsewhere)
        refuse_options_with_resume(args, "finetune")
        cfg = replace(load_run_config(FinetuneConfig, args.resume, "finetune"), out=args.resume)
        resume = True
    else:
        model_name(args, fallback=FinetuneConfig.model)
        cfg, resume = from_args(FinetuneConfig, args), False
    done = Path(cfg.out) / "summary.json"
    if resume and done.is_file():  # written last: the run is complete
        s = json.loads(done.read_text())
        print(f"{cfg.out} is finished: nothing to resume")
    elif cfg.distributed:  # Ray Train (the cluster side is imported only here)
        from amc.agents.ray_train import run_finetune_ray

        s = run_finetune_ray(cfg, resume=resume)
    else:
        s = run_finetune(cfg, resume=resume)
    f = s["final"]
    start = f.get("start_macs_ratio", 1.0)  # runs before it was recorded started dense
    what = (f"{cfg.schedule} to {cfg.target or cfg.policy}" if cfg.target or cfg.policy
            else "dense" if start >= 1 else f"pruned ({start:.3f} of the architecture's MACs)")
    pruned = s.get("pruned_val_top1")  # after the first pruning, before its training
    before = f" ({pruned:.2f}% pruned, before fine-tuning)" if pruned is not None else ""
    print(f"{cfg.model} {what}: val top-1 {f['val_top1']:.2f}%{before}  test top-1 "
          f"{f['test_top1']:.2f}%  MACs {f['macs_ratio']:.3f}  params {f['params_ratio']:.3f} "
          f"of {'dense' if start >= 1 else 'the start'}  weight sparsity "
          f"{f['weight_sparsity']:.3f}  "
          f"({len(s['rollbacks'])} rollbacks)")
    rounds = [r for r in s.get("rounds", []) if r.get("pruned_val_top1") is not None]
    if rounds:  # what each round's pruning cost and its training won back
        print("rounds, val top-1 after pruning -> after training: " + ", ".join(
            f"{r['round']} {r['pruned_val_top1']:.2f} -> {r['val_top1']:.2f}%" for r in rounds))
    print(f"run directory: {cfg.out} (model.pt, metrics.csv, summary.json, tb/, checkpoints/)")
    return 0
