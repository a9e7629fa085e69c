"""Episode rewards of the pruning env (AMC, He et al. 2018, section 3.4).

All take the pruned network's ``val`` top-1 (%) and its resources as fractions of dense.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

REWARDS = ("err", "flops", "params", "acc_size", "latency", "capacity")


@dataclass(frozen=True)
class Outcome:
    """What an episode produced.

    Attributes:
        top1: ``val`` top-1 in percent.
        macs: MACs of the pruned network.
        params: Parameters of the pruned network.
        size_fraction: The budgeted resource as a fraction of dense.
        target: The budget's fraction.
        latency_ms: Predicted latency (latency reward only).
        macs_fraction: MACs as a fraction of dense (capacity reward only).
    """

    top1: float
    macs: float
    params: float
    size_fraction: float
    target: float
    latency_ms: float = 0.0
    macs_fraction: float = 0.0


def _err(o: Outcome) -> float:
    return 1.0 - o.top1 / 100.0


def reward_fn(name: str, lambda_size: float = 1.0,
              capacity_weight: float = 1.0) -> Callable[[Outcome], float]:
    """The reward function called ``name``.

    * ``err``: −error (the budget is enforced by clipping the actions);
    * ``flops``: −error·log(FLOPs); ``params``: −error·log(params);
    * ``acc_size``: accuracy − λ·size/target (``lambda_size``);
    * ``latency``: −error·log(latency), latency from the measured lookup table;
    * ``capacity``: accuracy + w·MACs/dense MACs (``capacity_weight`` w): under a budget
      the clipping enforces (latency, params), of two networks that score alike before
      fine-tuning the one keeping more multiply-adds, meant for networks that fine-tuning
      recovers further (on ResNet-56 at ``latency:0.53`` they did not:
      ``results/search_capacity_amx53.md``); w = 1 counts 1 % of the dense MACs as one
      point of ``val`` top-1.
    """
    table: dict[str, Callable[[Outcome], float]] = {
        "err": lambda o: -_err(o),
        "flops": lambda o: -_err(o) * math.log(max(o.macs, 1.0)),
        "params": lambda o: -_err(o) * math.log(max(o.params, 1.0)),
        "acc_size": lambda o: o.top1 / 100.0 - lambda_size * o.size_fraction / o.target,
        "latency": lambda o: -_err(o) * math.log(max(o.latency_ms, 1e-3) + 1.0),
        "capacity": lambda o: o.top1 / 100.0 + capacity_weight * o.macs_fraction,
    }
    if name not in table:
        from amc.utils.errors import AmcError

        raise AmcError(f"unknown reward {name!r}; use one of {', '.join(REWARDS)}")
    return table[name]
