"""``git_commit``: the checkout's commit, or ``AMC_GIT_COMMIT`` for a copy without ``.git``
(what ``amc submit`` sets for its Ray Jobs)."""

from __future__ import annotations

from pathlib import Path

from amc.utils.provenance import GIT_COMMIT_ENV, git_commit

ROOT = Path(__file__).resolve().parent.parent


def test_the_environment_names_the_commit_of_a_copy_without_git(monkeypatch, tmp_path):
    monkeypatch.delenv(GIT_COMMIT_ENV, raising=False)
    assert git_commit(tmp_path) is None  # no checkout there
    monkeypatch.setenv(GIT_COMMIT_ENV, "abc123-dirty")
    assert git_commit() == "abc123-dirty"
    assert git_commit(ROOT) != "abc123-dirty"  # a named checkout is read, not the variable
