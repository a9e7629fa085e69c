"""Progress bars (rich) that stay quiet when output is not a terminal or in CI."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")


def enabled() -> bool:
    """Progress bars only on an interactive terminal and outside CI."""
    return sys.stderr.isatty() and not os.environ.get("CI") and not os.environ.get("AMC_QUIET")


def make_bar(extra: str | None = None):
    """A rich progress bar (description, bar, count, elapsed, ETA and an optional text field
    named ``extra``), or None when progress bars are disabled."""
    if not enabled():
        return None
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    cols = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
            TimeElapsedColumn(), TimeRemainingColumn()]
    if extra:
        cols.append(TextColumn("{task.fields[" + extra + "]}"))
    return Progress(*cols, transient=True)


def progress_iter(it: Iterable[T], total: int | None = None, desc: str = "") -> Iterator[T]:
    """Iterate with a rich progress bar (elapsed and ETA) when enabled."""
    bar = make_bar()
    if bar is None:
        yield from it
        return
    with bar:
        task = bar.add_task(desc, total=total)
        for item in it:
            yield item
            bar.advance(task)
