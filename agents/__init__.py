"""The RL side's agents, importable as ``amc.agents``: AMC's DDPG on stable-baselines3.

Attributes load lazily so that ``amc.agents.config`` (the search's dataclass, which the CLI
reads to build its options) imports without stable-baselines3.
"""

from typing import Any

__all__ = ["SearchConfig", "run_or_resume", "run_search"]


def __getattr__(name: str) -> Any:
    if name == "SearchConfig":
        from .config import SearchConfig

        return SearchConfig
    if name in ("run_search", "run_or_resume"):
        from . import search

        return getattr(search, name)
    raise AttributeError(name)
