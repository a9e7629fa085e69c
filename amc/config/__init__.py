"""Configuration: dataclass configs whose docstrings document each field once, the shared
blocks that the command configs are composed of, and the argparse options derived from them
(cleanrl style)."""

from amc.config.args import add_dataclass_args, field_docs, from_args

__all__ = ["add_dataclass_args", "field_docs", "from_args"]
