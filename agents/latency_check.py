"""The picked network of a latency-budget search timed whole, beside the dense one: the
search's constraint is the lookup table's prediction; this is what the network measures."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from amc.prune.latency_timing import ROUNDS, WARMUP, measured_ratio
from amc.prune.policy import load_policy
from amc.prune.scoring import Scorer

from .config import SearchConfig


def check_seconds(cfg: SearchConfig, scorer: Scorer) -> float:
    """About how long :func:`measure_pick` will take (0 for other budgets): every call
    :func:`~amc.prune.latency_timing.time_models` makes of the dense network and of one at
    the budget (warm-up, one per round and the timed runs), at the latency table's dense
    time."""
    budget = cfg.parsed_budget()
    if budget.kind != "latency":
        return 0.0
    spec = budget.latency
    calls = spec.runs + ROUNDS + WARMUP + 1
    return calls * spec.table(scorer.pm).dense_ms * (1 + budget.fraction) / 1000


def measure_pick(cfg: SearchConfig, scorer: Scorer, run_dir: Path,
                 say: Callable[[str], None] = print) -> dict[str, Any]:
    """With a latency budget, time ``run_dir``'s ``best_policy.json`` network and the dense
    network side by side on the table's backend, batch and threads, say the measured ratio
    beside the table's prediction and the budget, and return the summary's fields
    (``best_latency_ratio_measured``, ``latency_check_seconds``); other budgets: nothing.

    Timings on a shared CPU drift between processes and sessions (several percent on the
    2-core VMs of results/retime_*.md), so the figure is reported, not enforced: the
    comparison's own side-by-side timing is the benchmark."""
    budget = cfg.parsed_budget()
    if budget.kind != "latency":
        return {}
    t, spec = time.perf_counter(), budget.latency
    pol = load_policy(run_dir / "best_policy.json")
    ratio = measured_ratio(scorer.pm, pol.ratios_for(u.name for u in scorer.pm.units), spec)
    predicted = pol.achieved.get("latency_ratio")
    say(f"picked policy timed whole: {ratio:.3f} of the dense latency ({spec.backend}, batch "
        f"{spec.batch}, {spec.threads} thread(s)); the latency table predicted "
        + (f"{predicted:.3f}" if predicted is not None else "nothing")
        + f"; budget {budget.fraction:g}"
        + (" (over it here: time the delivered network on the target; timings drift between "
           "runs)" if ratio > budget.fraction else ""))
    return {"best_latency_ratio_measured": ratio,
            "latency_check_seconds": time.perf_counter() - t}
