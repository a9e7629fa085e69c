"""A dropped block's constant after reconstruction: bn2 applied to zeros vs the dense branch's mean.

Why: dropping a block keeps ``bn2`` applied to zeros (``relu(shortcut(x) + shift)``), exactly
what the network computes with the block's inner channels masked. Least-squares
reconstruction (``--reconstruct``) refits the pruned convs to the dense network's outputs; its
counterpart for a dropped block would be the constant closest to the dense branch, the
branch's per-channel mean on the calibration images (:func:`fit_dropped_shifts` here, set
before reconstruction's pass so that the refits and BN statistics after it see it). This
scores the delivered networks of the drop comparisons both ways: every distinct network with
a dropped block among ``--folders``' ``policies/`` (a policy and its run's calibration draw),
repaired as ``amc compare`` delivers it (reconstruction and BN recalibration on that draw),
``val`` (5,000 images) and ``test`` top-1 as amc does it (``bn2_of_zeros``: the comparisons'
own before-fine-tuning figures) and with the shifts fitted first (``dense_mean``).

Writes ``--out`` (per network: both scores; paired differences, mean ± std).

    .venv/bin/python scripts/bench_drop_shift.py   # ~10 min on 2 cores
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

import amc.prune.scoring as scoring
from amc.data.datasets import load_dataset
from amc.models.evaluate import top1
from amc.prune.depth import DROP
from amc.prune.policy import load_policy
from amc.prune.scoring import build_scorer
from amc.prune.units import PrunableModel
from amc.report.compare import split_run
from amc.utils.io import write_json
from amc.utils.provenance import cpu_model, git_commit, now, versions
from amc.utils.stats import mean_std


def fit_dropped_shifts(pm: PrunableModel, pruned: torch.nn.Module, ratios: list[float],
                       x: torch.Tensor) -> None:
    """Set each block ``ratios`` drop to the dense branch's (``bn2``'s) per-channel mean
    output on ``x``, in fp32."""
    names = [f"{pm.blocks[u]}.bn2" for u in sorted(pm.blocks) if ratios[u] >= DROP]
    means, hooks = {}, []
    for n in names:
        hooks.append(pm.model.get_submodule(n).register_forward_hook(
            lambda m, a, out, n=n: means.__setitem__(n, out.float().mean((0, 2, 3)))))
    try:
        with torch.no_grad(), torch.autocast("cpu", enabled=False):
            pm.model(x.to(next(pm.model.parameters()).device))
    finally:
        for h in hooks:
            h.remove()
    with torch.no_grad():
        for n in names:
            shift = pruned.get_submodule(n.removesuffix(".bn2")).shift
            shift.copy_(means[n].view_as(shift))


def with_shifts(reconstruct):
    """``reconstruct`` preceded by :func:`fit_dropped_shifts` on the same images."""

    def fitted(pm, pruned, ratios, x, *args, **kwargs):
        fit_dropped_shifts(pm, pruned, list(ratios), x)
        return reconstruct(pm, pruned, ratios, x, *args, **kwargs)

    return fitted


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--folders", nargs="+", default=["results/compare_resnet56_drop",
                                                     "results/compare_resnet56_drop55"])
    ap.add_argument("--dense", default="results/compare_resnet56_drop55/models/dense_ft.pt",
                    help="the folders' adapted dense model (bench_compare.sh drop55 makes it)")
    ap.add_argument("--data-dir", default="../shared/data")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default="results/drop_shift.json")
    args = ap.parse_args()
    if not Path(args.dense).is_file():
        raise SystemExit(f"bench_drop_shift: error: {args.dense} not found; run bash "
                         "scripts/bench_compare.sh drop55 first (it makes the adapted model)")
    torch.set_num_threads(args.threads)
    data = load_dataset("cifar10", data_dir=args.data_dir)
    xv, yv = data.tensors("val")
    xt, yt = data.tensors("test")
    plain = scoring.reconstruct
    scorers, rows, done = {}, [], set()
    for folder in args.folders:
        for f in sorted(Path(folder, "policies").glob("*.json")):
            pol = load_policy(f)
            if not any(r >= DROP for r in pol.ratios):
                continue
            run = split_run(f.stem)[1]
            if run not in scorers:  # amc compare's run k: calibration draw k
                scorers[run] = build_scorer("resnet56", args.dense, "cifar10", args.data_dir,
                                            val_limit=1000, units="internal",
                                            reconstruct=True, seed=run, drop_blocks=True)
            s = scorers[run]
            ratios = pol.ratios_for(u.name for u in s.pm.units)
            if (run, tuple(ratios)) in done:  # the same network in another folder
                continue
            done.add((run, tuple(ratios)))
            row = {"policy": f"{folder}/policies/{f.name}",
                   "dropped": sum(r >= DROP for r in ratios)}
            for name, fn in (("bn2_of_zeros", plain), ("dense_mean", with_shifts(plain))):
                scoring.reconstruct = fn
                try:
                    net = s.pruned(ratios)
                finally:
                    scoring.reconstruct = plain
                row[name] = {"val_top1": top1(net, xv, yv), "test_top1": top1(net, xt, yt)}
            rows.append(row)
            print(row, flush=True)
    diff = {k: mean_std([r["dense_mean"][k] - r["bn2_of_zeros"][k] for r in rows])
            for k in ("val_top1", "test_top1")}
    write_json(Path(args.out), {
        "command": "python scripts/bench_drop_shift.py", "date": now(),
        "git_commit": git_commit(), "versions": versions(), "machine": cpu_model(),
        "settings": vars(args), "policies": rows, "dense_mean_minus_bn2_of_zeros": diff})
    print(diff)


if __name__ == "__main__":
    main()
