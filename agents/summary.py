"""A search's ``summary.json`` and learning curve, from its run directory's episode rows."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from amc.utils.io import write_json

from .config import SearchConfig
from .monitor import complete_rows, read_rows


def plot_curve(run_dir: Path, uniform_reward: float | None, title: str) -> Path:
    """``learning_curve.png``: each episode's reward, its moving average and the best so far,
    against the uniform baseline's reward."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = read_rows(run_dir / "episodes.csv")
    ep = [int(r["episode"]) for r in rows]
    rew = np.array([float(r["reward"]) for r in rows])
    fig, ax = plt.subplots(figsize=(8, 4.5))
    ax.plot(ep, rew, ".", ms=3, alpha=0.5, label="episode reward")
    if len(rew) >= 10:
        k = 10
        ax.plot(ep[k - 1:], np.convolve(rew, np.ones(k) / k, "valid"), lw=2,
                label="moving average (10)")
    if len(rew):
        ax.plot(ep, np.maximum.accumulate(rew), lw=1.5, label="best so far")
    if uniform_reward is not None:
        ax.axhline(uniform_reward, color="k", ls="--", label="uniform baseline")
    ax.set_xlabel("episode")
    ax.set_ylabel("reward")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    out = run_dir / "learning_curve.png"
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out


def _first_beating(rows: list[dict], val_top1: float) -> dict[str, float | None]:
    """The first completely scored episode whose val top-1 exceeds ``val_top1`` (beyond the
    csv's rounding), and the run's wall seconds then (of the session that recorded it)."""
    row = next((r for r in complete_rows(rows) if float(r["val_top1"]) > val_top1 + 1e-3),
               None)
    return {"episode": int(row["episode"]) if row else None,
            "run_seconds": float(row["run_seconds"]) if row and row.get("run_seconds")
            else None}


def best_fields(run_dir: Path) -> dict[str, Any]:
    """The summary's fields of the search's best policy (after ``--rescore-top``: the one
    picked on all of val; ``best_val_top1`` stays its score in the search)."""
    best = json.loads((run_dir / "best_policy.json").read_text())
    return {"best_episode": best["provenance"].get("episode"),
            "best_val_top1": best["metrics"]["val_top1"],
            "best_val_top1_all": best["metrics"].get("val_top1_all"),
            "best_reward": best["metrics"]["reward"],
            "best_macs_ratio": best["achieved"]["macs_ratio"],
            **({"best_latency_ratio": best["achieved"]["latency_ratio"]}
               if "latency_ratio" in best["achieved"] else {})}


def summarize(cfg: SearchConfig, run_dir: Path, lines: dict[str, dict], seconds: float,
              worker_restarts: int = 0, extra: dict[str, Any] | None = None
              ) -> dict[str, Any]:
    """Write the search's ``summary.json`` (and its learning curve) from ``episodes.csv``,
    the cheap policies' ``lines`` and this session's wall ``seconds``; returns it."""
    rows = read_rows(run_dir / "episodes.csv")
    rewards = [float(r["reward"]) for r in rows]
    # uniform's line is the one to beat; where uniform cannot reach the budget (AMC dropping
    # blocks), none is drawn and the cheap lines that could are listed below
    uni = lines.get("uniform", {"val_top1": None, "reward": None})
    # episodes of the search's own (a cheap warm start first replays the cheap policies)
    own = rows[len(lines):] if cfg.warm_start == "cheap" else rows
    beat = _first_beating(own, uni["val_top1"])["episode"] if "uniform" in lines else None
    summary = {
        "episodes": len(rows), **best_fields(run_dir),
        "uniform_val_top1": uni["val_top1"], "uniform_reward": uni["reward"],
        "first_episode_beating_uniform": beat,
        "seconds_per_episode": float(np.mean([float(r["seconds"]) for r in rows]))
        if rows else 0.0, "wall_seconds_this_run": seconds,
        "mean_reward_last_10": float(np.mean(rewards[-10:])) if rewards else 0.0,
        "workers": cfg.workers, "worker_restarts": worker_restarts,
        "search_seconds": float(sum(float(r["seconds"]) for r in rows)),
        "warm_start": cfg.warm_start,
        "cheap": {name: {**m, "first_beaten": _first_beating(own, m["val_top1"])}
                  for name, m in lines.items()},
        **(extra or {}),
    }
    write_json(run_dir / "summary.json", summary)
    plot_curve(run_dir, uni["reward"],
               f"AMC search: {cfg.model} on {cfg.data}, {cfg.budget}, reward {cfg.reward}")
    return summary
