"""Starting and stopping Ray for amc: local-only by default, quiet unless asked."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from pathlib import Path

import ray

from amc.utils.errors import AmcError, one_line

LOOPBACK = "127.0.0.1"

# Ray treats a loopback node IP as a single-machine instance only where "clusters" are off
# (its default on macOS and Windows); on Linux it turns _node_ip_address="127.0.0.1" into the
# machine's address, and the GCS, raylet, object manager, core workers, dashboard agent,
# runtime-env agent and metrics servers then listen on all interfaces. With clusters off
# every one of them binds 127.0.0.1 (measured: tests/test_ray.py lists their sockets).
_CLUSTER_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
_LOCAL_ENV = {_CLUSTER_ENV: "0", "RAY_USAGE_STATS_ENABLED": "0"}


@contextlib.contextmanager
def ray_session(num_cpus: int | None = None, address: str | None = None,
                log_dir: Path | None = None, verbose: bool = False, workers: int = 0,
                cpus_per_worker: float = 0, gpus_per_worker: float = 0) -> Iterator[None]:
    """Join ``address`` (``auto`` or ``ray://HOST:PORT``) or start a local Ray bound to
    127.0.0.1; shut down at exit (also on Ctrl-C and errors) when this call started it.
    Fails with one line when the cluster cannot be reached, or has too few CPUs or GPUs for
    ``workers`` workers of ``cpus_per_worker`` and ``gpus_per_worker`` each (their actors
    would wait for them forever).

    Args:
        num_cpus: CPUs of a local instance.
        address: Cluster address; None starts a local instance.
        log_dir: Where to link the session's logs (the run directory).
        verbose: Show Ray's own start-up output and worker logs.
        workers: Workers the caller will start (0: no check).
        cpus_per_worker: CPUs each of them reserves.
        gpus_per_worker: GPUs each of them reserves.
    """
    if ray.is_initialized():
        check_resources(workers, cpus_per_worker, gpus_per_worker, address)
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
        kwargs.update(address="local", num_cpus=num_cpus, _node_ip_address=LOOPBACK,
                      dashboard_host=LOOPBACK)
    if not verbose:
        os.environ.setdefault("RAY_BACKEND_LOG_LEVEL", "fatal")  # C++ core-worker warnings
    try:
        with _quiet(not verbose), (contextlib.nullcontext() if address else _loopback_node()):
            try:
                ray.init(**kwargs)
            except (ConnectionError, TimeoutError) as e:
                if not address:
                    raise
                raise AmcError(f"cannot join the Ray cluster at --address {address} "
                               f"({one_line(e)}); "
                               "check the address (ray://HOST:10001, or auto on a node of "
                               "the cluster) and that the cluster is up") from e
            if not address:
                _check_loopback()
        check_resources(workers, cpus_per_worker, gpus_per_worker, address)
        if log_dir is not None and not address:
            _link_logs(log_dir)
        yield
    finally:
        with contextlib.suppress(Exception):
            ray.shutdown()


def check_resources(workers: int, cpus_per_worker: float, gpus_per_worker: float,
                    address: str | None = None) -> None:
    """Fail with one line when the joined Ray has fewer CPUs or GPUs than ``workers`` x
    ``cpus_per_worker`` / ``gpus_per_worker`` (Ray would keep their actors pending)."""
    if workers <= 0:
        return
    have = ray.cluster_resources()
    where = f"the Ray cluster at {address}" if address else "the local Ray instance"
    for res, per in (("CPU", cpus_per_worker), ("GPU", gpus_per_worker)):
        if per > 0 and have.get(res, 0) < workers * per:
            raise AmcError(f"{where} has {have.get(res, 0):g} {res}s but --workers {workers} x "
                           f"--{res.lower()}s-per-worker {per:g} need {workers * per:g}; ask "
                           "for fewer" + (" or add nodes" if address else ""))


@contextlib.contextmanager
def _loopback_node() -> Iterator[None]:
    """Start a local instance whose node IP is 127.0.0.1: the setting in the environment of
    the processes Ray starts (they inherit it) and in this process's already imported Ray
    constants; both are restored afterwards. Usage stats stay off: a local run sends nothing.
    """
    from ray._private import ray_constants

    saved_env = {k: os.environ.get(k) for k in _LOCAL_ENV}
    saved_flag = ray_constants.ENABLE_RAY_CLUSTER
    os.environ.update(_LOCAL_ENV)
    ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        yield
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = saved_flag
        for k, v in saved_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _check_loopback() -> None:
    """Refuse to run on a local instance that did not take 127.0.0.1 as its node IP (a Ray
    release that changed how it picks it): its servers would listen on every interface."""
    ip = ray.util.get_node_ip_address()
    if ip != LOOPBACK:
        ray.shutdown()
        raise AmcError(f"the local Ray instance took node IP {ip}, not {LOOPBACK}, so it would "
                       "listen on the network; pass --address of a cluster you started, or "
                       "use a Ray release where amc's local instance stays on 127.0.0.1")


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


def kill_actors(actors: list) -> None:
    """Kill Ray actors (those already gone are skipped)."""
    for a in actors:
        try:
            ray.kill(a)
        except Exception:  # already gone
            pass
