"""Conformance benchmark: every torchvision classifier, pruned to a uniform FLOPs budget.

For each classifier of ``torchvision.models.list_models(module=torchvision.models)``, with
random weights (normalisation layers and all-zero parameters given random values by
:func:`amc.prune.conformance.diversify`) at its small input (:mod:`amc.models.zoo`), and for
unit modes ``all`` and ``internal`` (the latter only where its units differ):

* ``exact``: the uniform ratio meeting the budget was found, the physically pruned network's
  measured MACs and parameters equal the claimed ones, and its output on a random batch of 2
  equals the masked dense network's within ``RTOL`` of the output scale;
* ``refused``: amc refused the model in one line (the ``reason`` column);
* ``mismatch`` / ``crash``: a claimed cost or an output differs, or a traceback (bugs).

One CSV row per (model, units) is appended atomically to ``--out`` as soon as it is done;
a killed run resumes where it stopped (rows already there are skipped). Each row records the
load average, the commit and the seconds it took; ``<out stem>.json`` records the versions
and command of every run. ``--report`` rewrites ``<out stem>.md`` (summary, table, refused
models) from the CSV and copies it between the ``zoo`` markers of results/README.md and its
summary into README.md.

Usage (from the project root; big models take minutes each on 2 cores)::

    nohup .venv/bin/python scripts/bench_zoo.py > /tmp/zoo.log 2>&1 &
    .venv/bin/python scripts/bench_zoo.py --report
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import re
import shlex
import sys
import time
from pathlib import Path

import torch

from amc.models.zoo import build_small, classifier_names, family
from amc.prune.budget import Budget
from amc.prune.conformance import check_uniform, diversify
from amc.utils.errors import AmcError, one_line
from amc.utils.io import write_json, write_text
from amc.utils.provenance import git_commit, now, versions

FIELDS = ("model", "units", "input_size", "build_kwargs", "status", "n_units", "n_left_out",
          "ratio", "claimed_macs", "measured_macs", "claimed_params", "measured_params",
          "macs_gap", "rel_diff", "output_scale", "dense_diff", "seconds", "reason", "load1",
          "commit", "date")
# giants last, so that a short run covers most families
LAST = ("regnet_y_128gf", "vit_h_14", "regnet_y_32gf", "vit_l_16", "vit_l_32",
        "regnet_x_32gf", "efficientnet_v2_l", "convnext_large", "efficientnet_b7")


def read_rows(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def append_row(path: Path, row: dict) -> None:
    """Rewrite the CSV with one more row (atomically: a killed run leaves a whole file)."""
    buf = io.StringIO()
    w = csv.DictWriter(buf, FIELDS, lineterminator="\n")
    w.writeheader()
    w.writerows(read_rows(path) + [row])
    write_text(path, buf.getvalue())


def check(name: str, mode: str, model, size, x, budget: Budget) -> tuple[dict, list[str]]:
    """One (model, units) row, and the unit names (to tell whether ``internal`` differs)."""
    try:
        pm, r, c = check_uniform(model, size, mode, budget, x)
    except AmcError as e:
        return {"status": "refused", "reason": str(e)}, []
    except Exception as e:  # noqa: BLE001 - a traceback is a bug: recorded, not raised
        return {"status": "crash", "reason": f"{type(e).__name__}: {one_line(e)}"}, []
    return {"status": "exact" if c.exact else "mismatch", "n_units": len(pm.units),
            "n_left_out": len(pm.left_out), "ratio": f"{r:.6f}",
            "claimed_macs": f"{c.claimed_macs:.6f}", "measured_macs": f"{c.measured_macs:.6f}",
            "claimed_params": f"{c.claimed_params:.6f}",
            "measured_params": f"{c.measured_params:.6f}",
            "macs_gap": f"{abs(c.claimed_macs - c.measured_macs):.2e}",
            "rel_diff": f"{c.rel_diff:.2e}", "output_scale": f"{c.scale:.3g}",
            "dense_diff": f"{c.dense_diff:.3g}",
            "reason": "; ".join(f"{n}: {why}" for n, why in pm.left_out[:3])
            + (f"; and {len(pm.left_out) - 3} more" if len(pm.left_out) > 3 else "")
            }, [u.name for u in pm.units]


def run(args: argparse.Namespace) -> int:
    out = Path(args.out)
    meta_path = out.with_suffix(".json")
    meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {"runs": []}
    meta["runs"].append({"command": shlex.join([sys.executable, *sys.argv]), "date": now(),
                         "git_commit": git_commit(), "versions": versions(),
                         "threads": args.threads, "budget": args.budget, "seed": args.seed})
    write_json(meta_path, meta)
    torch.set_num_threads(args.threads)
    budget = Budget.parse(args.budget)
    names = args.models or classifier_names()
    names = [n for n in names if n not in LAST] + [n for n in LAST if n in names]
    done = {(r["model"], r["units"]) for r in read_rows(out)}
    commit = git_commit()
    for name in names:
        if (name, "all") in done:
            continue
        t0 = time.perf_counter()
        model, size, kwargs = build_small(name)
        torch.manual_seed(args.seed)
        diversify(model, args.seed)
        x = torch.randn(2, *size, generator=torch.Generator().manual_seed(args.seed))
        base = {"model": name, "input_size": "x".join(map(str, size)),
                "build_kwargs": " ".join(f"{k}={v}" for k, v in kwargs.items())}
        units_all = None
        for mode in ("all", "internal"):
            t = time.perf_counter()
            row, units = check(name, mode, model, size, x, budget)
            if mode == "internal" and (units == units_all or row["status"] != "exact"
                                       and units_all == []):
                continue  # the same units as `all` (or both refused): no second row
            units_all = units if mode == "all" else units_all
            secs = time.perf_counter() - t + (t - t0 if mode == "all" else 0.0)
            row = base | {"units": mode, "seconds": f"{secs:.1f}",
                          "load1": f"{os.getloadavg()[0]:.2f}", "commit": commit,
                          "date": now()} | row
            append_row(out, row)
            print(f"{name:22s} {mode:8s} {row['status']:8s} {secs:7.1f}s "
                  f"{row.get('reason', '')[:110]}", flush=True)
        del model
    return 0


def _table(rows: list[dict]) -> str:
    lines = ["| model | units | input | status | units kept / left out | claimed MACs | "
             "measured MACs | pruned vs masked | pruned vs dense | s |", "|" + "---|" * 10]
    for r in rows:
        kept = f"{r['n_units']} / {r['n_left_out']}" if r["n_units"] else ""
        lines.append(f"| {r['model']} | {r['units']} | {r['input_size']} | {r['status']} | "
                     f"{kept} | {r['claimed_macs']} | {r['measured_macs']} | {r['rel_diff']} "
                     f"| {r['dense_diff']} | {r['seconds']} |")
    return "\n".join(lines)


def summary(rows: list[dict]) -> tuple[str, str]:
    """(short summary, list of refused models with their one-line reasons) in markdown."""
    first = {}
    for r in rows:
        first.setdefault(r["model"], r)
    models = list(first.values())
    exact = [r for r in models if r["status"] == "exact"]
    bad = [r for r in rows if r["status"] in ("mismatch", "crash")]
    gaps = [float(r["macs_gap"]) for r in rows if r["macs_gap"]]
    diffs = [float(r["rel_diff"]) for r in rows if r["rel_diff"]]
    moved = [float(r["dense_diff"]) for r in rows if r["dense_diff"]]
    fams = {family(r["model"]) for r in models}
    share = 100 * len(exact) / max(1, len(models))
    text = (f"{len(exact)} of {len(models)} classifiers ({share:.0f} %, {len(fams)} families) "
            "prune exactly with units `all`; "
            f"{len(models) - len(exact) - len(bad)} are refused in one line; {len(bad)} rows "
            f"mismatch or crash. Worst claimed-vs-measured MACs gap {max(gaps, default=0):.1e}, "
            f"worst difference between the pruned and the masked network's outputs "
            f"{max(diffs, default=0):.1e} of the output scale (pruning moved the output by "
            f"{min(moved, default=0):.2g} to {max(moved, default=0):.2g} of its scale).")
    refused = "\n".join(f"- `{r['model']}` ({r['units']}): {r['reason']}" for r in models
                         if r["status"] != "exact")
    return text, refused or "- none"


def _between(path: Path, tag: str, body: str) -> None:
    """Replace the text between ``<!-- tag:begin -->`` and ``<!-- tag:end -->``."""
    if not path.is_file():
        return
    text = path.read_text()
    begin, end = f"<!-- {tag}:begin -->", f"<!-- {tag}:end -->"
    if begin not in text or end not in text:
        print(f"{path}: no {begin} ... {end} markers; not updated", file=sys.stderr)
        return
    new = re.sub(re.escape(begin) + ".*?" + re.escape(end),
                 lambda _: f"{begin}\n{body}\n{end}", text, flags=re.S)
    write_text(path, new)


def report(out: Path) -> int:
    """Write ``<out stem>.md`` from the CSV and copy it into the READMEs' ``zoo`` sections."""
    rows = read_rows(out)
    if not rows:
        print(f"{out} has no rows yet", file=sys.stderr)
        return 1
    text, refused = summary(rows)
    meta = json.loads(out.with_suffix(".json").read_text()) if out.with_suffix(
        ".json").is_file() else {"runs": [{}]}
    run = meta["runs"][-1]
    md = (f"{text}\n\nRefused (one line each):\n\n{refused}\n\n"
          f"Made by `scripts/bench_zoo.py` ({len(meta['runs'])} run(s); last: commit "
          f"{run.get('git_commit')}, torch {run.get('versions', {}).get('torch')}, "
          f"torch-pruning {run.get('versions', {}).get('torch-pruning')}, "
          f"{run.get('threads')} thread(s)).\n\n{_table(rows)}\n")
    write_text(out.with_suffix(".md"), md)
    root = out.resolve().parent.parent
    _between(out.parent / "README.md", "zoo", md.rstrip())
    _between(root / "README.md", "zoo", f"{text}\n\nRefused:\n\n{refused}")
    print(text)
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="results/zoo.csv")
    p.add_argument("--budget", default="flops:0.5")
    p.add_argument("--models", nargs="*", help="only these classifiers (default: all)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--report", action="store_true",
                   help="only rewrite the markdown report from the CSV")
    args = p.parse_args(argv)
    return report(Path(args.out)) if args.report else run(args)


if __name__ == "__main__":
    sys.exit(main())
