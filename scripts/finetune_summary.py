"""Mean ± std of ``amc finetune`` runs grouped by name: test and val top-1 after fine-tuning.

Each run folder under ``--runs`` is named ``<name>`` or ``<name>_s<k>`` (run k of the same
policy family, as ``amc compare`` names its policies); its ``summary.json`` (written by
``amc finetune``) gives the final top-1, cost and training seconds. Writes ``<out>.json``
(per run and per name) and ``<out>.md`` (the table).

    .venv/bin/python scripts/finetune_summary.py --runs runs/drop55_ft \\
        --out results/compare_resnet56_drop55/finetune_15k
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

from amc.report.compare import split_run
from amc.report.compare_table import standard_error
from amc.utils.io import write_json
from amc.utils.provenance import git_commit, now
from amc.utils.stats import format_mean_std, mean_std

FINAL = ("test_top1", "val_top1", "macs_ratio")
"""What the summary's ``final`` block gives."""
METRICS = (*FINAL, "train_seconds")


def train_seconds(summary: dict) -> float:
    """Seconds the run spent training (every stage's epochs, evaluation excluded)."""
    return sum(v["seconds_per_epoch"] * v["epochs_measured"]
               for v in summary.get("speed", {}).values())


def collect(runs: Path) -> dict[str, list[dict]]:
    """name -> one row per finished run (``summary.json`` present), in folder order."""
    groups: dict[str, list[dict]] = {}
    for d in sorted(p for p in runs.iterdir() if (p / "summary.json").is_file()):
        s = json.loads((d / "summary.json").read_text())
        name = split_run(d.name)[0]
        groups.setdefault(name, []).append(
            {"run": d.name, **{m: float(s["final"][m]) for m in FINAL},
             "train_seconds": train_seconds(s),
             "train_images": s.get("train_images"), "epochs": s["config"]["epochs"],
             "seed": s["config"]["seed"], "policy": s["config"]["policy"]})
    return groups


def _se(d: dict, n_test: int = 10000) -> float:
    """Standard error of a :func:`mean_std` of test top-1 by the comparison table's rule
    (:func:`standard_error`: std/√n, or one run's binomial error of ``n_test`` images)."""
    return standard_error({"test_top1": d["mean"], "test_top1_std": d["std"], "n": d["n"]},
                          "test_top1", n_test)


def against(groups: dict[str, list[dict]], ref: str) -> dict[str, dict]:
    """Each other name's test top-1 after fine-tuning minus ``ref``'s: the difference of the
    means with its combined standard error (:func:`_se`), and the mean ± std of the
    differences paired by fine-tuning seed (runs whose seed both names have)."""
    if ref not in groups:
        raise SystemExit(f"finetune_summary: error: --against {ref} names no run group (have: "
                         f"{', '.join(groups)}); pass one of those")
    base = {r["seed"]: r["test_top1"] for r in groups[ref]}
    b = mean_std(list(base.values()))
    out = {}
    for name, rows in groups.items():
        if name == ref:
            continue
        a = mean_std([r["test_top1"] for r in rows])
        pairs = [r["test_top1"] - base[r["seed"]] for r in rows if r["seed"] in base]
        out[name] = {"difference": a["mean"] - b["mean"],
                     "combined_se": math.hypot(_se(a), _se(b)),
                     "paired": mean_std(pairs) if pairs else None}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", required=True, help="folder of amc finetune run folders")
    ap.add_argument("--out", required=True, help="output path without extension")
    ap.add_argument("--against", help="a run group's name: every other group's test top-1 "
                    "after fine-tuning minus its, with the combined SE and paired by seed")
    args = ap.parse_args()
    groups = collect(Path(args.runs))
    if not groups:
        raise SystemExit(f"finetune_summary: error: no run with a summary.json under "
                         f"{args.runs}; run amc finetune first")
    diff = against(groups, args.against) if args.against else None
    cmd = f"python scripts/finetune_summary.py --runs {args.runs} --out {args.out}"
    doc = {"command": cmd + (f" --against {args.against}" if args.against else ""),
           "date": now(), "git_commit": git_commit(),
           "names": {n: {m: mean_std([r[m] for r in rows]) for m in METRICS}
                     for n, rows in groups.items()},
           "runs": groups, **({"against": {args.against: diff}} if diff else {})}
    write_json(Path(args.out + ".json"), doc)
    lines = ["| network | n | test after ft | val after ft | MACs ratio | train s |",
             "|---|---|---|---|---|---|"]
    for n, agg in doc["names"].items():
        lines.append(f"| {n} | {agg['test_top1']['n']} | {format_mean_std(agg['test_top1'])} | "
                     f"{format_mean_std(agg['val_top1'])} | {agg['macs_ratio']['mean']:.3f} | "
                     f"{agg['train_seconds']['mean']:.0f} |")
    if diff:
        lines += ["", f"Test top-1 after fine-tuning minus {args.against}'s:", "",
                  "| network | difference of means | combined SE | paired by seed (n) |",
                  "|---|---|---|---|"]
        for n, d in diff.items():
            pr = ("" if d["paired"] is None
                  else f"{format_mean_std(d['paired'])} ({d['paired']['n']})")
            lines.append(f"| {n} | {d['difference']:+.2f} | {d['combined_se']:.2f} | {pr} |")
    Path(args.out + ".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
