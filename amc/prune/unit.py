"""The record of one prunable unit and the plan that prunes it (see :mod:`amc.prune.units`)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from torch import nn


@dataclass
class Unit:
    """One prunable dependency group.

    Attributes:
        index: Position in forward order.
        name: Qualified name of the group's leading (root) module.
        layers: Names of the modules whose channels the group removes.
        n: Output channels of the root (the channels being pruned).
        c: Input channels of the root.
        h: Input height of the root.
        w: Input width of the root.
        stride: Root stride.
        k: Root kernel size.
        macs: MACs of every layer the unit touches (dense, all calls).
        params: Parameters of every layer the unit touches (dense).
        groups: Channel groups: channels are removed ``groups`` at a time, the same
            position in every group (1 unless a grouped conv is among the layers).
    """

    index: int
    name: str
    layers: list[str]
    n: int
    c: int
    h: int
    w: int
    stride: int
    k: int
    macs: int
    params: int
    groups: int = 1

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class PrunePlan:
    root: nn.Module
    fn: object
    items: list[tuple[str, object]] = field(default_factory=list)
