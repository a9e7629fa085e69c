"""Where a result came from: package versions, git commit, time."""

from __future__ import annotations

import datetime as _dt
import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path

PACKAGES = ("amc", "torch", "torchvision", "torch-pruning", "stable-baselines3", "gymnasium",
            "ray", "onnx", "onnxruntime", "numpy")


GIT_COMMIT_ENV = "AMC_GIT_COMMIT"
"""Names the commit of a copy of the code that has no git metadata (a Ray Job's working dir:
``amc submit`` sets it from the checkout it packages)."""


def git_commit(path: str | Path | None = None) -> str | None:
    """The commit of the checkout that holds this package (``-dirty`` if modified), or
    :data:`GIT_COMMIT_ENV`'s value where that is set (a copy without ``.git``); of the
    checkout at ``path`` when given."""
    if path is None and os.environ.get(GIT_COMMIT_ENV):
        return os.environ[GIT_COMMIT_ENV]
    root = Path(path) if path else Path(__file__).resolve().parent.parent
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True,
                             text=True, timeout=5).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=root, capture_output=True, text=True, timeout=5).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return (sha + ("-dirty" if dirty.strip() else "")) if sha else None


def versions() -> dict[str, str]:
    """Installed versions of the packages that shape results."""
    out = {"python": platform.python_version()}
    for p in PACKAGES:
        try:
            out[p] = metadata.version(p)
        except metadata.PackageNotFoundError:
            pass
    return out


def amc_version() -> str:
    try:
        return metadata.version("amc")
    except metadata.PackageNotFoundError:
        return "unknown"


def now() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")


def cpu_model() -> str:
    """The CPU's vendor and model name (``/proc/cpuinfo``; else what :mod:`platform` says):
    timings and matmul rates of different machines do not compare."""
    try:
        info = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return platform.processor() or "unknown"
    fields = {k.strip(): v for k, v in (line.split(":", 1) for line in info if ":" in line)}
    return " ".join(fields.get(k, "").strip() for k in ("vendor_id", "model name")).strip()
