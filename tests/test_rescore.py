"""``--rescore-top``: the search's best policies scored again on the rest of ``val``, the best
on all of it kept (and racing stops a candidate that cannot win)."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import torch

from amc.agents import SearchConfig, run_or_resume, run_search
from amc.data.datasets import load_dataset
from amc.prune.policy import load_policy
from amc.prune.rescore import Candidate, rescore
from amc.prune.scoring import build_scorer


@pytest.fixture(scope="module")
def parts(digits_ckpt):
    scorer = build_scorer("digits_cnn", digits_ckpt, val_limit=64)
    x, y = load_dataset("digits").tensors("val")
    return scorer, (x[64:], y[64:])


def test_the_best_on_all_of_val_wins_over_a_lucky_search_score(parts):
    """A heavily pruned policy with a (made-up) perfect search score loses to a light one
    once the rest of val is counted; a third that cannot win stops early."""
    scorer, rest = parts
    n = len(scorer.pm.units)
    heavy, light = [0.8] * n, [0.1] * n
    truth = {k: replace(scorer, x=rest[0], y=rest[1])(r) for k, r in
             (("heavy", heavy), ("light", light))}
    assert truth["light"] > truth["heavy"] + 10  # the case is one rescoring must decide
    cands = [Candidate(7, heavy, 100.0, 0.0), Candidate(9, light, 90.0, -0.1),
             Candidate(11, heavy, 95.0, -0.05)]
    res = rescore(scorer, rest, cands, lambda ratios: float)
    assert res["chosen"] == 1
    rows = res["rows"]
    n1, n2 = len(scorer.y), len(rest[1])
    assert rows[0]["rest_images"] == rows[1]["rest_images"] == n2  # the first two: complete
    assert rows[1]["rest_val_top1"] == pytest.approx(truth["light"])
    assert rows[1]["val_top1_all"] == pytest.approx((n1 * 90.0 + n2 * truth["light"]) / (n1 + n2))
    assert rows[2]["rest_images"] < n2 and rows[2]["val_top1_all"] is None  # raced out


def _cfg(ckpt, out, **kw) -> SearchConfig:
    # flops:0.3, plainly pruned: scores that differ (at 0.5, or reconstructed, the digits CNN
    # scores 100 % on the 64 images, so racing stops every episode after the first and there
    # is nothing to rescore)
    base = dict(checkpoint=ckpt, episodes=16, warmup_episodes=4, out=str(out), val_limit=64,
                hidden=64, batch_size=16, checkpoint_every=8, budget="flops:0.3",
                reconstruct=False)
    return SearchConfig(**{**base, **kw})


def test_search_keeps_the_best_on_all_of_val_and_its_own_best_beside_it(digits_ckpt,
                                                                        tmp_path):
    run = tmp_path / "r"
    cfg = _cfg(digits_ckpt, run, rescore_top=4)
    s = run_search(cfg)
    res = json.loads((run / "rescore.json").read_text())
    assert len(res["rows"]) >= 2
    full = build_scorer("digits_cnn", digits_ckpt, amp=cfg.score_amp,  # all of val, as scored
                        reconstruct=cfg.reconstruct)
    own = load_policy(run / "search_best_policy.json")
    best = load_policy(run / "best_policy.json")
    names = [u.name for u in full.pm.units]
    assert own.provenance["episode"] == res["rows"][0]["episode"]
    complete = [r for r in res["rows"] if r["val_top1_all"] is not None]
    chosen = max(complete, key=lambda r: r["val_top1_all"])
    assert best.provenance["episode"] == chosen["episode"] == s["best_episode"]
    # the recorded all-of-val score is the policy's real one
    assert full(best.ratios_for(names)) == pytest.approx(chosen["val_top1_all"], abs=1e-6)
    assert s["rescore"]["chosen_episode"] == chosen["episode"] and s["rescore_seconds"] > 0


def test_rescoring_a_finished_search_keeps_its_episodes(digits_ckpt, tmp_path):
    """A search finished without rescoring (or by an amc before it) is only picked again."""
    run = tmp_path / "r"
    cfg = _cfg(digits_ckpt, run, rescore_top=0)
    run_search(cfg)
    assert not (run / "rescore.json").exists()
    episodes = (run / "episodes.csv").read_bytes()
    own = load_policy(run / "best_policy.json")
    said: list[str] = []
    s = run_or_resume(replace(cfg, rescore_top=3), say=said.append)
    assert len(said) == 1 and "picking its best again (rescore_top" in said[0]
    assert (run / "episodes.csv").read_bytes() == episodes and s["episodes"] == 16
    assert json.loads((run / "rescore.json").read_text())["top"] == 3
    assert s["best_episode"] == load_policy(run / "best_policy.json").provenance["episode"]
    said.clear()
    assert run_or_resume(replace(cfg, rescore_top=3), say=said.append) == s and said == []
    # back to the search's own pick: the earlier rescoring is undone, not left in place
    # (a rescored pick other than the search's own stands in best_policy.json)
    other = json.loads((run / "best_policy.json").read_text())
    other["units"][0]["ratio"] = 0.0 if own.units[0]["ratio"] else 0.5
    (run / "best_policy.json").write_text(json.dumps(other))
    s0 = run_or_resume(cfg, say=said.append)
    assert load_policy(run / "best_policy.json").ratios == own.ratios
    assert s0["best_episode"] == own.provenance["episode"] and s0["rescore"] is None
    assert not (run / "search_best_policy.json").exists()
    assert not (run / "rescore.json").exists()


def _changed_draw(scorer, rest, k: int = 4, n: int = 12) -> int:
    """A seed whose random draw at flops:0.3 the rescoring changes (the trained digits
    weights, and so which draw that is, vary with the CPU's instruction set)."""
    from amc.prune.baselines import random_search
    from amc.prune.budget import Budget

    budget = Budget.parse("flops:0.3")
    for seed in range(20):
        if (random_search(scorer, budget, n, seed, rescore_top=k, rest=rest)[0]
                != random_search(scorer, budget, n, seed)[0]):
            return seed
    pytest.fail("no seed in 0-19 whose random pick the rescoring changes")


def test_random_keeps_the_best_on_all_of_val_among_its_top_k(parts):
    """The random baseline picks like a search does: among its K best by the first val
    images, the best on all of val (here another policy than the first images' best)."""
    from amc.prune.baselines import random_search
    from amc.prune.budget import Budget

    scorer, rest = parts
    full = replace(scorer, x=torch.cat([scorer.x, rest[0]]), y=torch.cat([scorer.y, rest[1]]))
    budget, k = Budget.parse("flops:0.3"), 4
    seed = _changed_draw(scorer, rest, k)
    own, own_score, scored = random_search(scorer, budget, n=12, seed=seed)
    top = sorted(range(len(scored)), key=lambda i: -scored[i][1])[:k]
    on_all = {i: full(scored[i][0]) for i in top}
    want = max(top, key=lambda i: on_all[i])  # first of the best among equals
    assert scored[want][0] != own  # the case is one the rescoring changes
    picked, score, _ = random_search(scorer, budget, n=12, seed=seed, rescore_top=k, rest=rest)
    assert picked == scored[want][0] and score == scored[want][1]
    assert on_all[want] > full(own)
    # without the rest of val (or K < 2) it keeps the first images' best
    assert random_search(scorer, budget, n=12, seed=seed, rescore_top=1, rest=rest)[0] == own


@pytest.mark.cli
def test_amc_baseline_random_picks_on_all_of_val(parts, digits_ckpt, tmp_path):
    """`amc baseline --strategy random` picks like the comparison's random (and a search)."""
    from amc.cli import main
    from amc.prune.baselines import random_search
    from amc.prune.budget import Budget

    _, rest = parts
    for seed in range(20):  # the command's seed also draws its calibration images
        scorer = build_scorer("digits_cnn", digits_ckpt, val_limit=64, seed=seed)
        args = (scorer, Budget.parse("flops:0.3"), 12, seed)
        want = random_search(*args, rescore_top=4, rest=rest)[0]
        if want != random_search(*args)[0]:
            break
    else:
        pytest.fail("no seed in 0-19 whose random pick the rescoring changes")
    names = [u.name for u in scorer.pm.units]
    for k, expected in (("4", want), ("0", random_search(*args)[0])):
        out = tmp_path / f"p{k}.json"
        assert main(["baseline", "--checkpoint", digits_ckpt, "--strategy", "random",
                     "--n-random", "12", "--budget", "flops:0.3", "--val-limit", "64",
                     "--rescore-top", k, "--seed", str(seed), "--score-amp", "off",
                     "--out", str(out)]) == 0
        assert load_policy(out).ratios_for(names) == pytest.approx(expected, abs=1e-9)
    assert want != random_search(*args)[0]
