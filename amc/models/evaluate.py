"""Fast evaluation: top-1, top-5 and per-class accuracy on pre-normalised tensors or on a
dataset's split (streamed or in memory), and the check that a model takes a dataset's images
and labels. Batches default to a fixed number of pixels, so 224-pixel images are evaluated in
batches of 40 where 32-pixel ones go 500 at a time."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch
from torch import nn

from amc.utils.device import device_of, placed
from amc.utils.errors import AmcError
from amc.utils.progress import progress_iter

if TYPE_CHECKING:
    from amc.data.datasets import Dataset


@dataclass
class EvalResult:
    """Accuracy of a model on one split.

    Attributes:
        top1: Top-1 accuracy in percent.
        top5: Top-5 accuracy in percent.
        n: Number of images.
        per_class: Top-1 per class in percent.
        seconds: Wall time of the evaluation.
        logits: All logits, when asked for.
    """

    top1: float
    top5: float
    n: int
    per_class: list[float] = field(default_factory=list)
    seconds: float = 0.0
    logits: torch.Tensor | None = None

    @property
    def images_per_s(self) -> float:
        return self.n / self.seconds if self.seconds > 0 else float("inf")


BATCH_PIXELS = 500 * 64 * 64
"""Pixels of one evaluation batch by default (500 CIFAR images, 40 at 224 x 224)."""


def eval_batch_size(image_shape: tuple[int, ...] | torch.Size, cap: int = 500) -> int:
    """The default evaluation batch for images of ``image_shape`` ((C,) H, W)."""
    h, w = image_shape[-2:]
    return max(1, min(cap, BATCH_PIXELS // max(1, h * w)))


def predict(model: nn.Module, x: torch.Tensor, batch_size: int | None = None,
            device: str | torch.device = "cpu", show_progress: bool = False,
            channels_last: bool = False) -> torch.Tensor:
    """Logits of ``model`` on ``x`` (float32, NCHW, already normalised), in inference mode, on
    ``device`` (a model elsewhere is moved there for the call and back after it)."""
    batch_size = batch_size or eval_batch_size(x.shape)
    model.eval()
    outs = []
    starts = range(0, len(x), batch_size)
    it = progress_iter(starts, total=len(starts), desc="eval") if show_progress else starts
    with placed(model, device), torch.inference_mode():
        dev = device_of(model, device)  # cuda:N where ``device`` says cuda
        for s in it:
            xb = x[s:s + batch_size].to(dev, non_blocking=True)
            if channels_last:
                xb = xb.contiguous(memory_format=torch.channels_last)
            outs.append(model(xb).float().cpu())
    return torch.cat(outs) if outs else torch.empty(0)


def accuracy_from_logits(logits: torch.Tensor, y: torch.Tensor,
                         num_classes: int | None = None) -> tuple[float, float, list[float]]:
    """(top-1 %, top-5 %, per-class top-1 %) from logits."""
    n = len(y)
    if n == 0:
        return 0.0, 0.0, []
    k = min(5, logits.shape[1])
    top = logits.topk(k, dim=1).indices
    hit1 = top[:, 0] == y
    hit5 = (top == y[:, None]).any(1)
    nc = num_classes or int(logits.shape[1])
    per_class = []
    for c in range(nc):
        mask = y == c
        per_class.append(float(hit1[mask].float().mean() * 100) if mask.any() else float("nan"))
    return float(hit1.float().mean() * 100), float(hit5.float().mean() * 100), per_class


def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int | None = None,
             device: str | torch.device = "cpu", num_classes: int | None = None,
             show_progress: bool = False, keep_logits: bool = False) -> EvalResult:
    """Evaluate ``model`` on pre-normalised tensors."""
    t = time.perf_counter()
    logits = predict(model, x, batch_size, device, show_progress)
    top1, top5, per_class = accuracy_from_logits(logits, y, num_classes)
    return EvalResult(top1, top5, len(y), per_class, time.perf_counter() - t,
                      logits if keep_logits else None)


def evaluate_split(model: nn.Module, data: Dataset, split: str,
                   device: str | torch.device = "cpu", batch_size: int | None = None,
                   show_progress: bool = False) -> EvalResult:
    """Evaluate ``model`` on a split of ``data``: a streamed split batch by batch through the
    dataset's loader (at the eval transform), an in-memory one as tensors."""
    if not data.streamed(split):
        x, y = data.tensors(split)
        return evaluate(model, x, y, batch_size, device, data.num_classes, show_progress)
    from amc.data.loader import BatchPlan

    t = time.perf_counter()
    n = len(data.labels[split])
    plan = BatchPlan(n, batch_size or eval_batch_size(data.input_size), shuffle=False)
    batches = data.batches(split, plan, pin=torch.device(device).type == "cuda")
    if show_progress:
        batches = progress_iter(batches, total=len(plan), desc="eval")
    outs, ys = [], []
    model.eval()
    with placed(model, device), torch.inference_mode():
        dev = device_of(model, device)
        for xb, yb in batches:
            outs.append(model(data.to_input(xb, dev)).float().cpu())
            ys.append(yb)
    logits, y = torch.cat(outs), torch.cat(ys)
    top1_, top5, per_class = accuracy_from_logits(logits, y, data.num_classes)
    return EvalResult(top1_, top5, n, per_class, time.perf_counter() - t)


def top1(model: nn.Module, x: torch.Tensor, y: torch.Tensor,
         batch_size: int | None = None) -> float:
    """Top-1 accuracy in percent (the hot path of the search: no per-class work), computed
    where the model is (batches of ``x`` and ``y`` kept elsewhere are moved there)."""
    batch_size = batch_size or eval_batch_size(x.shape)
    model.eval()
    dev = device_of(model, x.device)
    correct = 0
    with torch.inference_mode():
        for s in range(0, len(x), batch_size):
            pred = model(x[s:s + batch_size].to(dev, non_blocking=True)).argmax(1)
            correct += int((pred == y[s:s + batch_size].to(dev, non_blocking=True)).sum())
    return 100.0 * correct / max(1, len(y))


def check_model_data(model: nn.Module, data: Dataset, name: str) -> None:
    """Fail with one line when the model cannot take the dataset's images or labels."""
    try:
        with torch.inference_mode():
            out = model.eval()(torch.zeros(2, *data.input_size))
    except RuntimeError as e:
        raise AmcError(f"model {name} cannot take {data.name} images of size "
                       f"{'x'.join(map(str, data.input_size))} ({str(e).splitlines()[0][:120]})"
                       f"; pass a model made for {data.name}") from e
    if out.shape[-1] != data.num_classes:
        raise AmcError(f"model {name} has {out.shape[-1]} outputs but {data.name} has "
                       f"{data.num_classes} classes; pass --num-classes {data.num_classes}")
