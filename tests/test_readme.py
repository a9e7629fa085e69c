"""The README's Python example runs as written."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def readme_python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S)


def test_readme_has_one_short_python_example():
    blocks = readme_python_blocks()
    assert len(blocks) == 1
    code = [ln for ln in blocks[0].splitlines() if ln.strip()]
    assert len(code) <= 15, len(code)


@pytest.mark.cli
def test_readme_python_example_runs(tmp_path):
    (tmp_path / "example.py").write_text(readme_python_blocks()[0])
    env = {**os.environ, "OMP_NUM_THREADS": "1", "AMC_CACHE_DIR": str(tmp_path / "cache")}
    r = subprocess.run([sys.executable, "example.py"], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    m = re.search(r"dense ([\d.]+)%, pruned ([\d.]+)%", r.stdout)
    assert m and float(m.group(1)) > 80 and float(m.group(2)) > 50, r.stdout
    assert (tmp_path / "runs/api/search/best_policy.json").is_file()
    assert (tmp_path / "runs/api/pruned.onnx").stat().st_size > 0
