"""What ``amc compare`` runs (:class:`CompareConfig`), when a folder's cached artifacts may
be reused with it (:func:`check_cached`), and an AMC search's wall seconds as the comparison
counts them (:func:`search_wall_seconds`)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from amc.config.args import as_made, changed_settings, check_counts
from amc.config.blocks import NOISE_MIN, PrunedOptimConfig, ScoringConfig
from amc.prune.budget import Budget
from amc.prune.latency_table import method_for
from amc.utils.errors import AmcError, and_more

if TYPE_CHECKING:
    from amc.train.loop import TrainConfig

STRATEGIES = ("amc", "uniform", "global", "sensitivity", "random", "blocks")
SEARCH_ON = ("pretrained", "adapted")
FINETUNE_FROM = ("pruned", "delivered")

@dataclass(kw_only=True)
class CompareConfig(ScoringConfig, PrunedOptimConfig):
    """The comparison to run.

    Attributes:
        budgets: Budgets to compare, e.g. flops:0.5.
        strategies: Strategies: amc, uniform, global, sensitivity, random, blocks (with
            --drop-blocks: the k least sensitive blocks dropped, the rest uniform, k best
            on val). A
            strategy that cannot reach a budget is left out of that budget's table with a
            note.
        seeds: Runs per strategy: AMC searches with seeds seed, seed+1, ...; every baseline
            with as many calibration draws; each fine-tuned with that seed. The table shows
            mean ± std.
        search_on: pretrained: prune the given checkpoint; adapted: prune the dense model
            after the comparison's own fine-tuning on this data (the dense_ft model).
        finetune_runs: Runs fine-tuned per strategy and budget (None: all of --seeds); the
            others are scored before fine-tuning only.
        episodes: AMC search episodes.
        warmup_episodes: AMC warm-up episodes.
        warm_start: AMC warm start: cheap (replay uniform and global first) or random
            (the paper's).
        sweep_warm_start: With a cheap warm start, AMC's warm-up also replays the allocation
            of the comparison's sensitivity sweep (computed first); AMC's search seconds then
            include the sweep's.
        noise_min: Floor of AMC's decaying exploration σ (``amc search --noise-min``).
        drop_swap: Probability that an AMC episode swaps a dropped and a kept block
            (``amc search --drop-swap``).
        anchor_every: Every this many AMC episodes after the warm-up, fit the actor again to
            the best episode so far (``amc search --anchor-every``).
        pair_moves: Probability that an AMC episode is a pair move: the best policy so
            far with two kept units of the same cost trading pruning (``amc search
            --pair-moves``).
        rescore_top: AMC and random keep the best on all of val among their this many best
            policies (scored again on the val images past --val-limit; ``amc search
            --rescore-top``); 0 or 1: the best on the first --val-limit images.
        finalists: Each AMC search ends by fine-tuning this many of its best policies briefly
            and keeping the best on all of val after it (``amc search --finalists``; 0 or 1:
            off). Its seconds count in AMC's search time.
        blocks_finalists: Each AMC search with droppable blocks warm-starts from the blocks
            candidate best on val after the short fine-tune among this many (``amc search
            --blocks-finalists``; 0 or 1: off). Its seconds count in AMC's search time.
        finalist_images: Training images of each finalist's fine-tune (``amc finetune``'s
            default recipe: the comparison's own optimiser options do not reach it).
        finalist_epochs: Epochs of each finalist's fine-tune.
        finalist_margin_se: The search's own pick stays unless another finalist leads it on
            val after the fine-tune by more than this many standard errors of the
            difference (``amc search --finalist-margin-se``; 0: the best after it wins).
        time_limit: Each AMC search's wall seconds, its rescoring included (``amc search
            --time-limit``; None: all --episodes).
        sweep_time_limit: Each AMC search gets the comparison's sensitivity sweep's wall
            seconds as its --time-limit (the sweep runs first): AMC then searches for no
            longer than the sweep took, the blocks policy made for it included; the
            finalists' fine-tunes, when on, come on top unless --time-limit-finalists.
        time_limit_finalists: Each AMC search's time limit also bounds its finalists'
            fine-tunes and latency check (``amc search --time-limit-finalists``): with
            --sweep-time-limit the whole search then takes no longer than the sweep.
        envs_on: Where AMC's envs step with Ray workers (``amc search --envs-on``).
        envs_per_worker: AMC's episodes in flight per Ray worker (``amc search
            --envs-per-worker``).
        n_random: Policies tried by the random strategy.
        finetune_epochs: Epochs of fine-tuning for the dense and every pruned model.
        train_limit: Train on the first N (shuffled) training images only (None: all).
        workers: Ray workers for the AMC search and the baselines (0: in-process).
        latency_runs: Timed runs per latency measurement.
        reconstruct_delivered: With --reconstruct, the networks delivered (scored on test and
            fine-tuned) are reconstructed too; --no-reconstruct-delivered: reconstruction
            only ranks the policies (every strategy's scores on val), and each delivered
            network is plainly pruned and BN-recalibrated: the searches then rank policies
            by another network than the one delivered (``amc compare`` says so in a note;
            --no-reconstruct scores them as delivered: results/quality_resnet56_drop54_plain.md).
        finetune_from: What each pruned network's fine-tune starts from: pruned (plainly
            pruned and BN-recalibrated, as ``amc finetune --policy`` starts from a policy, up
            to the recalibration) or delivered (the network scored before fine-tuning:
            reconstructed with --reconstruct). The same network without --reconstruct.
            pruned by default: on CIFAR ResNet-56 with --reconstruct, after a distilled
            1-epoch fine-tune, it ended 0.66 points higher at ~1.8x with dropped blocks and at
            half the MACs (16 of 18 runs) and level at 30 % of the MACs (+0.11 ± 1.25; the
            reconstructed starts scored 6-18 points higher before fine-tuning:
            results/compare_resnet56_drop55_kd_plain/, compare_resnet56_native_kd_plain/).
        out: Output folder (every stage's artifact is cached here).
    """

    budgets: tuple[str, ...] = ("flops:0.5",)
    strategies: tuple[str, ...] = STRATEGIES[:5]
    seeds: int = 1
    search_on: str = "pretrained"
    finetune_runs: int | None = None
    episodes: int = 300
    warmup_episodes: int = 100
    warm_start: str = "cheap"
    sweep_warm_start: bool = False
    noise_min: float = NOISE_MIN
    drop_swap: float = 0.0
    anchor_every: int = 10
    pair_moves: float = 0.0
    rescore_top: int = 5
    finalists: int = 0
    blocks_finalists: int = 0
    finalist_images: int = 5000
    finalist_epochs: float = 1.0
    finalist_margin_se: float = 1.0
    time_limit: float | None = None
    sweep_time_limit: bool = False
    time_limit_finalists: bool = False
    envs_on: str = "driver"
    envs_per_worker: int = 1
    n_random: int = 50
    finetune_epochs: float = 5.0
    train_limit: int | None = None
    workers: int = 0
    threads: int | None = 2
    latency_runs: int = 20
    reconstruct_delivered: bool = True
    finetune_from: str = "pruned"
    out: str = "runs/compare"

    def __post_init__(self) -> None:
        self.latency_table_method = method_for(self.budgets)

    def finetune_config(self, seed: int, threads: int | None = None) -> TrainConfig:
        """The one fine-tuning recipe of a comparison (the dense model and every pruned one):
        its optimiser fields, ``finetune_epochs``, no per-epoch evaluation."""
        from amc.train.loop import TrainConfig

        return TrainConfig(**self.optim_fields(), epochs=self.finetune_epochs, seed=seed,
                           eval_splits=(), threads=threads, device=self.device)

    def validate(self) -> None:
        check_counts(self)
        for s in self.strategies:
            if s not in STRATEGIES:
                raise AmcError(f"unknown strategy {s!r}; use {','.join(STRATEGIES)}")
        for what, items, hint in (("--strategies", self.strategies,
                                   " (--seeds sets the runs per strategy)"),
                                  ("--budget", self.budgets, "")):
            twice = [x for i, x in enumerate(items) if x in items[:i]]
            if twice:
                raise AmcError(f"{what} names {twice[0]} twice; give each once{hint}")
        for b in self.budgets:
            Budget.parse(b)
        if self.search_on not in SEARCH_ON:
            raise AmcError(f"unknown --search-on {self.search_on!r}; use pretrained or adapted")
        if self.warm_start not in ("cheap", "random"):
            raise AmcError(f"unknown --warm-start {self.warm_start!r}; use cheap or random")
        if self.sweep_time_limit and self.time_limit is not None:
            raise AmcError("--sweep-time-limit and --time-limit both set the searches' time; "
                           "drop one")
        if not self.reconstruct_delivered and not self.reconstruct:
            raise AmcError("--no-reconstruct-delivered applies only with --reconstruct; add "
                           "--reconstruct or drop it")
        if self.finetune_from not in FINETUNE_FROM:
            raise AmcError(f"unknown --finetune-from {self.finetune_from!r}; use "
                           f"{' or '.join(FINETUNE_FROM)}")
        if self.finetune_runs is not None and self.finetune_runs > self.seeds:
            raise AmcError(f"--finetune-runs {self.finetune_runs} is more than the --seeds "
                           f"{self.seeds} runs per strategy; raise --seeds or lower it")
        if not self.budgets or not self.strategies:
            raise AmcError("give at least one --budget and one strategy")


def search_wall_seconds(run_dir: Path) -> float | None:
    """Wall-clock seconds of an AMC search: its session's wall time, or for a resumed search
    the episodes' env seconds per env (the summary's ``search_seconds`` sums them over the
    envs: workers x ``envs_per_worker``), plus the re-scoring of its best policies, the
    making of its cheap policies, the finalists' fine-tunes and the pick's latency check;
    None without a summary."""
    f = run_dir / "summary.json"
    if not f.is_file():
        return None
    s = json.loads(f.read_text())
    cfg = run_dir / "config.json"
    per = (json.loads(cfg.read_text()).get("envs_per_worker") or 1) if cfg.is_file() else 1
    envs = max(1, s.get("workers") or 1) * per
    # a resumed search's last session is only part of it: then the env seconds per env
    return max(s.get("wall_seconds_this_run") or 0.0, s["search_seconds"] / envs) + (
        s.get("rescore_seconds") or 0.0) + (s.get("cheap_seconds") or 0.0) + (
        s.get("finalist_seconds") or 0.0) + (s.get("blocks_finalist_seconds") or 0.0) + (
        s.get("latency_check_seconds") or 0.0)


JOB_SETTINGS = ("out", "budgets", "strategies", "seeds", "finetune_runs", "workers",
                "threads", "device", "loader_workers", "envs_on")
"""Settings a comparison can be rerun with in the same folder: they add jobs (whose artifacts
are made then) or change how it runs, not what its cached artifacts hold."""


REBUILT = ("table.md", "table.csv", "table_runs.csv", "pareto.png", "ratios.png")
"""What every ``amc compare`` run writes anew (its other files are cached artifacts, reused
when present: a folder may be seeded with another comparison's)."""


def check_cached(cfg: CompareConfig) -> None:
    """Refuse, before anything is written, a folder whose cached artifacts were made with
    other settings (or by an amc that predates one): they would be reused as if made with
    ``cfg``'s, and its ``config.json`` overwritten; and a folder without a comparison that
    holds files a comparison writes anew (:data:`REBUILT`)."""
    out = Path(cfg.out)
    if out.exists() and not out.is_dir():
        raise AmcError(f"--out {out} is a file; pass a folder")
    if not (out / "config.json").is_file():
        held = [n for n in REBUILT if (out / n).exists()]
        if held:  # artifacts copied in are reused, but these would be overwritten
            raise AmcError(f"--out {out} holds {and_more(held)} but no comparison (no "
                           "config.json); move them or choose another --out")
        return
    changed = changed_settings(cfg, out, ignore=(*JOB_SETTINGS, "latency_table_method"))
    if changed:
        raise AmcError(f"{out} holds a comparison made with other settings "
                       f"({', '.join(changed)}); rerun with its config.json's values, or "
                       "choose another --out (its artifacts would be reused as if made "
                       "with these)")
    stored = as_made(json.loads((out / "config.json").read_text()))
    if (now := method_for(stored.get("budgets", ()))) and stored["latency_table_method"] != now:
        raise AmcError(f"{out} holds latency budgets measured with an older latency table "
                       "than this amc's; choose another --out (its searches and policies "
                       "would be reused as if made with today's table)")
