"""Dataclass configs and the argparse options derived from them (cleanrl style).

Each config is a dataclass whose Google-style docstring has an ``Attributes:`` section; every
field becomes a ``--flag`` with that text as its help, so the CLI and the config never drift.
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import re
import types
import typing
from typing import Any, TypeVar

T = TypeVar("T")


def field_docs(cls: type) -> dict[str, str]:
    """Field name -> description, read from the class docstring's ``Attributes:`` section."""
    doc = inspect.getdoc(cls) or ""
    docs: dict[str, str] = {}
    in_attrs, current = False, None
    for line in doc.splitlines():
        if line.strip() == "Attributes:":
            in_attrs = True
            continue
        if not in_attrs:
            continue
        m = re.match(r"^\s{4}(\w+): (.*)$", line)
        if m:
            current = m.group(1)
            docs[current] = m.group(2).strip()
        elif current and line.startswith(" " * 8):
            docs[current] += " " + line.strip()
        elif line.strip() and not line.startswith(" "):
            break
    return docs


def _base_type(tp: Any) -> tuple[Any, bool]:
    """Strip ``X | None``; return (type, optional)."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return args[0], True
    return tp, False


def add_dataclass_args(parser: argparse.ArgumentParser, cls: type, skip: tuple[str, ...] = (),
                       prefix: str = "") -> None:
    """Add one ``--field-name`` option per dataclass field."""
    docs = field_docs(cls)
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if f.name in skip or f.name.startswith("_"):
            continue
        tp, _ = _base_type(hints[f.name])
        flag = "--" + prefix + f.name.replace("_", "-")
        default = f.default if f.default is not dataclasses.MISSING else (
            f.default_factory() if f.default_factory is not dataclasses.MISSING else None)
        help_ = f"{docs.get(f.name, '')} (default: {default})"
        dest = prefix.replace("-", "_") + f.name
        if tp is bool:
            parser.add_argument(flag, dest=dest, action=argparse.BooleanOptionalAction,
                                default=default, help=help_)
        elif typing.get_origin(tp) is tuple:
            parser.add_argument(flag, dest=dest, nargs="*", default=default, help=help_)
        else:
            parser.add_argument(flag, dest=dest, type=tp, default=default, help=help_)


def from_args(cls: type[T], ns: argparse.Namespace, prefix: str = "", **overrides: Any) -> T:
    """Build ``cls`` from parsed options (``overrides`` win)."""
    kwargs = {}
    for f in dataclasses.fields(cls):
        key = prefix.replace("-", "_") + f.name
        if hasattr(ns, key):
            v = getattr(ns, key)
            if isinstance(v, list):
                v = tuple(v)
            kwargs[f.name] = v
    kwargs.update(overrides)
    return cls(**kwargs)
