"""The embedded demo: train the digits CNN, search per-layer ratios with AMC, compare with
the uniform baseline. Needs no files: scikit-learn ships the digits data."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from amc.cost.macs import model_cost
from amc.data.datasets import load_dataset
from amc.models.evaluate import evaluate, predict
from amc.models.registry import create_model
from amc.train.digits import train_digits
from amc.utils.stats import paired_difference


def verdict(amc_hits: Sequence[bool], uniform_hits: Sequence[bool], dense: float) -> str:
    """The demo's one-line comparison of AMC's and uniform's val top-1, from their per-image
    correctness on the same val images, counted in images (a point is not a unit on a small
    split). A difference wins only beyond the standard error of the paired difference
    (:func:`amc.utils.stats.paired_difference`: one image apart never does); a tie at the
    dense network's own top-1 (``dense``, %) says why nothing could be won."""
    p = paired_difference(amc_hits, uniform_hits)
    images = len(amc_hits)
    a, u = int(sum(map(bool, amc_hits))), int(sum(map(bool, uniform_hits)))
    counts = f"{a} vs {u} of {images} val images"
    if a != u:
        noise = (f"they differ on {p['only_a'] + p['only_b']}: {p['only_a']} only AMC gets "
                 f"right, {p['only_b']} only uniform; paired SE {p['se']:.2f} points")
        if not p["beyond_se"]:
            return (f"AMC vs uniform on val: {p['diff']:+.2f} points ({counts}), within the "
                    f"noise ({noise}): no winner on this split")
        if a > u:
            return f"AMC beats uniform on val by {p['diff']:+.2f} points ({counts}; {noise})"
        return f"AMC does NOT beat uniform on val: {p['diff']:+.2f} points ({counts}; {noise})"
    amc = 100.0 * a / max(images, 1)
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
    rows, val_hits = {}, {}
    scorer = build_scorer(**cfg.scorer_kwargs(), net=model)  # the search's pruning and repair
    for name in ("best_policy", "uniform_policy"):
        pol = load_policy(run / f"{name}.json")
        pruned = scorer.pruned(pol.ratios_for(u.name for u in scorer.pm.units)).cpu()
        key = "AMC" if name == "best_policy" else "uniform"
        hits = {}
        for split in ("val", "test"):
            x, y = data.tensors(split)
            hits[split] = predict(pruned, x).argmax(1) == y
        val_hits[key] = hits["val"].tolist()
        rows[key] = (100.0 * hits["val"].float().mean().item(),
                     100.0 * hits["test"].float().mean().item(),
                     pol.achieved["macs_ratio"], [u["ratio"] for u in pol.units])
    refit = ", the convs refitted by least squares" if cfg.reconstruct else ""
    print(f"3. pruned to {budget}, no fine-tuning (repaired as in the search: BatchNorm "
          f"statistics re-estimated on {cfg.recal_size} training images{refit}):")
    print(f"   {'policy':8s} {'val top-1':>9s} {'test top-1':>10s} {'MACs kept':>9s}  ratios")
    for name, (v, t, m, r) in rows.items():
        print(f"   {name:8s} {v:8.2f}% {t:9.2f}% {m:9.3f}  "
              + " ".join(f"{x:.2f}" for x in r))
    line = verdict(val_hits["AMC"], val_hits["uniform"], dense["val"])
    print(f"   {line}; {s['seconds_per_episode']:.2f} s/episode")
    print(f"4. files: {run}/best_policy.json, uniform_policy.json, episodes.csv, "
          "learning_curve.png, tb/")
    return {"summary": s, "rows": rows}
