"""``amc jobs status|logs|wait|stop JOB``: follow a search submitted with ``amc submit``."""

from __future__ import annotations

import argparse
import time

from amc.cli.submit import client, out_dir_of
from amc.utils.errors import AmcError

DONE = ("SUCCEEDED", "FAILED", "STOPPED")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("jobs", help="status, logs, wait or stop a submitted Ray Job")
    p.add_argument("action", choices=["status", "logs", "wait", "stop"])
    p.add_argument("job_id")
    p.add_argument("--address", required=True, help="the cluster's job API, e.g. "
                   "http://HEAD:8265")
    p.add_argument("--timeout", type=float, default=3600, help="seconds `wait` waits")
    p.set_defaults(func=cmd_jobs)


def _info(c, job_id: str):
    try:
        return c.get_job_info(job_id)
    except Exception as e:
        raise AmcError(f"no job {job_id!r} at this address ({str(e).splitlines()[0][:100]}); "
                       "check the id printed by amc submit") from e


def _where(entrypoint: str, address: str) -> str:
    out = out_dir_of(entrypoint)
    if out is None:
        return "the command named no --out; see its own default"
    host = address.split("//")[-1].split(":")[0]
    return (f"results in {out} on the cluster (head {host}); fetch them with e.g. "
            f"`rsync -a {host}:{out} .` or `ray rsync-down CLUSTER.yaml {out} .`")


def cmd_jobs(args: argparse.Namespace) -> int:
    c = client(args.address)
    info = _info(c, args.job_id)
    if args.action == "logs":
        print(c.get_job_logs(args.job_id), end="")
        return 0
    if args.action == "stop":
        c.stop_job(args.job_id)
        print(f"{args.job_id}: stop requested")
        return 0
    if args.action == "wait":
        deadline = time.time() + args.timeout
        while str(info.status) not in DONE and time.time() < deadline:
            time.sleep(1.0)
            info = _info(c, args.job_id)
    status = str(info.status).split(".")[-1]
    print(f"{args.job_id}: {status}")
    if status == "SUCCEEDED":
        print(_where(info.entrypoint, args.address))
    elif status == "FAILED":
        print(f"message: {info.message}; see `amc jobs logs {args.job_id} --address "
              f"{args.address}`")
    return 0 if status not in ("FAILED",) and (args.action != "wait" or status in DONE) else 1
