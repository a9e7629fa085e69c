"""The fine-tuning configuration (one dataclass; the ``amc finetune`` options derive from it)
and the stages it plans."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from amc.config.args import check_counts
from amc.config.blocks import (
    ClusterConfig,
    DataConfig,
    ModelConfig,
    OutputConfig,
    PruneConfig,
    PrunedOptimConfig,
    RunConfig,
)
from amc.prune.schedules import SCHEDULES, STRUCTURES, Target, round_levels
from amc.utils.errors import AmcError


@dataclass(kw_only=True)
class FinetuneConfig(ModelConfig, DataConfig, PruneConfig, PrunedOptimConfig, RunConfig,
                     ClusterConfig, OutputConfig):
    """Everything that shapes a fine-tuning run (with ``workers`` > 1: on Ray Train, data
    parallel, ``batch_size`` being the global batch of all workers together).

    Attributes:
        train_limit: Train on a seeded random subset of N training images (None: all).
        val_limit: Evaluate val on its first N images only (val is in random order).
        test_limit: Evaluate test on its first N images only (None: all).
        schedule: oneshot, iterative, cubic or lottery (without a target or policy: dense
            fine-tuning).
        target: sparsity:S (unstructured), flops:F / params:F / latency:F (channel pruning to
            a uniform ratio under the per-unit limits) or N:M such as 2:4.
        policy: Ratio policy JSON (channel pruning to exactly its ratios, as amc apply does:
            --max-ratio and --first-last-max limit --target only; with --structure
            unstructured its ratios become per-layer weight sparsities).
        teacher: Dense checkpoint to distil from (``kd_weight``) when ``checkpoint`` is
            already pruned (an ``amc apply`` output); a run that prunes its ``checkpoint``
            distils from it unless this names another.
        structure: channel or unstructured (default: from the target; channel for a policy).
        scope: Unstructured magnitude ranking: global (one threshold) or layer (same
            sparsity per layer).
        max_sparsity: Largest weight sparsity of any layer (unstructured pruning; channel
            pruning is limited by max_ratio).
        first_last_max: Limit of the first and the last unit/layer ("prune early and last
            layers less"); None: no extra limit.
        epochs: Training epochs of the whole run (iterative: rounds plus final fine-tune).
        rounds: Iterative rounds with equal steps (ignored with round_step).
        round_epochs: Epochs of fine-tuning per round (default: half of epochs over the
            rounds).
        round_step: Prune this fraction of the remaining weights per round (e.g. 0.2)
            instead of equal steps.
        round_lr: Constant LR of the rounds (default: lr / 10).
        lr_rewind: Each round replays the cosine schedule of epochs from this epoch instead of
            a constant LR.
        initial_sparsity: Cubic s_i (unstructured: sparsity; channels: fraction of the final
            ratios).
        prune_start: Cubic t0, in epochs.
        prune_end: Cubic end t0 + nΔt, in epochs (default: 0.6 x epochs).
        prune_every: Cubic Δt in optimiser steps (default: a tenth of the pruning span).
        lottery_init: Lottery reset weights: a checkpoint (at initialisation or an early
            epoch) or seed:N for a fresh initialisation with seed N.
        max_drop: Roll a round back when its val top-1 falls more than this many points below
            the previous round's (negative: never).
        max_retries: Rollbacks allowed per round before a round is accepted anyway.
        test_every_epoch: Evaluate test after every epoch (else only at the end).
        max_failures: Times Ray Train restarts the workers from the last checkpoint after a
            worker fails (with workers > 1).
    """

    train_limit: int | None = None
    val_limit: int | None = None
    test_limit: int | None = None
    schedule: str = "oneshot"
    target: str | None = None
    policy: str | None = None
    teacher: str | None = None
    structure: str | None = None
    scope: str = "global"
    max_sparsity: float = 0.99
    first_last_max: float | None = None
    epochs: float = 10.0
    rounds: int = 5
    round_epochs: float | None = None
    round_step: float | None = None
    round_lr: float | None = None
    lr_rewind: float | None = None
    initial_sparsity: float = 0.0
    prune_start: float = 0.0
    prune_end: float | None = None
    prune_every: int | None = None
    lottery_init: str | None = None
    max_drop: float | None = 5.0
    max_retries: int = 2
    test_every_epoch: bool = True
    max_failures: int = 3
    out: str = "runs/finetune"

    @property
    def distributed(self) -> bool:
        """Whether the run goes to Ray Train (more than one worker)."""
        return self.workers > 1


def _check(ok: bool, msg: str) -> None:
    if not ok:
        raise AmcError(msg)


def check_config(c: FinetuneConfig) -> None:
    """Reject bad settings with a one-line :class:`AmcError`."""
    check_counts(c)
    _check(c.schedule in SCHEDULES, f"unknown schedule {c.schedule!r}; use one of "
           f"{', '.join(SCHEDULES)}")
    target = Target.parse(c.target) if c.target else None
    _check(c.structure is None or c.structure in STRUCTURES,
           f"unknown structure {c.structure!r}; use channel or unstructured")
    _check(c.scope in ("global", "layer"), f"unknown scope {c.scope!r}; use global or layer")
    _check(c.schedule == "oneshot" or target is not None or c.policy is not None,
           f"the {c.schedule} schedule needs --target or --policy")
    _check(target is None or target.kind != "nm" or c.schedule in ("oneshot", "lottery"),
           "N:M masks are a fixed pattern; use them with --schedule oneshot or lottery")
    _check(c.teacher is None or c.kd_weight > 0,
           "--teacher is read only with distillation on; pass --kd-weight above 0 (e.g. 0.5)")
    _check(c.teacher is None or Path(c.teacher).is_file(),
           f"--teacher {c.teacher!r} is no file; pass the dense checkpoint to distil from")
    _check(c.epochs > 0, f"--epochs must be positive, got {c.epochs}")
    _check(c.batch_size > 0, f"--batch-size must be positive, got {c.batch_size}")
    _check(c.lr > 0, f"--lr must be positive, got {c.lr}")
    _check(c.rounds >= 1, f"--rounds must be at least 1, got {c.rounds}")
    _check(c.round_epochs is None or c.round_epochs > 0, "--round-epochs must be positive")
    _check(c.round_step is None or 0 < c.round_step < 1,
           f"--round-step must lie in (0, 1), got {c.round_step}")
    _check(c.lr_rewind is None or 0 <= c.lr_rewind < c.epochs,
           f"--lr-rewind must lie in [0, epochs), got {c.lr_rewind}")
    _check(0 < c.max_ratio <= 1, f"--max-ratio must lie in (0, 1], got {c.max_ratio}")
    _check(0 < c.max_sparsity <= 1, f"--max-sparsity must lie in (0, 1], got {c.max_sparsity}")
    _check(c.first_last_max is None or 0 <= c.first_last_max <= 1,
           f"--first-last-max must lie in [0, 1], got {c.first_last_max}")
    _check(0 <= c.initial_sparsity < (target.value if target and target.kind == "sparsity"
                                      else 1.0),
           f"--initial-sparsity must lie in [0, final), got {c.initial_sparsity}")
    _check(c.prune_start >= 0, "--prune-start must not be negative")
    _check(c.prune_end is None or c.prune_start < c.prune_end <= c.epochs,
           "--prune-end must lie in (prune-start, epochs]")
    _check(c.prune_every is None or c.prune_every >= 1, "--prune-every must be at least 1")
    _check(c.schedule != "lottery" or bool(c.lottery_init),
           "the lottery schedule needs --lottery-init CHECKPOINT (weights at initialisation "
           "or an early epoch) or seed:N")
    if c.lottery_init and c.lottery_init.startswith("seed:"):
        _check(c.lottery_init[5:].isdigit(), f"bad --lottery-init {c.lottery_init!r}; use "
               "seed:N or a checkpoint path")
    elif c.lottery_init:
        _check(Path(c.lottery_init).is_file(), f"--lottery-init {c.lottery_init!r} does not "
               "exist; pass a checkpoint file or seed:N")
    _check(c.max_retries >= 0, "--max-retries must not be negative")
    _check(not c.distributed or c.batch_size >= c.workers,
           f"--batch-size {c.batch_size} is the global batch of all workers; make it at least "
           f"--workers {c.workers}")
    for name in ("train_limit", "val_limit", "test_limit"):
        v = getattr(c, name)
        _check(v is None or v > 0, f"--{name.replace('_', '-')} must be positive, got {v}")


def plan_stages(cfg: FinetuneConfig, pruner) -> list[dict]:
    """The stages a run goes through (rollbacks insert more)."""
    def st(name, level, epochs, lr="cosine", physical=False, check=False, rnd=0):
        return {"name": name, "level": level, "epochs": epochs, "lr": lr,
                "physical": physical, "check": check, "round": rnd}

    if pruner is None:
        return [st("dense", None, cfg.epochs)]
    if cfg.schedule in ("oneshot", "lottery"):
        return [st(cfg.schedule, pruner.final, cfg.epochs, physical=True)]
    if cfg.schedule == "cubic":
        return [st("cubic", None, cfg.epochs)]
    levels = round_levels(pruner.final, cfg.rounds, cfg.round_step, pruner.level_for)
    er = cfg.round_epochs if cfg.round_epochs is not None else 0.5 * cfg.epochs / len(levels)
    final = cfg.epochs - er * len(levels)
    if final <= 0:
        raise AmcError(f"{len(levels)} rounds of {er:g} epochs leave no final fine-tune within "
                       f"--epochs {cfg.epochs:g}; lower --round-epochs or raise --epochs")
    lr = "rewind" if cfg.lr_rewind is not None else "constant"
    return [st("round", lv, er, lr, check=True, rnd=i + 1) for i, lv in enumerate(levels)] + \
        [st("final", pruner.final, final, physical=True)]
