"""Which cheap reward ranks pruning policies like fine-tuning does, at an aggressive budget.

Issue #15 item 3. For the pretrained CIFAR ResNet-56 (``internal`` units) at ``flops:0.3``
it draws 20 policies that meet the budget (uniform, and 19 random ones made like
:func:`amc.prune.baselines.random_search`'s candidates: ``scale_to_budget`` of
``uniform(0.05, 1) ** p`` vectors, seed 0, with the exponent ``p`` spread over 0.4 ... 3 so
that the draws range from near-uniform to very uneven), and scores every policy with each
proxy reward on the search's 1,000 ``val`` images:

* ``bn``: BatchNorm recalibration on 256 training images (the search's default reward);
* ``recon_bn``: least-squares channel reconstruction (256 images), then ``bn``;
* ``ft20`` / ``ft50``: K = 20 / 50 plain SGD steps (batch 64, lr 0.01, momentum 0.9) on a
  fixed draw of training images (:class:`amc.prune.proxy.FinetuneScorer`), then ``bn``;
* ``recon_ft20`` (only with ``--proxies``): reconstruction, 20 SGD steps, then ``bn``.

The ground truth is each pruned model fine-tuned with one fixed recipe (the family of
``scripts/bench_compare.sh``: SGD lr 0.01 cosine, batch 128, a fixed 5,000-image training
subset; 2 epochs unless the measured speed says the run would not finish within
``--time-limit-min``, in which case fewer) and evaluated on all 5,000 ``val`` images and
the 10,000 ``test`` images. The report is the Spearman rank correlation of each proxy with
the after-fine-tuning ``test`` (and ``val``) top-1, with a bootstrap over policies, and
each proxy's seconds per policy. With time left, ``--extra-budget flops:0.5`` repeats the
comparison for ``bn`` and ``recon_bn`` at that budget.

Every policy's scores and ground truth are cached under ``--work`` (a killed run resumes;
``--fresh`` starts over); ``results/reward_proxy.json`` holds numbers only.

    OMP_WAIT_POLICY=PASSIVE nohup nice -n 5 .venv/bin/python scripts/bench_reward_proxy.py \\
        > /tmp/reward_proxy.log 2>&1 &          # ~40 min on 2 busy cores

``OMP_WAIT_POLICY=PASSIVE``: on a machine shared with other jobs, OpenMP threads that
spin while waiting made every step about 2x slower with 2 threads (measured here).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch
from scipy import stats
from torch import nn

from amc.data.datasets import Dataset, load_dataset
from amc.models.evaluate import eval_batch_size
from amc.models.fuse import conv_bn_pairs, fold_bn
from amc.models.registry import input_size_of
from amc.prune.baselines import scale_to_budget, uniform
from amc.prune.budget import Budget
from amc.prune.proxy import FinetuneScorer
from amc.prune.scoring import Scorer, build_scorer
from amc.train.loop import TrainConfig, train
from amc.utils.io import write_json
from amc.utils.provenance import git_commit, now, versions
from amc.utils.stats import bootstrap_spearman

MAX_RATIO = 0.8
#: Proxies that can be scored at the main budget (``--proxies``; the default leaves
#: ``recon_ft20`` out to save time); the extra budgets get the first two only.
PROXIES = ("bn", "recon_bn", "ft20", "ft50", "recon_ft20")
DEFAULT_PROXIES = ("bn", "recon_bn", "ft20", "ft50")
EXTRA_PROXIES = ("bn", "recon_bn")


def log(msg: str) -> None:
    """Print ``msg`` with a wall-clock stamp, flushed (the log is polled)."""
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def load_json(path: Path, default):
    """The JSON in ``path``, or ``default`` when there is none."""
    return json.loads(path.read_text()) if path.is_file() else default


def tag(budget: str) -> str:
    """A folder-safe name of a budget (``flops:0.3`` -> ``flops0.3``)."""
    return budget.replace(":", "")


# ----------------------------------------------------------------------------- policies
def draw_policies(s: Scorer, budget: Budget, n: int, seed: int) -> list[dict]:
    """Uniform plus ``n - 1`` random policies that meet ``budget``.

    Each random one is ``scale_to_budget`` of ``uniform(0.05, 1) ** p`` per unit (p = 1 is
    exactly a :func:`~amc.prune.baselines.random_search` candidate); the exponents ``p``
    run geometrically from 0.4 (values bunched near 1: close to uniform) to 3 (a few units
    large, most small: very uneven), in a seeded random order.

    Returns:
        ``{"name", "exponent", "ratios", "flops_fraction"}`` per policy.
    """
    rng = np.random.default_rng(seed)
    units = len(s.pm.units)
    exps = rng.permutation(np.geomspace(0.4, 3.0, n - 1))
    pols = [{"name": "uniform", "exponent": None,
             "ratios": uniform(s, budget, MAX_RATIO)}]
    for i, p in enumerate(exps):
        base = rng.uniform(0.05, 1.0, units) ** p
        pols.append({"name": f"random{i:02d}", "exponent": float(p),
                     "ratios": scale_to_budget(s, budget, base.tolist(), MAX_RATIO)})
    for pol in pols:
        pol["flops_fraction"] = s.pm.cost(pol["ratios"])[0] / s.pm.dense_macs
    return pols


# ----------------------------------------------------------------------------- proxies
def make_proxies(s: Scorer, ft_x: torch.Tensor, ft_y: torch.Tensor, args,
                 names: tuple[str, ...]) -> dict[str, Scorer]:
    """The proxy scorers named ``names``, all sharing ``s``'s model, ``val`` and
    calibration images."""
    ft = dict(ft_batch=args.ft_batch, ft_lr=args.ft_lr, ft_momentum=args.ft_momentum)
    recon = FinetuneScorer.from_scorer(s, ft_x, ft_y, reconstruct=True, ft_steps=0)
    every = {
        "bn": lambda: s,
        "recon_bn": lambda: recon,
        "ft20": lambda: FinetuneScorer.from_scorer(s, ft_x, ft_y, ft_steps=20, **ft),
        "ft50": lambda: FinetuneScorer.from_scorer(s, ft_x, ft_y, ft_steps=50, **ft),
        "recon_ft20": lambda: FinetuneScorer.from_scorer(s, ft_x, ft_y, reconstruct=True,
                                                         ft_steps=20, **ft),
    }
    return {n: every[n]() for n in names}


def score_proxy(scorer: Scorer, ratios: list[float]) -> dict:
    """One proxy's score of one policy, with its seconds."""
    t = time.perf_counter()
    sc = scorer.score(ratios)
    return {"top1": sc.top1, "seconds": time.perf_counter() - t, "prune_s": sc.prune_s,
            "repair_s": sc.repair_s, "eval_s": sc.eval_s}


# ----------------------------------------------------------------------------- ground truth
class Evaluator:
    """Top-1 on the full ``val`` and ``test`` splits, BatchNorm folded, channels-last."""

    def __init__(self, ds: Dataset):
        self.splits = {}
        for split in ("val", "test"):
            x, y = ds.tensors(split)
            self.splits[split] = (x.contiguous(memory_format=torch.channels_last), y)

    def __call__(self, net: nn.Module) -> dict:
        """``{"val_top1", "test_top1"}`` of ``net`` (left unchanged)."""
        m = copy.deepcopy(net).cpu().eval()
        m = fold_bn(m, conv_bn_pairs(m)).to(memory_format=torch.channels_last)
        out = {}
        with torch.inference_mode():
            for split, (x, y) in self.splits.items():
                b = eval_batch_size(x.shape)
                correct = sum(int((m(x[i:i + b]).argmax(1) == y[i:i + b]).sum())
                              for i in range(0, len(y), b))
                out[f"{split}_top1"] = 100.0 * correct / len(y)
        return out


def train_view(ds: Dataset, limit: int, seed: int) -> Dataset:
    """The fixed training subset of the recipe (as ``amc compare --train-limit``)."""
    idx = np.random.default_rng(seed).permutation(len(ds.labels["train"]))[:limit]
    return ds.select(train=idx)


def finetune(s: Scorer, ratios: list[float], data: Dataset, recipe: dict,
             threads: int, stop_step: int | None = None) -> tuple[nn.Module, float]:
    """The BN-recalibrated pruned network fine-tuned with ``recipe``; (net, seconds)."""
    net = s.pruned(ratios).cpu()
    cfg = TrainConfig(epochs=recipe["epochs"], lr=recipe["lr"], batch_size=recipe["batch_size"],
                      momentum=recipe["momentum"], weight_decay=recipe["weight_decay"],
                      seed=recipe["seed"], eval_splits=(), threads=threads, device="cpu")
    t = time.perf_counter()
    train(net, data, cfg, stop_step=stop_step)
    return net, time.perf_counter() - t


def choose_recipe(args, s: Scorer, pol: dict, data: Dataset, evaluator: Evaluator,
                  jobs_left: int, seconds_left: float) -> dict:
    """Measure one fine-tune's speed and pick the longest recipe that fits the time left.

    Times ``--probe-steps`` training steps and one evaluation on the first policy, projects
    the cost of the ``jobs_left`` fine-tunes for each candidate epoch count (``--gt-epochs``,
    then 1.5, 1) and keeps the largest one that uses at most 90 % of ``seconds_left``; never
    less than one epoch (5,000 images: a ground truth shorter than the ``ft50`` proxy's
    3,200 images would be meaningless), even when that overruns.
    """
    base = {"train_images": args.gt_train_limit, "lr": args.gt_lr, "schedule": "cosine",
            "batch_size": args.gt_batch, "momentum": 0.9, "nesterov": True,
            "weight_decay": 5e-4, "augment": "random crop (pad 4) + flip", "seed": 0,
            "start": "pruned, BN recalibrated on 256 images (as amc compare)"}
    steps_per_epoch = int(np.ceil(args.gt_train_limit / args.gt_batch))
    _, secs = finetune(s, pol["ratios"], data, {**base, "epochs": args.gt_epochs},
                       args.threads, stop_step=args.probe_steps)
    step_s = secs / args.probe_steps
    t = time.perf_counter()
    evaluator(s.pruned(pol["ratios"]))
    eval_s = time.perf_counter() - t
    cands = [e for e in (args.gt_epochs, 1.5, 1.0) if e <= args.gt_epochs]
    chosen, proj = cands[-1], None
    for e in cands:
        proj = jobs_left * (e * steps_per_epoch * step_s + eval_s + 2.0)
        if proj <= 0.9 * seconds_left:
            chosen = e
            break
    log(f"recipe probe: {step_s:.3f} s/step, eval {eval_s:.1f} s; {jobs_left} fine-tunes "
        f"with {chosen} epochs projected at {proj / 60:.1f} min of {seconds_left / 60:.1f} left")
    return {**base, "epochs": chosen, "steps": int(round(chosen * steps_per_epoch)),
            "probe": {"step_s": step_s, "eval_s": eval_s, "jobs": jobs_left,
                      "seconds_left": seconds_left, "projected_s": proj,
                      "candidates": cands}}


# ----------------------------------------------------------------------------- analysis
def rank(a: np.ndarray) -> np.ndarray:
    """Average ranks (ties share their mean rank)."""
    return stats.rankdata(a)


def analyse(rows: list[dict], proxies: tuple[str, ...], reps: int, seed: int) -> dict:
    """Spearman of every proxy against the ground truth, costs, and what each proxy picks."""
    gt = {k: np.array([r["gt"][k] for r in rows]) for k in ("test_top1", "val_top1")}
    out: dict = {"policies": len(rows),
                 "ground_truth_spread": {k: {"min": float(v.min()), "max": float(v.max()),
                                             "std": float(v.std())} for k, v in gt.items()},
                 "gt_val_vs_gt_test_spearman": float(stats.spearmanr(
                     gt["val_top1"], gt["test_top1"]).statistic),
                 "proxies": {}}
    bn_secs = float(np.mean([r["proxies"]["bn"]["seconds"] for r in rows]))
    best_test = float(gt["test_top1"].max())
    for p in proxies:
        v = np.array([r["proxies"][p]["top1"] for r in rows])
        secs = np.array([r["proxies"][p]["seconds"] for r in rows])
        d: dict = {"proxy_top1": {"min": float(v.min()), "max": float(v.max()),
                                  "std": float(v.std())},
                   "seconds_per_policy": float(secs.mean()),
                   "seconds_per_policy_median": float(np.median(secs)),
                   "cost_vs_bn": float(secs.mean() / bn_secs)}
        for k, g in gt.items():
            res = stats.spearmanr(v, g)
            d[f"spearman_vs_{k}"] = float(res.statistic)
            d[f"pvalue_vs_{k}"] = float(res.pvalue)
            d[f"bootstrap_vs_{k}"] = bootstrap_spearman(v, g, reps, seed)
        pick = int(np.argmax(v))
        d["pick"] = {"policy": rows[pick]["name"], "gt_test_top1": float(gt["test_top1"][pick]),
                     "regret_test": best_test - float(gt["test_top1"][pick]),
                     "gt_test_rank": int(len(rows) - rank(gt["test_top1"])[pick] + 1)}
        out["proxies"][p] = d
    out["proxy_vs_proxy_spearman"] = {
        f"{a}~{b}": float(stats.spearmanr([r["proxies"][a]["top1"] for r in rows],
                                          [r["proxies"][b]["top1"] for r in rows]).statistic)
        for i, a in enumerate(proxies) for b in proxies[i + 1:]}
    return out


# ----------------------------------------------------------------------------- stages
def run_budget(args, budget_text: str, proxies: tuple[str, ...], n_policies: int,
               s: Scorer, ft: tuple[torch.Tensor, torch.Tensor], data: Dataset,
               evaluator: Evaluator, work: Path, t_start: float, recipe: dict | None
               ) -> tuple[dict | None, dict | None]:
    """Proxies, then ground truth, for one budget; returns (section, recipe)."""
    bdir = work / tag(budget_text)
    budget = Budget.parse(budget_text)
    pol_path = bdir / "policies.json"
    pols = load_json(pol_path, None)
    if pols is None:
        pols = draw_policies(s, budget, n_policies, args.seed)
        write_json(pol_path, pols)
    scorers = make_proxies(s, *ft, args, proxies)
    rows = []
    for i, pol in enumerate(pols):
        path = bdir / f"policy{i:02d}.json"
        row = load_json(path, {"name": pol["name"], "proxies": {}})
        todo = [p for p in proxies if p not in row["proxies"]]
        for p in todo:
            row["proxies"][p] = score_proxy(scorers[p], pol["ratios"])
        if todo:
            write_json(path, row)
            log(f"{budget_text} {pol['name']}: " + ", ".join(
                f"{p} {row['proxies'][p]['top1']:.1f} ({row['proxies'][p]['seconds']:.1f} s)"
                for p in proxies))
        rows.append(row)
    if recipe is None:
        recipe = load_json(work / "recipe.json", None)
    if recipe is None:
        left = sum("gt" not in r for r in rows)
        recipe = choose_recipe(args, s, pols[0], data, evaluator, left,
                               args.time_limit_min * 60 - (time.time() - t_start))
        write_json(work / "recipe.json", recipe)
    for i, (pol, row) in enumerate(zip(pols, rows)):
        if "gt" in row:
            continue
        t = time.perf_counter()
        net, secs = finetune(s, pol["ratios"], data, recipe, args.threads)
        row["gt"] = {**evaluator(net), "finetune_s": secs, "total_s": time.perf_counter() - t}
        write_json(bdir / f"policy{i:02d}.json", row)
        log(f"{budget_text} {pol['name']} fine-tuned in {secs:.0f} s: val "
            f"{row['gt']['val_top1']:.2f}, test {row['gt']['test_top1']:.2f} "
            f"(elapsed {(time.time() - t_start) / 60:.1f} min)")
    section = {"budget": budget_text, "proxies_scored": list(proxies),
               "policies": [{**pol, **row} for pol, row in zip(pols, rows)],
               "summary": analyse(rows, proxies, args.bootstrap, args.seed)}
    return section, recipe


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="resnet56")
    p.add_argument("--models-dir", default="../shared/models")
    p.add_argument("--data-dir", default="../shared/data")
    p.add_argument("--budget", default="flops:0.3")
    p.add_argument("--extra-budget", nargs="*", default=["flops:0.5"],
                   help="budgets for bn and recon_bn only, run when the time left allows")
    p.add_argument("--policies", type=int, default=20)
    p.add_argument("--proxies", nargs="+", default=list(DEFAULT_PROXIES), choices=PROXIES,
                   help="proxies scored at --budget")
    p.add_argument("--val-limit", type=int, default=1000)
    p.add_argument("--recal-size", type=int, default=256)
    p.add_argument("--ft-batch", type=int, default=64)
    p.add_argument("--ft-lr", type=float, default=0.01)
    p.add_argument("--ft-momentum", type=float, default=0.9)
    p.add_argument("--ft-seed", type=int, default=1,
                   help="seed of the proxy's fixed draw of training images")
    p.add_argument("--gt-epochs", type=float, default=2.0)
    p.add_argument("--gt-train-limit", type=int, default=5000)
    p.add_argument("--gt-lr", type=float, default=0.01)
    p.add_argument("--gt-batch", type=int, default=128)
    p.add_argument("--probe-steps", type=int, default=10)
    p.add_argument("--time-limit-min", type=float, default=40.0)
    p.add_argument("--bootstrap", type=int, default=2000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--work", default="runs/reward_proxy")
    p.add_argument("--out", default="results/reward_proxy.json")
    p.add_argument("--fresh", action="store_true")
    args = p.parse_args()
    t_start = time.time()
    load_start = os.getloadavg()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    work = Path(args.work)
    if args.fresh and work.exists():
        shutil.rmtree(work)

    ckpt = str(Path(args.models_dir) / f"{args.model}-cifar10.th")
    s = build_scorer(model=args.model, checkpoint=ckpt, data="cifar10", data_dir=args.data_dir,
                     val_limit=args.val_limit, units="internal", bn_recalib=True,
                     recal_size=args.recal_size, seed=args.seed)
    ds = load_dataset("cifar10", data_dir=args.data_dir, input_size=input_size_of(args.model))
    ft = ds.calibration(50 * args.ft_batch, args.ft_seed)
    data = train_view(ds, args.gt_train_limit, args.seed)
    evaluator = Evaluator(ds)
    log(f"{args.model}: {len(s.pm.units)} units; load {load_start}")

    main_sec, recipe = run_budget(args, args.budget, tuple(args.proxies), args.policies, s, ft,
                                  data, evaluator, work, t_start, None)
    sections = {args.budget: main_sec}
    skipped = {}
    for b in args.extra_budget:
        done = load_json(work / tag(b) / f"policy{args.policies - 1:02d}.json", {})
        per_gt = np.mean([r["gt"]["total_s"] for r in main_sec["policies"]])
        need = args.policies * (per_gt * 1.3 + 5.0)  # a larger budget trains slower
        left = args.time_limit_min * 60 - (time.time() - t_start)
        if "gt" not in done and need > left:
            skipped[b] = (f"projected {need / 60:.1f} min for {args.policies} fine-tunes, "
                          f"{left / 60:.1f} min left of --time-limit-min")
            log(f"skipping {b}: {skipped[b]}")
            continue
        extra = tuple(x for x in EXTRA_PROXIES if x in args.proxies)
        sections[b], _ = run_budget(args, b, extra, args.policies, s, ft, data,
                                    evaluator, work, t_start, recipe)

    doc = {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "date": now(), "git_commit": git_commit(), "versions": versions(),
        "model": args.model, "checkpoint": Path(ckpt).name, "data": "cifar10 (JPEG copy)",
        "units": "internal", "max_ratio": MAX_RATIO,
        "proxy_settings": {
            "val_images": args.val_limit, "recal_images": args.recal_size,
            "reconstruction_images": 256,
            "finetune": {"batch": args.ft_batch, "lr": args.ft_lr, "momentum": args.ft_momentum,
                         "weight_decay": 0.0, "schedule": "constant", "augment": False,
                         "train_images": 50 * args.ft_batch, "train_draw_seed": args.ft_seed,
                         "then": "BN recalibration on the 256 recal images"}},
        "policy_draw": "uniform + scale_to_budget(uniform(0.05,1)**p), p geometric 0.4..3, "
                       f"seed {args.seed}, max ratio {MAX_RATIO}",
        "ground_truth_recipe": recipe,
        "ground_truth_eval": {"val_images": len(ds.labels["val"]),
                              "test_images": len(ds.labels["test"])},
        "budgets": sections, "skipped": skipped,
        "machine": {"cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                    "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
                    "load_avg_start": list(load_start), "load_avg_end": list(os.getloadavg()),
                    "wall_minutes_this_run": (time.time() - t_start) / 60},
    }
    write_json(args.out, doc)
    for b, sec in sections.items():
        sm = sec["summary"]
        log(f"{b}: gt val~test spearman {sm['gt_val_vs_gt_test_spearman']:.2f}")
        for name, d in sm["proxies"].items():
            log(f"  {name:11s} rho(test) {d['spearman_vs_test_top1']:+.2f} "
                f"± {d['bootstrap_vs_test_top1']['std']:.2f}, rho(val) "
                f"{d['spearman_vs_val_top1']:+.2f}, {d['seconds_per_policy']:.1f} s/policy "
                f"({d['cost_vs_bn']:.1f}x bn), pick regret {d['pick']['regret_test']:.2f}")


if __name__ == "__main__":
    main()
