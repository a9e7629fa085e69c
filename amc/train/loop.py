"""Training loop shared by the demo, dense fine-tuning and pruned-model fine-tuning.

SGD with Nesterov momentum, weight decay, cosine schedule with linear warm-up, optional
label smoothing and knowledge distillation from a teacher, augmentation (in memory: random
crop with 4-pixel padding and flip on tensors; streamed image folders: random-resized crop
and flip in the loader workers), ``device`` auto/cpu/cuda with mixed precision
(:mod:`amc.utils.precision`), channels-last and ``torch.compile``, one process or a worker
of a data-parallel run (:mod:`amc.train.session`; the batches of :mod:`amc.data.loader`), per-epoch
``val``/``test`` evaluation and a CSV of metrics.
"""

from __future__ import annotations

import csv
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from amc.config.blocks import OptimConfig, RunConfig
from amc.data.datasets import Dataset
from amc.data.loader import BatchPlan
from amc.data.loader import steps_per_epoch as spe_of
from amc.models.evaluate import evaluate_split
from amc.train.session import Session
from amc.train.teacher import Teacher
from amc.utils.errors import AmcError
from amc.utils.precision import precision


@dataclass(kw_only=True)
class TrainConfig(OptimConfig, RunConfig):
    """Recipe for (fine-)training.

    Attributes:
        epochs: Number of passes over ``train``.
        eval_splits: Splits evaluated after each epoch.
        lr_schedule: ``cosine`` (with warm-up) or ``constant`` (``lr`` throughout).
    """

    epochs: float = 1.0
    eval_splits: tuple[str, ...] = ("val", "test")
    lr_schedule: str = "cosine"


def lr_at(step: int, total: int, warmup: int, base_lr: float) -> float:
    """Cosine schedule with linear warm-up (step counted from 0)."""
    if warmup and step < warmup:
        return base_lr * (step + 1) / warmup
    t = (step - warmup) / max(1, total - warmup)
    return 0.5 * base_lr * (1 + math.cos(math.pi * min(1.0, t)))


def train(model: nn.Module, data: Dataset, cfg: TrainConfig, teacher: nn.Module | None = None,
          log_csv: str | Path | None = None,
          on_step: Callable[[nn.Module, int, int], None] | None = None,
          start_step: int = 0, optimizer_state: dict | None = None,
          on_epoch: Callable[[dict], None] | None = None,
          stop_step: int | None = None, session: Session | None = None) -> list[dict]:
    """Train ``model`` in place on ``data.train``.

    Args:
        model: The model to train.
        data: Dataset with its splits (in memory or streamed).
        cfg: The recipe.
        teacher: Dense model for knowledge distillation (used when ``cfg.kd_weight`` > 0;
            its logits come from a folded copy, :class:`amc.train.teacher.Teacher`, and the
            model itself is left as it is).
        log_csv: Where to append per-epoch metrics.
        on_step: Called as ``on_step(model, step, total_steps)`` after each optimiser step
            (pruning schedules hook in here).
        start_step: Resume at this global step (the LR schedule continues from it).
        optimizer_state: Optimiser state to resume with.
        on_epoch: Called with each epoch's metrics row.
        stop_step: End this call at this global step (default: the schedule's end); with
            ``start_step`` it runs a window of the schedule (learning-rate rewinding).
        session: This process's place in the run (default: a single process); with N
            workers each trains on its share of every global batch of ``cfg.batch_size``.

    Returns:
        One metrics dict per epoch: epoch, step, lr, loss (mean training loss over the
        epoch's images, all workers), seconds, images (trained on, all workers),
        images_per_s, and
        ``<split>_top1`` per evaluated split.
    """
    session = session or Session()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    dev = session.device(cfg.device)
    prec = precision(cfg.amp, dev)
    fmt = torch.channels_last if cfg.channels_last else torch.contiguous_format
    model.to(dev, memory_format=fmt)
    distil = (Teacher(teacher, dev, cfg.channels_last, cfg.amp)
              if teacher is not None and cfg.kd_weight > 0 else None)
    n = len(data.labels["train"])
    steps_per_epoch = spe_of(n, cfg.batch_size, session.world)
    total = max(1, int(round(cfg.epochs * steps_per_epoch)))
    warmup = int(cfg.warmup_epochs * steps_per_epoch)
    if cfg.lr_schedule not in ("cosine", "constant"):
        raise AmcError(f"unknown lr schedule {cfg.lr_schedule!r}; use cosine or constant")
    end = total if stop_step is None else min(total, stop_step)
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (no_decay if p.dim() <= 1 else decay).append(p)
    opt = torch.optim.SGD([{"params": decay, "weight_decay": cfg.weight_decay},
                           {"params": no_decay, "weight_decay": 0.0}],
                          lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.momentum > 0)
    if optimizer_state:
        opt.load_state_dict(optimizer_state)
    augment = data.augment if cfg.augment is None else cfg.augment
    scaler = torch.amp.GradScaler(dev.type, enabled=prec.scaled)
    net = session.wrap(model)
    if cfg.compile:
        net = torch.compile(net)
    history: list[dict] = []
    step = start_step
    t_epoch = time.perf_counter()
    seen, loss_sum = 0, 0.0
    while step < end:
        epoch, first = divmod(step, steps_per_epoch)
        plan = BatchPlan(n, cfg.batch_size, cfg.seed, epoch, session.rank, session.world,
                         start=first, stop=first + (end - step))
        model.train()
        for xb, yb in data.batches("train", plan, augment, cfg.seed, pin=dev.type == "cuda"):
            xb = data.to_input(xb, dev, cfg.channels_last)
            yb = yb.to(dev, non_blocking=True)
            for g in opt.param_groups:
                g["lr"] = (cfg.lr if cfg.lr_schedule == "constant"
                           else lr_at(step, total, warmup, cfg.lr))
            with prec.autocast(dev):
                out = net(xb)
                loss = F.cross_entropy(out, yb, label_smoothing=cfg.label_smoothing)
                if distil is not None:
                    t = cfg.kd_temperature
                    kd = F.kl_div(F.log_softmax(out.float() / t, 1),
                                  F.softmax(distil(xb) / t, 1),
                                  reduction="batchmean") * t * t
                    loss = (1 - cfg.kd_weight) * loss + cfg.kd_weight * kd
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
            step += 1
            seen += len(yb)
            loss_sum = loss_sum + loss.detach().float() * len(yb)  # no sync per step
            if on_step is not None:
                on_step(model, step, total)
        if step % steps_per_epoch == 0 or step >= end:
            secs = time.perf_counter() - t_epoch
            sums = session.all_sum(torch.tensor([float(loss_sum), float(seen)],
                                                dtype=torch.float64))
            row = {"epoch": math.ceil(step / steps_per_epoch), "step": step,
                   "lr": opt.param_groups[0]["lr"], "loss": float(sums[0] / max(sums[1], 1)),
                   "seconds": secs, "images": int(sums[1]),
                   "images_per_s": float(sums[1]) / max(secs, 1e-9)}
            for split in cfg.eval_splits:
                row[f"{split}_top1"] = evaluate_split(model, data, split, dev).top1
            history.append(row)
            if log_csv and session.main:
                _append_csv(log_csv, row)
            if on_epoch:
                on_epoch({**row, "optimizer": opt.state_dict()})
            t_epoch, seen, loss_sum = time.perf_counter(), 0, 0.0
    model.to("cpu", memory_format=torch.contiguous_format).eval()
    return history


def _append_csv(path: str | Path, row: dict) -> None:
    p = Path(path)
    new = not p.exists()
    p.parent.mkdir(parents=True, exist_ok=True)
    with open(p, "a", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(row))
        if new:
            w.writeheader()
        w.writerow(row)


def config_dict(cfg: TrainConfig) -> dict:
    return asdict(cfg)
