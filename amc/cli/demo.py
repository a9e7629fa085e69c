"""The embedded demo: train the digits CNN, search per-layer ratios with AMC, compare with
the uniform baseline. Needs no files: scikit-learn ships the digits data."""

from __future__ import annotations

from pathlib import Path

import torch

from amc.cost.macs import model_cost
from amc.data.datasets import load_dataset
from amc.models.evaluate import evaluate, top1
from amc.models.registry import create_model
from amc.train.digits import train_digits


def verdict(amc: float, uniform: float, dense: float, images: int) -> str:
    """The demo's one-line comparison of AMC's and uniform's val top-1 (%), counted in the
    ``images`` val images they were scored on (a point is not a unit on a small split); a
    tie at the dense network's own top-1 says why nothing could be won."""
    a, u = round(amc * images / 100), round(uniform * images / 100)
    counts = f"{a} vs {u} of {images} val images"
    if a > u:
        return f"AMC beats uniform on val by {amc - uniform:+.2f} points ({counts})"
    if a < u:
        return f"AMC does NOT beat uniform on val: {amc - uniform:+.2f} points ({counts})"
    if amc >= dense - 1e-9:
        level = "keep" if round(dense * images / 100) == a else "score above"
        return (f"AMC ties uniform on val ({counts}): both {level} the dense network's "
                f"{dense:.2f}%, so at this budget there is nothing to win; a tighter one "
                "(--budget) separates policies")
    return f"AMC ties uniform on val ({counts})"


def run_demo(out: Path, episodes: int = 100, seed: int = 0, budget: str = "flops:0.5") -> dict:
    """Train, search, compare; prints a small table and returns the numbers."""
    from amc.agents import SearchConfig, run_or_resume
    from amc.prune.budget import Budget
    from amc.prune.policy import load_policy
    from amc.prune.scoring import build_scorer

    Budget.parse(budget)  # a bad budget fails in one line before anything is trained
    torch.set_num_threads(1)
    out.mkdir(parents=True, exist_ok=True)
    ckpt = out / "digits_cnn.pt"
    if not ckpt.is_file():
        train_digits(out, seed)
    model = create_model("digits_cnn", checkpoint=ckpt)
    data = load_dataset("digits", seed=seed)
    macs, params = model_cost(model, data.input_size)
    print(f"1. trained digits_cnn: MACs {macs / 1e6:.3f}M, params {params / 1e3:.1f}K -> {ckpt}")
    dense = {}
    for split in ("val", "test"):
        dense[split] = evaluate(model, *data.tensors(split)).top1
        print(f"   dense {split:4s} top-1 {dense[split]:6.2f}%")
    run = out / "search"
    cfg = SearchConfig(model="digits_cnn", checkpoint=str(ckpt), budget=budget,
                       episodes=episodes, warmup_episodes=max(1, episodes // 4), seed=seed,
                       out=str(run))
    print(f"2. AMC search: {episodes} episodes at {budget} (DDPG, reward -error) ...")
    s = run_or_resume(cfg, say=lambda m: print(f"   {m}"))  # e.g. a demo of an earlier amc
    rows = {}
    scorer = build_scorer(**cfg.scorer_kwargs(), net=model)  # the search's pruning and repair
    for name in ("best_policy", "uniform_policy"):
        pol = load_policy(run / f"{name}.json")
        pruned = scorer.pruned(pol.ratios_for(u.name for u in scorer.pm.units)).cpu()
        rows["AMC" if name == "best_policy" else "uniform"] = (
            top1(pruned, *data.tensors("val")), top1(pruned, *data.tensors("test")),
            pol.achieved["macs_ratio"], [u["ratio"] for u in pol.units])
    refit = ", the convs refitted by least squares" if cfg.reconstruct else ""
    print(f"3. pruned to {budget}, no fine-tuning (repaired as in the search: BatchNorm "
          f"statistics re-estimated on {cfg.recal_size} training images{refit}):")
    print(f"   {'policy':8s} {'val top-1':>9s} {'test top-1':>10s} {'MACs kept':>9s}  ratios")
    for name, (v, t, m, r) in rows.items():
        print(f"   {name:8s} {v:8.2f}% {t:9.2f}% {m:9.3f}  "
              + " ".join(f"{x:.2f}" for x in r))
    line = verdict(rows["AMC"][0], rows["uniform"][0], dense["val"],
                   len(data.tensors("val")[1]))
    print(f"   {line}; {s['seconds_per_episode']:.2f} s/episode")
    print(f"4. files: {run}/best_policy.json, uniform_policy.json, episodes.csv, "
          "learning_curve.png, tb/")
    return {"summary": s, "rows": rows}
