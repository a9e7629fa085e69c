"""Warm-started search: the warm-up replays the cheap policies, the actor starts at the best."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from amc.agents import SearchConfig, run_search
from amc.prune.policy import load_policy
from amc.utils.errors import AmcError


def _cfg(ckpt: str, out: Path, **kw) -> SearchConfig:
    base = dict(checkpoint=ckpt, episodes=7, warmup_episodes=6, out=str(out), val_limit=128,
                hidden=32, batch_size=16, race=False, budget="flops:0.4", threads=1)
    base.update(kw)
    return SearchConfig(**base)


def _rows(run: Path) -> list[dict]:
    with open(run / "episodes.csv", newline="") as f:
        return list(csv.DictReader(f))


def _ratios(row: dict) -> list[float]:
    return [float(v) for k, v in row.items() if k.startswith("ratio:")]


@pytest.fixture(scope="module")
def runs(digits_ckpt, tmp_path_factory, one_thread) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("warm")
    out = {}
    for mode in ("cheap", "random"):
        out[mode] = d / mode
        run_search(_cfg(digits_ckpt, out[mode], warm_start=mode))
    return out


def test_warmup_replays_the_cheap_policies_best_first(runs):
    run = runs["cheap"]
    cheap = {n: load_policy(run / f"{n}_policy.json") for n in ("uniform", "global")}
    order = sorted(cheap.values(), key=lambda p: -p.metrics["reward"])
    rows = _rows(run)
    for row, pol in zip(rows, order):  # each played exactly, best first
        assert _ratios(row) == pytest.approx(pol.ratios, abs=1e-5)
        assert float(row["val_top1"]) == pytest.approx(pol.metrics["val_top1"], abs=1e-3)
    # the rest of the warm-up perturbs them: other policies, still within the budget
    assert all(_ratios(r) != pytest.approx(order[0].ratios, abs=1e-6) for r in rows[2:6])
    assert all(float(r["macs_ratio"]) <= 0.4 + 1e-9 for r in rows)
    # the search's own best can only be at or above the best cheap policy on its val images
    # (--rescore-top may then pick another of its best on all of val)
    own = run / "search_best_policy.json"
    best = load_policy(own if own.is_file() else run / "best_policy.json")
    assert best.metrics["reward"] >= order[0].metrics["reward"] - 1e-9


def test_paper_warmup_is_random(runs):
    """The check above must fail for the paper's random warm-up."""
    run = runs["random"]
    cheap = [load_policy(run / f"{n}_policy.json").ratios for n in ("uniform", "global")]
    first = _ratios(_rows(run)[0])
    assert all(first != pytest.approx(c, abs=1e-3) for c in cheap)
    assert not (run / "warm_start.json").exists()


def test_actor_starts_at_the_best_warmup_episode(runs):
    """After the warm-up the actor was fitted to the best episode: its own (noise-free)
    actions reproduce that policy (one episode of ordinary updates later)."""
    import torch
    from stable_baselines3 import DDPG

    from amc.agents.search import observations_of
    from amc.prune.scoring import build_scorer

    run = runs["cheap"]
    ws = json.loads((run / "warm_start.json").read_text())
    assert ws["episodes"] == 6 and ws["mse"] < 1e-4 and ws["steps"] > 0  # fitted to tol
    best = max(_rows(run)[:6], key=lambda r: float(r["reward"]))
    assert ws["fitted_to"] == pytest.approx(_ratios(best), abs=1e-5)
    cfg = SearchConfig(**{**json.loads((run / "config.json").read_text()), "out": str(run)})
    obs = observations_of(build_scorer(**cfg.scorer_kwargs()), cfg)(ws["fitted_to"])
    actor = DDPG.load(run / "ckpt" / "agent.zip", device="cpu").actor
    with torch.no_grad():
        a = actor(torch.as_tensor(obs, dtype=torch.float32)).numpy().reshape(-1)
    ratios = (a + 1) / 2 * cfg.max_ratio
    assert ratios == pytest.approx(ws["fitted_to"], abs=0.05)
    # the paper's agent, after its random warm-up, is nowhere near it
    actor = DDPG.load(runs["random"] / "ckpt" / "agent.zip", device="cpu").actor
    with torch.no_grad():
        a = actor(torch.as_tensor(obs, dtype=torch.float32)).numpy().reshape(-1)
    assert (a + 1) / 2 * cfg.max_ratio != pytest.approx(ws["fitted_to"], abs=0.05)


def test_unknown_warm_start_is_refused_before_any_write(digits_ckpt, tmp_path):
    with pytest.raises(AmcError, match="--warm-start"):
        run_search(_cfg(digits_ckpt, tmp_path / "x", warm_start="smart"))
    with pytest.raises(AmcError, match="--noise-min"):
        run_search(_cfg(digits_ckpt, tmp_path / "x", noise_min=-0.1))
    assert not (tmp_path / "x").exists()
    with pytest.raises(AmcError, match="--sensitivity"):
        run_search(_cfg(digits_ckpt, tmp_path / "y", sensitivity=str(tmp_path / "no.json")))
    assert not (tmp_path / "y").exists()


def test_demonstrations_are_actions_of_the_policies():
    from amc.agents.warm_start import demo_actions
    from amc.envs import DROP_AT, ActionMap

    acts = demo_actions({"a": [0.4, 0.8, 0.0]}, ActionMap(0.8))
    assert np.allclose(acts, [[0.5, 1.0, 0.0]])
    # a droppable unit (1) keeps its channel range below DROP_AT and drops at 1
    m = ActionMap(0.8, frozenset({1}))
    acts = demo_actions({"a": [0.4, 0.4, 0.0], "b": [0.8, 1.0, 0.8]}, m)
    assert np.allclose(acts, [[0.5, 0.5 * DROP_AT, 0.0], [1.0, 1.0, 1.0]])
    assert [m.ratio(u, a) for u, a in enumerate(acts[0])] == pytest.approx([0.4, 0.4, 0.0])
    assert [m.ratio(u, a) for u, a in enumerate(acts[1])] == pytest.approx([0.8, 1.0, 0.8])
    assert m.ratio(1, DROP_AT - 1e-3) < 0.8 and m.ratio(0, DROP_AT) < 0.8


def test_summary_counts_only_the_search_s_own_episodes_as_beating(runs):
    s = json.loads((runs["cheap"] / "summary.json").read_text())
    rows = _rows(runs["cheap"])
    for name, m in s["cheap"].items():
        ep = m["first_beaten"]["episode"]
        own = [r for r in rows[2:] if float(r["val_top1"]) > m["val_top1"] + 1e-3]
        assert ep == (int(own[0]["episode"]) if own else None), name
        assert ep is None or ep > 2  # never one of the two replays


@pytest.mark.parametrize(("every", "solve"), [(0, False), (3, False), (3, True)])
def test_actor_is_anchored_to_the_best_episode_so_far(digits_ckpt, tmp_path, one_thread, every,
                                                      solve):
    """Every ``anchor_every`` episodes after the warm-up the actor is fitted again to the
    best complete episode so far (never with 0); with ``anchor_solve`` every fit is the
    closed-form solve alone (a few units, 32 hidden features: no Adam step left to take)."""
    run = tmp_path / "a"
    run_search(_cfg(digits_ckpt, run, episodes=14, warmup_episodes=4, anchor_every=every,
                    anchor_solve=solve))
    ws = json.loads((run / "warm_start.json").read_text())
    assert all(f["solved"] == solve and (f["steps"] == 0) == solve for f in ws["history"])
    if not every:
        assert ws["fits"] == 1 and ws["episodes"] == 4
        return
    assert ws["fits"] == 1 + (14 - 1 - 4) // every  # at 4, 7, 10, 13 (recorded after 13)
    assert ws["episodes"] == 13 and ws["mse"] < 1e-4
    best = max(_rows(run)[:13], key=lambda r: float(r["reward"]))
    assert ws["fitted_to"] == pytest.approx(_ratios(best), abs=1e-5)


def test_cheap_policies_already_made_are_not_made_again(digits_ckpt, monkeypatch):
    """A resumed search passes the policies it has: they come back unchanged, unmade."""
    import amc.agents.warm_start as ws
    from amc.prune.budget import Budget
    from amc.prune.scoring import build_scorer

    scorer = build_scorer("digits_cnn", digits_ckpt, "digits", val_limit=8)
    fresh = ws.cheap_policies(scorer, Budget("flops", 0.5), 0.8)
    made = [0.5] * len(scorer.pm.units)

    def refuse(*a, **k):
        raise AssertionError("made again")

    monkeypatch.setattr(ws, "uniform", refuse)
    again = ws.cheap_policies(scorer, Budget("flops", 0.5), 0.8, known={"uniform": made})
    assert again["uniform"] == made and again["global"] == fresh["global"]


def _fitted(targets: np.ndarray, observations: np.ndarray, **kw):
    """A WarmStart fit of a small actor (seeded) to ``targets`` (actions in [0, 1]) seen at
    ``observations``; returns (steps, mse, the actor's actions in [0, 1])."""
    from types import SimpleNamespace

    import torch

    from amc.agents.noise import TruncatedNormalNoise
    from amc.agents.warm_start import WarmStart
    from amc.envs import ActionMap

    torch.manual_seed(0)

    def net():
        return torch.nn.Sequential(torch.nn.Linear(observations.shape[1], 64), torch.nn.ReLU(),
                                   torch.nn.Linear(64, 1), torch.nn.Tanh())

    actor, target = net(), net()
    model = SimpleNamespace(actor=actor, actor_target=target,
                            policy=SimpleNamespace(set_training_mode=lambda mode: None))
    noise = TruncatedNormalNoise(n_envs=1, sigma0=0.05, decay=1.0, warmup_episodes=0)
    ws = WarmStart(noise, lambda r: observations, ActionMap(1.0), **kw)
    ws.model = model
    ws.fit(list(targets))
    h = ws.history[-1]
    with torch.no_grad():
        a = actor(torch.as_tensor(observations, dtype=torch.float32)).numpy().reshape(-1)
    return h["steps"], h["mse"], (a + 1) / 2


def test_the_actor_fit_stops_where_it_cannot_improve():
    """Two units seen alike with opposite targets: no actor fits both, and the fit stops at
    that error (half the squared gap) long before its step limit (it ran them all before);
    a policy the actor can reproduce is still fitted to ``tol``."""
    rng = np.random.default_rng(0)
    obs = rng.normal(size=(6, 11))
    obs[1] = obs[0]
    targets = np.array([0.1, 0.9, 0.3, 0.5, 0.7, 0.2])
    steps, mse, acts = _fitted(targets, obs, steps=3000)
    floor = 2 * ((2 * 0.9 - 1) - (2 * 0.1 - 1)) ** 2 / 4 / 6  # each of the pair off by half
    assert steps < 1500 and mse == pytest.approx(floor, rel=0.1)
    assert acts[2:] == pytest.approx(targets[2:], abs=0.02)  # the others fitted
    obs[1] += 1.0  # now told apart
    steps, mse, acts = _fitted(targets, obs, steps=3000)
    assert mse < 1e-4 and acts == pytest.approx(targets, abs=0.02)


def test_the_closed_form_solve_fits_the_last_layer_exactly_and_only_it():
    """The solve makes the actor's outputs the targets in one step (Adam needed hundreds of
    steps for 1e-4), through tanh or without it, with or without a bias, changes no other
    layer, gives rows seen alike the mean of their targets, and leaves an actor whose output
    is neither the last layer's nor its tanh as it was."""
    import torch

    from amc.agents.warm_start import solve_last_layer

    rng = np.random.default_rng(1)
    x = torch.as_tensor(rng.normal(size=(27, 11)), dtype=torch.float32)
    y = torch.as_tensor(rng.uniform(-0.9, 0.9, size=(27, 1)), dtype=torch.float32)
    for squash, bias in ((torch.nn.Tanh(), True), (torch.nn.Identity(), True),
                         (torch.nn.Tanh(), False)):
        torch.manual_seed(0)
        actor = torch.nn.Sequential(torch.nn.Linear(11, 64), torch.nn.ReLU(),
                                    torch.nn.Linear(64, 1, bias=bias), squash)
        first = actor[0].weight.detach().clone()
        with torch.no_grad():
            before = float(torch.nn.functional.mse_loss(actor(x), y))
        assert solve_last_layer(actor, x, y)
        with torch.no_grad():
            after = float(torch.nn.functional.mse_loss(actor(x), y))
        assert before > 0.1 and after < 1e-8 * before
        assert torch.equal(actor[0].weight, first)
    # two rows alike: both get the mean of their targets (in tanh's argument)
    x[1] = x[0]
    assert solve_last_layer(actor, x, y)
    with torch.no_grad():
        out = actor(x)[:2].reshape(-1)
    mean = torch.tanh(torch.atanh(y[:2]).mean())
    assert out == pytest.approx([float(mean)] * 2, abs=1e-4)
    # a saturated actor (tanh at ±1, where Adam's gradients vanish) is brought back
    with torch.no_grad():
        actor[2].weight.mul_(1e4)
        stuck = float(torch.nn.functional.mse_loss(actor(x), y))
    assert solve_last_layer(actor, x, y, tol=1e-4)
    with torch.no_grad():
        assert float(torch.nn.functional.mse_loss(actor(x), y)) < 0.1 * stuck
    # an output that is neither the layer's nor its tanh: refused, nothing changed
    actor = torch.nn.Sequential(torch.nn.Linear(11, 64), torch.nn.ReLU(),
                                torch.nn.Linear(64, 1), torch.nn.Sigmoid())
    last = actor[2].weight.detach().clone()
    assert not solve_last_layer(actor, x, y)
    assert torch.equal(actor[2].weight, last)


def test_a_fit_that_the_solve_finishes_takes_no_adam_step():
    """27 distinct units: with the solve the fit ends within tol at 0 steps (at the largest
    ridge that gets there), without it the same fit takes Adam steps to reach tol."""
    rng = np.random.default_rng(2)
    obs, targets = rng.normal(size=(27, 11)), rng.uniform(0.05, 0.95, 27)
    steps, mse, acts = _fitted(targets, obs, steps=3000, solve=True)
    assert steps == 0 and mse < 1e-4 and acts == pytest.approx(targets, abs=0.01)
    steps, mse, _ = _fitted(targets, obs, steps=3000)
    assert steps > 50 and mse < 1e-4


def test_a_fit_never_leaves_the_actor_worse_than_it_found_it():
    """Adam steps that end higher than they began (a learning rate far too large) are undone:
    the fit ends at the weights it started from, not at the last ones."""
    rng = np.random.default_rng(3)
    obs, targets = rng.normal(size=(27, 11)), rng.uniform(0.05, 0.95, 27)
    _, start, _ = _fitted(targets, obs, steps=0, solve=False)
    steps, mse, _ = _fitted(targets, obs, steps=200, solve=False, lr=50.0)
    assert steps > 0 and mse <= start


def test_a_deferred_fit_is_announced_to_the_time_limit_until_it_is_made():
    """A fit deferred to the next round of episodes is pending until it runs: all its
    ``steps``, timed before any fit on a copy of the actor, after fits at their seconds over
    their steps; nothing is pending before it is asked for or once it is made."""
    from types import SimpleNamespace

    import torch

    from amc.agents.noise import TruncatedNormalNoise
    from amc.agents.warm_start import WarmStart
    from amc.envs import ActionMap

    rng = np.random.default_rng(4)
    obs = rng.normal(size=(6, 11))
    torch.manual_seed(0)

    def net():
        return torch.nn.Sequential(torch.nn.Linear(11, 16), torch.nn.ReLU(),
                                   torch.nn.Linear(16, 1), torch.nn.Tanh())

    model = SimpleNamespace(actor=net(), actor_target=net(), num_timesteps=0,
                            policy=SimpleNamespace(set_training_mode=lambda mode: None))
    noise = TruncatedNormalNoise(n_envs=1, sigma0=0.05, decay=1.0, warmup_episodes=1)
    jobs: list = []
    ws = WarmStart(noise, lambda r: obs, ActionMap(1.0), steps=400, defer=jobs.append,
                   anchor_every=1)
    ws.init_callback(model)
    noise.episodes = 1  # the warm-up's end
    ws.update_locals({"infos": []})
    assert ws.on_step() and not jobs and ws.pending_seconds() == 0.0  # no best yet
    ws.update_locals({"infos": [{"episode_result": {"reward": 1.0, "ratios": [0.3] * 6}}]})
    before = [p.detach().clone() for p in model.actor.parameters()]
    assert ws.on_step() and len(jobs) == 1
    first = ws.pending_seconds()
    assert first > 0.0 and first == ws.pending_seconds()  # timed once
    assert all(torch.equal(a, b) for a, b in zip(before, model.actor.parameters(),
                                                 strict=True))  # the timing fitted a copy
    assert ws.made_seconds() == 0.0
    jobs.pop()()
    assert ws.fits == 1 and ws.pending_seconds() == 0.0
    assert ws.made_seconds() == ws.history[0]["seconds"]
    noise.episodes += 1  # the next anchoring period: fitted again, at the first's pace
    assert ws.on_step() and len(jobs) == 1
    h = ws.history[0]
    assert h["steps"] > 0 and ws.pending_seconds() == pytest.approx(
        h["seconds"] / h["steps"] * 400)
    # a short fit whose one step was slow (fixed costs, preempted) does not set the pace of
    # all 400: the fits' seconds over their steps (the slowest fit's pace would be 400 s)
    ws.history.append({"episodes": 2, "steps": 1, "mse": 0.0, "seconds": 1.0, "solved": False})
    assert ws.pending_seconds() == pytest.approx(
        (h["seconds"] + 1.0) / (h["steps"] + 1) * 400)


def test_the_csv_of_amc_sensitivity_is_a_sweep_a_search_reads(tmp_path):
    """`amc sensitivity`'s CSV is accepted by `--sensitivity` as compare's JSON is: the same
    dense score, matrix and ratios; a CSV missing one unit's ratio is refused in one line."""
    from amc.agents.warm_start import load_sweep
    from amc.prune.baselines import SWEEP, write_sensitivity

    names = ["a.conv1", "b.conv1", "c.conv1"]
    acc = np.round(np.random.default_rng(0).uniform(10, 90, (3, len(SWEEP))), 3)
    write_sensitivity(tmp_path / "s.csv", names, 91.25, acc)
    dense, got, ratios = load_sweep(tmp_path / "s.csv", names)
    assert dense == pytest.approx(91.25) and ratios == pytest.approx(list(SWEEP))
    assert got == pytest.approx(acc)
    with pytest.raises(AmcError, match="other units"):
        load_sweep(tmp_path / "s.csv", names[::-1])
    lines = (tmp_path / "s.csv").read_text().splitlines()
    (tmp_path / "t.csv").write_text("\n".join(lines[:-1]) + "\n")  # c.conv1's last ratio gone
    with pytest.raises(AmcError, match="cannot read the sensitivity sweep"):
        load_sweep(tmp_path / "t.csv", names)
