"""The comparison's tables and figures: per-run rows → mean ± std per strategy and budget,
with a winner marked only when its margin exceeds the combined standard error.

``table_runs.csv`` holds one row per run (strategy, budget, seed or calibration draw);
``table.csv`` / ``table.md`` the aggregates; ``pareto.png`` and ``ratios.png`` the figures.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from amc.prune.policy import load_policy
from amc.utils.stats import binomial_se

#: Columns aggregated as mean and standard deviation over the runs of one row.
METRICS = ("val_before", "test_before", "val_after", "test_after", "delta_test_vs_dense_ft",
           "macs_M", "params_M", "macs_ratio", "latency_b1_ms", "latency_b64_ms",
           "latency_b64_1thread_ms", "speedup_b1", "speedup_b64", "speedup_b64_1thread",
           "speedup_b64_table", "search_seconds")
"""``speedup_b64_table``: the speed-up the latency table predicted (1 / the policy's
``achieved.latency_ratio``), only in rows found at a latency budget; the other rows leave it
empty, and a table of FLOPs budgets only has no such column."""
#: Columns a winner is marked in (higher is better).
CONTESTED = ("test_before", "test_after", "speedup_b64", "speedup_b64_1thread")


def aggregate(rows: Sequence[dict]) -> list[dict]:
    """One row per (strategy, budget): ``n`` and, per metric, ``<m>`` (mean) and
    ``<m>_std`` (sample standard deviation; 0 for one run)."""
    groups: dict[tuple[str, str], list[dict]] = {}
    for r in rows:
        groups.setdefault((r["strategy"], r["budget"]), []).append(r)
    out = []
    for (strategy, budget), rs in groups.items():
        row: dict = {"strategy": strategy, "budget": budget, "n": len(rs)}
        for m in METRICS:
            if not any(m in r for r in rows):  # a column no run has (speedup_b64_table)
                continue
            v = np.array([float(r[m]) for r in rs if r.get(m) not in (None, "")], dtype=float)
            row[m] = float(v.mean()) if v.size else float("nan")
            row[f"{m}_std"] = float(v.std(ddof=1)) if v.size > 1 else 0.0
            if v.size != len(rs):  # e.g. fewer runs fine-tuned than scored
                row[f"{m}_n"] = int(v.size)
        out.append(row)
    return out


def standard_error(row: dict, metric: str, n_test: int | None = None) -> float:
    """Standard error of a row's mean: std/√n over its runs; for a single run of a top-1
    column, the binomial error of ``n_test`` images (None: unknown, 0)."""
    n = row.get(f"{metric}_n", row["n"])
    if n > 1:
        return row[f"{metric}_std"] / math.sqrt(n)
    if n_test and metric.startswith(("test_", "val_")):
        return binomial_se(row[metric], n_test)
    return 0.0


def val_memory_note(dense: dict, n_val: int, n_test: int, points: float = 2.0,
                    z: float = 4.0) -> str | None:
    """A note when the dense model scores clearly higher on ``val`` than on ``test``: more
    than ``points`` and ``z`` combined binomial standard errors. ``val`` is held out of the
    training split, which a public checkpoint was trained on; its ``val`` top-1 then
    includes its memory of those images, which a pruned network keeps in part (on ResNet-56
    and our CIFAR-10 copy the gap grew by ~0.1 point per residual block dropped:
    ``results/val_gap_amx53.md``). A ResNet-56 trained there without val scored alike on
    val and test (0.96 ± 0.55 points: ``results/val_gap_scratch56.md``), so the note names
    that remedy. None otherwise."""
    gap = dense["val_top1"] - dense["test_top1"]
    se = math.hypot(binomial_se(dense["val_top1"], n_val), binomial_se(dense["test_top1"], n_test))
    if gap <= points or gap <= z * se:
        return None
    return (f"the dense model scores {gap:.2f} points higher on val than on test ({gap / se:.0f} "
            "standard errors): val was likely part of its training data, so val scores "
            "favour networks that keep more of its weights as they are (e.g. dropped blocks "
            "over thinner layers); compare strategies on test, or train the dense model "
            "without val (amc finetune, same --data, --val-size and --split-seed, no "
            "--checkpoint) and compare on that.")


def winners(agg: Sequence[dict], n_test: int | None = None) -> set[tuple[str, str, str]]:
    """(strategy, budget, metric) of every clear winner: the best mean of its budget ahead of
    the runner-up by more than their combined standard error."""
    won = set()
    for budget in dict.fromkeys(r["budget"] for r in agg):
        rows = [r for r in agg if r["budget"] == budget]
        for m in CONTESTED:
            ranked = sorted((r for r in rows if not math.isnan(r[m])), key=lambda r: -r[m])
            if len(ranked) < 2:
                continue
            a, b = ranked[0], ranked[1]
            se = math.hypot(standard_error(a, m, n_test), standard_error(b, m, n_test))
            if a[m] - b[m] > se:
                won.add((a["strategy"], budget, m))
    return won


def _cell(row: dict, m: str, fmt: str, bold: bool) -> str:
    if math.isnan(row[m]):  # a column some rows have (speedup_b64_table)
        return "–"
    text = fmt.format(row[m])
    n = row.get(f"{m}_n", row["n"])
    if n > 1:
        text += " ± " + fmt.format(row[f"{m}_std"])
    elif n < row["n"]:
        text += f" (n={n})"
    return f"**{text}**" if bold else text


def write_table(out: Path, rows: list[dict], dense: dict, dense_before: dict | None = None,
                n_test: int | None = None, notes: Sequence[str] = ()) -> list[dict]:
    """``table_runs.csv`` (every run), ``table.csv`` and ``table.md`` (mean ± std per
    strategy and budget, clear winners in bold); returns the aggregated rows."""
    with open(out / "table_runs.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(dict.fromkeys(k for r in rows for k in r)))
        w.writeheader()
        w.writerows(rows)
    agg = aggregate(rows)
    with open(out / "table.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(dict.fromkeys(k for r in agg for k in r)))
        w.writeheader()
        w.writerows(agg)
    won = winners(agg, n_test)
    shown = {"test_before": "{:.2f}", "test_after": "{:.2f}", "val_before": "{:.2f}",
             "val_after": "{:.2f}", "macs_ratio": "{:.3f}", "params_M": "{:.3f}",
             "speedup_b64": "{:.2f}", "speedup_b64_1thread": "{:.2f}", "speedup_b1": "{:.2f}",
             "speedup_b64_table": "{:.2f}", "search_seconds": "{:.0f}"}
    shown = {m: f for m, f in shown.items() if m in agg[0]}  # speedup_b64_table: if a run has it
    lines = [f"Dense fine-tuned: val {dense['val_top1']:.2f} %, test {dense['test_top1']:.2f} %"
             f", {dense['macs'] / 1e6:.2f}M MACs, batch-64 CPU latency "
             f"{dense['latency_b64_ms']:.1f} ms ({dense['latency_b64_1thread_ms']:.1f} ms on 1 "
             "thread); latencies: median of interleaved runs (`latency.json`)"]
    if dense_before:
        lines.append(f"Dense before fine-tuning: val {dense_before['val_top1']:.2f} %, test "
                     f"{dense_before['test_top1']:.2f} %")
    lines.append("Mean ± std over n runs (AMC: seeds; baselines: calibration draws); bold: "
                 "ahead of the runner-up by more than their combined standard error "
                 "(std/√n, or the test set's binomial error for one run).")
    lines += list(notes)
    if "speedup_b64_table" in shown:
        lines.append("speedup_b64_table: the speed-up at batch 64 the latency table predicted "
                     "for a policy found at a latency budget (where the table was measured: "
                     "each policy's provenance.latency_table); beside speedup_b64, measured.")
    cols = ["strategy", "budget", "n", *shown]
    lines += ["", "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in agg:
        cells = [r["strategy"], r["budget"], str(r["n"])] + [
            _cell(r, m, fmt, (r["strategy"], r["budget"], m) in won) for m, fmt in shown.items()]
        lines.append("| " + " | ".join(cells) + " |")
    (out / "table.md").write_text("\n".join(lines) + "\n")
    return agg


def plot_pareto(out: Path, agg: list[dict], dense: dict) -> None:
    """Test top-1 vs MACs per strategy (means, with std bars), before and after fine-tuning."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for s in dict.fromkeys(r["strategy"] for r in agg):
        pts = sorted((r["macs_M"], r["test_after"], r["test_after_std"], r["test_before"],
                      r["test_before_std"]) for r in agg if r["strategy"] == s)
        xs = [p[0] for p in pts]
        line = ax.errorbar(xs, [p[1] for p in pts], [p[2] for p in pts], fmt="o-",
                           capsize=2, label=f"{s} (ft)")
        ax.errorbar(xs, [p[3] for p in pts], [p[4] for p in pts], fmt="x--", capsize=2,
                    color=line[0].get_color(), alpha=0.6, label=f"{s} (before ft)")
    ax.plot([dense["macs"] / 1e6], [dense["test_top1"]], "k*", ms=12, label="dense (ft)")
    ax.set_xlabel("MACs (M)")
    ax.set_ylabel("test top-1 (%)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "pareto.png", dpi=120)
    plt.close(fig)


def plot_ratios(out: Path, budgets: Sequence[str], strategies: Sequence[str],
                units: Sequence[str]) -> None:
    """Kept channel ratio per unit of each strategy's (first run's) policy, per budget."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(budgets), 1, figsize=(max(6, 0.35 * len(units)),
                                                      3.2 * len(budgets)), squeeze=False)
    for ax, b in zip(axes[:, 0], budgets):
        for s in strategies:
            path = out / "policies" / f"{s}_{b.replace(':', '')}.json"
            if s == "random" or not path.is_file():  # random's are noise; unreachable: none
                continue
            pol = load_policy(path)
            ax.plot(range(len(units)), [1 - r for r in pol.ratios_for(units)], "o-", ms=3,
                    label=s)
        ax.set_title(f"kept channel ratio per unit at {b}")
        ax.set_ylim(0, 1.05)
        ax.set_xticks(range(len(units)))
        ax.set_xticklabels(units, rotation=90, fontsize=6)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "ratios.png", dpi=120)
    plt.close(fig)
