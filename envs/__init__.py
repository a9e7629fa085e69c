"""The RL side's environments, importable as ``amc.envs``.

Importing this package registers ``amc/ChannelPruning-v0`` with Gymnasium, so that
``gymnasium.make("amc/ChannelPruning-v0", model=..., budget="flops:0.5")`` works.
"""

from gymnasium.envs.registration import register, registry

from .actions import DROP_AT, ActionMap
from .pruning_env import FEATURES, AMCPruningEnv
from .rewards import REWARDS, Outcome, reward_fn

ENV_ID = "amc/ChannelPruning-v0"

if ENV_ID not in registry:
    register(id=ENV_ID, entry_point="amc.envs.pruning_env:AMCPruningEnv")

__all__ = ["AMCPruningEnv", "ActionMap", "DROP_AT", "ENV_ID", "FEATURES", "Outcome", "REWARDS",
           "reward_fn"]
