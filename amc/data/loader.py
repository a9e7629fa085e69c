"""Mini-batches of a split: the one epoch order, its share per worker, and the in-memory path.

Every training process (one, or each of N distributed workers) walks the same *global*
batches of an epoch: batch ``b`` is ``order[b * B:(b + 1) * B]`` of the epoch's seeded
permutation, and worker ``r`` of ``N`` takes every N-th image of it (``[r::N]``). N workers
with a per-worker batch of B / N therefore see exactly the images one process sees with
batch B, and a run resumed at step ``s`` continues with the batches it would have seen:
the order of epoch ``e`` depends on (seed, e) only: it is the (e + 1)-th permutation drawn
from a generator seeded with ``seed`` (the order the single-process loop has always used).

In-memory datasets (digits, CIFAR-10) index their normalised tensors (random crop with
padding and flip done on tensors); streamed image folders feed the same plans to a
:class:`torch.utils.data.DataLoader` (:mod:`amc.data.stream`), whose uint8 batches
:func:`to_input` normalises on the device.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F


def epoch_seed(seed: int, *keys: int) -> int:
    """A 63-bit seed derived from ``seed`` and ``keys`` (epoch, worker rank, ...)."""
    return int(np.random.SeedSequence([seed, *keys]).generate_state(2, np.uint64)[0] >> 1)


_ORDERS: dict[tuple[int, int], tuple[int, torch.Tensor]] = {}
"""(n, seed) -> (last epoch drawn, generator state after it): the next epoch continues."""


def epoch_order(n: int, seed: int, epoch: int) -> torch.Tensor:
    """The permutation of ``n`` images for ``epoch`` (the same in every worker): the
    (epoch + 1)-th ``randperm`` of a generator seeded with ``seed``."""
    gen = torch.Generator().manual_seed(seed)
    done, state = _ORDERS.get((n, seed), (-1, None))
    if state is not None and done < epoch:
        gen.set_state(state)
    else:
        done = -1
    for _ in range(epoch - done - 1):
        torch.randperm(n, generator=gen)
    order = torch.randperm(n, generator=gen)
    _ORDERS[(n, seed)] = (epoch, gen.get_state())
    return order


def steps_per_epoch(n: int, batch_size: int, world: int = 1) -> int:
    """Global batches per epoch: ceil(n / batch_size), less a last batch too small to give
    each of ``world`` workers an image."""
    full, rest = divmod(n, batch_size)
    return max(1, full + (1 if rest >= world else 0))


class BatchPlan(torch.utils.data.Sampler[list[int]]):
    """The index lists one worker trains on in one epoch (a ``batch_sampler``).

    Args:
        n: Images in the split.
        batch_size: Global batch size (all workers together).
        seed: Shuffling seed (with ``epoch``, it fixes the order).
        epoch: Epoch number.
        rank: This worker's rank.
        world: Number of workers.
        start: First global batch (a run resumed mid-epoch).
        stop: End before this global batch (default: the epoch's end).
        shuffle: False: the split's own order (evaluation).
    """

    def __init__(self, n: int, batch_size: int, seed: int = 0, epoch: int = 0, rank: int = 0,
                 world: int = 1, start: int = 0, stop: int | None = None, shuffle: bool = True):
        self.n, self.batch_size, self.seed, self.epoch = n, batch_size, seed, epoch
        self.rank, self.world, self.shuffle = rank, world, shuffle
        total = steps_per_epoch(n, batch_size, world) if shuffle else -(-n // batch_size)
        self.start, self.stop = start, min(total, total if stop is None else stop)

    def __len__(self) -> int:
        return max(0, self.stop - self.start)

    def __iter__(self) -> Iterator[list[int]]:
        order = epoch_order(self.n, self.seed, self.epoch) if self.shuffle else \
            torch.arange(self.n)
        for b in range(self.start, self.stop):
            yield order[b * self.batch_size:(b + 1) * self.batch_size][self.rank::self.world]\
                .tolist()


def augment_batch(x: torch.Tensor, gen: torch.Generator, pad: int = 4) -> torch.Tensor:
    """Random crop with zero padding and random horizontal flip, on a normalised batch."""
    n, _, h, w = x.shape
    padded = F.pad(x, (pad, pad, pad, pad))
    dx = torch.randint(0, 2 * pad + 1, (n,), generator=gen)
    dy = torch.randint(0, 2 * pad + 1, (n,), generator=gen)
    rows = (dy[:, None] + torch.arange(h)[None, :])  # n, h
    cols = (dx[:, None] + torch.arange(w)[None, :])  # n, w
    idx_n = torch.arange(n)[:, None, None]
    out = padded.permute(0, 2, 3, 1)[idx_n, rows[:, :, None], cols[:, None, :]]
    out = out.permute(0, 3, 1, 2)
    flip = torch.rand(n, generator=gen) < 0.5
    out[flip] = out[flip].flip(3)
    return out.contiguous()


def memory_batches(x: torch.Tensor, y: torch.Tensor, plan: BatchPlan, augment: bool = False,
                   seed: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """The plan's batches of in-memory tensors (augmented with a generator seeded by
    ``seed``, the plan's epoch and rank)."""
    gen = torch.Generator().manual_seed(epoch_seed(seed, plan.epoch, plan.rank))
    for idx in plan:
        ix = torch.as_tensor(idx, dtype=torch.long)
        xb = x[ix]
        yield (augment_batch(xb, gen) if augment else xb), y[ix]


def to_input(xb: torch.Tensor, mean: Sequence[float], std: Sequence[float],
             device: torch.device | str, channels_last: bool = False) -> torch.Tensor:
    """A batch on ``device`` as the network takes it: uint8 batches (streamed) are scaled and
    normalised there, float ones (in memory) are already normalised."""
    xb = xb.to(device, non_blocking=True)
    if xb.dtype == torch.uint8:
        m = torch.tensor(mean, device=xb.device).view(1, -1, 1, 1)
        s = torch.tensor(std, device=xb.device).view(1, -1, 1, 1)
        xb = xb.float().div_(255.0).sub_(m).div_(s)
    return xb.contiguous(memory_format=torch.channels_last) if channels_last else xb
