"""Atomic file writes: a reader (or a resumed run) never sees half a file.

Every file amc writes goes through :func:`atomic_write`: the content goes to a temporary
sibling that replaces the target only when the write succeeded, and is removed on error, so
a killed run leaves either the old file or the new one.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import tempfile
from collections.abc import Callable, Collection, Iterator
from pathlib import Path

from amc.utils.errors import AmcError, and_more


@contextlib.contextmanager
def atomic_write(path: str | Path, suffix: str = "") -> Iterator[Path]:
    """A temporary sibling of ``path`` that replaces it on success and is removed on error.

    The sibling's name is unique (``<name>.<pid>-<random>.tmp<suffix>``), so writers of the
    same file in other processes or threads (two searches filling one dataset or latency-table
    cache, two Ray workers) never write into each other's half-written file: each replaces the
    target with a whole one, the last to finish wins.

    Args:
        path: The target file (its folder is created).
        suffix: Appended to the temporary name (for writers that insist on an extension,
            e.g. ``.npz``).
    """
    p = Path(path)
    if p.is_dir():
        raise AmcError(f"{p} is a folder, where a file is written; pass a file path (or move "
                       "the folder)")
    p.parent.mkdir(parents=True, exist_ok=True)
    # not mkstemp: its 0600 mode would stay on the target; the writer creates the file, so the
    # user's umask applies as to any file it writes
    tmp = p.with_name(f"{p.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp{suffix}")
    try:
        yield tmp
        tmp.replace(p)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` to ``path`` atomically."""
    with atomic_write(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def write_json(path: str | Path, obj: object) -> Path:
    """Write ``obj`` as indented JSON (non-JSON values as ``str``) atomically."""
    return write_text(path, json.dumps(obj, indent=2, default=str) + "\n")


def check_writable(path: str | Path, option: str = "--out") -> None:
    """Fail with one line, before anything is written, when ``path`` cannot be written.

    The nearest existing folder on the way to ``path`` must be a folder (not a file) and take a
    new file; a probe file is created there and removed again (``os.access`` says yes to root
    on read-only places such as ``/proc`` or ``/sys``). Nothing is created on the way.

    Args:
        path: A file or folder that a command will write.
        option: The command-line option that named it, for the message.
    """
    p = Path(path)
    if p.is_dir():
        anc = p
    else:
        anc = p.parent
        while not anc.exists() and anc != anc.parent:
            anc = anc.parent
        if not anc.is_dir():
            raise AmcError(f"{option} {p} cannot be written: {anc} is a file, not a folder; "
                           f"choose another {option}")
    try:
        fd, probe = tempfile.mkstemp(prefix=".amc-probe-", dir=anc)
    except OSError as e:
        raise AmcError(f"{option} {p} cannot be written: {anc} is not writable "
                       f"({e.strerror or e}); choose a writable {option}") from e
    os.close(fd)
    os.unlink(probe)


def is_tmp(name: str) -> bool:
    """Whether ``name`` is a temporary sibling left by :func:`atomic_write` or a probe."""
    return re.search(r"\.tmp(\.\w+)?$", name) is not None or name.startswith(".amc-probe-")


def check_out_dir(path: str | Path, own: Collection[str], force: bool,
                  option: str = "--out") -> None:
    """Refuse a ``path`` folder that holds entries amc did not write (unless ``force``).

    Args:
        path: The run folder (need not exist).
        own: The names a run of this command writes there.
        force: Write into the folder anyway (its other entries are left alone).
        option: The command-line option that named the folder, for the message.
    """
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise AmcError(f"{option} {p} is a file; pass a folder")
    if force or not p.is_dir():
        return
    foreign = sorted(e.name for e in p.iterdir() if e.name not in own and not is_tmp(e.name))
    if foreign:
        raise AmcError(f"{option} {p} holds files amc did not write "
                       f"({and_more([repr(n) for n in foreign])}); "
                       f"choose another {option} or pass --force to write into it anyway")


def remove_entries(folder: str | Path, names: Collection[str]) -> None:
    """Delete the entries ``names`` of ``folder`` (files, links, folders); everything else
    stays."""
    d = Path(folder)
    if not d.is_dir():
        return
    for e in d.iterdir():
        if e.name not in names:
            continue
        if e.is_dir() and not e.is_symlink():
            shutil.rmtree(e)
        else:
            e.unlink(missing_ok=True)


@contextlib.contextmanager
def made_dir(path: str | Path, keep: Callable[[Path], bool] = lambda p: False
             ) -> Iterator[Path]:
    """Create the folder ``path`` (and missing parents) for a run; if the run fails, remove
    what this call created unless ``keep(path)`` says the run got far enough to resume.

    A folder that existed before is never removed, so a failed start leaves no half-made
    folder behind and loses nothing that was there.
    """
    p = Path(path)
    top = None
    for d in (p, *p.parents):
        if d.exists():
            break
        top = d
    p.mkdir(parents=True, exist_ok=True)
    try:
        yield p
    except Exception:
        if top is not None and not keep(p):
            shutil.rmtree(top, ignore_errors=True)
        raise
