"""Fine-tuning with pruning schedules: ``amc finetune``.

The inner loop is :func:`amc.train.loop.train`; this module runs a list of *stages* on top of it:

* dense (no target): one cosine fine-tune (the dense baseline gets the same budget);
* ``oneshot``: prune to the target, fine-tune ``epochs``;
* ``iterative``: rounds that prune a further step toward the target (equal steps or
  ``--round-step`` of the remaining weights) and fine-tune ``round_epochs`` at a small
  constant LR (or, with ``--lr-rewind K``, the original schedule replayed from epoch K), then
  a final cosine fine-tune with the rest of ``epochs``;
* ``cubic``: Zhu & Gupta gradual pruning inside one cosine run (masks every Δt steps);
* ``lottery``: prune the trained model, reset the survivors to ``--lottery-init``, retrain.

Structured rounds keep the dense architecture and zero the pruned channels with masks
(:class:`amc.prune.masks.ChannelPruner`), so trained weights carry over between rounds and the
channels are re-ranked on the current weights each round; the network is physically pruned
with :class:`amc.prune.units.PrunableModel` once, before the final fine-tune (one-shot: before
its fine-tune). A checkpoint is written before every stage and after every epoch; a round
whose val top-1 drops more than ``max_drop`` points below the previous round's is rolled back
and retried with half the step.
The runner also serves each worker of a data-parallel run (:mod:`amc.train.session`): rank 0
writes the files, all take rank 0's decisions, the resume point goes through the session.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from amc.data.datasets import Dataset, load_dataset
from amc.data.loader import steps_per_epoch
from amc.models.checkpoint import load_state_dict_resizing, read_file, save_model
from amc.models.evaluate import check_model_data, evaluate, evaluate_split
from amc.models.registry import create_model
from amc.prune.masks import Masks, apply_masks, bake, sparsity
from amc.prune.schedules import (
    StructuredPruner,
    build_pruner,
    cubic_plan,
    cubic_sparsity,
    steps_in,
)
from amc.train.finetune_config import FinetuneConfig, check_config, plan_stages
from amc.train.loop import TrainConfig, train
from amc.train.runlog import NoLog, RunLog
from amc.train.session import Session
from amc.train.start import choose_teacher, macs_of_architecture
from amc.utils.device import device_of
from amc.utils.errors import AmcError
from amc.utils.io import (
    atomic_write,
    check_out_dir,
    check_writable,
    made_dir,
    remove_entries,
    write_json,
)

__all__ = ["FinetuneConfig", "finetune", "plan_stages", "run_finetune"]
FORMAT = "amc-finetune/1"
RUN_FILES = ("config.json", "checkpoints", "tb", "metrics.csv", "summary.json", "model.pt",
             "policy.json", "ray_train", "ray_logs")
"""What a fine-tuning run writes into its folder (anything else there is not amc's)."""

def subset(data: Dataset, cfg: FinetuneConfig) -> Dataset:
    """``data`` with a seeded random ``train_limit`` subset of train and the first
    ``val_limit`` / ``test_limit`` images of val and test."""
    if not (cfg.train_limit or cfg.val_limit or cfg.test_limit):
        return data
    n = len(data.labels["train"])
    tr = (np.sort(np.random.default_rng(cfg.split_seed).permutation(n)[:cfg.train_limit])
          if cfg.train_limit else np.arange(n))
    return data.select(train=tr, val=slice(cfg.val_limit), test=slice(cfg.test_limit))


class Runner:
    """One fine-tuning run (see the module docstring); ``hooks`` (``before_stage``,
    ``after_begin`` (after pruning), ``after_stage``, ``on_epoch``) let tests watch the run
    and inject failures; ``session``: this process's place in the run (default: alone)."""

    def __init__(self, cfg: FinetuneConfig, hooks: dict | None = None,
                 session: Session | None = None):
        self.cfg, self.hooks = cfg, hooks or {}
        self.session = session or Session()
        self.run = Path(cfg.out)
        self.ckpt = self.run / "checkpoints"
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        torch.manual_seed(cfg.seed)
        self.dev = self.session.device(cfg.device)
        self.data = subset(load_dataset(cfg.data, **cfg.dataset_kwargs(cfg.model)), cfg)
        self.dense = create_model(cfg.model, num_classes=cfg.num_classes,
                                  checkpoint=cfg.checkpoint, unsafe_load=cfg.unsafe_load)
        check_model_data(self.dense, self.data, cfg.model)
        self.spe = steps_per_epoch(len(self.data.labels["train"]), cfg.batch_size,
                                   self.session.world)
        self.calib = self.data.calibration(256, cfg.seed)
        self.pruner = build_pruner(cfg, self.dense, self.data.input_size, self.calib)
        if isinstance(self.pruner, StructuredPruner) and self.pruner.pm_dense.converted:
            self.dense = self.pruner.pm_dense.model  # option-A shortcuts as selection convs
        self.start_macs_ratio = macs_of_architecture(self.dense, cfg.model, cfg.num_classes,
                                                     self.data.input_size)
        self.teacher = choose_teacher(cfg, self.dense, self.pruner is not None,
                                      self.start_macs_ratio, self.data, self.session.main)

    # ------------------------------------------------------------------ state
    def fresh_state(self) -> dict:
        v0 = self.val(self.dense)
        return {"format": FORMAT, "stages": plan_stages(self.cfg, self.pruner), "stage": 0,
                "step": None, "masks": {}, "level": 0.0, "pruned": False, "optimizer": None,
                "prev_val": v0, "start_val": v0, "prev_level": 0.0,
                "steps_done": 0, "epochs_done": 0.0, "rows": [], "rounds": [],
                "rollbacks": [], "events": [], "cubic": None}

    def save(self, path: Path, model: nn.Module) -> None:
        sd = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
        with atomic_write(path) as tmp:
            torch.save({**self.st, "model": sd}, tmp)

    def checkpoint(self, model: nn.Module) -> None:
        """Save the resume point (``last.pt``) through the session."""
        row = {k: v for k, v in (self.st["rows"] or [{}])[-1].items() if k != "optimizer"}
        self.session.checkpoint(lambda d: self.save(d / "last.pt", model), self.ckpt, row)

    def restore(self, snap: dict) -> nn.Module:
        model = create_model(self.cfg.model, num_classes=self.cfg.num_classes)
        load_state_dict_resizing(model, snap["model"], resize=True)
        return model

    def val(self, model: nn.Module) -> float:
        """val top-1 (rank 0's: decisions taken on it are the same on every worker)."""
        return self.session.agree(evaluate(model, *self.data.tensors("val"),
                                           device=self.dev).top1)

    # ------------------------------------------------------------------ stages
    def total_steps(self) -> int:
        return sum(steps_in(s["epochs"], self.spe) for s in self.st["stages"])

    def tcfg(self, stage: dict, k: int) -> tuple[TrainConfig, int, int | None]:
        c = self.cfg
        const = stage["lr"] == "constant"
        rewind = stage["lr"] == "rewind"
        recipe = {**c.optim_fields(), "lr": (c.round_lr or 0.1 * c.lr) if const else c.lr,
                  "warmup_epochs": 0.0 if const else c.warmup_epochs}
        t = TrainConfig(**recipe, epochs=c.epochs if rewind else stage["epochs"],
                        seed=c.seed + 1000 * k, device=c.device,
                        eval_splits=("val", "test") if c.test_every_epoch else ("val",),
                        lr_schedule="constant" if const else "cosine")
        if rewind:
            start = int(round(c.lr_rewind * self.spe))
            return t, start, start + steps_in(stage["epochs"], self.spe)
        return t, 0, None

    def set_masks(self, model: nn.Module, masks: Masks, level: float) -> None:
        self.st["masks"], self.st["level"] = masks, float(level)
        self._dev_masks = {}
        apply_masks(model, masks)

    def begin(self, model: nn.Module, stage: dict) -> nn.Module:
        """Prune (or reset) at the start of a stage."""
        p = self.pruner
        if stage["name"] == "cubic":
            total = steps_in(stage["epochs"], self.spe)
            t0, n, dt = cubic_plan(self.spe, total, self.cfg.prune_start, self.cfg.prune_end,
                                   self.cfg.prune_every)
            self.st["cubic"] = {"t0": t0, "n": n, "dt": dt, "s_i": self.cfg.initial_sparsity,
                                "s_f": p.final}
            if t0 == 0:
                self.prune_event(model, 0)
            return model
        if stage["level"] is None:
            return model
        self.set_masks(model, p.masks(model, stage["level"]), stage["level"])
        if stage["name"] == "lottery":
            init = self.lottery_init()
            if isinstance(p, StructuredPruner):
                model = p.pm(model).prune(p.at(stage["level"]), model=bake(init))
                self.st["masks"], self.st["pruned"] = {}, True
                return model
            model.load_state_dict(init.state_dict())
            apply_masks(model, self.st["masks"])
            return model
        if stage["physical"] and isinstance(p, StructuredPruner) and not self.st["pruned"]:
            model = p.physical(model, stage["level"])
            self.st["masks"], self.st["pruned"] = {}, True
        return self.recalibrate(model)

    def recalibrate(self, model: nn.Module) -> nn.Module:
        """BatchNorm statistics re-estimated on the calibration images once a stage has
        pruned (the running ones were the unpruned network's, and a short fine-tune's few
        steps would not replace them: `amc apply` and every score recalibrate too)."""
        from amc.prune.repair import recalibrate_bn

        dev = device_of(model)
        return recalibrate_bn(model, (x.to(dev) for x in self.calib[0].split(64)))

    def lottery_init(self) -> nn.Module:
        spec = self.cfg.lottery_init
        if spec.startswith("seed:"):
            torch.manual_seed(int(spec[5:]))
            return create_model(self.cfg.model, num_classes=self.cfg.num_classes)
        return create_model(self.cfg.model, num_classes=self.cfg.num_classes, checkpoint=spec,
                            unsafe_load=self.cfg.unsafe_load)

    def prune_event(self, model: nn.Module, step: int) -> None:
        c = self.st["cubic"]
        level = cubic_sparsity(step, c["s_i"], c["s_f"], c["t0"], c["n"], c["dt"])
        self.set_masks(model, self.pruner.masks(model, level), level)
        self.st["events"].append({"step": step, "level": level,
                                  "target_sparsity": self.pruner.sparsity_at(level),
                                  "weight_sparsity": sparsity(model)})

    def on_step(self, model: nn.Module, step: int, total: int) -> None:
        c = self.st["cubic"]
        if c and step >= c["t0"] and (step - c["t0"]) % c["dt"] == 0 and \
                step <= c["t0"] + c["n"] * c["dt"]:
            self.prune_event(model, step)
        elif self.st["masks"]:
            dev = device_of(model)
            if not self._dev_masks:
                self._dev_masks = {k: v.to(dev) for k, v in self.st["masks"].items()}
            apply_masks(model, self._dev_masks)
        self.log.step(self.st["stages"][self.st["stage"]]["name"])

    def on_epoch(self, model: nn.Module, stage: dict, k: int, row: dict) -> None:
        opt = row.pop("optimizer")
        prev_step = self.st["step"]
        self.st["steps_done"] += row["step"] - prev_step
        self.st["epochs_done"] += (row["step"] - prev_step) / self.spe
        self.st["step"], self.st["optimizer"] = row["step"], opt
        row = {"stage": k, "name": stage["name"], "round": stage["round"],
               "level": self.st["level"], "weight_sparsity": sparsity(model),
               "run_epoch": self.st["epochs_done"], **row}
        self.st["rows"].append(row)
        self.log.row(row)
        self.checkpoint(model)
        if "on_epoch" in self.hooks:
            self.hooks["on_epoch"](row)

    # ------------------------------------------------------------------ main loop
    def execute(self, resume: bool) -> dict[str, Any]:
        snap = self.session.load_last(self.ckpt) if resume else None
        if snap is not None:
            self.st = {k: v for k, v in snap.items() if k != "model"}
            self.st.setdefault("resumes", []).append(
                {"stage": self.st["stage"], "step": self.st["step"],
                 "epochs_done": self.st["epochs_done"]})
            model = self.restore(snap)
        else:
            self.st, model = self.fresh_state(), bake(self.dense)
        self._dev_masks: Masks = {}
        apply_masks(model, self.st["masks"])
        self.log = (RunLog(self.run, self.total_steps(), self.st["steps_done"])
                    if self.session.main else NoLog())
        if snap is not None:  # rows written after the last checkpoint are dropped: redone
            self.log.rewrite(self.st["rows"])
        try:
            while self.st["stage"] < len(self.st["stages"]):
                model = self.run_stage(model)
        finally:
            self.log.close()
        return self.finish(model)

    def run_stage(self, model: nn.Module) -> nn.Module:
        k = self.st["stage"]
        stage = self.st["stages"][k]
        tcfg, start, stop = self.tcfg(stage, k)
        if self.st["step"] is None:
            if self.session.main:  # rollbacks read it (on every worker: a shared folder)
                self.save(self.ckpt / f"stage_{k:02d}.pt", model)
            self.checkpoint(model)
            if "before_stage" in self.hooks:
                self.hooks["before_stage"](model, dict(stage, index=k))
            model = self.begin(model, stage)
            if stage["name"] == "oneshot" and "pruned_val" not in self.st:
                self.st["pruned_val"] = self.val(model)  # what the fine-tune starts from
            if stage["check"]:  # a round: what its pruning cost, before its training
                self.st["round_pruned_val"] = self.val(model)
            self.st["step"], self.st["optimizer"] = start, None
            if "after_begin" in self.hooks:
                self.hooks["after_begin"](model, dict(stage, index=k))
        train(model, self.data, tcfg, self.teacher, on_step=self.on_step,
              start_step=self.st["step"], optimizer_state=self.st["optimizer"],
              on_epoch=lambda row: self.on_epoch(model, stage, k, row), stop_step=stop,
              session=self.session)
        if "after_stage" in self.hooks:
            self.hooks["after_stage"](model, dict(stage, index=k))
        val = self.val(model)
        drop = self.st["prev_val"] - val
        c = self.cfg
        bad = c.max_drop is not None and c.max_drop >= 0 and drop > c.max_drop
        tries = sum(r["round"] == stage["round"] for r in self.st["rollbacks"])
        if stage["check"] and bad and tries < c.max_retries:
            return self.rollback(k, stage, val, drop, tries)
        if stage["check"] and bad and self.session.main and not os.environ.get("AMC_QUIET"):
            print(f"round {stage['round']}: val {val:.2f}% is {drop:.2f} points below the "
                  f"previous round; accepted after {tries} rollback(s) (--max-retries "
                  f"{c.max_retries})", flush=True)
        if stage["check"]:
            self.st["rounds"].append({"stage": k, "round": stage["round"],
                                      "level": stage["level"], "val_top1": val,
                                      "prev_val_top1": self.st["prev_val"],
                                      "pruned_val_top1": self.st.get("round_pruned_val"),
                                      "rollbacks_so_far": tries, "accepted_despite_drop": bad})
            self.st["prev_level"] = stage["level"]
        self.st["prev_val"] = val
        self.st.update(stage=k + 1, step=None, optimizer=None)
        self.checkpoint(model)
        return model

    def rollback(self, k: int, stage: dict, val: float, drop: float, tries: int) -> nn.Module:
        snap = read_file(self.ckpt / f"stage_{k:02d}.pt")
        model = self.restore(snap)
        prev, lv = self.st["prev_level"], stage["level"]
        new = prev + (lv - prev) / 2
        self.st["rollbacks"].append({"stage": k, "round": stage["round"], "level": lv,
                                     "val_top1": val, "prev_val_top1": self.st["prev_val"],
                                     "pruned_val_top1": self.st.get("round_pruned_val"),
                                     "drop": drop, "retry_level": new,
                                     "attempt": tries + 1})
        if self.session.main and not os.environ.get("AMC_QUIET"):
            print(f"round {stage['round']}: val {val:.2f}% is {drop:.2f} points below the "
                  f"previous round; rolled back, retrying at level {new:.4f}", flush=True)
        self.st["stages"][k] = dict(stage, level=new)
        self.st["stages"].insert(k + 1, dict(stage))
        for key in ("masks", "level", "pruned"):
            self.st[key] = snap[key]
        self.st.update(step=None, optimizer=None)
        self._dev_masks = {}
        self.log.set_total(self.total_steps())
        return model

    def finish(self, model: nn.Module) -> dict[str, Any]:
        from amc.cost.macs import model_cost

        p = self.pruner
        if isinstance(p, StructuredPruner) and not self.st["pruned"] and self.st["masks"]:
            model = p.physical(model, self.st["level"])
        size = self.data.input_size
        macs, params = model_cost(model, size)
        d_macs, d_params = model_cost(self.dense, size)
        zeros = sparsity(model)
        nonzero = sum(int((q != 0).sum()) for q in model.parameters())
        test = evaluate_split(model, self.data, "test", self.dev).top1
        final = {"val_top1": self.val(model), "test_top1": test,
                 "macs": macs, "params": params, "macs_ratio": macs / d_macs,
                 "params_ratio": params / d_params, "start_macs_ratio": self.start_macs_ratio,
                 "weight_sparsity": zeros,
                 "nonzero_params": nonzero, "level": self.st["level"]}
        meta = {"finetune": {"schedule": self.cfg.schedule, "target": self.cfg.target,
                             "policy": self.cfg.policy, **final}}
        if self.session.main:
            save_model(model, self.run / "model.pt", self.cfg.model, meta)
        if isinstance(p, StructuredPruner) and self.session.main:
            from amc.prune.policy import make_policy

            make_policy(p.pm_dense, p.at(self.st["level"]), self.cfg.model,
                        self.cfg.target or f"policy:{self.cfg.policy}", "finetune",
                        self.cfg.seed).save(self.run / "policy.json")
        speed = {}
        for name in dict.fromkeys(r["name"] for r in self.st["rows"]):
            rows = [r for r in self.st["rows"] if r["name"] == name]
            ips = sum(r["images_per_s"] for r in rows) / len(rows)
            speed[name] = {"images_per_s": ips, "seconds_per_epoch":
                           len(self.data.labels["train"]) / ips, "epochs_measured": len(rows)}
        summary = {"config": self.cfg.as_dict(), "final": final,
                   "start_val_top1": self.st["start_val"],
                   "pruned_val_top1": self.st.get("pruned_val"),
                   "epochs_trained": self.st["epochs_done"], "stages": self.st["stages"],
                   "rounds": self.st["rounds"], "rollbacks": self.st["rollbacks"],
                   "prune_events": self.st["events"], "speed": speed,
                   "train_images": len(self.data.labels["train"]),
                   "workers": self.session.world, "resumes": self.st.get("resumes", [])}
        if self.session.main:
            write_json(self.run / "summary.json", summary)
        return summary


def run_finetune(cfg: FinetuneConfig, resume: bool = False, hooks: dict | None = None,
                 execute: Callable[[Runner, bool], dict[str, Any]] | None = None,
                 session: Session | None = None) -> dict[str, Any]:
    """Run (or, with ``resume``, continue) a fine-tuning run in ``cfg.out``; returns the
    summary also written to ``summary.json``. ``execute`` runs the checked run (default:
    ``runner.execute`` here; ``amc.agents.ray_train`` starts its workers instead) and
    ``session`` is the checking runner's."""
    check_config(cfg)
    if cfg.distributed and execute is None:
        raise AmcError(f"--workers {cfg.workers} runs on Ray Train: use `amc finetune "
                       "--workers N` or amc.agents.ray_train.run_finetune_ray")
    run = Path(cfg.out)
    check_writable(run)
    if not resume:
        check_out_dir(run, RUN_FILES, cfg.force)
        if (run / "config.json").exists() and not cfg.force:
            raise AmcError(f"{run} already holds a run; pass --force to start over or "
                           f"--resume {run} to continue it")
    runner = Runner(cfg, hooks, session)  # reads, checks model and data; writes nothing
    # a failed start removes the folder it made; one with a checkpoint stays, to resume
    with made_dir(run, keep=lambda d: (d / "checkpoints").is_dir()):
        if not resume:  # a run replaced by --force, or a failed start's leftovers
            remove_entries(run, RUN_FILES)
            write_json(run / "config.json", replace(cfg, force=False).as_dict())
        return runner.execute(resume) if execute is None else execute(runner, resume)


def finetune(config: FinetuneConfig | None = None, *, resume: bool = False,
             **fields: Any) -> dict[str, Any]:
    """Fine-tune from Python (``amc.finetune``): a :class:`FinetuneConfig`, its fields as
    keywords, or both (the keywords win). Returns the summary; the model is
    ``<out>/model.pt``."""
    cfg = replace(config, **fields) if config is not None else FinetuneConfig(**fields)
    return run_finetune(cfg, resume=resume)
