"""A real local Ray head (``ray start --head`` on 127.0.0.1), ``amc submit`` of a small digits
search, ``amc jobs wait``, the results found, the head stopped. About a minute."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import pytest

pytestmark = pytest.mark.ray

pytest.importorskip("ray")

ROOT = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _amc(*args: str, env: dict, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "amc.cli", *args], capture_output=True,
                          text=True, env=env, timeout=timeout, cwd=ROOT)


def _head_pids(temp_dir: str, port: int) -> set[int]:
    """The processes of the head started with ``--temp-dir temp_dir --port port`` (theirs name
    the folder or the port on their command line, e.g. the client server) and all their
    descendants (workers, job drivers): never another Ray instance's, such as a search
    running on the same machine."""
    pids = set()
    for p in psutil.process_iter(["cmdline"]):
        with contextlib.suppress(psutil.Error):
            cmd = " ".join(p.info["cmdline"] or [])
            if temp_dir in cmd or f":{port} " in cmd + " ":
                pids.add(p.pid)
                pids.update(c.pid for c in p.children(recursive=True))
    return pids


@pytest.fixture
def ray_head():
    bindir = str(Path(sys.executable).parent)
    tmp = tempfile.mkdtemp(prefix="amcray-", dir="/tmp")
    port, dash = _free_port(), _free_port()
    env = {**os.environ, "PATH": bindir + os.pathsep + os.environ.get("PATH", ""),
           "RAY_AUTH_MODE": "disabled", "OMP_NUM_THREADS": "1"}
    r = subprocess.run([str(Path(bindir) / "ray"), "start", "--head", "--node-ip-address",
                        "127.0.0.1", "--port", str(port), "--dashboard-host", "127.0.0.1",
                        "--dashboard-port", str(dash), "--include-dashboard", "true",
                        "--num-cpus", "2", "--temp-dir", tmp, "--disable-usage-stats",
                        # free ports for the agents too: another Ray instance on this machine
                        # (a search running beside the tests) holds the default ones, and a
                        # head whose job agent cannot bind answers "No available agent"
                        *[a for flag in ("--dashboard-agent-listen-port",
                                         "--dashboard-agent-grpc-port", "--runtime-env-agent-port",
                                         "--metrics-export-port", "--ray-client-server-port")
                          for a in (flag, str(_free_port()))]],
                       capture_output=True, text=True, env=env, timeout=180)
    assert r.returncode == 0, r.stderr[-2000:]
    env["AMC_TEST_GCS"] = f"127.0.0.1:{port}"
    try:
        yield f"http://127.0.0.1:{dash}", env
    finally:
        # stop only the processes this head started (not other Ray instances on the machine)
        for pid in _head_pids(tmp, port):
            with contextlib.suppress(psutil.Error):
                psutil.Process(pid).send_signal(signal.SIGKILL)
        time.sleep(1)


def test_submit_search_to_a_local_head(ray_head, tmp_path, digits_ckpt):
    address, env = ray_head
    ckpt = digits_ckpt
    out = tmp_path / "job-run"
    r = _amc("submit", "--address", address, "--", "amc", "search", "--checkpoint", str(ckpt),
             "--episodes", "12", "--warmup-episodes", "4", "--val-limit", "64", "--hidden", "64",
             "--out", str(out), env=env)
    assert r.returncode == 0, r.stderr
    job_id = r.stdout.splitlines()[0].strip()
    w = _amc("jobs", "wait", job_id, "--address", address, "--timeout", "240", env=env)
    logs = _amc("jobs", "logs", job_id, "--address", address, env=env).stdout
    assert w.returncode == 0 and "SUCCEEDED" in w.stdout, w.stdout + w.stderr + logs[-3000:]
    assert str(out) in w.stdout  # tells the user where the results are
    assert (out / "best_policy.json").is_file()
    assert len((out / "episodes.csv").read_text().strip().splitlines()) == 13
    # the job's copy of the code has no .git: its run records the submitted checkout's commit
    from amc.utils.provenance import git_commit

    assert json.loads((out / "run.json").read_text())["git_commit"] == git_commit()


def test_local_session_ignores_a_running_cluster(ray_head):
    """Without --address, --workers N starts amc's own Ray even where RAY_ADDRESS names a running
    cluster (ray.init() with no address would join it, and refuse the num_cpus we pass)."""
    _, env = ray_head
    code = ("import ray\nfrom amc.agents.ray_runtime import ray_session\n"
            "with ray_session(num_cpus=1):\n    print(ray.get_runtime_context().gcs_address)\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=180,
                       env={**env, "RAY_ADDRESS": env["AMC_TEST_GCS"]})
    assert r.returncode == 0, r.stderr[-2000:]
    gcs = r.stdout.strip().splitlines()[-1]
    assert gcs and gcs != env["AMC_TEST_GCS"]


def test_bad_address_is_one_line(tmp_path):
    r = _amc("jobs", "status", "nope", "--address", f"http://127.0.0.1:{_free_port()}",
             env={**os.environ})
    assert r.returncode == 2 and r.stderr.startswith("amc: error:")
    assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr


def test_submit_waits_for_a_fresh_heads_job_agent():
    from amc.cli.submit import submit
    from amc.utils.errors import AmcError

    class Head:
        def __init__(self, fails: int, msg: str):
            self.fails, self.msg, self.calls = fails, msg, 0

        def submit_job(self, **job):
            self.calls += 1
            if self.calls <= self.fails:
                raise RuntimeError(f"Request failed with status code 500: {self.msg}")
            return "raysubmit_1"

    head = Head(2, "No available agent to submit job, please try again later..")
    assert submit(head, "http://h:8265", retry_s=0, entrypoint="amc search") == "raysubmit_1"
    assert head.calls == 3
    with pytest.raises(AmcError, match="refused the job"):  # other errors: one line, no retry
        submit(Head(1, "bad runtime_env"), "http://h:8265", retry_s=0, entrypoint="x")
    with pytest.raises(AmcError):  # an agent that never comes: give up after the patience
        submit(Head(10**6, "No available agent"), "http://h:8265", patience_s=0.05, retry_s=0.01,
               entrypoint="x")
