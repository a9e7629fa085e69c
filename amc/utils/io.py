"""Atomic file writes: a reader (or a resumed run) never sees half a file.

Every file amc writes goes through :func:`atomic_write`: the content goes to a temporary
sibling that replaces the target only when the write succeeded, and is removed on error, so
a killed run leaves either the old file or the new one.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def atomic_write(path: str | Path, suffix: str = "") -> Iterator[Path]:
    """A temporary sibling of ``path`` that replaces it on success and is removed on error.

    Args:
        path: The target file (its folder is created).
        suffix: Appended to the temporary name (for writers that insist on an extension,
            e.g. ``.npz``).
    """
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(p.name + ".tmp" + suffix)
    try:
        yield tmp
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    tmp.replace(p)


def write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` to ``path`` atomically."""
    with atomic_write(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def write_json(path: str | Path, obj: object) -> Path:
    """Write ``obj`` as indented JSON (non-JSON values as ``str``) atomically."""
    return write_text(path, json.dumps(obj, indent=2, default=str) + "\n")
