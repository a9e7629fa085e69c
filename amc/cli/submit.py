"""``amc submit``: run an amc command (e.g. a search) as a Ray Job on a cluster."""

from __future__ import annotations

import argparse
from pathlib import Path

from amc.utils.errors import AmcError
from amc.utils.provenance import GIT_COMMIT_ENV, git_commit

EXCLUDES = [".venv", ".git", "runs", "results", "logs", "*.pt", "*.pth", "*.th", "*.onnx",
            "*.onnx.data", "__pycache__", ".pytest_cache", ".ruff_cache"]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("submit", help="submit `amc ...` to a Ray cluster as a Ray Job",
                       description="amc submit --address http://HEAD:8265 -- amc search ...")
    p.add_argument("--address", required=True, help="the cluster's job API, e.g. "
                   "http://HEAD:8265")
    p.add_argument("--working-dir", default=".", help="folder packaged as the job's runtime "
                   "env (default: here; .venv, runs, results and weights are left out)")
    p.add_argument("--no-working-dir", action="store_true", help="run with the cluster's "
                   "installed amc only")
    p.add_argument("--job-id", default=None, help="submission id (default: Ray's)")
    p.add_argument("entrypoint", nargs=argparse.REMAINDER, help="-- amc <command> ...")
    p.set_defaults(func=cmd_submit)


def entrypoint_of(words: list[str]) -> str:
    """``amc search ...`` -> ``python -m amc.cli search ...`` (quoted for the shell)."""
    import shlex

    if words and words[0] == "--":
        words = words[1:]
    if not words:
        raise AmcError("nothing to submit; write the command after --, e.g. "
                       "amc submit --address http://HEAD:8265 -- amc search --budget flops:0.5")
    if words[0] == "amc":
        words = ["python", "-m", "amc.cli", *words[1:]]
    return " ".join(shlex.quote(w) for w in words)


def out_dir_of(entrypoint: str) -> str | None:
    import shlex

    words = shlex.split(entrypoint)
    for i, w in enumerate(words):
        if w == "--out" and i + 1 < len(words):
            return words[i + 1]
        if w.startswith("--out="):
            return w.split("=", 1)[1]
    return None


def client(address: str):
    from ray.job_submission import JobSubmissionClient

    try:
        return JobSubmissionClient(address)
    except Exception as e:  # connection refused, wrong URL, ...
        raise AmcError(f"cannot reach the Ray job API at {address} ({str(e).splitlines()[0]}); "
                       "pass the head's dashboard address, e.g. http://HEAD:8265") from e


def submit(c, address: str, patience_s: float = 90.0, retry_s: float = 2.0, **job) -> str:
    """``c.submit_job(**job)``, retried while a freshly started head has no job agent yet
    (Ray answers 500 "No available agent" for the first seconds after ``ray start``)."""
    import time

    deadline = time.monotonic() + patience_s
    while True:
        try:
            return c.submit_job(**job)
        except Exception as e:
            msg = str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__
            if "No available agent" in str(e) and time.monotonic() < deadline:
                time.sleep(retry_s)
                continue
            raise AmcError(f"the Ray head at {address} refused the job ({msg}); check the "
                           "cluster with `ray status` and submit again") from e


def cmd_submit(args: argparse.Namespace) -> int:
    entry = entrypoint_of(list(args.entrypoint))
    runtime_env = {}
    if not args.no_working_dir:
        wd = Path(args.working_dir)
        if not wd.is_dir():
            raise AmcError(f"working dir {wd} does not exist; pass --working-dir or "
                           "--no-working-dir")
        runtime_env = {"working_dir": str(wd.resolve()), "excludes": EXCLUDES}
        commit = git_commit(wd)  # the package leaves .git out: the job's runs record this
        if commit:
            runtime_env["env_vars"] = {GIT_COMMIT_ENV: commit}
    out = out_dir_of(entry)
    job_id = submit(client(args.address), args.address, entrypoint=entry,
                    runtime_env=runtime_env, submission_id=args.job_id)
    print(job_id)
    print(f"submitted to {args.address}: {entry}")
    print(f"follow it: amc jobs status {job_id} --address {args.address}  "
          f"(also: logs, wait, stop)")
    if out and not Path(out).is_absolute():
        print(f"note: --out {out} is relative, so it lands in the job's temporary working dir;"
              " pass an absolute path to keep the results")
    return 0
