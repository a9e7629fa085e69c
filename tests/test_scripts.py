"""Every script in ``scripts/`` loads and parses its arguments: most of them run only as
benchmarks, never in CI, so a renamed option or module would otherwise surface hours into a
benchmark (or on a GPU machine)."""

from __future__ import annotations

from pathlib import Path

import pytest

SCRIPTS = sorted((Path(__file__).resolve().parents[1] / "scripts").glob("*.py"))


def test_there_are_scripts():
    assert len(SCRIPTS) >= 15


@pytest.mark.parametrize("path", SCRIPTS, ids=lambda p: p.stem)
def test_script_loads_and_prints_its_help(path, run_script, capsys):
    with pytest.raises(SystemExit) as e:
        run_script(path, ["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: {path.name}") and "--help" in out
