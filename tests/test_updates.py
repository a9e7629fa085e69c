"""The episode replay buffer (returns stored when an episode ends) and the overlap of the
agent's updates with the envs' last (evaluating) step."""

from __future__ import annotations

import threading
import time

import gymnasium as gym
import numpy as np
import pytest
import torch
from stable_baselines3.common.vec_env import DummyVecEnv

from amc.agents.episode_buffer import EpisodeReplayBuffer
from amc.agents.updates import OverlapUpdates

OBS = gym.spaces.Box(0.0, 1.0, (3,), np.float32)
ACT = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)


def _step(buf: EpisodeReplayBuffer, t: int, rewards: list[float], dones: list[bool]) -> None:
    n = len(rewards)
    obs = np.full((n, 3), t, np.float32)
    buf.add(obs, obs + 1, np.full((n, 1), t / 10, np.float32), np.array(rewards),
            np.array(dones), [{} for _ in range(n)])


@pytest.mark.parametrize("episode_returns", [True, False])
def test_episodes_are_stored_when_they_end_with_their_returns(episode_returns):
    buf = EpisodeReplayBuffer(100, OBS, ACT, "cpu", n_envs=2, gamma=0.5,
                              episode_returns=episode_returns)
    # env 0: rewards 1, 2, 4 (ends at t=2); env 1: rewards 8, 16 (ends at t=1), then 32 ...
    _step(buf, 0, [1.0, 8.0], [False, False])
    assert buf.pos == 0 and buf.committed == 0  # nothing stored before an episode ends
    _step(buf, 1, [2.0, 16.0], [False, True])
    assert buf.pos == 2  # env 1's episode, whole
    _step(buf, 2, [4.0, 32.0], [True, False])
    assert buf.pos == 5 and buf.committed == 5 and len(buf.pending[1]) == 1
    rewards, dones = buf.rewards[:5, 0], buf.dones[:5, 0]
    if episode_returns:  # returns to the episode's end, discounted by 0.5, all terminal
        assert rewards.tolist() == [8 + 0.5 * 16, 16, 1 + 0.5 * 2 + 0.25 * 4, 2 + 0.5 * 4, 4]
        assert dones.tolist() == [1] * 5
    else:
        assert rewards.tolist() == [8, 16, 1, 2, 4] and dones.tolist() == [0, 1, 0, 0, 1]
    assert buf.observations[:5, 0, 0].tolist() == [0, 1, 0, 1, 2]  # each episode in order
    buf.drop_pending()
    _step(buf, 3, [0.0, 0.0], [True, True])
    assert buf.pos == 7  # env 1's unfinished episode was dropped, not stored


class _Slow(gym.Env):
    """Episodes of 3 steps; the last one sleeps (the evaluation)."""

    observation_space, action_space = OBS, ACT

    def __init__(self):
        self.t = 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return np.zeros(3, np.float32), {}

    def step(self, action):
        self.t += 1
        if self.t == 3:
            time.sleep(0.05)
        return np.zeros(3, np.float32), 0.0, self.t == 3, False, {}


def test_deferred_job_runs_only_during_the_last_step_and_raises_there():
    env = OverlapUpdates(DummyVecEnv([_Slow]), episode_length=3)
    env.reset()
    seen, steps = [], []

    def step():
        steps.append(1)
        env.step(np.zeros((1, 1), np.float32))

    def job():
        seen.append((len(steps), threading.current_thread() is not threading.main_thread()))

    env.defer(job)
    for _ in range(2):
        step()
    assert seen == []  # not during the cheap steps
    step()
    assert seen == [(3, True)] and env.overlapped == 1  # during the last, in a thread
    for _ in range(3):
        step()
    assert len(seen) == 1  # once

    def failing():
        raise ValueError("update failed")

    order = []
    env.defer(lambda: order.append("fit"))
    env.defer(lambda: order.append("updates"))
    for _ in range(3):
        step()
    assert order == ["fit", "updates"]  # both, in the order deferred, during one last step

    env.defer(failing)
    for _ in range(2):
        env.step(np.zeros((1, 1), np.float32))
    with pytest.raises(ValueError, match="update failed"):
        env.step(np.zeros((1, 1), np.float32))


class _Final(_Slow):
    """Episodes of 2 steps; the last one waits for ``gate`` (None: sleeps briefly) and then
    records that it ended."""

    def __init__(self, gate: threading.Event | None, ended: list[str], name: str):
        super().__init__()
        self.gate, self.ended, self.name = gate, ended, name

    def step(self, action):
        self.t += 1
        if self.t == 2:
            if self.gate is not None:
                assert self.gate.wait(10)
            else:
                time.sleep(0.05)  # a short evaluation, still running when the job is handed over
            self.ended.append(self.name)
        return np.zeros(3, np.float32), 0.0, self.t == 2, False, {}


def test_deferred_job_starts_once_the_first_env_has_finished_its_last_step():
    """The job runs on the core the first finished worker leaves idle: after the short
    evaluation has ended, while the long one (released only by the job) still runs."""
    from amc.agents.pooled_vec_env import PooledVecEnv

    gate, ended, seen = threading.Event(), [], []
    env = OverlapUpdates(PooledVecEnv([lambda: _Final(gate, ended, "long"),
                                       lambda: _Final(None, ended, "short")]), episode_length=2)
    env.reset()

    def job():
        seen.append(list(ended))
        gate.set()

    env.defer(job)
    env.step(np.zeros((2, 1), np.float32))
    assert seen == []
    env.step(np.zeros((2, 1), np.float32))
    assert seen == [["short"]] and ended == ["short", "long"]
    env.close()


def test_overlap_needs_ray_workers_a_gpu_or_a_free_core(monkeypatch):
    import amc.agents.updates as updates

    monkeypatch.setattr(updates, "free_cores", lambda: 0)
    assert not updates.overlaps(True, 1, torch.device("cpu"))  # the scoring holds every core
    assert updates.overlaps(True, 2, torch.device("cpu"))  # Ray workers score elsewhere
    assert updates.overlaps(True, None, torch.device("cuda"))  # a GPU does the arithmetic
    assert not updates.overlaps(False, 2, torch.device("cuda"))  # asked not to
    monkeypatch.setattr(updates, "free_cores", lambda: 1)
    assert updates.overlaps(True, 1, torch.device("cpu"))
    assert not updates.overlaps(False, 1, torch.device("cpu"))


def test_free_cores_counts_torch_threads():
    from amc.agents.updates import free_cores

    n = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = free_cores()
        torch.set_num_threads(2)
        assert free_cores() == one - 1
    finally:
        torch.set_num_threads(n)


def test_in_process_search_overlaps_its_updates_and_keeps_a_seed_reproducible(
        digits_ckpt, tmp_path, monkeypatch):
    """Given a free core, an in-process search makes the same number of updates as without
    the overlap, during its scoring, in a thread; the same seed gives the same episodes."""
    import csv
    import json
    import pickle

    import amc
    import amc.agents.updates as updates
    from amc.agents import SearchConfig, run_search
    from amc.prune.units import PrunableModel

    units = len(PrunableModel(amc.create_model("digits_cnn"), (1, 8, 8)).units)
    monkeypatch.setattr(updates, "free_cores", lambda: 1)
    threads: set[bool] = set()
    update = updates.EpisodeUpdates.update

    def spy(self):
        if self.owed:
            threads.add(threading.current_thread() is threading.main_thread())
        update(self)

    monkeypatch.setattr(updates.EpisodeUpdates, "update", spy)

    def search(name: str, **kw) -> tuple[dict, list[dict]]:
        run = tmp_path / name
        s = run_search(SearchConfig(checkpoint=digits_ckpt, episodes=12, warmup_episodes=4,
                                    out=str(run), val_limit=64, hidden=64, batch_size=16,
                                    reconstruct=False, race=False, warm_start="random",
                                    **kw))
        with open(run / "ckpt" / "replay.pkl", "rb") as f:
            stored = pickle.load(f).committed
        owed = json.loads((run / "ckpt" / "state.json").read_text())["updates"]["owed"]
        # one update per transition after the 4 random warm-up episodes
        assert s["agent_updates_this_run"] == stored - 4 * units - owed
        timing = ("seconds", "prune_s", "repair_s", "eval_s", "run_seconds")
        with open(run / "episodes.csv", newline="") as f:
            rows = [{k: v for k, v in r.items() if k not in timing} for r in csv.DictReader(f)]
        return s, rows

    (a, ra), (b, rb) = search("a"), search("b")
    assert b["best_reward"] == a["best_reward"]
    assert a["update_rounds_overlapped"] == 12 - 4 - 1  # every learning episode's but the last
    assert threads == {False}  # the updates ran beside the scoring, never on the main thread
    assert ra == rb
    threads.clear()
    c, rc = search("c", overlap_updates=False)
    assert c["update_rounds_overlapped"] == 0 and threads == {True}
    assert c["agent_updates_this_run"] == a["agent_updates_this_run"]
    assert rc != ra  # the overlap changes when the policy learns, so what it tries
