"""Stage 4, pruning: prunable units on Torch-Pruning's DepGraph (only those that prune
exactly) with an exact cost model, budgets, versioned policies, scoring a policy (prune,
repair, evaluate), repair (BatchNorm recalibration, reconstruction), the cheap baselines,
weight masks, pruning schedules, the conformance check (pruned vs masked network) and
dropping whole residual blocks (:mod:`amc.prune.depth`)."""

from amc.prune.budget import MAX_RATIO, Budget, uniform_ratio
from amc.prune.policy import Policy, apply_policy, load_policy, make_policy
from amc.prune.units import PrunableModel

__all__ = ["MAX_RATIO", "Budget", "Policy", "PrunableModel", "apply_policy", "load_policy",
           "make_policy", "uniform_ratio"]
