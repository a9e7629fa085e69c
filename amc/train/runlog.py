"""Run-directory logging for training runs: metrics CSV, TensorBoard scalars, a progress bar
with ETA (or one line per epoch with ETA when output is not a terminal)."""

from __future__ import annotations

import csv
import os
import sys
import time
from pathlib import Path

from amc.utils.progress import make_bar

COLUMNS = ("stage", "name", "round", "level", "weight_sparsity", "epoch", "step", "run_epoch",
           "lr", "loss", "seconds", "images", "images_per_s", "val_top1", "test_top1")


class RunLog:
    """Appends metric rows to ``metrics.csv`` and TensorBoard, shows progress and ETA.

    Args:
        run_dir: The run directory (``metrics.csv`` and ``tb/`` go there).
        total_steps: Optimiser steps the whole run will take (for the ETA).
        done_steps: Steps already done (a resumed run).
    """

    def __init__(self, run_dir: Path, total_steps: int, done_steps: int = 0):
        self.csv = run_dir / "metrics.csv"
        self.total, self.done, self.t0, self.start = total_steps, done_steps, time.time(), \
            done_steps
        self.quiet = bool(os.environ.get("AMC_QUIET"))
        self.tb = None
        try:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(str(run_dir / "tb"))
        except ImportError:  # tensorboard is a dependency, but logging must not fail a run
            pass
        self.bar = self.task = None
        self.bar = make_bar()
        if self.bar is not None:
            self.bar.start()
            self.task = self.bar.add_task("finetune", total=total_steps, completed=done_steps)

    def set_total(self, total_steps: int) -> None:
        self.total = total_steps
        if self.bar is not None:
            self.bar.update(self.task, total=total_steps)

    def step(self, desc: str | None = None) -> None:
        self.done += 1
        if self.bar is not None:
            self.bar.update(self.task, advance=1, **({"description": desc} if desc else {}))

    def eta(self) -> float:
        rate = (self.done - self.start) / max(1e-9, time.time() - self.t0)
        # steps past the plan (a rolled-back round's retry not yet counted) leave none to go
        return max(0, self.total - self.done) / rate if rate > 0 else float("nan")

    def rewrite(self, rows: list[dict]) -> None:
        """Replace ``metrics.csv`` with ``rows`` (a resumed run: the checkpoint's rows)."""
        self.csv.unlink(missing_ok=True)
        for r in rows:
            self._csv(r)

    def _csv(self, row: dict) -> None:
        new = not self.csv.exists()
        with open(self.csv, "a", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(COLUMNS), extrasaction="ignore")
            if new:
                w.writeheader()
            w.writerow({k: row.get(k, "") for k in COLUMNS})

    def row(self, row: dict) -> None:
        self._csv(row)
        if self.tb is not None:
            for k in ("loss", "lr", "val_top1", "test_top1", "images_per_s", "weight_sparsity",
                      "level"):
                if isinstance(row.get(k), int | float):
                    self.tb.add_scalar(k, row[k], self.done)
            self.tb.flush()
        if not self.quiet:
            test = f" test {row['test_top1']:6.2f}%" if "test_top1" in row else ""
            msg = (f"[{row['name']}{' ' + str(row['round']) if row.get('round') else ''}] "
                   f"epoch {row['run_epoch']:.2f}  loss {row['loss']:.3f}  val "
                   f"{row['val_top1']:6.2f}%{test}  {row['images_per_s']:.0f} img/s  "
                   f"ETA {_fmt(self.eta())}")
            if self.bar is not None:
                self.bar.console.print(msg)
            else:
                print(msg, file=sys.stdout, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()
        if self.tb is not None:
            self.tb.close()


class NoLog:
    """The log of a worker that writes nothing (every worker but rank 0 of a distributed
    run): the methods of :class:`RunLog`, doing nothing."""

    def set_total(self, total_steps: int) -> None:
        pass

    def step(self, desc: str | None = None) -> None:
        pass

    def rewrite(self, rows: list[dict]) -> None:
        pass

    def row(self, row: dict) -> None:
        pass

    def close(self) -> None:
        pass


def _fmt(seconds: float) -> str:
    if seconds != seconds:  # nan
        return "?"
    m, s = divmod(int(seconds), 60)
    h, m = divmod(m, 60)
    return f"{h:d}:{m:02d}:{s:02d}"
