"""Atomic writes (``amc.utils.io``): concurrent writers of one file each leave a whole file."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from amc.utils.io import atomic_write, is_tmp


def test_two_writers_of_one_file_each_leave_a_whole_file(tmp_path: Path):
    """Writer A is half-way through when writer B writes the same file from start to end (as
    two processes filling one cache on a fresh machine do); then A finishes. With one shared
    temporary name B truncated A's file and A's replace found nothing to move."""
    target = tmp_path / "cache" / "table.json"
    a, b = "A" * 100_000, "B" * 100_000
    half_written, b_done, errors = threading.Event(), threading.Event(), []

    def writer_a() -> None:
        try:
            with atomic_write(target) as tmp, open(tmp, "w") as f:
                f.write(a[: len(a) // 2])
                f.flush()
                half_written.set()
                assert b_done.wait(30)
                f.write(a[len(a) // 2:])
        except BaseException as e:  # reported by the main thread
            errors.append(e)

    t = threading.Thread(target=writer_a)
    t.start()
    assert half_written.wait(30)
    with atomic_write(target) as tmp:
        tmp.write_text(b)
    assert target.read_text() == b  # B's file is whole while A is still writing
    b_done.set()
    t.join(30)
    assert not errors, errors
    assert target.read_text() == a  # A finished last: its whole file replaced B's
    assert [p.name for p in target.parent.iterdir()] == ["table.json"]
    # the user's umask applies, as to a file written directly (not mkstemp's 0600)
    plain = tmp_path / "plain.json"
    plain.write_text("x")
    assert target.stat().st_mode & 0o777 == plain.stat().st_mode & 0o777


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path: Path):
    target = tmp_path / "model.pt"
    target.write_text("old")
    with pytest.raises(RuntimeError, match="killed"), atomic_write(target, suffix=".npz") as tmp:
        assert is_tmp(tmp.name) and tmp.name.endswith(".npz")
        tmp.write_text("half")
        raise RuntimeError("killed")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["model.pt"]
