"""Summarise the ``amc compare`` benchmarks in results/ next to the AMC paper's figures and
check #8's targets; writes ``results/compare_summary.md`` and ``results/compare_summary.json``.

    .venv/bin/python scripts/compare_summary.py

Reads ``results/cifar10_resnet56/`` and ``results/cifar10_resnet20/`` (made by
``bash scripts/bench_compare.sh``); a folder whose table is missing is reported as not run.
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

from amc.utils.provenance import git_commit, now

#: He et al., ECCV 2018: ResNet-56 on CIFAR-10 at 50 % FLOPs (the figures #8 quotes).
PAPER = {"uniform_before": 87.4, "amc_before": 90.1, "uniform_after": 89.8,
         "amc_after": 91.9}


def load(folder: Path) -> dict | None:
    if not (folder / "table.csv").is_file():
        return None
    rows = list(csv.DictReader(open(folder / "table.csv")))
    for r in rows:
        for k, v in r.items():
            if k not in ("strategy", "budget"):
                r[k] = float(v)
    ev = folder / "eval"
    cfg = json.loads((folder / "config.json").read_text())
    return {"rows": rows, "config": cfg,
            "dense_ft": json.loads((ev / "dense_ft.json").read_text()),
            "dense_before": json.loads((ev / "dense_before.json").read_text())}


def row(d: dict, strategy: str, budget: str) -> dict:
    return next(r for r in d["rows"] if r["strategy"] == strategy and r["budget"] == budget)


def checks_resnet56(d: dict) -> list[dict]:
    amc, uni = row(d, "amc", "flops:0.5"), row(d, "uniform", "flops:0.5")
    dense = d["dense_ft"]["test_top1"]
    out = [
        ("AMC - uniform on test before fine-tuning, points", amc["test_before"] -
         uni["test_before"], ">= 2.7", lambda v: v >= 2.7),
        ("dense fine-tuned - AMC fine-tuned on test, points", dense - amc["test_after"],
         "<= 1", lambda v: v <= 1.0),
        ("AMC - uniform on test after fine-tuning, points", amc["test_after"] -
         uni["test_after"], ">= 0", lambda v: v >= 0.0),
        (f"measured CPU speed-up of the AMC model at batch 64 ({d['config']['threads']} "
         "threads)", amc["speedup_b64"], ">= 1.6", lambda v: v >= 1.6),
    ]
    return [{"check": c, "value": round(v, 3), "target": t, "met": bool(ok(v))}
            for c, v, t, ok in out]


def markdown(summary: dict) -> str:
    lines = ["# amc compare: summary", "",
             f"Made by `scripts/compare_summary.py` from the `amc compare` tables "
             f"(commit {summary['git_commit']}).", ""]
    r56 = summary.get("cifar10_resnet56")
    if r56:
        c = r56["config"]
        lines += [
            "## ResNet-56, CIFAR-10, 50 % FLOPs: ours next to the AMC paper", "",
            f"Ours: the JPEG copy of CIFAR-10, `{c['units']}` units, BN statistics "
            f"re-estimated after pruning, {c['episodes']} search episodes; fine-tuning "
            f"{c['finetune_epochs']:g} epochs over {c['train_limit'] or 'all'} training "
            "images (CPU-sized). Paper: original CIFAR-10, its own fine-tuning.", "",
            "| top-1 on test, % | paper uniform | paper AMC | ours uniform | ours AMC | "
            "ours sensitivity | ours random |", "|---|---|---|---|---|---|---|"]
        for when in ("before", "after"):
            ours = {s: row(r56, s, "flops:0.5")[f"test_{when}"]
                    for s in ("uniform", "amc", "sensitivity", "random")}
            lines.append(f"| {when} fine-tuning | {PAPER[f'uniform_{when}']} | "
                         f"{PAPER[f'amc_{when}']} | {ours['uniform']:.2f} | {ours['amc']:.2f}"
                         f" | {ours['sensitivity']:.2f} | {ours['random']:.2f} |")
        lines += ["", f"Dense: {r56['dense_before']['test_top1']:.2f} % before, "
                  f"{r56['dense_ft']['test_top1']:.2f} % after the same fine-tuning.", "",
                  "| check (#8) | value | target | met |", "|---|---|---|---|"]
        lines += [f"| {k['check']} | {k['value']:.2f} | {k['target']} | "
                  f"{'yes' if k['met'] else '**no**'} |" for k in r56["checks"]]
    for name, title in (("cifar10_resnet56", "ResNet-56"), ("cifar10_resnet20", "ResNet-20")):
        d = summary.get(name)
        if not d:
            lines += ["", f"## {title}: not run yet"]
            continue
        lines += ["", f"## {title}: every strategy and budget (`{name}/table.md`)", "",
                  "| budget | strategy | test before ft | test after ft | Δ vs dense ft | "
                  "MACs (M) | speed-up b1 | speed-up b64 | speed-up b64, 1 thread | search s |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        for r in d["rows"]:
            lines.append(f"| {r['budget']} | {r['strategy']} | {r['test_before']:.2f} | "
                         f"{r['test_after']:.2f} | {r['delta_test_vs_dense_ft']:+.2f} | "
                         f"{r['macs_M']:.1f} | {r['speedup_b1']:.2f}x | "
                         f"{r['speedup_b64']:.2f}x | {r['speedup_b64_1thread']:.2f}x | "
                         f"{r['search_seconds']:.0f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--results", default="results")
    args = p.parse_args()
    res = Path(args.results)
    summary: dict = {"made": now(), "git_commit": git_commit(), "paper_resnet56": PAPER}
    for name in ("cifar10_resnet56", "cifar10_resnet20"):
        d = load(res / name)
        if d is None:
            continue
        if name == "cifar10_resnet56":
            d["checks"] = checks_resnet56(d)
        summary[name] = d
    (res / "compare_summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    (res / "compare_summary.md").write_text(markdown(summary))
    print((res / "compare_summary.md").read_text())


if __name__ == "__main__":
    main()
