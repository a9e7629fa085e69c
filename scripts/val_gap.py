"""How far ``val`` top-1 runs ahead of ``test`` top-1, per network, against the blocks it drops.

``val`` is held out of the training split. A public checkpoint was trained on the whole of
that split, ``val`` included, so its ``val`` top-1 overstates what it does on unseen images
(``test``), and a pruned network keeps more or less of that memory depending on what it
removes. This script puts the ``val`` − ``test`` gap of every fine-tuned network of some
finished runs beside the number of residual blocks its policy drops and its MACs: the dense
models' gaps (``--dense LABEL=eval.json``), the runs of ``scripts/finetune_summary.py``
outputs (``--finetune F.json``: each run's ``val_top1``, ``test_top1`` and policy), and an
``amc compare`` folder's fine-tuned runs (``--compare DIR``: its ``table_runs*.csv``, after
fine-tuning, policies from ``DIR/policies``). Per source, a least-squares line of the gap on
the blocks dropped (slope and its standard error). ``--splits LABEL=CHECKPOINT`` also scores a
dense ResNet-56 checkpoint on ``--train-images`` random images of ``train`` (seen in
training), on ``val`` and on ``test``: images a network was trained on score alike, unseen
ones lower (with the binomial standard error of val − test). Writes ``<out>.json`` and
``<out>.md``.

    .venv/bin/python scripts/val_gap.py \\
        --dense public=results/cifar10_resnet56/eval/dense_before.json \\
        --dense adapted=results/compare_resnet56_amx53_lean/eval/dense_ft.json \\
        --finetune results/compare_resnet56_amx53_lean/finetune_45k_2ep_kd0.json \\
        --compare results/compare_resnet56_amx53_lean --min-test 75 \\
        --splits public=../shared/models/resnet56-cifar10.th --out results/val_gap_amx53
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
from pathlib import Path

import numpy as np
import torch

from amc.prune.depth import DROP
from amc.prune.policy import load_policy
from amc.utils.io import write_json, write_text
from amc.utils.provenance import git_commit, now
from amc.utils.stats import binomial_se, format_mean_std, mean_std


def dropped(policy: str | Path) -> int:
    """Residual blocks the policy drops (units at the drop ratio)."""
    return sum(r >= DROP for r in load_policy(policy).ratios)


def from_finetune(path: Path) -> list[dict]:
    """One row per run of a ``finetune_summary.py`` output."""
    res = json.loads(path.read_text())
    return [{"source": str(path), "name": name, "run": r["run"], "val": r["val_top1"],
             "test": r["test_top1"], "macs_ratio": r["macs_ratio"],
             "dropped": dropped(r["policy"])}
            for name, runs in res["runs"].items() for r in runs]


def from_compare(folder: Path) -> list[dict]:
    """One row per fine-tuned run of an ``amc compare`` folder's ``table_runs*.csv``."""
    rows, seen = [], set()
    for f in sorted(folder.glob("table_runs*.csv")):
        for r in csv.DictReader(f.open()):
            if not r.get("test_after"):
                continue
            run = int(r["run"])
            name = f"{r['strategy']}_{r['budget'].replace(':', '')}"
            if (name, run) in seen:
                continue
            seen.add((name, run))
            policy = folder / "policies" / (f"{name}.json" if run == 0 else f"{name}_s{run}.json")
            rows.append({"source": str(folder), "name": name, "run": run,
                         "val": float(r["val_after"]), "test": float(r["test_after"]),
                         "macs_ratio": float(r["macs_ratio"]), "dropped": dropped(policy)})
    return rows


def splits(checkpoint: str, data_dir: str, train_images: int) -> dict:
    """Top-1 of a dense CIFAR-10 ResNet-56 checkpoint on ``train_images`` of ``train`` drawn
    at random (seed 0), on ``val`` and on ``test`` (the split ``amc`` uses: seed 0, 5,000
    val)."""
    from amc.data.datasets import load_dataset
    from amc.models.evaluate import top1
    from amc.models.registry import create_model

    data = load_dataset("cifar10", data_dir)
    model = create_model("resnet56", num_classes=10, checkpoint=checkpoint).eval()
    x, y = data.tensors("train")  # in file order (by class): a random sample of it
    pick = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))[:train_images]
    xv, yv = data.tensors("val")
    xt, yt = data.tensors("test")
    val, test = top1(model, xv, yv), top1(model, xt, yt)
    return {"train": top1(model, x[pick], y[pick]), "val": val, "test": test,
            "gap_se": math.hypot(binomial_se(val, len(yv)), binomial_se(test, len(yt))),
            "train_images": train_images, "checkpoint": checkpoint}



def line(rows: list[dict]) -> dict | None:
    """Least-squares gap = a + b × dropped over ``rows``: b, its standard error, and the
    correlation; None with fewer than 3 rows or one count of dropped blocks."""
    x = np.array([r["dropped"] for r in rows], float)
    y = np.array([r["val"] - r["test"] for r in rows], float)
    if len(rows) < 3 or np.ptp(x) == 0:
        return None
    b, a = np.polyfit(x, y, 1)
    resid = y - (a + b * x)
    se = float(np.sqrt(resid @ resid / (len(x) - 2) / ((x - x.mean()) @ (x - x.mean()))))
    return {"slope": float(b), "slope_se": se, "intercept": float(a),
            "r": float(np.corrcoef(x, y)[0, 1]), "n": len(rows)}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dense", action="append", default=[], help="LABEL=eval.json")
    ap.add_argument("--finetune", action="append", default=[], type=Path)
    ap.add_argument("--compare", action="append", default=[], type=Path)
    ap.add_argument("--min-test", type=float, default=0.0,
                    help="leave out networks below this test top-1 (near chance a network "
                         "keeps little of the checkpoint, its memory of val included)")
    ap.add_argument("--splits", action="append", default=[], help="LABEL=CHECKPOINT")
    ap.add_argument("--data-dir", default="../shared/data")
    ap.add_argument("--train-images", type=int, default=10000)
    ap.add_argument("--out", required=True, help="output path without extension")
    argv = sys.argv[1:] if argv is None else argv
    args = ap.parse_args(argv)
    dense = {}
    for d in args.dense:
        label, _, path = d.partition("=")
        e = json.loads(Path(path).read_text())
        dense[label] = {"val": e["val_top1"], "test": e["test_top1"],
                        "gap": e["val_top1"] - e["test_top1"], "file": path}
    on_splits = {label: splits(path, args.data_dir, args.train_images)
                 for label, _, path in (d.partition("=") for d in args.splits)}
    rows = [*(r for f in args.finetune for r in from_finetune(f)),
            *(r for c in args.compare for r in from_compare(c))]
    rows = [r for r in rows if r["test"] >= args.min_test]
    groups: dict[tuple[str, str], list[dict]] = {}
    for r in rows:
        groups.setdefault((r["source"], r["name"]), []).append(r)
    summary = [{"source": s, "name": n, "n": len(g),
                "dropped": mean_std([r["dropped"] for r in g]),
                "macs_ratio": mean_std([r["macs_ratio"] for r in g]),
                "val": mean_std([r["val"] for r in g]), "test": mean_std([r["test"] for r in g]),
                "gap": mean_std([r["val"] - r["test"] for r in g])}
               for (s, n), g in groups.items()]
    lines = {s: line([r for r in rows if r["source"] == s]) for s in dict.fromkeys(
        r["source"] for r in rows)}
    write_json(f"{args.out}.json", {"command": "python scripts/val_gap.py " + " ".join(argv),
                                    "date": now(), "git_commit": git_commit(), "dense": dense,
                                    "splits": on_splits,
                                    "groups": summary, "lines": lines, "runs": rows})
    md = ["# val − test top-1 against the blocks dropped (`scripts/val_gap.py`)"]
    if dense:
        md += ["", "| dense model | val | test | val − test |", "|---|---|---|---|"]
        md += [f"| {k} | {v['val']:.2f} | {v['test']:.2f} | {v['gap']:.2f} |"
               for k, v in dense.items()]
    if on_splits:
        md += ["", "| dense checkpoint | train (random images) | val | test | val − test | "
               "its binomial SE |", "|---|---|---|---|---|---|"]
        md += [f"| {k} | {v['train']:.2f} ({v['train_images']}) | {v['val']:.2f} | "
               f"{v['test']:.2f} | {v['val'] - v['test']:.2f} | {v['gap_se']:.2f} |"
               for k, v in on_splits.items()]
    if rows:
        md += ["", "| source | network | n | blocks dropped | MACs | val | test | val − test |",
               "|---|---|---|---|---|---|---|---|"]
        md += [f"| {g['source']} | {g['name']} | {g['n']} | "
               f"{format_mean_std(g['dropped'], 1)} | {format_mean_std(g['macs_ratio'], 3)} | "
               f"{format_mean_std(g['val'])} | {format_mean_std(g['test'])} | "
               f"{format_mean_std(g['gap'])} |" for g in summary]
        md += ["", "Least-squares line of each run's val − test on its blocks dropped:", "",
               "| source | runs | slope (points per block) | SE | r |", "|---|---|---|---|---|"]
        md += [f"| {s} | {v['n']} | {v['slope']:.3f} | {v['slope_se']:.3f} | {v['r']:.2f} |"
               for s, v in lines.items() if v]
    write_text(f"{args.out}.md", "\n".join(md) + "\n")


if __name__ == "__main__":
    main()
