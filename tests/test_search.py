"""The AMC search: reproducibility, run directory, kill -9 and resume, noise schedule."""

from __future__ import annotations

import csv
import json
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from amc.agents import SearchConfig, run_search
from amc.config.args import changed_settings, load_run_config
from amc.prune.budget import Budget
from amc.prune.policy import load_policy
from amc.utils.io import write_json


def _cfg(ckpt: str, out: Path, **kw) -> SearchConfig:
    # plainly pruned (--no-reconstruct): reconstructed, the digits CNN scores nearly every
    # policy 100 % on 64 val images, and these tests need scores that differ
    base = dict(checkpoint=ckpt, episodes=24, warmup_episodes=8, out=str(out),
                checkpoint_every=5, val_limit=64, hidden=64, batch_size=16, reconstruct=False)
    base.update(kw)
    return SearchConfig(**base)


def _rows(run: Path) -> list[dict]:
    with open(run / "episodes.csv", newline="") as f:
        return list(csv.DictReader(f))


def _without_time(rows: list[dict]) -> list[dict]:
    timing = ("seconds", "prune_s", "repair_s", "eval_s", "run_seconds")
    return [{k: v for k, v in r.items() if k not in timing} for r in rows]


def test_same_seed_same_episodes_and_policy(digits_ckpt, tmp_path):
    a = run_search(_cfg(digits_ckpt, tmp_path / "a"))
    b = run_search(_cfg(digits_ckpt, tmp_path / "b"))
    ra, rb = _rows(tmp_path / "a"), _rows(tmp_path / "b")
    assert len(ra) == 24 and _without_time(ra) == _without_time(rb)
    pa, pb = (load_policy(tmp_path / x / "best_policy.json") for x in "ab")
    assert pa.units == pb.units and pa.metrics == pb.metrics
    assert a["best_reward"] == b["best_reward"]
    c = run_search(_cfg(digits_ckpt, tmp_path / "c", seed=1))
    assert _without_time(_rows(tmp_path / "c")) != _without_time(ra)
    assert c["episodes"] == 24


def test_run_directory_contents(digits_ckpt, tmp_path):
    run = tmp_path / "r"
    run_search(_cfg(digits_ckpt, run, budget="params:0.5"))
    for f in ("config.json", "run.json", "episodes.csv", "best_policy.json",
              "uniform_policy.json", "learning_curve.png", "summary.json"):
        assert (run / f).is_file(), f
    assert any((run / "tb").rglob("events.out.tfevents*"))
    meta = json.loads((run / "run.json").read_text())
    assert meta["seed"] == 0 and "torch" in meta["versions"] and "git_commit" in meta
    pol = load_policy(run / "best_policy.json")
    assert pol.achieved["params_ratio"] <= 0.5 + 1e-9
    rows = _rows(run)
    assert [int(r["episode"]) for r in rows] == list(range(1, 25))
    assert max(float(r["reward"]) for r in rows) == pytest.approx(pol.metrics["reward"], abs=1e-5)
    assert all(float(r["params_ratio"]) <= 0.5 + 1e-9 for r in rows)
    # the budget's own resource: here the parameters
    assert [float(r["budget_ratio"]) for r in rows] == [float(r["params_ratio"]) for r in rows]
    # SB3's Monitor statistics reach TensorBoard, next to amc's own scalars
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tags = set()
    for ev in (run / "tb").rglob("events.out.tfevents*"):
        acc = EventAccumulator(str(ev))
        acc.Reload()
        tags |= set(acc.Tags()["scalars"])
    assert {"rollout/ep_rew_mean", "amc/reward", "amc/val_top1"} <= tags, tags


@pytest.mark.cli
def test_kill_9_then_resume(digits_ckpt, tmp_path):
    run = tmp_path / "k"
    episodes = 30
    cmd = [sys.executable, "-m", "amc.cli", "search", "--checkpoint", digits_ckpt,
           "--episodes", str(episodes), "--warmup-episodes", "10", "--checkpoint-every", "5",
           "--val-limit", "64", "--hidden", "64", "--batch-size", "16", "--out", str(run)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while time.time() < deadline:
        ok = (run / "ckpt" / "state.json").is_file() and (run / "episodes.csv").is_file()
        if ok and len(_rows(run)) >= 17 and len(_rows(run)) % 5 != 0:
            break
        if proc.poll() is not None:
            pytest.fail("search ended before it could be killed: " + proc.stderr.read().decode())
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    before = _rows(run)
    assert 0 < len(before) < episodes
    best_before = load_policy(run / "best_policy.json").metrics["reward"]
    r = subprocess.run([sys.executable, "-m", "amc.cli", "search", "--resume", str(run)],
                       env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    after = _rows(run)
    assert [int(x["episode"]) for x in after] == list(range(1, episodes + 1))
    assert load_policy(run / "best_policy.json").metrics["reward"] >= best_before
    assert all(float(x["macs_ratio"]) <= 0.5 + 1e-9 for x in after)


@pytest.mark.cli
def test_existing_run_is_not_overwritten(digits_ckpt, tmp_path):
    run = tmp_path / "x"
    run_search(_cfg(digits_ckpt, run, episodes=10, warmup_episodes=5))
    before = (run / "episodes.csv").read_text()
    r = subprocess.run([sys.executable, "-m", "amc.cli", "search", "--checkpoint", digits_ckpt,
                        "--episodes", "10", "--out", str(run)], capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "--resume" in r.stderr
    assert (run / "episodes.csv").read_text() == before
    # --resume of the finished search says so and writes nothing (no file touched)
    from amc.cli import main

    stamps = {p: p.stat().st_mtime_ns for p in run.rglob("*") if p.is_file()}
    assert main(["search", "--resume", str(run)]) == 0
    assert {p: p.stat().st_mtime_ns for p in run.rglob("*") if p.is_file()} == stamps


def test_noise_schedule_and_truncation():
    from amc.agents.noise import TruncatedNormalNoise

    seen = []

    def actor(obs):
        seen.append(obs)
        return np.array([[0.8]])  # 0.9 in [0, 1] units

    n = TruncatedNormalNoise(n_envs=1, sigma0=0.5, decay=0.95, warmup_episodes=3, seed=0,
                             actor=actor)
    n.observe(np.full((1, 11), 0.25, np.float32))
    assert np.all(n() == 0)  # warm-up: SB3's own uniform sampling, no noise
    for _ in range(3):
        n.episodes_ended([0])
    assert n.sigma == pytest.approx(0.5)
    for _ in range(10):
        n.episodes_ended([0])
    assert n.sigma == pytest.approx(0.5 * 0.95 ** 10)
    n.reset()  # SB3 also calls this at every learn() start: it must not count an episode
    assert n.episodes == 13
    samples = np.array([n()[0, 0] for _ in range(2000)])
    actions01 = 0.9 + samples / 2
    assert actions01.min() >= 0.0 and actions01.max() <= 1.0  # truncated, never clipped
    from scipy.stats import truncnorm

    sd = 0.5 * 0.95 ** 10
    expected = truncnorm.median((0 - 0.9) / sd, (1 - 0.9) / sd, loc=0.9, scale=sd)
    assert abs(np.median(actions01) - expected) < 0.03
    assert seen and np.all(seen[-1] == 0.25)  # centred on the actor's action for that obs


def test_noise_reuses_the_action_sb3_just_predicted_and_never_a_stale_one():
    """SB3 predicts μ(s), then calls the noise, which needs μ(s) for the same observations:
    the actor runs once per step (twice before), the noise's centre is exactly SB3's action,
    and after a weights change or for other observations the actor runs again."""
    import gymnasium as gym
    from stable_baselines3 import DDPG
    from stable_baselines3.common.vec_env import DummyVecEnv

    from amc.agents.ddpg import AMCPolicy, attach_noise
    from amc.agents.noise import TruncatedNormalNoise

    class SameStart(gym.Wrapper):  # every episode starts alike, as the pruning env's do
        def reset(self, *, seed=None, options=None):
            return self.env.reset(seed=0)

    venv = DummyVecEnv([lambda: SameStart(gym.make("Pendulum-v1"))])
    noise = TruncatedNormalNoise(n_envs=1, sigma0=0.2, warmup_episodes=0, seed=0)
    model = DDPG(AMCPolicy, venv, learning_starts=0, gradient_steps=0, seed=0, device="cpu",
                 policy_kwargs={"net_arch": [8, 8]})
    follow = attach_noise(model, noise)
    rollout_calls = []
    model.actor.register_forward_hook(lambda m, i, o: rollout_calls.append(len(i[0])))
    centres = []
    actor = noise.actor
    noise.actor = lambda obs: centres.append(actor(obs)) or centres[-1]
    model.learn(30, callback=follow)
    assert len(centres) == 30 and rollout_calls == [1] * 30  # 60 when the noise re-ran it

    obs = venv.reset()
    rollout_calls.clear()
    a, _ = model.predict(obs)  # SB3's rollout call
    mu, _ = model.predict(obs, deterministic=True)  # the noise's, same observations
    assert np.array_equal(a, mu) and len(rollout_calls) == 1
    again, _ = model.predict(obs, deterministic=True)  # served once only
    assert np.array_equal(again, mu) and len(rollout_calls) == 2
    model.predict(obs)
    model.policy.set_training_mode(True)  # SB3's train() (and the warm start's fit)
    with torch.no_grad():
        for p in model.actor.parameters():
            p.add_(0.5)
    changed, _ = model.predict(obs, deterministic=True)
    assert len(rollout_calls) == 4 and not np.array_equal(changed, mu)
    model.predict(obs)
    other = obs + 0.1
    model.predict(other, deterministic=True)
    assert len(rollout_calls) == 6


def test_noise_floor_keeps_late_exploration():
    from amc.agents.noise import TruncatedNormalNoise

    def actor(obs):
        return np.zeros((1, 1))  # 0.5 in [0, 1] units

    floor, paper = (TruncatedNormalNoise(n_envs=1, sigma0=0.15, decay=0.95, warmup_episodes=0,
                                         seed=0, actor=actor, sigma_min=m) for m in (0.05, 0.0))
    for n in (floor, paper):
        n.observe(np.zeros((1, 11), np.float32))
        n.episodes_ended([0] * 100)  # 0.15 * 0.95**100 = 9e-4
    assert paper.sigma == pytest.approx(0.15 * 0.95 ** 100)
    assert floor.sigma == pytest.approx(0.05)
    spread = {k: np.std([n()[0, 0] / 2 for _ in range(2000)])  # back to [0, 1] units
              for k, n in (("floor", floor), ("paper", paper))}
    assert spread["floor"] == pytest.approx(0.05, rel=0.1)  # the floor's σ, actually drawn
    assert spread["paper"] < 0.005


def test_critic_learns_ten_times_faster(digits_ckpt, tmp_path):
    from stable_baselines3.common.utils import update_learning_rate
    from stable_baselines3.common.vec_env import DummyVecEnv

    from amc.agents.ddpg import build_agent
    from amc.agents.wrappers import RewardBaseline
    from amc.envs import AMCPruningEnv
    from amc.prune.scoring import build_scorer

    cfg = _cfg(digits_ckpt, tmp_path / "d")
    sc = build_scorer(**cfg.scorer_kwargs())
    venv = RewardBaseline(DummyVecEnv([lambda: AMCPruningEnv(sc, **cfg.env_kwargs())]))
    model, _ = build_agent(cfg, venv, len(sc.pm.units))
    assert model.gamma == 1.0 and model.tau == 0.01 and model.batch_size == 16
    # SB3 writes the actor's learning rate into both optimisers before every update ...
    for opt in (model.actor.optimizer, model.critic.optimizer):
        update_learning_rate(opt, cfg.lr_actor)
    # ... and one Adam step moves each parameter by ~lr (|m/sqrt(v)| = 1 on the first step):
    # the critic's parameters must move 10x as far as the actor's.
    steps = {}
    for name, net in (("actor", model.actor), ("critic", model.critic)):
        before = [p.detach().clone() for p in net.parameters()]
        obs = torch.rand(4, net.observation_space.shape[0])
        act = torch.rand(4, 1)
        out = net(obs) if name == "actor" else net(obs, act)[0]
        net.optimizer.zero_grad()
        out.pow(2).mean().backward()
        net.optimizer.step()
        steps[name] = max(float((p.detach() - b).abs().max())
                          for p, b in zip(net.parameters(), before))
    assert steps["actor"] == pytest.approx(cfg.lr_actor, rel=0.05)
    assert steps["critic"] == pytest.approx(cfg.lr_critic, rel=0.05)
    assert cfg.lr_critic == pytest.approx(10 * cfg.lr_actor)
    assert model.gamma == 1.0 and model.tau == 0.01 and model.batch_size == 16
    assert model.learning_starts == 8 * len(sc.pm.units)
    assert Budget.parse(cfg.budget).fraction == 0.5


def _critic_updates(run: Path) -> int:
    """Optimiser steps the critic took in the search of ``run`` (from its saved agent)."""
    from stable_baselines3 import DDPG

    model = DDPG.load(run / "ckpt" / "agent.zip", device="cpu")
    return int(next(iter(model.critic.optimizer.state.values()))["step"])


@pytest.mark.ray
class TestUpdatesPerTransition:
    """The Ray searches of both warm starts share one local Ray instance (starting one and
    its workers' torch imports cost ~10 s each on two cores)."""

    @pytest.fixture(scope="class")
    def local_ray(self):
        from amc.agents.ray_runtime import ray_session

        with ray_session(num_cpus=2):
            yield

    @pytest.mark.parametrize("warm_start", ["random", "cheap"])
    def test_updates_per_transition_do_not_depend_on_workers(self, digits_ckpt, tmp_path,
                                                             warm_start, local_ray):
        """One update per stored transition (after the random warm-up; from the first
        demonstration with a cheap warm start) with 1 env, 2 Ray workers, 2 workers whose
        updates overlap their evaluations, and 2 such workers scoring 4 envs (was 1 update
        per 2 transitions with SB3's schedule)."""
        import pickle

        from amc.prune.units import PrunableModel

        units = len(PrunableModel(__import__("amc").create_model("digits_cnn"), (1, 8, 8)).units)
        made = {}
        for w, overlap, per in ((1, False, 1), (2, False, 1), (2, True, 1), (2, True, 2)):
            run = tmp_path / f"w{w}{overlap}{per}"
            s = run_search(_cfg(digits_ckpt, run, workers=w, episodes=12, warmup_episodes=4,
                                race=False, warm_start=warm_start, overlap_updates=overlap,
                                envs_per_worker=per))
            with open(run / "ckpt" / "replay.pkl", "rb") as f:
                stored = pickle.load(f).committed
            owed = json.loads((run / "ckpt" / "state.json").read_text())["updates"]["owed"]
            learning = stored - (4 * units if warm_start == "random" else 0)
            made[(w, overlap, per)] = (_critic_updates(run), learning - owed,
                                       s["update_rounds_overlapped"])
            assert s["agent_updates_this_run"] == made[(w, overlap, per)][0]
        for updates, expected, _ in made.values():
            assert updates == expected, made
        # overlapped: every round's updates but the last round's ran during the next evaluation
        learning_episodes = 12 - (4 if warm_start == "random" else 0)
        assert made[(2, True, 1)][2] == learning_episodes // 2 - 1, made
        assert made[(2, True, 2)][2] == learning_episodes // 4 - 1, made
        assert made[(2, False, 1)][2] == 0, made


class _Killed(Exception):
    """Stands for kill -9: raised from inside the search, nothing is saved on the way out."""


def _die_after_a_new_best(monkeypatch, after: int) -> None:
    """Make the next search die right after it writes best_policy.json for an episode past
    its last checkpoint (and past episode ``after``), as a kill at the wrong moment would.
    Every episode it records is a new best (its reward, in [-1, 0], raised by twice its
    number), so the kill comes whatever this CPU's scores: on 64 val images they tie often,
    and the real new bests came too late on one CPU (the AMX Xeon)."""
    from amc.agents.monitor import SearchMonitor

    record = SearchMonitor._record

    def dying(self, res):
        best = self.best_reward
        record(self, {**res, "reward": res["reward"] + 2.0 * (self.done + 1)})
        if self.best_reward != best and 0 < self.last_ckpt < self.done and self.done > after:
            raise _Killed(self.done)

    monkeypatch.setattr(SearchMonitor, "_record", dying)


def test_best_policy_is_a_row_of_episodes_after_kills_and_resumes(digits_ckpt, tmp_path,
                                                                  monkeypatch):
    run = tmp_path / "r"
    cfg = _cfg(digits_ckpt, run, episodes=30, warmup_episodes=6, checkpoint_every=3,
               warm_start="random", race=False)  # (no racing bar: the killed runs raise it)
    killed = []
    for _ in range(2):  # two kills, each right after a new best the checkpoint does not hold
        _die_after_a_new_best(monkeypatch, killed[-1] if killed else 0)
        with pytest.raises(_Killed) as e:
            run_search(cfg, resume=bool(killed))
        killed.append(e.value.args[0])
        monkeypatch.undo()
        assert load_policy(run / "best_policy.json").provenance["episode"] == killed[-1]
    s = run_search(cfg, resume=True)
    rows = _rows(run)
    assert [int(r["episode"]) for r in rows] == list(range(1, 31))
    pol = load_policy(run / "best_policy.json")
    row = rows[pol.provenance["episode"] - 1]  # the episode it names, as episodes.csv holds it
    assert float(row["reward"]) == pytest.approx(pol.metrics["reward"], abs=1e-6)
    assert [float(row[f"ratio:{u['name']}"]) for u in pol.units] == pytest.approx(
        [u["ratio"] for u in pol.units], abs=1e-6)
    assert s["best_episode"] == pol.provenance["episode"]


def test_out_folder_of_other_files_needs_force(digits_ckpt, tmp_path):
    from amc.utils.errors import AmcError

    run = tmp_path / "proj"
    run.mkdir()
    (run / "notes.md").write_text("mine\n")
    with pytest.raises(AmcError, match="holds files amc did not write"):
        run_search(_cfg(digits_ckpt, run, episodes=4, warmup_episodes=2))
    assert [p.name for p in run.iterdir()] == ["notes.md"]
    run_search(_cfg(digits_ckpt, run, episodes=4, warmup_episodes=2, force=True))
    assert (run / "notes.md").read_text() == "mine\n" and len(_rows(run)) == 4
    with pytest.raises(AmcError, match="--resume .* --force"):  # a search: never silently
        run_search(_cfg(digits_ckpt, run, episodes=3, warmup_episodes=2))
    s = run_search(_cfg(digits_ckpt, run, episodes=3, warmup_episodes=2, force=True))
    assert s["episodes"] == 3 and len(_rows(run)) == 3  # --force started it over
    assert json.loads((run / "config.json").read_text())["force"] is False
    assert (run / "notes.md").read_text() == "mine\n"


def test_resumed_search_keeps_episode_returns_without_warnings(digits_ckpt, tmp_path):
    """A resumed agent still trains on whole-episode returns, quietly: every stored
    transition is terminal and carries its episode's final (baseline-relative) reward."""
    import pickle
    import warnings

    from amc.prune.units import PrunableModel

    units = len(PrunableModel(__import__("amc").create_model("digits_cnn"), (1, 8, 8)).units)
    run = tmp_path / "r"
    # flops:0.3: at 0.5 the digits CNN may score every episode alike on 64 val images (it
    # did on an AVX2-only CPU), and the check below needs episodes that differ
    kw = dict(warmup_episodes=2, checkpoint_every=3, budget="flops:0.3")
    run_search(_cfg(digits_ckpt, run, episodes=6, **kw))
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        run_search(_cfg(digits_ckpt, run, episodes=9, **kw), resume=True)
    with open(run / "ckpt" / "replay.pkl", "rb") as f:
        buf = pickle.load(f)
    assert type(buf).__name__ == "EpisodeReplayBuffer" and buf.episode_returns
    stored = buf.rewards[:buf.pos, 0].reshape(-1, units)  # one row per episode, in order
    # SB3 stops before storing the last episode of each session (of 6, then 3 more)
    assert len(stored) == buf.committed // units == 7
    assert np.all(stored == stored[:, :1]) and np.all(buf.dones[:buf.pos] == 1)
    assert len(set(stored[:, 0].round(6))) > 1  # episodes differ: the check can fail
    assert len(_rows(run)) == 9


def test_checkpoint_of_an_earlier_amc_is_refused_untouched(digits_ckpt, tmp_path):
    """A run whose checkpoint holds SB3's n-step buffer (amc before whole-episode storage)
    is refused in one line before anything is loaded or rewritten."""
    import pickle

    from stable_baselines3.common.buffers import NStepReplayBuffer

    from amc.utils.errors import AmcError

    run = tmp_path / "old"
    cfg = _cfg(digits_ckpt, run, episodes=6, warmup_episodes=2, checkpoint_every=3)
    run_search(cfg)
    buf = pickle.loads((run / "ckpt" / "replay.pkl").read_bytes())
    old = NStepReplayBuffer(16, buf.observation_space, buf.action_space, "cpu", n_steps=4)
    (run / "ckpt" / "replay.pkl").write_bytes(pickle.dumps(old))
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    with pytest.raises(AmcError, match="earlier amc.*--force"):
        run_search(_cfg(digits_ckpt, run, episodes=9, warmup_episodes=2), resume=True)
    assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == before


def test_changed_settings_names_what_a_cached_run_was_not_made_with(tmp_path):
    """What `amc demo` checks before reusing its cached search (else it searches again)."""
    cfg = SearchConfig(model="digits_cnn", out=str(tmp_path))
    write_json(tmp_path / "config.json", replace(cfg, force=False).as_dict())  # as run_search
    assert changed_settings(cfg, tmp_path) == []
    assert changed_settings(replace(cfg, force=True), tmp_path) == []  # not a result setting
    assert changed_settings(replace(cfg, noise_min=0.0, episodes=7), tmp_path) == [
        "episodes", "noise_min"]
    old = json.loads((tmp_path / "config.json").read_text())
    del old["noise_min"]
    write_json(tmp_path / "config.json", old)
    assert changed_settings(cfg, tmp_path) == ["noise_min"]  # made before the setting existed


def test_run_or_resume_reuses_only_a_search_made_with_the_same_settings(digits_ckpt, tmp_path,
                                                                        monkeypatch):
    """What `amc compare`, `amc demo` and the benchmarks call: a cached search made with the
    same settings is reused (a finished one is read back, not rerun), one made with other
    settings (a changed flag or default) is searched again with a one-line notice."""
    import amc.agents.search as search_mod
    from amc.agents import run_or_resume

    run = tmp_path / "r"
    cfg = _cfg(digits_ckpt, run, episodes=4, warmup_episodes=2)
    said: list[str] = []
    first = run_or_resume(cfg, say=said.append)
    assert said == [] and len(_rows(run)) == 4

    def no_search(*a, **k):
        raise AssertionError("searched again")

    monkeypatch.setattr(search_mod, "run_search", no_search)
    # the same search, run with other runtime settings (and another spelling of the path)
    again = run_or_resume(replace(cfg, threads=2, checkpoint_every=2,
                                  checkpoint=os.path.relpath(digits_ckpt)), say=said.append)
    assert again == first and said == []
    monkeypatch.undo()
    s = run_or_resume(replace(cfg, episodes=5, noise_min=0.1), say=said.append)
    assert len(said) == 1 and "(episodes, noise_min)" in said[0]
    assert s["episodes"] == 5 and len(_rows(run)) == 5
    assert json.loads((run / "config.json").read_text())["noise_min"] == 0.1


def test_time_limit_stops_at_an_episode_end(digits_ckpt, tmp_path, caplog):
    """--time-limit: the episodes stop at an episode end (the first one, with a limit no
    round fits in); the search is finished (best policy, summary) and says it was
    stopped, with a note that it never left its warm-up; a search that ran its episodes
    (must fail with the note always on) says nothing of it."""
    run = tmp_path / "r"
    with caplog.at_level("WARNING", logger="amc"):
        s = run_search(_cfg(digits_ckpt, run, episodes=6, warmup_episodes=2, time_limit=1e-6))
    assert s["episodes"] == len(_rows(run)) == 1 and s["stopped_by_time_limit"]
    assert load_policy(run / "best_policy.json").provenance["episode"] == 1
    notes = [r.getMessage() for r in caplog.records if "warm-up episodes" in r.getMessage()]
    assert len(notes) == 1 and "after 1 episode(s), inside its 2 warm-up" in notes[0]
    assert "raise --time-limit" in notes[0] and "--finalists 0" not in notes[0]
    caplog.clear()
    with caplog.at_level("WARNING", logger="amc"):
        s = run_search(_cfg(digits_ckpt, run, episodes=3, warmup_episodes=2, force=True))
    assert s["episodes"] == 3 and not s["stopped_by_time_limit"]
    assert not [r for r in caplog.records if "warm-up episodes" in r.getMessage()]


def test_warmup_notice_names_the_fix_only_past_nothing_but_the_warmup():
    """The note comes only for a search stopped inside its warm-up, and offers turning the
    fine-tuned finalists off only where they are on."""
    from amc.agents.time_limit import warmup_notice

    assert warmup_notice(20, 20, 131.0, 97.0, 30.0, True) is None
    note = warmup_notice(2, 20, 131.0, 97.0, 30.0, True)
    assert note is not None and note.startswith("amc: note: --time-limit 131 s")
    assert "97 s went before" in note and "30 s were kept" in note
    assert "--finalists 0 --blocks-finalists 0" in note
    assert "--finalists 0" not in (warmup_notice(2, 20, 131.0, 97.0, 30.0, False) or "")
    # a shorter warm-up where episodes fitted: half of them; none where only one did
    assert "--warmup-episodes 24 " in warmup_notice(49, 100, 90.0, 12.0, 0.0, False)
    assert "--warmup-episodes" not in warmup_notice(1, 100, 90.0, 12.0, 0.0, False)


def _drive_timer(monkeypatch, timer, ends: list[float], result: dict) -> float | None:
    """Feed ``timer`` rounds of episodes ending at the clock times ``ends`` (training
    starts at 0); the time at which it stopped training (None: never)."""
    from types import SimpleNamespace

    from amc.agents import time_limit

    now = [0.0]
    monkeypatch.setattr(time_limit, "time", SimpleNamespace(perf_counter=lambda: now[0]))
    timer.model = SimpleNamespace(num_timesteps=0)
    timer.on_training_start({}, {})
    for t in ends:
        now[0] = t
        timer.update_locals({"dones": np.array([True, True]),
                             "infos": [{"episode_result": result}] * 2})
        if not timer.on_step():
            return t
    return None


def test_time_limit_keeps_the_rescoring_within_it(monkeypatch):
    """--time-limit bounds the search with its rescoring: the episodes stop where the next
    round (timed as the longest after the first) plus the rescoring, estimated from the
    episodes' own scoring times, would overrun; without the estimate (must fail) they run
    until the limit and the rescoring overruns it."""
    from amc.agents.time_limit import RescoreEstimate, StopAtWallTime

    result = {"prune_s": 0.1, "repair_s": 0.2, "eval_s": 0.5, "images": 1000}
    est = RescoreEstimate(top=5, rest_images=4000, width=2)  # set-up + 3 waves of 2.3 s each
    est.add(result)
    assert est.seconds() == pytest.approx((1 + 3) * (0.3 + 0.0005 * 4000))
    assert RescoreEstimate(top=1, rest_images=4000).seconds() == 0.0  # no rescoring
    est = RescoreEstimate(top=5, rest_images=4000, width=2)
    ends = [3.0] + [3.0 + i for i in range(1, 30)]  # first round 3 s (start-up), then 1 s
    stop = _drive_timer(monkeypatch, StopAtWallTime(20.0, est), ends, result)
    # rounds of 1 s, rescoring 9.2 s: the last round that can start ends at 20 - 1 - 9.2
    assert stop == 10.0 and stop + est.seconds() <= 20.0
    late = _drive_timer(monkeypatch, StopAtWallTime(20.0), ends, result)
    assert late == 20.0 and late + est.seconds() > 20.0  # the episodes alone: overruns
    assert _drive_timer(monkeypatch, StopAtWallTime(None), ends, result) is None


def test_time_limit_finalists_leaves_room_for_the_finetunes(monkeypatch):
    """With --time-limit-finalists the episodes also leave room for the finalists'
    fine-tunes: timed ones (the blocks finalists') count as they took, untimed ones are
    estimated from the episodes' scoring time per image (scaled to the fine-tune's threads),
    plus the latency check; without that reserve (must fail) the fine-tunes overrun."""
    from amc.agents.time_limit import (
        FINETUNE_PER_SCORED_IMAGE,
        PICK_FINETUNE_FACTOR,
        FinalistEstimate,
        RescoreEstimate,
        StopAtWallTime,
    )

    result = {"prune_s": 0.1, "repair_s": 0.2, "eval_s": 0.5, "images": 1000}
    timed = FinalistEstimate(finalists=3, per_finetune=2.0, work=10_000, extra=0.5)
    assert timed.seconds() == pytest.approx(3 * 2.0 * PICK_FINETUNE_FACTOR + 0.5)
    assert FinalistEstimate(1, 2.0, 10_000, extra=0.5).seconds() == 0.5  # no finalists
    left = [3]  # fine-tunes left were the search to end now (the others reused)
    counted = FinalistEstimate(3, 2.0, 10_000, extra=0.5, count=lambda: left[0])
    assert counted.seconds() == pytest.approx(timed.seconds())
    left[0] = 1
    assert counted.seconds() == pytest.approx(2.0 * PICK_FINETUNE_FACTOR + 0.5)
    # the next round's episode may add a finalist: room for it too, never past --finalists
    grown = FinalistEstimate(3, 2.0, 10_000, extra=0.5, count=lambda: left[0], grow=1)
    assert grown.seconds() == pytest.approx(2 * 2.0 * PICK_FINETUNE_FACTOR + 0.5)
    left[0] = 3
    assert grown.seconds() == pytest.approx(timed.seconds())
    guessed = FinalistEstimate(finalists=2, per_finetune=None, work=10_000, threads=4)
    guessed.add(result)
    assert guessed.seconds() == pytest.approx(
        2 * FINETUNE_PER_SCORED_IMAGE * 0.0005 * 10_000 * 2 / 4)
    ends = [3.0] + [3.0 + i for i in range(1, 30)]
    rescore = RescoreEstimate(top=5, rest_images=4000, width=2)  # 9.2 s
    stop = _drive_timer(monkeypatch, StopAtWallTime(30.0, rescore, timed), ends, result)
    # rounds of 1 s, rescoring 9.2 s and fine-tunes 7.4 s: no round may start after 12.4
    assert stop == 13.0 and stop + rescore.seconds() + timed.seconds() <= 30.0
    rescore = RescoreEstimate(top=5, rest_images=4000, width=2)
    late = _drive_timer(monkeypatch, StopAtWallTime(30.0, rescore), ends, result)
    assert late + rescore.seconds() + timed.seconds() > 30.0


def test_time_limit_counts_what_ran_before_the_episodes_and_a_pending_fit(monkeypatch):
    """The limit counts from the search's start (3 s before training here); a fit of the
    actor deferred to the next round (5 s) is added to that round, so the episodes stop
    where it would end past the limit, and the round it made longer is not a usual round
    afterwards. Without the fits' times (must fail) the fit's round runs and ends past the
    limit, and later the long round is taken as usual (the search stops 5 rounds early)."""
    from types import SimpleNamespace

    from amc.agents import time_limit
    from amc.agents.time_limit import StopAtWallTime

    result = {"prune_s": 0.1, "repair_s": 0.2, "eval_s": 0.5, "images": 1000}
    ends = [1.0 + i for i in range(40)]  # rounds of 1 s
    assert _drive_timer(monkeypatch, StopAtWallTime(20.0), ends, result) == 20.0
    assert _drive_timer(monkeypatch, StopAtWallTime(20.0, since=-3.0), ends, result) == 17.0
    # a fit asked for at t = 10, made in the next round (10 -> 16)
    fit_ends = [*ends[:10], 16.0, *(e + 5.0 for e in ends[11:])]

    def clock() -> float:  # the timer's (driven) clock
        return time_limit.time.perf_counter()

    fits = SimpleNamespace(pending_seconds=lambda: 5.0 if clock() == 10.0 else 0.0,
                           made_seconds=lambda: 5.0 if clock() >= 16.0 else 0.0)
    assert _drive_timer(monkeypatch, StopAtWallTime(14.0, fits=fits), fit_ends,
                        result) == 10.0  # 10 + 1 + 5 > 14
    assert _drive_timer(monkeypatch, StopAtWallTime(14.0), fit_ends, result) == 16.0
    assert _drive_timer(monkeypatch, StopAtWallTime(30.0, fits=fits), fit_ends,
                        result) == 30.0  # rounds of 1 s after the fit's
    assert _drive_timer(monkeypatch, StopAtWallTime(30.0), fit_ends, result) == 25.0


def test_a_search_cached_before_time_limit_counts_as_made_without_one(tmp_path):
    """A run made before --time-limit existed ran every episode: it matches no limit, and a
    limit is a change."""
    cfg = SearchConfig(model="digits_cnn", out=str(tmp_path), score_amp="off")
    old = replace(cfg, force=False).as_dict()
    del old["time_limit"]
    write_json(tmp_path / "config.json", old)
    assert changed_settings(cfg, tmp_path) == []
    assert changed_settings(replace(cfg, time_limit=60.0), tmp_path) == ["time_limit"]


def test_a_search_made_before_score_amp_scored_in_fp32_and_resumes_so(tmp_path):
    """A run made before --score-amp scored in fp32: the default (auto) is a change for the
    cache, and --resume goes on in fp32, not in the new default."""
    cfg = SearchConfig(model="digits_cnn", out=str(tmp_path))
    old = replace(cfg, force=False).as_dict()
    del old["score_amp"]
    write_json(tmp_path / "config.json", old)
    assert cfg.score_amp == "auto"
    assert changed_settings(cfg, tmp_path) == ["score_amp"]
    assert changed_settings(replace(cfg, score_amp="off"), tmp_path) == []
    assert load_run_config(SearchConfig, tmp_path, "search").score_amp == "off"


def test_a_latency_search_cached_with_another_latency_table_is_not_reused(tmp_path,
                                                                        monkeypatch):
    """A search that measured latency records the latency table's method; one cached before
    that (or with another method) counts as changed, so callers that cache searches search
    again; a FLOPs search never used the table and stays reusable. No option sets it."""
    import amc.prune.latency_table as lt
    from amc.cli import build_parser

    cfg = SearchConfig(model="digits_cnn", out=str(tmp_path), budget="latency:0.7")
    assert cfg.latency_table_method == lt.METHOD
    assert replace(cfg, latency_table_method=None).latency_table_method == lt.METHOD  # derived
    write_json(tmp_path / "config.json", replace(cfg, force=False).as_dict())
    assert changed_settings(cfg, tmp_path) == []
    monkeypatch.setattr(lt, "METHOD", lt.METHOD + 1)  # the table's method changes
    assert changed_settings(SearchConfig(**{**cfg.as_dict(), "latency_table_method": None}),
                            tmp_path) == ["latency_table_method"]
    old = replace(cfg, force=False).as_dict()
    del old["latency_table_method"]  # made before the table's method was recorded
    write_json(tmp_path / "config.json", old)
    assert changed_settings(cfg, tmp_path) == ["latency_table_method"]
    flops = replace(cfg, budget="flops:0.5")
    assert flops.latency_table_method is None
    old = replace(flops, force=False).as_dict()
    del old["latency_table_method"]
    write_json(tmp_path / "config.json", old)
    assert changed_settings(flops, tmp_path) == []
    assert changed_settings(replace(flops, reward="latency"), tmp_path) == [
        "latency_table_method", "reward"]
    with pytest.raises(SystemExit):  # recorded, not an option
        build_parser().parse_args(["search", "--latency-table-method", "3"])


def test_a_search_made_before_envs_per_worker_is_the_same_search(tmp_path):
    """Runs made before --envs-per-worker and --envs-on ran one env per worker, in the
    worker: the defaults (1, driver: the same episodes) are no change for the cache, while 2
    envs per worker (other episodes) are."""
    cfg = SearchConfig(model="digits_cnn", out=str(tmp_path))
    old = replace(cfg, force=False).as_dict()
    del old["envs_per_worker"], old["envs_on"]
    write_json(tmp_path / "config.json", old)
    assert changed_settings(cfg, tmp_path, ignore=("force", "envs_on")) == []
    assert changed_settings(replace(cfg, envs_per_worker=2), tmp_path,
                            ignore=("force", "envs_on")) == ["envs_per_worker"]
    assert load_run_config(SearchConfig, tmp_path, "search").envs_on == "workers"


def test_several_envs_per_worker_with_envs_in_the_workers_is_refused_before_any_work(
        tmp_path):
    """From Python too (not only the CLI): one line, nothing written."""
    from amc.utils.errors import AmcError

    out = tmp_path / "s"
    with pytest.raises(AmcError, match="--envs-per-worker 2 needs the envs on the driver"):
        run_search(SearchConfig(model="digits_cnn", workers=2, envs_on="workers",
                                envs_per_worker=2, out=str(out)))
    assert not out.exists()


def test_a_latency_search_reports_its_pick_timed_whole(digits_ckpt, tmp_path, isolated_cache,
                                                       monkeypatch):
    """A search at a latency budget times its picked network whole beside the dense one (the
    measured ratio of that policy's ratios lands in the summary, its seconds in the search's
    wall time); a FLOPs search does not."""
    import amc.agents.latency_check as check
    from amc.report.compare_config import search_wall_seconds

    timed = []

    def fake(pm, ratios, spec):
        timed.append((list(ratios), spec.batch))
        return 0.777

    monkeypatch.setattr(check, "measured_ratio", fake)
    run = tmp_path / "lat"
    # batch 16: at 4 the digits net's time is mostly fixed costs, and a table timed on a
    # loaded machine put the most pruned network above 0.8 of dense (0.58 when quiet)
    s = run_search(_cfg(digits_ckpt, run, episodes=4, warmup_episodes=2, budget="latency:0.8",
                        latency_batch=16, latency_threads=1))
    best = load_policy(run / "best_policy.json")
    assert s["best_latency_ratio_measured"] == 0.777
    assert len(timed) == 1 and timed[0][1] == 16
    assert timed[0][0] == pytest.approx(best.ratios)
    wall = search_wall_seconds(run)
    write_json(run / "summary.json", {**s, "latency_check_seconds":
                                      s["latency_check_seconds"] + 100.0})
    assert search_wall_seconds(run) == pytest.approx(wall + 100.0)
    s2 = run_search(_cfg(digits_ckpt, tmp_path / "flops", episodes=4, warmup_episodes=2))
    assert "best_latency_ratio_measured" not in s2 and len(timed) == 1


def test_recal_on_val_reaches_the_scorer_through_the_config(digits_ckpt, tmp_path):
    from amc.prune.scoring import build_scorer

    scorers = {on: build_scorer(**_cfg(digits_ckpt, tmp_path / on, recal_on=on,
                                       recal_size=40).scorer_kwargs())
               for on in ("calib", "val")}
    ratios = [0.5] * len(scorers["val"].pm.units)
    # recalibrated on val's first 40 images, racing looks first after them (else at 32 of 64)
    looks = {on: s.score(ratios, lambda ub: False).images for on, s in scorers.items()}
    assert looks == {"calib": 32, "val": 40}
    assert scorers["val"].score(ratios).images == 64


def test_a_latency_search_beats_the_uniform_policy_a_user_gets(digits_ckpt, tmp_path,
                                                              isolated_cache, monkeypatch,
                                                              caplog):
    """The cheap policies a latency search reports and saves (the line its best is compared
    with) are the ones `amc baseline` makes: channels past one vector filled where the budget
    allows (they were scored unfilled: a weaker uniform than the user's). A search that
    measured its latency table says nothing of it; a later one that reads it from the cache
    says so, in one line naming the file."""
    import amc.prune.latency_table as lt
    from amc.prune.baselines import run_strategy
    from amc.prune.scoring import build_scorer

    monkeypatch.setattr(lt, "_MEMO", {})
    monkeypatch.setattr(lt, "_READ", set())
    cfg = _cfg(digits_ckpt, tmp_path / "lat", episodes=2, warmup_episodes=2,
               budget="latency:0.6", latency_batch=16, latency_threads=1)  # 0.35 reachable
    with caplog.at_level("WARNING", logger="amc"):
        s = run_search(cfg)
        assert not [r for r in caplog.records if "latency table" in r.getMessage()]
        monkeypatch.setattr(lt, "_MEMO", {})  # a later process
        run_search(replace(cfg, out=str(tmp_path / "again")))
    (path,) = (isolated_cache / "latency").glob("*.json")
    notes = [r.getMessage() for r in caplog.records if "latency table" in r.getMessage()]
    assert len(notes) == 1 and str(path) in notes[0]
    saved = load_policy(tmp_path / "lat" / "uniform_policy.json")
    scorer = build_scorer(**cfg.scorer_kwargs())
    ratios, info = run_strategy("uniform", scorer, cfg.parsed_budget(), cfg.max_ratio)
    assert saved.ratios == pytest.approx(scorer.pm.canonical(ratios))
    assert s["uniform_val_top1"] == info["val_top1"]
    # episodes.csv gives each episode's predicted latency fraction (its MACs' is another)
    from amc.prune.budget import resource_fn
    from amc.prune.latency_table import LatencySpec

    lat = resource_fn(scorer.pm, cfg.parsed_budget(), LatencySpec.from_config(cfg))
    rows = _rows(tmp_path / "lat")
    units = [u.name for u in scorer.pm.units]
    for r in rows:
        predicted = lat([float(r[f"ratio:{n}"]) for n in units])
        assert float(r["budget_ratio"]) == pytest.approx(predicted, abs=2e-6)
        assert float(r["budget_ratio"]) <= 0.6 + 1e-6
    assert any(abs(float(r["budget_ratio"]) - float(r["macs_ratio"])) > 1e-3 for r in rows)


def test_the_headline_compares_the_search_best_with_the_cheap_policies_on_its_images(
        digits_ckpt, tmp_path, capsys):
    """`amc search`'s first line sets the search's own best against the cheap policies, all
    scored on the search's val images (it showed the rescored pick's score there, below the
    search's best); the second line the pick on all of val."""
    from amc.cli import main

    run = tmp_path / "s"
    assert main(["search", "--checkpoint", digits_ckpt, "--episodes", "12", "--warmup-episodes",
                 "4", "--val-limit", "64", "--hidden", "64", "--batch-size", "16", "--budget",
                 "flops:0.3", "--no-reconstruct", "--out", str(run)]) == 0
    out = capsys.readouterr().out
    first = re.search(r"best val top-1 ([\d.]+)% \(episode (\d+)\) vs (.*) on its (\d+) val "
                      r"images;", out)
    assert first, out
    rows = {int(r["episode"]): float(r["val_top1"]) for r in _rows(run)}
    assert float(first[1]) == pytest.approx(max(rows.values()), abs=0.005)
    assert rows[int(first[2])] == pytest.approx(float(first[1]), abs=0.005)
    assert int(first[4]) == 64
    s = json.loads((run / "summary.json").read_text())
    uniform = f"uniform {s['cheap']['uniform']['val_top1']:.2f}%"
    assert uniform in first[3]
    assert f"best picked on all {s['rescore']['images']} val images" in out
    assert f"episode {s['best_episode']} ({s['best_val_top1_all']:.2f}%" in out


def test_a_search_of_warm_up_episodes_only_says_so(digits_ckpt, tmp_path, caplog):
    """--episodes at most --warmup-episodes: every episode is warm-up, and a notice says the
    agent never chose a policy (a search past its warm-up has no such notice)."""
    for episodes, noted in ((4, True), (6, False)):
        caplog.clear()
        with caplog.at_level("WARNING"):
            run_search(_cfg(digits_ckpt, tmp_path / f"w{episodes}", episodes=episodes,
                            warmup_episodes=4))
        assert ("all 4 episodes are warm-up" in caplog.text) == noted, caplog.text
