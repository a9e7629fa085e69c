"""Starting and stopping Ray for amc: local-only by default, quiet unless asked."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from pathlib import Path

import ray


@contextlib.contextmanager
def ray_session(num_cpus: int | None = None, address: str | None = None,
                log_dir: Path | None = None, verbose: bool = False) -> Iterator[None]:
    """Join ``address`` (``auto`` or ``ray://HOST:PORT``) or start a local Ray bound to
    127.0.0.1; shut down at exit (also on Ctrl-C and errors) when this call started it.

    Args:
        num_cpus: CPUs of a local instance.
        address: Cluster address; None starts a local instance.
        log_dir: Where to link the session's logs (the run directory).
        verbose: Show Ray's own start-up output and worker logs.
    """
    if ray.is_initialized():
        yield
        return
    kwargs: dict = {"logging_level": logging.INFO if verbose else logging.ERROR,
                    "log_to_driver": verbose, "include_dashboard": False}
    if address:
        kwargs["address"] = address
    else:
        os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # loopback-only instance
        # "local": a new instance even when RAY_ADDRESS is set or `ray start` runs here
        # (ray.init() without an address would join that cluster instead)
        kwargs.update(address="local", num_cpus=num_cpus, _node_ip_address="127.0.0.1",
                      dashboard_host="127.0.0.1")
    if not verbose:
        os.environ.setdefault("RAY_BACKEND_LOG_LEVEL", "fatal")  # C++ core-worker warnings
    try:
        with _quiet(not verbose):
            ray.init(**kwargs)
        if log_dir is not None and not address:
            _link_logs(log_dir)
        yield
    finally:
        with contextlib.suppress(Exception):
            ray.shutdown()


def _link_logs(log_dir: Path) -> None:
    try:
        session = Path(ray.get_runtime_context().gcs_address and
                       ray._private.worker._global_node.get_session_dir_path())
    except Exception:
        return
    link = log_dir / "ray_logs"
    with contextlib.suppress(OSError):
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(session / "logs", target_is_directory=True)


@contextlib.contextmanager
def _quiet(enabled: bool) -> Iterator[None]:
    """Silence file descriptors 1 and 2 (Ray's start-up noise comes from child processes)."""
    if not enabled:
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    saved = os.dup(1), os.dup(2)
    try:
        os.dup2(devnull, 1)
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in (*saved, devnull):
            os.close(fd)
