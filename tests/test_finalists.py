"""``--finalists``: a search's best policies fine-tuned briefly, the best on val after it kept."""

from __future__ import annotations

import json
import math
from dataclasses import replace

import pytest
import torch
from torch import nn

from amc.agents import SearchConfig, run_search
from amc.agents.search import refinish, run_or_resume
from amc.data.datasets import load_dataset
from amc.models.registry import create_model
from amc.prune.depth import DROP
from amc.prune.policy import load_policy
from amc.prune.units import PrunableModel
from amc.train.finalists import (
    Finalist,
    dropped,
    finetune_finalists,
    pick_finalists,
    ratios_key,
)
from amc.train.loop import TrainConfig

SIZE = (3, 8, 8)


@pytest.fixture(scope="module")
def pm() -> PrunableModel:
    return PrunableModel(create_model("resnet20", num_classes=4), SIZE, "internal",
                         drop_blocks=True)


def _pol(pm: PrunableModel, drops: set[int], r: float) -> list[float]:
    return [DROP if u in drops else r for u in range(len(pm.units))]


def test_one_finalist_per_set_of_dropped_blocks_first_then_the_next_best(pm):
    u0, u1 = sorted(pm.blocks)[:2]
    a = Finalist("a", _pol(pm, {u0}, 0.0), 5.0)
    b = Finalist("b", _pol(pm, {u0}, 0.5), 4.0)  # a's drops, other widths
    c = Finalist("c", _pol(pm, {u1}, 0.0), 3.0)
    d = Finalist("d", _pol(pm, set(), 0.5), 2.0)
    e = Finalist("e", list(a.ratios), 1.0)  # a's network again
    pool = [e, d, c, b, a]
    assert dropped(pm, a.ratios) == {u0} and dropped(pm, d.ratios) == set()
    assert [f.name for f in pick_finalists(pm, pool, 3)] == ["a", "c", "d"]
    assert [f.name for f in pick_finalists(pm, pool, 5)] == ["a", "c", "d", "b"]  # e: a again
    # the score alone would take a and b (the failing order), and without droppable blocks
    # the finalists are the best distinct policies
    plain = PrunableModel(create_model("resnet20", num_classes=4), SIZE, "internal")
    no_drops = [replace(f, ratios=[min(x, 0.5) for x in f.ratios]) for f in (a, b, d)]
    assert [f.name for f in pick_finalists(plain, no_drops, 2)] == ["a", "b"]


class _Constant(nn.Module):
    """Predicts one class whatever the image (a bias no tiny step moves)."""

    def __init__(self, cls: int, classes: int = 4):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(1))
        self.bias = torch.full((classes,), -1e6)
        self.bias[cls] = 1e6

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bias.expand(len(x), -1) + self.w * 0.0


def test_the_finalist_best_on_val_after_its_fine_tune_is_kept(synth8):
    data = load_dataset(synth8, input_size=SIZE)
    val = data.tensors("val")
    share = [float((val[1] == c).float().mean()) * 100 for c in range(4)]
    order = sorted(range(4), key=lambda c: share[c])  # worst class first
    # the search's scores rank them the other way round: the fine-tune's verdict must win
    fins = [Finalist(f"class {c}", [float(c)], 10.0 - i) for i, c in enumerate(order)]
    cfg = TrainConfig(epochs=1, lr=1e-9, batch_size=32, seed=0, eval_splits=(), threads=1,
                      augment=False)
    res = finetune_finalists(fins, lambda r: _Constant(int(r[0])), data, cfg, val)
    assert [r["val_top1_after"] for r in res["rows"]] == pytest.approx(
        [share[c] for c in order])
    assert res["chosen"] == 3 and max(share) > min(share)
    # a finalist fine-tuned before with this recipe is not fine-tuned again

    def start(r):
        assert int(r[0]) != order[0], "fine-tuned again"
        return _Constant(int(r[0]))

    res = finetune_finalists(fins, start, data, cfg, val, known={ratios_key([order[0]]): 99.0})
    assert res["chosen"] == 0 and res["rows"][0]["reused"] and not res["rows"][1]["reused"]


class _Clock:
    """A :func:`time.perf_counter` that moves only when told: timings the machine's load
    cannot change."""

    def __init__(self) -> None:
        self.now = 1000.0

    def perf_counter(self) -> float:
        return self.now


def test_finalists_whose_finetunes_would_end_past_the_deadline_are_left_out(synth8,
                                                                            monkeypatch):
    """Fine-tunes that take 1 s each (on a clock only they move): with 2.6 s left the first
    two are fine-tuned and the third, timed as the longest so far, would end past the
    deadline: it and the fourth are left out (the best of the two kept); without a deadline
    all four run."""
    import amc.train.finalists as tf

    time = _Clock()
    monkeypatch.setattr(tf, "time", time)
    data = load_dataset(synth8, input_size=SIZE)
    val = data.tensors("val")
    fins = [Finalist(f"class {c}", [float(c)], 10.0 - c) for c in range(4)]
    cfg = TrainConfig(epochs=1, lr=1e-9, batch_size=32, seed=0, eval_splits=(), threads=1,
                      augment=False)

    def slow(r):
        time.now += 1.0
        return _Constant(int(r[0]))

    res = finetune_finalists(fins, slow, data, cfg, val, deadline=time.perf_counter() + 2.6)
    assert [r["name"] for r in res["rows"]] == ["class 0", "class 1"]
    assert res["left_out"] == 2 and res["chosen"] in (0, 1)
    share = [float((val[1] == c).float().mean()) * 100 for c in range(2)]
    assert res["rows"][res["chosen"]]["val_top1_after"] == pytest.approx(max(share))
    # the expected time of one fine-tune rules before any is timed here (the first is the
    # search's pick, always fine-tuned): 10 s each cannot fit 2.6 s after it
    fast = [Finalist("known", [0.0], 11.0), *fins[1:]]
    res = finetune_finalists(fast, slow, data, cfg, val, deadline=time.perf_counter() + 2.6,
                             per_finetune=10.0, known={ratios_key([0.0]): 50.0})
    assert len(res["rows"]) == 1 and res["rows"][0]["reused"] and res["left_out"] == 3
    res = finetune_finalists(fins, lambda r: _Constant(int(r[0])), data, cfg, val)
    assert len(res["rows"]) == 4 and res["left_out"] == 0


def test_another_finalist_replaces_the_first_only_beyond_the_margin(synth8):
    data = load_dataset(synth8, input_size=SIZE)
    val = data.tensors("val")
    share = [float((val[1] == c).float().mean()) * 100 for c in range(4)]
    order = sorted(range(4), key=lambda c: share[c])  # the search's pick: the worst class
    fins = [Finalist(f"class {c}", [float(c)], 10.0 - i) for i, c in enumerate(order)]
    cfg = TrainConfig(epochs=1, lr=1e-9, batch_size=32, seed=0, eval_splits=(), threads=1,
                      augment=False)
    lead = max(share) - share[order[0]]
    p, n = share[order[0]] / 100, len(val[1])
    se_diff = 100 * math.sqrt(2 * p * (1 - p) / n)  # of two top-1s on val's images
    assert lead > 0

    def pick(margin_se: float) -> dict:
        return finetune_finalists(fins, lambda r: _Constant(int(r[0])), data, cfg, val,
                                  margin_se=margin_se)

    kept = pick(1.01 * lead / se_diff)  # the best leads by just under the margin: no swap
    assert kept["chosen"] == 0 and kept["margin"] == pytest.approx(1.01 * lead)
    swapped = pick(0.99 * lead / se_diff)  # just over it: the best wins
    assert swapped["chosen"] == 3 and swapped["margin"] == pytest.approx(0.99 * lead)


def _search(data: str, ckpt: str, out, **kw) -> SearchConfig:
    base = dict(model="resnet20", num_classes=4, checkpoint=ckpt, data=data, input_size=SIZE,
                units="internal", max_ratio=0.3, drop_blocks=True, calib_size=16,
                recal_size=16, val_size=16, episodes=6, warmup_episodes=4, hidden=16,
                batch_size=8, race=False, budget="flops:0.6", threads=1, loader_workers=0,
                finalist_images=32, out=str(out))
    return SearchConfig(**{**base, **kw})


def test_a_search_keeps_its_best_finalist_and_can_undo_it(synth8, resnet20_4, tmp_path,
                                                          one_thread, monkeypatch):
    import amc.agents.finalists as af

    out = tmp_path / "s"
    cfg = _search(synth8, resnet20_4, out, finalists=3, finalist_margin_se=0.0)
    s = run_search(cfg)
    fin = json.loads((out / "finalists.json").read_text())
    after = [r["val_top1_after"] for r in fin["rows"]]
    assert len(after) == 3 and fin["chosen"] == max(range(3), key=lambda i: (after[i], -i))
    assert "the search's pick" in fin["rows"][0]["name"]
    # one finalist per set of dropped blocks (the blocks strategy's candidates add sets)
    assert len({frozenset(u for u, x in enumerate(r) if x >= DROP) for r in fin["ratios"]}) == 3
    assert load_policy(out / "best_policy.json").ratios == pytest.approx(
        fin["ratios"][fin["chosen"]], abs=1e-6)
    assert s["finalists"]["chosen"] == fin["rows"][fin["chosen"]]["name"]
    assert s["finalist_seconds"] > 0
    pick = fin["ratios"][0]  # the search's own pick
    # a later finalist that wins replaces the best policy; the search's pick is kept beside
    real = af.finetune_finalists

    def last_wins(*a, **kw):
        res = real(*a, **kw)
        return {**res, "chosen": len(res["rows"]) - 1}

    monkeypatch.setattr(af, "finetune_finalists", last_wins)
    # the blocks strategy's scored candidates, kept when the search made its blocks policy,
    # are the finalists' pool: not scored again
    made = json.loads((out / "blocks_candidates.json").read_text())
    best_made = max(made, key=lambda c: c["val_top1"])["ratios"]
    pm = PrunableModel(create_model("resnet20", num_classes=4), SIZE, "internal",
                       drop_blocks=True)
    assert [pm.kept(u, x) for u, x in enumerate(best_made)] == [
        pm.kept(u, x) for u, x in enumerate(load_policy(out / "blocks_policy.json").ratios)]

    def no_scoring(*a, **kw):
        raise AssertionError("the blocks candidates were scored again")

    monkeypatch.setattr(af, "blocks_candidates", no_scoring)
    s = refinish(replace(cfg, finalists=2))
    fin = json.loads((out / "finalists.json").read_text())
    won = load_policy(out / "best_policy.json")
    assert won.ratios == pytest.approx(fin["ratios"][1], abs=1e-6)
    assert won.ratios != pytest.approx(pick, abs=1e-6)
    assert "finalists" in won.provenance["picked_by"]
    assert load_policy(out / "search_best_policy.json").ratios == pytest.approx(pick, abs=1e-6)
    # the same finished search without finalists: the search's own pick again, files gone
    plain = refinish(replace(cfg, finalists=0))
    assert plain["finalists"] is None and not (out / "finalists.json").exists()
    assert load_policy(out / "best_policy.json").ratios == pytest.approx(pick, abs=1e-6)
    assert not (out / "search_best_policy.json").exists()
    # a margin no finalist can beat: only the pick is made again, and the search's stays
    monkeypatch.setattr(af, "finetune_finalists", real)
    said: list[str] = []
    run_or_resume(replace(cfg, finalist_margin_se=1e6), say=said.append)
    assert "picking its best again" in said[0] and "finalist_margin_se" in said[0]
    fin = json.loads((out / "finalists.json").read_text())
    assert fin["chosen"] == 0 and fin["margin_se"] == 1e6 and len(fin["rows"]) == 3
    assert load_policy(out / "best_policy.json").ratios == pytest.approx(pick, abs=1e-6)


def _replayed(out) -> list[list[float]]:
    import csv

    with open(out / "episodes.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    names = [k for k in rows[0] if k.startswith("ratio:")]
    return [[float(r[n]) for n in names] for r in rows[:4]]  # the cheap policies' replays


def test_blocks_finalists_pick_the_blocks_demonstration(synth8, resnet20_4, tmp_path,
                                                        one_thread, monkeypatch):
    import amc.agents.finalists as af

    plain = tmp_path / "p"  # without the option the warm start replays the strategy's pick
    run_search(_search(synth8, resnet20_4, plain))
    strategy = load_policy(plain / "blocks_policy.json").ratios
    assert any(r == pytest.approx(strategy, abs=1e-5) for r in _replayed(plain))
    assert not (plain / "blocks_finalists.json").exists()
    real = af.finetune_finalists

    def another_wins(fins, *a, **kw):  # the fine-tune prefers a candidate the score did not
        res = real(fins, *a, **kw)
        return {**res, "chosen": next(i for i, f in enumerate(fins)
                                      if f.ratios != pytest.approx(strategy, abs=1e-6))}

    monkeypatch.setattr(af, "finetune_finalists", another_wins)
    out = tmp_path / "b"
    s = run_search(_search(synth8, resnet20_4, out, blocks_finalists=2))
    rec = json.loads((out / "blocks_finalists.json").read_text())
    by_score = sorted(rec["pool"], key=lambda f: -f["score"])
    assert len(rec["pool"]) >= 2 and [r["name"] for r in rec["rows"]] == [
        f["name"] for f in by_score[:2]]
    pick = rec["pick"]["ratios"]
    assert pick != pytest.approx(strategy, abs=1e-6) and s["blocks_finalist"] == rec["pick"][
        "name"]
    assert s["blocks_finalist_seconds"] > 0
    # the warm start replays the fine-tune's pick, not the strategy's
    assert any(r == pytest.approx(pick, abs=1e-5) for r in _replayed(out))
    assert not any(r == pytest.approx(strategy, abs=1e-5) for r in _replayed(out))

    def refuse(*a, **kw):
        raise AssertionError("fine-tuned again")

    # a longer run of the same search reads its pick back instead of fine-tuning again
    monkeypatch.setattr(af, "finetune_finalists", refuse)
    again = run_search(_search(synth8, resnet20_4, out, blocks_finalists=2, episodes=8),
                       resume=True)
    assert again["blocks_finalist"] == rec["pick"]["name"]
    # another finalist recipe picked other drops for the warm start: searched again
    # (without --blocks-finalists it only picks the finished search's best again)
    monkeypatch.setattr(af, "finetune_finalists", another_wins)
    said: list[str] = []
    run_or_resume(_search(synth8, resnet20_4, out, blocks_finalists=2, finalist_images=16),
                  say=said.append)
    assert said and "(finalist_images): searching again" in said[0]
    said.clear()
    run_or_resume(_search(synth8, resnet20_4, plain, finalist_images=16), say=said.append)
    assert said and "picking its best again" in said[0]


def test_time_limit_finalists_keeps_the_whole_search_within_the_limit(synth8, resnet20_4,
                                                                      tmp_path, one_thread,
                                                                      monkeypatch):
    """Fine-tunes made slow (1 s each): with --time-limit-finalists the blocks finalists'
    fine-tunes, the episodes, the rescoring and the finalists' fine-tunes all end within
    --time-limit (the episodes stop earlier); without it the limit counts neither fine-tune
    (they come on top). Episodes made slow too (0.4 s): the room the timer leaves past its
    reserve is about a round, and in rounds of 0.1 s what runs between the
    episodes and the fine-tunes (closing the envs, the last checkpoint) took it all on a
    loaded CI run, leaving the finalist out."""
    import time

    import amc.train.finalists as tf
    from amc.envs import AMCPruningEnv
    from amc.report.compare_config import search_wall_seconds

    real, step = tf.train, AMCPruningEnv.step

    def slow(*a, **kw):
        time.sleep(1.0)
        return real(*a, **kw)

    def slow_step(self, action):
        out = step(self, action)
        if out[2]:  # an episode's end: its scoring 0.4 s longer
            time.sleep(0.4)
        return out

    monkeypatch.setattr(tf, "train", slow)
    monkeypatch.setattr(AMCPruningEnv, "step", slow_step)
    limit = 12.0
    kw = dict(episodes=500, blocks_finalists=2, finalists=2, time_limit=limit, rescore_top=0)
    s = run_search(_search(synth8, resnet20_4, tmp_path / "in", time_limit_finalists=True,
                           **kw))
    inside = search_wall_seconds(tmp_path / "in")
    assert s["stopped_by_time_limit"] and s["blocks_finalist_seconds"] >= 2.0
    assert s["finalist_seconds"] >= 1.0 and inside <= limit + 0.5
    assert s["time_limit_counted_seconds"] <= limit + 0.5  # all of it, set-up included
    assert s["session_seconds"] == pytest.approx(s["time_limit_counted_seconds"])
    # room for the fine-tunes left, timed as the blocks finalists' (>= 1 s each; a finalist
    # that is a blocks candidate fine-tuned before costs nothing)
    fin = json.loads((tmp_path / "in" / "finalists.json").read_text())
    new = sum(not r["reused"] for r in fin["rows"])
    assert new >= 1 and s["time_limit_reserved_seconds"] >= new * 1.0
    # without it: no room kept, and the limit counts neither fine-tune, so the whole ends
    # past the limit by them when the episodes fill it (how far they fill it depends on the
    # warm start's bound for its next fit: 3,000 steps at a pace a loaded CI machine timed
    # slow stopped them after the warm-up, 7.2 s in all)
    s = run_search(_search(synth8, resnet20_4, tmp_path / "on_top", **kw))
    fine = s["finalist_seconds"] + s["blocks_finalist_seconds"]
    assert s["stopped_by_time_limit"] and s["time_limit_reserved_seconds"] == 0.0
    assert s["time_limit_counted_seconds"] <= limit + 0.5 and fine >= 3.0
    assert s["session_seconds"] >= s["time_limit_counted_seconds"] + fine
