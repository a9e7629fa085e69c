"""``--pair-moves``: episodes after the warm-up that replay the actor's policy with two kept
units of the same cost trading pruning (the budget the policy spends stays the same)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from helpers import noise_episodes

from amc.agents.noise import TruncatedNormalNoise

MU = [0.5, 0.9, 0.4, 0.3, 0.6, 0.2]
"""The actor's actions in [0, 1] per unit: unit 1 dropped (droppable, at or above 0.75)."""
TWINS = [[0, 3], [1, 2, 4], [5]]
"""Equal-cost groups: 0/3, and 1/2/4 of which 1 is dropped (so only 2 and 4 may trade)."""
DROPPABLE = (1, 2, 4)


def episodes(noise: TruncatedNormalNoise, n: int) -> np.ndarray:
    """The actions in [0, 1] (μ + noise) of ``n`` episodes, one row each."""
    return noise_episodes(noise, MU, n)


def make(pairs: float, twins=TWINS, swap: float = 0.0) -> TruncatedNormalNoise:
    return TruncatedNormalNoise(n_envs=1, sigma0=0.05, decay=1.0, warmup_episodes=0, seed=3,
                                droppable=DROPPABLE, swap=swap, twins=twins, pairs=pairs)


def test_every_pair_move_trades_a_delta_between_two_kept_twins_and_leaves_the_rest():
    noise = make(1.0)
    acts = episodes(noise, 40)
    assert not np.allclose(acts[0], MU, atol=1e-3)  # no μ seen yet: the plain noise
    moved_units = set()
    for row in acts[1:]:
        diff = row - np.asarray(MU)
        moved = np.flatnonzero(np.abs(diff) > 1e-6)
        assert len(moved) in (2, 4)  # one or two pairs, every other unit exactly μ
        groups = [next(g for g in TWINS if u in g) for u in moved]
        assert all(len(g) > 1 for g in groups)
        assert diff[moved].sum() == pytest.approx(0.0, abs=1e-6)  # δ more, δ less
        for g in map(tuple, TWINS):  # within each group of twins too
            assert diff[list(g)].sum() == pytest.approx(0.0, abs=1e-6)
        assert 1 not in moved  # the dropped block stays dropped, the kept ones kept
        assert np.all(row[[2, 4]] < 0.75)
        assert np.all(np.abs(diff) <= 0.2 + 1e-6)
        moved_units |= set(moved.tolist())
    assert moved_units == {0, 2, 3, 4}
    assert noise.pair_moves == 39


def test_without_pair_moves_the_draws_are_unchanged():
    plain = TruncatedNormalNoise(n_envs=1, sigma0=0.05, decay=1.0, warmup_episodes=0, seed=3,
                                 droppable=DROPPABLE)
    off = make(0.0)
    assert np.array_equal(episodes(plain, 20), episodes(off, 20))
    assert off.pair_moves == 0
    lone = make(1.0, twins=[[0], [5]])  # no two units of the same cost: nothing to trade
    acts = episodes(lone, 10)
    assert lone.pair_moves == 0 and not np.allclose(acts[5], MU, atol=1e-3)


def test_a_share_of_episodes_moves_a_pair_and_a_swap_takes_precedence():
    some = make(0.3)
    episodes(some, 201)
    assert 40 <= some.pair_moves <= 80  # 0.3 of 200, binomial sd 6.5
    both = make(1.0, swap=1.0, twins=[[1, 2, 4], [0, 3]])
    episodes(both, 20)
    assert both.swaps == 19 and both.pair_moves == 0  # every episode could swap: no pair moves


@pytest.mark.parametrize("pairs, swap, count", [(0.5, 0.0, "pair_moves"), (0.0, 0.5, "swaps")])
def test_swaps_and_pair_moves_resume_with_the_noise_state(pairs, swap, count):
    a = make(pairs, swap=swap)
    episodes(a, 10)
    b = make(pairs, swap=swap)
    b.load_state(a.state())
    assert getattr(b, count) == getattr(a, count) > 0


def test_twins_are_the_units_whose_pruning_costs_the_same():
    from amc.agents import SearchConfig
    from amc.agents.ddpg import make_noise
    from amc.models.registry import create_model
    from amc.prune.units import PrunableModel

    pm = PrunableModel(create_model("resnet20"), (3, 32, 32), "internal")
    twins = pm.twins()
    assert twins == [[0, 1, 2], [4, 5], [7, 8]]  # each stage's blocks but the downsampling one

    def cost(unit: int) -> tuple[int, int]:
        ratios = [0.0] * len(pm.units)
        ratios[unit] = 0.5
        return pm.cost(ratios)

    for g in twins:
        assert len({cost(u) for u in g}) == 1
    assert cost(3) != cost(4) and cost(0) != cost(4)  # not twins: other costs
    noise = make_noise(SearchConfig(pair_moves=0.25), 1, twins=twins)
    assert (noise.pairs, noise.twins) == (0.25, twins)


def test_pair_moves_trade_around_the_incumbent_when_one_is_set():
    """With the best policy so far handed over, a pair move replays it (not the actor's μ,
    which the agent's updates move) except at its pairs."""
    noise = make(1.0)
    best = [0.1, 1.0, 0.7, 0.05, 0.2, 0.45]  # drops unit 1 too; other kept actions than μ
    noise.incumbent = best
    acts = episodes(noise, 30)
    for row in acts:  # the first episode too: no μ needed
        diff = row - np.asarray(best)
        moved = np.flatnonzero(np.abs(diff) > 1e-6)
        assert len(moved) in (2, 4) and diff[moved].sum() == pytest.approx(0.0, abs=1e-6)
        assert np.all(row[[2, 4]] < 0.75)
    assert noise.pair_moves == 30


def test_the_warm_start_hands_the_best_episode_to_the_noise():
    from types import SimpleNamespace

    from amc.agents.warm_start import WarmStart
    from amc.envs import ActionMap

    noise = make(0.5)
    amap = ActionMap(0.8, frozenset(DROPPABLE))
    ws = WarmStart(noise, lambda r: np.zeros((len(r), 11)), amap, best=(-0.5, [0.4] * 6))
    assert noise.incumbent == amap.replay([0.4] * 6)
    better = [0.2, 1.0, 0.4, 0.1, 0.3, 0.5]
    noise.warmup = 10  # still warming up: no fit of the actor
    ws.init_callback(SimpleNamespace(num_timesteps=0))
    ws.update_locals({"infos": [{"episode_result": {"reward": -0.3, "ratios": better}},
                                {"episode_result": {"reward": -0.9, "ratios": [0.0] * 6}}]})
    ws.on_step()
    assert noise.incumbent == amap.replay(better)  # the better one, not the later worse one


def test_search_variants_rerun_a_comparisons_searches_with_each_arms_settings(
        digits_ckpt, tmp_path, run_script):
    """scripts/bench_search_variants.py: the arm without changes reproduces the comparison's
    own search (same seed, same picked policy); an arm's settings reach its search; --own
    adds the folder's own searches as a row of their own; each run's fits of the actor are
    counted from its warm_start.json and its pick's MACs read from the pick."""
    import json

    from amc.cli.compare import amc_policy
    from amc.report.compare import Comparison
    from amc.report.compare_config import CompareConfig

    out = tmp_path / "cmp"
    Comparison(CompareConfig(checkpoint=digits_ckpt, strategies=("amc",), finetune_runs=0,
                             episodes=12, warmup_episodes=4, latency_runs=2, val_limit=64,
                             threads=1, out=str(out)), amc_policy).run()
    run_script(Path(__file__).parents[1] / "scripts" / "bench_search_variants.py",
               ["--folder", str(out), "--budget", "flops0.5", "--seeds", "1",
                "--arm", "base:", "--arm", "pairs:pair_moves=1.0,anchor_every=2", "--own",
                "--work", str(tmp_path / "w"), "--out", str(tmp_path / "r")])
    res = json.loads((tmp_path / "r.json").read_text())
    own = json.loads((out / "search" / "flops0.5" / "summary.json").read_text())
    made_then, base, pairs = res["runs"]
    assert made_then["arm"] == "folder" and made_then["episodes"] == own["episodes"]
    assert made_then["val_top1"] == own["best_val_top1"]
    assert base["arm"] == "base" and base["val_top1"] == own["best_val_top1"]
    assert base["best_val_top1_all"] == own["best_val_top1_all"]
    picked = json.loads((tmp_path / "w" / "pairs" / "best_policy.json").read_text())
    assert res["runs"][2]["best_macs_ratio"] == picked["achieved"]["macs_ratio"]  # the pick's
    assert res["arms"]["pairs"]["best_macs_ratio"]["mean"] == picked["achieved"]["macs_ratio"]
    fits = json.loads((tmp_path / "w" / "base" / "warm_start.json").read_text())["history"]
    assert (base["fits"], base["fit_steps"]) == (len(fits), sum(f["steps"] for f in fits))
    assert made_then["fits"] == len(json.loads(
        (out / "search" / "flops0.5" / "warm_start.json").read_text())["history"])
    made = json.loads((tmp_path / "w" / "base" / "config.json").read_text())
    searched = json.loads((out / "search" / "flops0.5" / "config.json").read_text())
    assert {k: v for k, v in made.items() if k != "out"} == \
        {k: v for k, v in searched.items() if k != "out"}
    cfg = json.loads((tmp_path / "w" / "pairs" / "config.json").read_text())
    assert (cfg["pair_moves"], cfg["anchor_every"]) == (1.0, 2)
    assert res["arms"]["pairs"]["settings"] == {"pair_moves": 1.0, "anchor_every": 2}
    assert "| pairs |" in (tmp_path / "r.md").read_text()
    assert "| folder | as made then |" in (tmp_path / "r.md").read_text()


def test_a_search_says_when_its_units_leave_nothing_to_move_or_swap(digits_ckpt, tmp_path,
                                                                   caplog):
    """The digits CNN has no two units of one shape and no droppable block: --pair-moves and
    --drop-swap then change nothing, and the search says so in one line each."""
    from amc.agents import SearchConfig, run_search

    cfg = SearchConfig(checkpoint=digits_ckpt, episodes=6, warmup_episodes=3, val_limit=64,
                       hidden=16, batch_size=8, reconstruct=False, pair_moves=1.0,
                       drop_swap=1.0, out=str(tmp_path / "s"))
    with caplog.at_level("WARNING", logger="amc"):
        summary = run_search(cfg)
    notes = [r.getMessage() for r in caplog.records if r.name == "amc"]
    assert any("--pair-moves makes no pair moves" in n for n in notes)
    assert any("--drop-swap swaps none" in n for n in notes)
    assert summary["pair_moves"] == summary["drop_swaps"] == 0
    caplog.clear()
    with caplog.at_level("WARNING", logger="amc"):
        run_search(replace(cfg, pair_moves=0.0, drop_swap=0.0, out=str(tmp_path / "q")))
    assert not [r for r in caplog.records if "--pair-moves" in r.getMessage()
                or "--drop-swap" in r.getMessage()]


def test_reward_rank_scores_a_comparisons_policies_before_and_after_its_fine_tune(
        digits_ckpt, tmp_path, run_script):
    """scripts/bench_reward_rank.py on a tiny comparison: the folder's own policies and
    distinct searched ones after the warm-up, each scored plain and reconstructed before the
    fine-tune; each score's pick is its best-scored policy."""
    import json

    from amc.cli.compare import amc_policy
    from amc.report.compare import Comparison
    from amc.report.compare_config import CompareConfig

    out = tmp_path / "cmp"
    Comparison(CompareConfig(checkpoint=digits_ckpt, strategies=("amc", "uniform"),
                             search_on="adapted", finetune_runs=0, finetune_epochs=0.1,
                             episodes=12, warmup_episodes=4, latency_runs=2, val_limit=64,
                             threads=1, reconstruct=True, out=str(out)), amc_policy).run()
    run_script(Path(__file__).parents[1] / "scripts" / "bench_reward_rank.py",
               ["--folder", str(out), "--budget", "flops0.5", "--strategies", "amc,uniform",
                "--per-search", "3", "--bootstrap", "50", "--work", str(tmp_path / "w"),
                "--out", str(tmp_path / "r")])
    res = json.loads((tmp_path / "r.json").read_text())
    rows = res["rows"]
    names = [r["name"] for r in rows]
    assert names[:2] == ["amc_flops0.5", "uniform_flops0.5"]
    searched = names[2:]
    assert 1 <= len(searched) <= 3 and all(int(n.split("_ep")[1]) > 4 for n in searched)
    assert len({tuple(r["ratios"]) for r in rows[2:]}) == len(searched)  # distinct
    for s in ("plain", "recon"):
        best = max(rows, key=lambda r: r[s])
        assert res["result"][s]["pick_test_after"] == best["test_after"]
