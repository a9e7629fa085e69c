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


def progress_iter(it: Iterable[T], total: int | None = None, desc: str = "") -> Iterator[T]:
    """Iterate with a rich progress bar (elapsed and ETA) when enabled."""
    if not enabled():
        yield from it
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), TimeRemainingColumn(), transient=True) as bar:
        task = bar.add_task(desc, total=total)
        for item in it:
            yield item
            bar.advance(task)
