"""Configs of ``amc sensitivity``, ``amc baseline`` and ``amc apply``, composed of the shared
blocks of :mod:`amc.config.blocks` (the commands' options derive from them)."""

from __future__ import annotations

from dataclasses import dataclass

from amc.config.blocks import DataConfig, ModelConfig, OutputConfig, RepairConfig, RunConfig
from amc.config.blocks import ScoringConfig as _Scoring


@dataclass(kw_only=True)
class SensitivityConfig(_Scoring, OutputConfig):
    """A per-unit sensitivity sweep (CSV and PNG; ``out`` is the CSV).

    Attributes:
        workers: Ray workers for the evaluations (0 or 1: in-process).
    """

    workers: int = 0


@dataclass(kw_only=True)
class BaselineConfig(SensitivityConfig):
    """A cheap policy: uniform, global, sensitivity or random (``out`` is the policy JSON).

    Attributes:
        strategy: uniform, global (Torch-Pruning's global ranking), sensitivity, random or
            blocks (with --drop-blocks: the k least sensitive blocks dropped, the rest
            uniform to the budget, k best on val).
        budget: Resource budget, e.g. flops:0.5, params:0.4, latency:0.6.
        n_random: Policies tried by the random strategy.
        rescore_top: Random keeps the best on all of val among its this many best (scored
            again on the val images past --val-limit, as ``amc search`` picks its best);
            0 or 1: its best on the first --val-limit images.
    """

    strategy: str = "uniform"
    budget: str = "flops:0.5"
    n_random: int = 50
    rescore_top: int = 5


@dataclass(kw_only=True)
class ApplyConfig(ModelConfig, DataConfig, RepairConfig, RunConfig, OutputConfig):
    """Prune a model to a policy and save it (``out`` is the pruned model file, .pt).

    Attributes:
        policy: Policy JSON (from amc search or amc baseline).
    """

    policy: str
