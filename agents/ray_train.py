"""Distributed fine-tuning on Ray Train: ``amc finetune --workers N [--address ...]
[--gpus-per-worker G]``.

Ray Train's ``TorchTrainer`` starts N workers and their process group (DDP over gloo on CPUs,
nccl on GPUs). Each worker runs the same :class:`amc.train.finetune.Runner` as a single
process does, through :class:`RayTrainSession`: it trains on its share of every global batch
(:mod:`amc.data.loader`; an image folder is streamed, each worker reading only its share), its
model is wrapped by ``ray.train.torch.prepare_model``, rank 0 writes the run's files, and the
resume point goes to ``ray.train.report`` as a checkpoint that Ray Train keeps in
``<out>/ray_train``. When a worker fails, Ray Train restarts the group
(``FailureConfig(max_failures)``) and ``ray.train.get_checkpoint()`` hands the workers the
last checkpoint; ``amc finetune --resume DIR`` starts a trainer with the same name and storage,
which Ray Train restores from its latest checkpoint.

Every worker must reach the run folder under the same path: one machine, or shared storage
on a cluster (where Ray Train needs it for its checkpoints anyway). Paths are made absolute
before the workers start, since Ray Train runs them in a folder of their own. The workers'
loaders are not passed through ``prepare_data_loader``: its ``DistributedSampler`` shards
each epoch its own way, where amc's batch plans give every worker its share of the same
global batches (so N workers match one process, and a run resumes mid-epoch).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import signal
import tempfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from amc.train.finetune import FinetuneConfig, Runner, run_finetune
from amc.train.session import LAST, DistributedSession, Session
from amc.utils.device import resolve_device
from amc.utils.errors import AmcError, one_line

RUN_NAME = "ray_train"
"""Ray Train's run name; its checkpoints go to ``<out>/ray_train``."""


class RayTrainSession(DistributedSession):
    """A Ray Train worker: rank, world and device from Ray Train's context."""

    def __init__(self) -> None:
        import ray.train
        import ray.train.torch

        ctx = ray.train.get_context()
        dev = ray.train.torch.get_device()
        if dev.type == "cuda":
            torch.cuda.set_device(dev)
        super().__init__(ctx.get_world_rank(), ctx.get_world_size(), dev)

    def device(self, requested: str) -> torch.device:
        if requested.startswith("cuda") and self._device.type != "cuda":
            raise AmcError("--device cuda asked for but this Ray worker has no GPU; pass "
                           "--gpus-per-worker 1")
        return self._device

    def wrap(self, model: nn.Module) -> nn.Module:
        from ray.train.torch import prepare_model

        return prepare_model(model, move_to_device=False)

    def checkpoint(self, write: Callable[[Path], None], ckpt_dir: Path, metrics: dict) -> None:
        import ray.train

        with tempfile.TemporaryDirectory() as d:
            ckpt = None
            if self.main:
                write(Path(d))
                ckpt = ray.train.Checkpoint.from_directory(d)
            ray.train.report({k: v for k, v in metrics.items()
                              if isinstance(v, int | float | str)}, checkpoint=ckpt)

    def load_last(self, ckpt_dir: Path) -> dict | None:
        import ray.train

        from amc.models.checkpoint import read_file

        ckpt = ray.train.get_checkpoint()
        if ckpt is None:
            return None
        with ckpt.as_directory() as d:
            return read_file(Path(d) / LAST)


class _OnDriver(Session):
    """The driver's session: it only checks model and data (on the CPU) before the workers
    start."""

    def device(self, requested: str) -> torch.device:
        return torch.device("cpu")


KILL_ENV = "AMC_TEST_KILL_WORKER"
"""Test only: ``RANK:EPOCH:MARKER`` in the environment of the run makes worker RANK kill
itself (SIGKILL) once, right after run epoch EPOCH's checkpoint has been reported by every
worker (so Ray Train holds at least the previous epoch's checkpoint). It first creates the
file MARKER, holding that epoch's row; the restarted workers find it and carry on."""


def _kill_once(session: RayTrainSession, spec: str) -> Callable[[dict], None]:
    """The ``on_epoch`` hook of :data:`KILL_ENV`."""
    rank, epoch, marker = spec.split(":", 2)

    def on_epoch(row: dict) -> None:
        if abs(row["run_epoch"] - float(epoch)) > 1e-6:
            return
        import torch.distributed as dist

        # every worker has returned from this epoch's ray.train.report, so the controller has
        # taken every worker's report of the epoch before (its result queue holds one)
        dist.barrier()
        if session.rank != int(rank):
            return
        try:
            fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            return  # killed once already: this is the restarted group
        with os.fdopen(fd, "w") as f:
            json.dump({**row, "pid": os.getpid()}, f, default=str)
        os.kill(os.getpid(), signal.SIGKILL)

    return on_epoch


def _train_worker(config: dict) -> None:
    """Ray Train's ``train_loop_per_worker``: one worker of the run (resumes from Ray Train's
    checkpoint when there is one)."""
    cfg = FinetuneConfig(**config)
    if cfg.input_size is not None:
        cfg = replace(cfg, input_size=tuple(cfg.input_size))
    session = RayTrainSession()
    kill = os.environ.get(KILL_ENV)
    hooks = {"on_epoch": _kill_once(session, kill)} if kill else None
    Runner(cfg, hooks=hooks, session=session).execute(resume=True)


def absolute_paths(cfg: FinetuneConfig) -> FinetuneConfig:
    """``cfg`` with every path absolute (the workers run elsewhere)."""
    def ab(p: str | None) -> str | None:
        return str(Path(p).expanduser().resolve()) if p else p

    data = cfg.data
    if data.startswith("imagefolder:"):
        data = "imagefolder:" + ab(data.partition(":")[2])
    lottery = cfg.lottery_init
    if lottery and not lottery.startswith("seed:"):
        lottery = ab(lottery)
    return replace(cfg, out=ab(cfg.out), data=data, data_dir=ab(cfg.data_dir),
                   checkpoint=ab(cfg.checkpoint), policy=ab(cfg.policy), lottery_init=lottery)


def check_devices(cfg: FinetuneConfig) -> None:
    """Refuse device settings the workers cannot meet, before anything is written."""
    if not cfg.address:
        resolve_device(cfg.device)  # a local Ray has this machine's devices
    if cfg.device.startswith("cuda") and cfg.gpus_per_worker <= 0:
        raise AmcError("--device cuda on Ray Train workers needs GPUs reserved for them; pass "
                       "--gpus-per-worker 1")
    if cfg.device == "cpu" and cfg.gpus_per_worker > 0:
        raise AmcError("--device cpu with --gpus-per-worker: drop --gpus-per-worker or use "
                       "--device auto")


@contextlib.contextmanager
def _progress(run: Path) -> Iterator[None]:
    """Print each epoch's row of ``metrics.csv`` (written by rank 0) while the workers run."""
    import csv

    stop = threading.Event()

    def tail() -> None:
        shown = 0
        while not stop.wait(2.0):
            with contextlib.suppress(OSError, csv.Error, KeyError, ValueError):
                with open(run / "metrics.csv", newline="") as f:
                    rows = list(csv.DictReader(f))
                shown = min(shown, len(rows))  # rows after a checkpoint are redone
                for r in rows[shown:]:
                    print(f"[{r['name']}] epoch {float(r['run_epoch']):.2f}  loss "
                          f"{float(r['loss']):.3f}  val {float(r['val_top1']):6.2f}%  "
                          f"{float(r['images_per_s']):.0f} img/s", flush=True)
                shown = len(rows)

    t = threading.Thread(target=tail, daemon=True)
    if not os.environ.get("AMC_QUIET"):
        t.start()
    try:
        yield
    finally:
        stop.set()


def _failure(e: BaseException) -> str:
    """The message of a worker's AmcError inside Ray Train's error, else the first exception
    line in it (Ray Train puts the workers' tracebacks below a header), else its first line."""
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    for line in reversed(lines):
        if "AmcError: " in line:
            return line.partition("AmcError: ")[2]
    for line in lines[1:]:
        if re.match(r"^[\w.]+(Error|Exception): ", line):
            return line if len(line) <= 200 else line[:197] + "..."
    return one_line(e)


def _fit(cfg: FinetuneConfig) -> dict[str, Any]:
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    from amc.agents.ray_runtime import ray_session

    run = Path(cfg.out)
    use_gpu = cfg.gpus_per_worker > 0
    local_cpus = max(2, math.ceil(cfg.workers * cfg.cpus_per_worker))
    with ray_session(num_cpus=None if cfg.address else local_cpus, address=cfg.address,
                     log_dir=run, workers=cfg.workers, cpus_per_worker=cfg.cpus_per_worker,
                     gpus_per_worker=cfg.gpus_per_worker):
        resources = {"CPU": cfg.cpus_per_worker, **({"GPU": cfg.gpus_per_worker}
                                                    if use_gpu else {})}
        trainer = TorchTrainer(
            _train_worker, train_loop_config=cfg.as_dict(),
            torch_config=TorchConfig(backend="nccl" if use_gpu else "gloo"),
            scaling_config=ScalingConfig(num_workers=cfg.workers, use_gpu=use_gpu,
                                         resources_per_worker=resources),
            run_config=RunConfig(name=RUN_NAME, storage_path=str(run),
                                 failure_config=FailureConfig(max_failures=cfg.max_failures),
                                 checkpoint_config=CheckpointConfig(num_to_keep=2)))
        summary = run / "summary.json"
        before = summary.stat().st_mtime_ns if summary.is_file() else None
        sigint = signal.getsignal(signal.SIGINT)  # Ray Train installs its own for fit()
        try:
            with _progress(run):
                trainer.fit()
        except SystemExit:  # Ray Train's Ctrl-C handler, when the abort itself failed
            raise KeyboardInterrupt from None
        except Exception as e:  # the workers' failure, after max_failures restarts
            raise AmcError(f"distributed fine-tuning failed: {_failure(e)}; the run can "
                           f"continue with --resume {run}") from e
        finally:
            signal.signal(signal.SIGINT, sigint)
    if not summary.is_file() or summary.stat().st_mtime_ns == before:
        raise KeyboardInterrupt  # Ctrl-C: Ray Train aborted the run (--resume continues it)
    return json.loads(summary.read_text())


def run_finetune_ray(cfg: FinetuneConfig, resume: bool = False) -> dict[str, Any]:
    """Run (or resume) ``cfg`` on ``cfg.workers`` Ray Train workers; the same checks, run
    folder and summary as :func:`amc.train.finetune.run_finetune`.

    Args:
        cfg: The run (``workers`` > 1; ``address``, ``cpus_per_worker``,
            ``gpus_per_worker``, ``max_failures`` as given).
        resume: Continue the run in ``cfg.out`` from Ray Train's latest checkpoint.
    """
    cfg = absolute_paths(cfg)
    check_devices(cfg)
    return run_finetune(cfg, resume, session=_OnDriver(),
                        execute=lambda runner, resume: _fit(cfg))
