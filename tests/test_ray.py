"""Parallel episodes on Ray: every episode exactly once, worker faults, baselines as tasks.

These tests start a small local Ray (2 CPUs, bound to 127.0.0.1), never a remote one.
"""

from __future__ import annotations

import csv
import threading
import time
from pathlib import Path

import pytest

ray = pytest.importorskip("ray")

from amc.agents import SearchConfig, run_search  # noqa: E402
from amc.prune.policy import load_policy  # noqa: E402

pytestmark = pytest.mark.ray


@pytest.fixture(scope="module")
def local_ray():
    from amc.agents.ray_runtime import ray_session

    with ray_session(num_cpus=2):
        yield


def _rows(run: Path) -> list[dict]:
    with open(run / "episodes.csv", newline="") as f:
        return list(csv.DictReader(f))


def _cfg(ckpt: str, out: Path, **kw) -> SearchConfig:
    # plainly pruned (--no-reconstruct): scores that differ on the digits CNN's 64 val images
    base = dict(checkpoint=ckpt, episodes=21, warmup_episodes=6, out=str(out), workers=2,
                val_limit=64, hidden=64, batch_size=16, checkpoint_every=4, reconstruct=False)
    base.update(kw)
    return SearchConfig(**base)


def test_two_workers_record_every_episode_once(digits_ckpt, tmp_path, local_ray):
    run = tmp_path / "w2"
    s = run_search(_cfg(digits_ckpt, run))
    rows = _rows(run)
    # 21 is odd: the last lockstep pair finishes one episode too many, which is not recorded
    assert [int(r["episode"]) for r in rows] == list(range(1, 22)) and s["episodes"] == 21
    pol = load_policy(run / "best_policy.json")
    assert pol.achieved["macs_ratio"] <= 0.5 + 1e-9
    assert all(float(r["macs_ratio"]) <= 0.5 + 1e-9 for r in rows)


def test_too_few_gpus_or_cpus_fail_in_one_line_before_the_actors_wait(digits_ckpt, tmp_path,
                                                                      local_ray):
    """Workers asking for GPUs (or CPUs) Ray does not have would wait for them forever: the
    search refuses in one line, before its folder is made; the same check passes what fits."""
    from amc.agents.ray_runtime import check_resources
    from amc.utils.errors import AmcError

    have = ray.cluster_resources()
    if have.get("GPU", 0) < 1:  # this machine: no GPU
        with pytest.raises(AmcError, match=r"the local Ray instance has 0 GPUs but --workers 2 "
                                           r"x --gpus-per-worker 1 need 2; ask for fewer$"):
            run_search(_cfg(digits_ckpt, tmp_path / "g", gpus_per_worker=1))
        assert not (tmp_path / "g").exists()
    cpus = have["CPU"]
    with pytest.raises(AmcError, match=f"has {cpus:g} CPUs but --workers 2 x --cpus-per-worker "
                                       f"{cpus:g} need {2 * cpus:g}; ask for fewer or add nodes"):
        check_resources(2, cpus, 0, address="ray://head:10001")
    check_resources(2, cpus / 2, 0)  # fits: no error
    check_resources(0, 99, 99)  # no workers: nothing to check


def test_an_unreachable_cluster_is_one_line(monkeypatch):
    """A cluster address that does not answer: one line naming --address, not Ray's
    traceback; a failing local start is not blamed on an address."""
    from amc.agents.ray_runtime import ray_session
    from amc.utils.errors import AmcError

    def refuse(**kwargs):
        raise ConnectionError("ray client connection timeout\nmore lines")

    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", refuse)
    monkeypatch.setattr(ray, "shutdown", lambda: None)  # the module's own Ray stays up
    with pytest.raises(AmcError, match=r"^cannot join the Ray cluster at --address ray://h:1 "
                                       r"\(ray client connection timeout\); check the address"):
        with ray_session(address="ray://h:1"):
            pass
    with pytest.raises(ConnectionError):
        with ray_session(num_cpus=1):
            pass


def test_overlapped_updates_keep_a_seed_reproducible(digits_ckpt, tmp_path, local_ray):
    """The driver's updates run while the workers evaluate, in a thread: the same seed
    still gives the same episodes, and another seed does not."""
    timing = ("seconds", "prune_s", "repair_s", "eval_s", "run_seconds")

    def episodes(name: str, **kw) -> list[dict]:
        s = run_search(_cfg(digits_ckpt, tmp_path / name, episodes=12, **kw))
        assert s["update_rounds_overlapped"] > 0
        return [{k: v for k, v in r.items() if k not in timing} for r in _rows(tmp_path / name)]

    a, b = episodes("a"), episodes("b")
    assert a == b
    assert episodes("c", seed=1) != a


@pytest.mark.parametrize("envs_on,prefix", [("driver", "amc-scorer-"),
                                            ("workers", "amc-env-")])
def test_search_survives_a_killed_worker(digits_ckpt, tmp_path, local_ray, envs_on, prefix):
    run = tmp_path / "kill"
    killed: list[str] = []

    def killer() -> None:
        deadline = time.time() + 120
        while time.time() < deadline:
            if (run / "episodes.csv").is_file() and len(_rows(run)) >= 8:
                names = [a["name"] for a in ray.util.list_named_actors(all_namespaces=True)
                         if isinstance(a, dict) and a.get("name", "").startswith(prefix)]
                if names:
                    ray.kill(ray.get_actor(sorted(names)[0]), no_restart=False)
                    killed.append(sorted(names)[0])
                    return
            time.sleep(0.05)

    t = threading.Thread(target=killer, daemon=True)
    t.start()
    s = run_search(_cfg(digits_ckpt, run, episodes=30, envs_on=envs_on))
    t.join(timeout=5)
    assert killed, "the worker was never killed"
    rows = _rows(run)
    assert [int(r["episode"]) for r in rows] == list(range(1, 31)) and s["episodes"] == 30
    assert s["worker_restarts"] >= 1  # the lost step was recovered, not skipped


def test_baselines_run_as_ray_tasks(digits_ckpt, local_ray):
    from amc.agents.parallel import ray_map
    from amc.prune.baselines import random_search, sensitivity_sweep
    from amc.prune.budget import Budget
    from amc.prune.scoring import build_scorer

    sc = build_scorer("digits_cnn", digits_ckpt, val_limit=64)
    mapper = ray_map(sc, workers=2)
    dense_r, acc_r = sensitivity_sweep(sc, ratios=(0.2, 0.6), map_fn=mapper)
    dense_l, acc_l = sensitivity_sweep(sc, ratios=(0.2, 0.6))
    assert dense_r == dense_l and (acc_r == acc_l).all()
    best, score, allp = random_search(sc, Budget.parse("flops:0.5"), n=6, seed=3, map_fn=mapper)
    best_l, score_l, _ = random_search(sc, Budget.parse("flops:0.5"), n=6, seed=3)
    assert best == best_l and score == score_l and len(allp) == 6


def _is_loopback(ip: str) -> bool:
    import ipaddress

    addr = ipaddress.ip_address(ip.split("%")[0])
    mapped = getattr(addr, "ipv4_mapped", None)
    return (mapped or addr).is_loopback


@pytest.mark.cli
def test_local_ray_listens_only_on_loopback(digits_ckpt, tmp_path):
    """`amc search --workers 2` without --address: every socket that the processes it starts
    listen on (driver, GCS, raylet, object manager, dashboard and its agent, runtime-env
    agent, metrics servers, workers) is bound to 127.0.0.1."""
    import contextlib
    import os
    import socket
    import subprocess
    import sys

    import psutil

    cmd = [sys.executable, "-m", "amc.cli", "search", "--checkpoint", digits_ckpt, "--workers",
           "2", "--episodes", "8", "--warmup-episodes", "4", "--val-limit", "64", "--hidden",
           "64", "--batch-size", "16", "--out", str(tmp_path / "run")]
    proc = subprocess.Popen(cmd, env={**os.environ, "OMP_NUM_THREADS": "1"},
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    root = psutil.Process(proc.pid)
    listeners: dict[tuple[str, int], str] = {}
    procs: list[psutil.Process] = []
    while proc.poll() is None:
        with contextlib.suppress(psutil.Error):
            procs = [root, *root.children(recursive=True)]
        for p in procs:
            with contextlib.suppress(psutil.Error):
                for c in p.net_connections(kind="inet"):
                    if c.status == psutil.CONN_LISTEN or (c.type == socket.SOCK_DGRAM
                                                          and not c.raddr):
                        listeners[(c.laddr.ip, c.laddr.port)] = " ".join(p.cmdline())[:60]
        time.sleep(0.3)
    assert proc.returncode == 0, proc.stderr.read()[-2000:]
    assert len(listeners) >= 6, listeners  # GCS, raylet (2), agents (2+), driver, workers
    exposed = {k: v for k, v in listeners.items() if not _is_loopback(k[0])}
    assert not exposed, exposed


def test_more_envs_than_workers_record_every_episode_once(digits_ckpt, tmp_path, local_ray):
    """4 envs scoring on 2 workers: every episode once, in order; the round that passes
    --episodes is not recorded; the same seed gives the same episodes and the same pick."""
    timing = ("seconds", "prune_s", "repair_s", "eval_s", "run_seconds")

    def episodes(name: str) -> list[dict]:
        # flops:0.3: scores differ, so the best policies are rescored (on the actors)
        s = run_search(_cfg(digits_ckpt, tmp_path / name, envs_per_worker=2,
                            budget="flops:0.3", rescore_top=3))
        assert s["episodes"] == 21 and s["rescore"]["candidates"] >= 2
        return [{k: v for k, v in r.items() if k not in timing} for r in _rows(tmp_path / name)]

    a = episodes("a")
    assert [int(r["episode"]) for r in a] == list(range(1, 22))
    assert episodes("b") == a
    assert (load_policy(tmp_path / "a" / "best_policy.json").ratios
            == load_policy(tmp_path / "b" / "best_policy.json").ratios)


def test_rescoring_on_actors_picks_as_the_driver_does(digits_ckpt, local_ray):
    """Candidates scored on 2 actors in waves: the same pick and the same complete scores
    as one by one in the driver; the third candidate races against the first wave's best
    and stops early. The search's own reward (flops) travels to the actors."""
    from dataclasses import replace

    from amc.agents.parallel import ActorScorer
    from amc.agents.search import _reward_at
    from amc.data.datasets import load_dataset
    from amc.prune.rescore import Candidate, rescore
    from amc.prune.scoring import ScorerParts, build_scorer

    scorer = build_scorer("digits_cnn", digits_ckpt, val_limit=64)
    x, y = load_dataset("digits").tensors("val")
    rest = (x[64:], y[64:])
    n = len(scorer.pm.units)
    cands = [Candidate(7, [0.8] * n, 100.0, 0.0), Candidate(9, [0.1] * n, 90.0, -0.1),
             Candidate(11, [0.8] * n, 95.0, -0.05)]
    reward_at = _reward_at(scorer, _cfg(digits_ckpt, Path("unused"), reward="flops"))
    local = rescore(scorer, rest, cands, reward_at)
    actors = ActorScorer(replace(ScorerParts.of(scorer), x=rest[0], y=rest[1]), scorer.pm, 2)
    try:
        remote = rescore(scorer, rest, cands, reward_at, score=actors.score, width=2)
    finally:
        actors.close()
    assert remote["chosen"] == local["chosen"] == 1
    assert remote["rows"][:2] == local["rows"][:2]
    assert remote["rows"][2]["rest_images"] < len(rest[1])  # raced out in the second wave


def test_envs_on_the_driver_or_in_the_workers_make_the_same_search(digits_ckpt, tmp_path,
                                                                   local_ray):
    """The same seed: the same episodes and the same pick whether the envs step on the
    driver (scoring on the actors) or each in its own actor."""
    timing = ("seconds", "prune_s", "repair_s", "eval_s", "run_seconds")
    runs = {}
    for where in ("driver", "workers"):
        run_search(_cfg(digits_ckpt, tmp_path / where, envs_on=where, budget="flops:0.3",
                        rescore_top=3))
        runs[where] = ([{k: v for k, v in r.items() if k not in timing}
                        for r in _rows(tmp_path / where)],
                       load_policy(tmp_path / where / "best_policy.json").ratios)
    assert runs["driver"] == runs["workers"]


def test_picking_again_scores_on_the_search_actors(digits_ckpt, tmp_path, local_ray,
                                                   monkeypatch):
    """A finished 2-worker search picked again with another --rescore-top rescores on 2 Ray
    actors (as its own end did) and picks what the driver alone picks, with the same scores
    on all of val."""
    from dataclasses import replace

    import amc.agents.search as search
    from amc.agents.parallel import ActorScorer

    cfg = _cfg(digits_ckpt, tmp_path / "s", budget="flops:0.3", rescore_top=2)
    run_search(cfg)
    seen = []
    pick = search.pick_best

    def spy(*args, **kw):
        seen.append(args[4] if len(args) > 4 else kw.get("actors"))
        return pick(*args, **kw)

    monkeypatch.setattr(search, "pick_best", spy)
    remote = search.refinish(replace(cfg, rescore_top=4))
    rows_remote = (tmp_path / "s" / "rescore.json").read_text()
    local = search.refinish(replace(cfg, rescore_top=4, workers=0))
    assert isinstance(seen[0], ActorScorer) and seen[0].workers == 2 and seen[1] is None
    assert remote["rescore"]["candidates"] >= 3
    assert remote["best_episode"] == local["best_episode"]
    assert remote["rescore"]["chosen_val_top1_all"] == local["rescore"]["chosen_val_top1_all"]
    assert rows_remote.count("val_top1_all") == remote["rescore"]["candidates"]


def test_actors_settle_the_allocator_as_the_cli_does(digits_ckpt, local_ray):
    """Scoring and env actors are their process's entry point: each settles glibc's malloc
    thresholds before it works (a fresh process that did not reports "not settled")."""
    import ray

    from amc.agents.parallel import ScoreWorker
    from amc.agents.ray_vec_env import EnvWorker
    from amc.prune.scoring import ScorerParts, build_scorer
    from amc.utils import allocator

    if not allocator.settle().startswith("glibc"):
        pytest.skip(f"allocator not settled here: {allocator.state()}")
    parts = ScorerParts.of(build_scorer("digits_cnn", digits_ckpt, val_limit=64))
    actors = [ScoreWorker.remote([ray.put(parts)], 1), EnvWorker.remote([ray.put(dict)], 0, 1)]

    @ray.remote
    class Bare:  # an actor of its own process that settles nothing (must fail)
        pass

    actors.append(Bare.remote())
    try:
        states = ray.get([a.__ray_call__.remote(lambda self: allocator.state())
                          for a in actors])
        assert states == [allocator.state()] * 2 + ["default (not settled)"]
    finally:
        for a in actors:
            ray.kill(a)
