"""``amc baseline``, ``amc sensitivity`` and ``amc apply``."""

from __future__ import annotations

import argparse
from pathlib import Path

from amc.cli.common import (
    data_from_args,
    model_from_args,
    model_option,
    refuse_overwrite,
)
from amc.models.evaluate import check_model_data
from amc.utils.errors import AmcError


def scorer_from_args(args: argparse.Namespace):
    """(model, data, Scorer) from the common options."""
    from amc.prune.scoring import build_scorer

    model = model_from_args(args)
    data = data_from_args(args)
    check_model_data(model, data, args.model)
    scorer = build_scorer(args.model, args.checkpoint, args.data, args.data_dir, args.val_size,
                          args.split_seed, args.val_limit, args.units, args.criterion,
                          args.round_to, args.bn_recalib, args.reconstruct, args.calib_size,
                          args.seed, args.unsafe_load, args.num_classes, net=model,
                          drop_blocks=getattr(args, "drop_blocks", False))
    return model, data, scorer


def register(sub: argparse._SubParsersAction) -> None:
    from amc.config.args import add_dataclass_args
    from amc.prune.configs import ApplyConfig, BaselineConfig, SensitivityConfig

    p = sub.add_parser("baseline", help="find a policy with uniform, global (Torch-Pruning's "
                       "global ranking), sensitivity, random or blocks (with --drop-blocks)")
    add_dataclass_args(p, BaselineConfig, **model_option())
    p.set_defaults(func=cmd_baseline)

    p = sub.add_parser("sensitivity", help="per-unit sensitivity sweep: CSV and PNG")
    add_dataclass_args(p, SensitivityConfig, **model_option())
    p.set_defaults(func=cmd_sensitivity)

    p = sub.add_parser("apply", help="prune a model to a policy and save it")
    add_dataclass_args(p, ApplyConfig, **model_option())
    p.set_defaults(func=cmd_apply)


def _with_workers(args: argparse.Namespace, scorer, fn):
    """Run ``fn(map_fn)`` with evaluations on Ray actors when ``--workers`` > 1."""
    if getattr(args, "workers", 0) and args.workers > 1:
        from amc.agents.parallel import ray_map  # the Ray side, imported only when asked for
        from amc.agents.ray_runtime import ray_session

        with ray_session(num_cpus=args.workers):
            return fn(ray_map(scorer, args.workers))
    return fn(None)


def cmd_baseline(args: argparse.Namespace) -> int:
    from amc.prune.baselines import STRATEGIES, run_strategy
    from amc.prune.budget import Budget
    from amc.prune.latency_table import LatencySpec
    from amc.prune.policy import make_policy
    from amc.prune.rescore import rest_of_val

    if args.strategy not in STRATEGIES:
        raise AmcError(f"unknown strategy {args.strategy!r}; use one of {', '.join(STRATEGIES)}")
    budget = Budget.parse(args.budget, LatencySpec.from_config(args))
    refuse_overwrite(args.force, args.out)
    _, data, scorer = scorer_from_args(args)
    rest = rest_of_val(scorer, data.tensors("val"))
    ratios, info = _with_workers(args, scorer, lambda m: run_strategy(
        args.strategy, scorer, budget, args.max_ratio, args.seed, args.n_random, m,
        rescore_top=args.rescore_top, rest=rest, fill=args.fill_vectors))
    pol = make_policy(scorer.pm, ratios, args.model, budget, args.strategy, args.seed,
                      args.max_ratio, {"val_top1": info["val_top1"]},
                      seconds=info["seconds"], bn_recalib=args.bn_recalib,
                      reconstruct=args.reconstruct)
    pol.save(args.out)
    lat = (f"  latency {pol.achieved['latency_ratio']:.3f} (table)"
           if "latency_ratio" in pol.achieved else "")
    print(f"{args.strategy}: val top-1 {info['val_top1']:.2f}%  MACs "
          f"{pol.achieved['macs_ratio']:.3f}  params {pol.achieved['params_ratio']:.3f}{lat} of "
          f"dense  ({info['seconds']:.1f} s) -> {args.out}")
    return 0


def cmd_sensitivity(args: argparse.Namespace) -> int:
    from amc.prune.baselines import sensitivity_sweep, write_sensitivity

    png = Path(args.out).with_suffix(".png")
    refuse_overwrite(args.force, args.out, png)
    _, _, scorer = scorer_from_args(args)
    dense, acc = _with_workers(args, scorer, lambda m: sensitivity_sweep(scorer, map_fn=m))
    write_sensitivity(args.out, [u.name for u in scorer.pm.units], dense, acc, png=png,
                      title=f"{args.model} on {args.data} val: per-unit sensitivity "
                            f"({scorer.pm.mode} units, {args.criterion})")
    print(f"dense val top-1 {dense:.2f}%; wrote {args.out} and {png}")
    return 0


def cmd_apply(args: argparse.Namespace) -> int:

    from amc.cost.macs import model_cost
    from amc.models.checkpoint import save_model
    from amc.models.evaluate import top1
    from amc.prune.policy import apply_policy, load_policy, prunable_for
    from amc.prune.repair import recalibrate_bn, reconstruct

    policy = load_policy(args.policy)
    refuse_overwrite(args.force, args.out)
    if args.model is None:
        args.model = policy.model
    model = model_from_args(args)
    data = data_from_args(args)
    check_model_data(model, data, args.model)
    calib = data.calibration(args.calib_size, args.seed)
    pruned = apply_policy(model, policy, args.model, calib)
    if args.reconstruct:  # fitted in a recalibration pass, as the search's scores are
        pm = prunable_for(policy, model, calib)
        reconstruct(pm, pruned, policy.ratios_for(u.name for u in pm.units), calib[0][:256],
                    recalibrate=args.bn_recalib)
    if args.bn_recalib:  # the statistics on the whole calibration draw
        recalibrate_bn(pruned, calib[0].split(128))
    macs, params = model_cost(pruned, data.input_size)
    save_model(pruned, args.out, args.model, {"policy": policy.to_dict(), "macs": macs,
                                              "params": params})
    x, y = data.tensors("val")
    print(f"pruned {args.model}: MACs {macs / 1e6:.2f}M  params {params / 1e6:.3f}M  val top-1 "
          f"{top1(pruned, x, y):.2f}% -> {args.out}")
    return 0
