"""The ``blocks`` policy made once: a search warm-starts from a handed-over one
(``--blocks-policy``) instead of making it again, and ``amc compare`` hands its own over,
counting its seconds in AMC's search time."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from amc.agents import SearchConfig, run_search
from amc.prune.policy import load_policy
from amc.utils.errors import AmcError

SIZE = (3, 8, 8)


def _search(data: str, ckpt: str, out: Path, **kw) -> SearchConfig:
    base = dict(model="resnet20", num_classes=4, checkpoint=ckpt, data=data, input_size=SIZE,
                units="internal", max_ratio=0.3,
                drop_blocks=True, calib_size=16, recal_size=16, val_size=16, episodes=5,
                warmup_episodes=4, hidden=16, batch_size=8, race=False, budget="flops:0.6",
                threads=1, loader_workers=0, out=str(out))
    return SearchConfig(**{**base, **kw})


class _Seen(Exception):
    """The stand-in search saw what it was given."""


def _refuse(*args, **kwargs):
    raise AssertionError("the blocks policy was made again")


def test_a_handed_over_blocks_policy_is_not_made_again(synth8, resnet20_4, tmp_path, monkeypatch,
                                                       one_thread):
    import amc.agents.warm_start as ws

    run_search(_search(synth8, resnet20_4, tmp_path / "made"))
    made = load_policy(tmp_path / "made" / "blocks_policy.json")
    assert any(r == 1.0 for r in made.ratios)  # flops:0.6 needs drops at --max-ratio 0.3
    given = tmp_path / "given.json"
    shutil.copy(tmp_path / "made" / "blocks_policy.json", given)
    monkeypatch.setattr(ws, "blocks_then_uniform", _refuse)
    with pytest.raises(AssertionError, match="made again"):  # the patch bites without it
        run_search(_search(synth8, resnet20_4, tmp_path / "again"))
    run_search(_search(synth8, resnet20_4, tmp_path / "handed", blocks_policy=str(given)))
    used = load_policy(tmp_path / "handed" / "blocks_policy.json")
    assert used.ratios == made.ratios and "reward" in used.metrics  # scored by the search


@pytest.mark.parametrize("what", ["uniform", "budget"])
def test_a_blocks_policy_of_another_kind_is_refused(synth8, resnet20_4, tmp_path, what, one_thread):
    from amc.prune.scoring import build_scorer

    cfg = _search(synth8, resnet20_4, tmp_path / "x")
    scorer = build_scorer(**cfg.scorer_kwargs())
    from amc.prune.policy import make_policy

    budget = "flops:0.7" if what == "budget" else cfg.budget
    strategy = "blocks" if what == "budget" else "uniform"
    p = make_policy(scorer.pm, [0.3] * len(scorer.pm.units), "resnet20", budget, strategy, 0,
                    0.3, {}).save(tmp_path / "p.json")
    with pytest.raises(AmcError, match="--blocks-policy .* pass the blocks policy of "
                                       "resnet20 at flops:0.6"):
        run_search(_search(synth8, resnet20_4, tmp_path / "x", blocks_policy=str(p)))
    if what == "budget":  # --force over a finished search: refused before it is cleared
        run_search(_search(synth8, resnet20_4, tmp_path / "done"))
        kept = (tmp_path / "done" / "episodes.csv").read_text()
        with pytest.raises(AmcError, match="--blocks-policy"):
            run_search(_search(synth8, resnet20_4, tmp_path / "done", blocks_policy=str(p),
                               force=True))
        assert (tmp_path / "done" / "episodes.csv").read_text() == kept
    with pytest.raises(AmcError, match="does not exist"):
        run_search(_search(synth8, resnet20_4, tmp_path / "y",
                           blocks_policy=str(tmp_path / "no.json")))
    assert not (tmp_path / "y").exists()


def test_compare_hands_its_blocks_policy_to_amc_and_counts_its_seconds(synth8, resnet20_4, tmp_path,
                                                                      one_thread):
    from amc.report.compare import Comparison
    from amc.report.compare_config import CompareConfig

    seen = {}

    def fake_amc(cfg, budget, run_dir, blocks):
        """Stands in for the search: records what it was given, 'finds' the blocks policy
        in 10 s."""
        seen.update(time_limit=cfg.time_limit, blocks=blocks)
        if blocks is None:
            raise _Seen
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "summary.json").write_text(json.dumps(
            {"wall_seconds_this_run": 10.0, "search_seconds": 10.0, "cheap_seconds": 1.0}))
        p = load_policy(blocks)
        p.provenance["strategy"] = "amc"
        return p.save(run_dir / "best_policy.json")

    cfg = CompareConfig(model="resnet20", num_classes=4, checkpoint=resnet20_4, data=synth8,
                        input_size=SIZE, max_ratio=0.3,
                        units="internal", drop_blocks=True, calib_size=16, recal_size=16,
                        val_size=16, strategies=("amc", "blocks"), budgets=("flops:0.6",),
                        finetune_runs=0, latency_runs=1, threads=1, loader_workers=0,
                        time_limit=100.0, out=str(tmp_path / "cmp"))
    rows = Comparison(cfg, fake_amc).run()
    blocks = tmp_path / "cmp" / "policies" / "blocks_flops0.6.json"
    assert seen["blocks"] == blocks
    blocks_s = load_policy(blocks).provenance["search_seconds"]
    assert blocks_s > 0 and seen["time_limit"] == pytest.approx(100.0 - blocks_s)
    amc = load_policy(tmp_path / "cmp" / "policies" / "amc_flops0.6.json")
    assert amc.provenance["search_seconds"] == pytest.approx(10.0 + 1.0 + blocks_s)
    row = next(r for r in rows if r["strategy"] == "amc")
    assert row["search_seconds"] == pytest.approx(10.0 + 1.0 + blocks_s)  # the table's too
    # without the blocks strategy nothing is handed over and the limit stands
    seen.clear()
    with pytest.raises(_Seen):
        Comparison(CompareConfig(**{**cfg.__dict__, "strategies": ("amc",),
                                    "out": str(tmp_path / "alone")}), fake_amc).run()
    assert seen == {"time_limit": 100.0, "blocks": None}


def test_the_time_limit_counts_the_making_of_the_cheap_policies(synth8, resnet20_4, tmp_path,
                                                                monkeypatch, one_thread):
    """Cheap policies that take longer than --time-limit leave time for one round of
    episodes only; the same limit with them made fast runs them all (4, the warm-up's: no
    fit of the actor, whose bound would take most of so short a limit)."""
    import time

    import amc.agents.warm_start as ws

    kw = dict(time_limit=6.0, rescore_top=0, episodes=4)
    run_search(_search(synth8, resnet20_4, tmp_path / "fast", **kw))
    fast = json.loads((tmp_path / "fast" / "summary.json").read_text())
    # made well within the limit (~0.3 s idle, ~1.1 s beside a fine-tune on 2 cores)
    assert fast["episodes"] == 4 and fast["cheap_seconds"] < 3.0
    slow_blocks = ws.blocks_then_uniform

    def slow(*args, **kwargs):
        time.sleep(6.5)
        return slow_blocks(*args, **kwargs)

    monkeypatch.setattr(ws, "blocks_then_uniform", slow)
    run_search(_search(synth8, resnet20_4, tmp_path / "slow", **kw))
    s = json.loads((tmp_path / "slow" / "summary.json").read_text())
    assert s["episodes"] == 1 and s["cheap_seconds"] > 6.0 and s["stopped_by_time_limit"]


def test_a_search_records_its_drop_swaps(synth8, resnet20_4, tmp_path):
    """--drop-swap 1: every episode after the warm-up whose previous one both dropped and kept
    a block swaps two of them, and the summary counts them; without it, none."""
    swapped = run_search(_search(synth8, resnet20_4, tmp_path / "swap", episodes=8, drop_swap=1.0))
    plain = run_search(_search(synth8, resnet20_4, tmp_path / "plain", episodes=8))
    assert plain["drop_swaps"] == 0
    assert 1 <= swapped["drop_swaps"] <= 3  # episodes 6-8 may swap (5 has no previous μ)
    rows = (tmp_path / "swap" / "episodes.csv").read_text().splitlines()
    assert len(rows) == 9


def test_a_search_picks_its_blocks_finalists_among_the_candidates_compare_scored(
        synth8, resnet20_4, tmp_path, monkeypatch, one_thread):
    """The blocks policy ``amc compare`` hands over records every candidate it scored and how
    they were scored: a search scoring alike (its run's calibration draw) picks its blocks
    finalists among them without scoring them again; one scoring otherwise (another seed,
    so another calibration draw) scores them itself."""
    import amc.agents.finalists as af
    from amc.report.compare import Comparison
    from amc.report.compare_config import CompareConfig

    def fake_amc(cfg, budget, run_dir, blocks):
        raise _Seen

    cfg = CompareConfig(model="resnet20", num_classes=4, checkpoint=resnet20_4, data=synth8,
                        input_size=SIZE, max_ratio=0.3, units="internal", drop_blocks=True,
                        calib_size=16, recal_size=16, val_size=16, strategies=("blocks", "amc"),
                        budgets=("flops:0.6",), finetune_runs=0, latency_runs=1, threads=1,
                        loader_workers=0, seed=3, out=str(tmp_path / "cmp"))
    with pytest.raises(_Seen):
        Comparison(cfg, fake_amc).run()
    given = load_policy(tmp_path / "cmp" / "policies" / "blocks_flops0.6.json").provenance
    cands = given["candidates"]
    assert len(cands) >= 2 and given["scored_by"]["seed"] == 3
    counted = []
    real = af.blocks_candidates

    def counting(*a, **kw):
        counted.append(1)
        return real(*a, **kw)

    monkeypatch.setattr(af, "blocks_candidates", counting)
    blocks = str(tmp_path / "cmp" / "policies" / "blocks_flops0.6.json")
    run_search(_search(synth8, resnet20_4, tmp_path / "alike", seed=3, blocks_policy=blocks,
                       blocks_finalists=2, finalist_images=16))
    pool = json.loads((tmp_path / "alike" / "blocks_finalists.json").read_text())["pool"]
    assert not counted
    assert [(p["ratios"], p["val_top1"]) for p in pool] == [
        (c["ratios"], c["val_top1"]) for c in cands]
    run_search(_search(synth8, resnet20_4, tmp_path / "other", seed=4, blocks_policy=blocks,
                       blocks_finalists=2, finalist_images=16))
    assert counted == [1]  # another calibration draw: scored again
    # what "scored alike" claims: the search making them itself finds the same scores
    run_search(_search(synth8, resnet20_4, tmp_path / "own", seed=3))
    own = json.loads((tmp_path / "own" / "blocks_candidates.json").read_text())
    assert [(c["ratios"], c["val_top1"]) for c in own] == [
        (c["ratios"], c["val_top1"]) for c in cands]


def test_a_search_leaves_its_callers_thread_count_as_it_was(synth8, resnet20_4, tmp_path):
    """amc compare runs its searches in its own process and goes on with its own threads:
    a search on 1 thread (as each is with Ray workers) set it back after it, and so does a
    finished search picked again; before, every later stage (the next run's blocks policy,
    counted in AMC's time) ran on 1 thread, about 2x slower."""
    import torch

    from amc.agents.search import refinish

    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        cfg = _search(synth8, resnet20_4, tmp_path / "s", threads=1)
        run_search(cfg)
        assert torch.get_num_threads() == 2
        refinish(cfg)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("reward", ["err", "capacity"])
def test_a_search_picks_its_own_blocks_candidate_by_its_reward(synth8, resnet20_4, tmp_path,
                                                               reward, one_thread):
    from amc.agents.search import cheap_lines
    from amc.prune.scoring import build_scorer

    run = tmp_path / reward
    run.mkdir()
    cfg = _search(synth8, resnet20_4, run, reward=reward, capacity_weight=100.0)
    scorer = build_scorer(**cfg.scorer_kwargs())
    lines = cheap_lines(scorer, cfg, run)
    cands = json.loads((run / "blocks_candidates.json").read_text())
    macs = [scorer.pm.cost(c["ratios"])[0] for c in cands]
    assert len(set(macs)) > 1  # the candidates keep different MACs
    picked = scorer.pm.cost(lines["blocks"][0])[0]
    if reward == "err":  # the best val top-1 (the first of equals) ...
        vals = [c["val_top1"] for c in cands]
        assert picked == macs[vals.index(max(vals))]
    else:  # ... or, where 1 % of the MACs outweighs 100 points of val, the most MACs
        assert picked == max(macs)
        assert picked != macs[[c["val_top1"] for c in cands].index(
            max(c["val_top1"] for c in cands))]  # not val's pick here
