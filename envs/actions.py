"""The one mapping between the agent's actions in [0, 1] and the units' pruning ratios.

For a unit that can only be channel-pruned an action ``a`` is the ratio ``a * max_ratio``
(AMC's mapping). A droppable unit (:attr:`amc.prune.units.PrunableModel.blocks`, with
``drop_blocks``) keeps the whole channel range below :data:`DROP_AT`, squeezed into
``[0, DROP_AT)``, and drops its block (ratio :data:`~amc.prune.depth.DROP`) at or above it:
the top quarter of the action range removes the block. A quarter, not a tenth: with 0.9 the
first ResNet-56 searches at ``latency:0.5`` lost the drops of the best cheap policy they were
fitted to (its actions of 0.99 fell below 0.9 under the exploration noise, σ 0.15, and the
budget rule then pruned every later unit by the most channel pruning may take).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from amc.prune.depth import DROP

DROP_AT = 0.75
"""Actions at or above this drop a droppable unit's block."""

HAIR = 1e-6
"""Added to a replayed action: a float32 action must not round a channel count down."""


@dataclass(frozen=True)
class ActionMap:
    """Actions to ratios and back.

    Attributes:
        max_ratio: Largest channel-pruning ratio.
        droppable: Indices of the units that may be dropped.
        drop_at: Action at which a droppable unit is dropped.
    """

    max_ratio: float
    droppable: frozenset[int] = frozenset()
    drop_at: float = DROP_AT

    @classmethod
    def of(cls, pm, max_ratio: float) -> ActionMap:
        """The map of a :class:`~amc.prune.units.PrunableModel`'s units."""
        return cls(float(max_ratio), frozenset(pm.blocks))

    def ratio(self, unit: int, action: float) -> float:
        """The ratio an action in [0, 1] asks of ``unit``."""
        a = float(np.clip(action, 0.0, 1.0))
        if unit not in self.droppable:
            return a * self.max_ratio
        if a >= self.drop_at - HAIR:  # a float32 action may be a hair below
            return DROP
        return min(a / self.drop_at, 1.0) * self.max_ratio

    def action(self, unit: int, ratio: float) -> float:
        """The action that asks ``unit`` for ``ratio`` (at most 1)."""
        if unit in self.droppable:
            return 1.0 if ratio >= DROP else min(ratio, self.max_ratio) / self.max_ratio \
                * self.drop_at
        return min(1.0, ratio / self.max_ratio)

    def actions(self, ratios: Iterable[float], hair: float = 0.0) -> list[float]:
        """The actions of a whole policy, each raised by ``hair`` (at most 1)."""
        return [min(1.0, self.action(u, r) + hair) for u, r in enumerate(ratios)]

    def replay(self, ratios: Sequence[float]) -> list[float]:
        """The actions that replay ``ratios`` through an env (raised by :data:`HAIR`)."""
        return self.actions(ratios, HAIR)
