"""``amc compare`` on digits: every column filled, and a killed run resumes without redoing
finished stages."""

from __future__ import annotations

import csv
import json
import math
import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest
import torch

from amc.report.compare import Comparison
from amc.report.compare_config import CompareConfig, search_wall_seconds
from amc.utils import allocator


def _cfg(ckpt, out, **kw) -> CompareConfig:
    base = dict(checkpoint=ckpt, finetune_epochs=0.3, episodes=12, warmup_episodes=4,
                n_random=4, latency_runs=2, val_limit=64, threads=1, out=str(out))
    base.update(kw)
    return CompareConfig(**base)


@pytest.mark.cli
def test_compare_cli_fills_every_column(digits_ckpt, tmp_path):
    out = tmp_path / "cmp"
    r = subprocess.run([sys.executable, "-m", "amc.cli", "compare", "--checkpoint", digits_ckpt,
                        "--finetune-epochs", "0.3", "--episodes", "12", "--warmup-episodes", "4",
                        "--n-random", "4", "--latency-runs", "2", "--val-limit", "64",
                        "--threads", "1", "--budget", "flops:0.5", "--budget", "flops:0.7",
                        "--out", str(out)], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    rows = list(csv.DictReader(open(out / "table.csv")))
    assert len(rows) == 10  # 5 strategies x 2 budgets
    assert {r["strategy"] for r in rows} == {"amc", "uniform", "global", "sensitivity",
                                             "random"}
    for row in rows:
        for col, value in row.items():
            assert value not in ("", "nan", "None"), (row["strategy"], col)
        assert float(row["macs_ratio"]) <= float(row["budget"].split(":")[1]) + 1e-9
    for f in ("table.md", "pareto.png", "ratios.png", "eval/dense_ft.json"):
        assert (out / f).is_file(), f
    assert len(list((out / "policies").glob("*.json"))) == 10
    # the val columns are evaluated on all of val, whatever --val-limit the strategies had
    from amc.data.datasets import load_dataset

    n = len(load_dataset("digits").labels["val"])
    assert n > 64 and (f"the strategies score on the first 64 val images, the val columns on "
                       f"all {n}.") in (out / "table.md").read_text()


def test_resume_skips_finished_stages(digits_ckpt, tmp_path, monkeypatch):
    import amc.report.compare as compare

    out = tmp_path / "r"
    cfg = _cfg(digits_ckpt, out, strategies=("uniform", "random"))
    first = Comparison(cfg).run()
    # a kill after the random policy was found but before its fine-tune finished:
    (out / "models" / "random_flops0.5.pt").unlink()
    (out / "eval" / "random_flops0.5_after.json").unlink()
    calls = {"train": 0, "strategy": 0}
    real_train, real_strategy = compare.train, compare.run_strategy

    def counting_train(*a, **k):
        calls["train"] += 1
        return real_train(*a, **k)

    def counting_strategy(*a, **k):
        calls["strategy"] += 1
        return real_strategy(*a, **k)

    monkeypatch.setattr(compare, "train", counting_train)
    monkeypatch.setattr(compare, "run_strategy", counting_strategy)
    second = Comparison(cfg).run()
    assert calls == {"train": 1, "strategy": 0}  # only the lost fine-tune is redone
    assert [r["strategy"] for r in second] == [r["strategy"] for r in first]
    assert second[0] == first[0]  # the uniform row came from the cache untouched


@pytest.mark.cli
def test_unknown_strategy_is_a_user_error(digits_ckpt, tmp_path):
    r = subprocess.run([sys.executable, "-m", "amc.cli", "compare", "--checkpoint", digits_ckpt,
                        "--strategies", "amc,magic", "--out", str(tmp_path / "x")],
                       capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "magic" in r.stderr


def test_resume_without_weights_uses_cached_scores(digits_ckpt, tmp_path, monkeypatch):
    """A fresh clone holds the committed JSON artifacts but no weights (never committed):
    a rerun rebuilds the table from the cached scores and trains nothing."""
    import shutil

    import amc.report.compare as compare

    out = tmp_path / "c"
    cfg = _cfg(digits_ckpt, out, strategies=("uniform",))
    first = Comparison(cfg).run()
    shutil.rmtree(out / "models")
    (out / "table.csv").unlink()

    def no_train(*a, **k):
        raise AssertionError("fine-tuning was redone")

    monkeypatch.setattr(compare, "train", no_train)
    assert Comparison(cfg).run() == first
    assert (out / "table.csv").is_file()


def test_distillation_uses_the_dense_checkpoint_as_teacher(digits_ckpt, tmp_path, monkeypatch):
    import amc.report.compare as compare

    seen = []
    real_train = compare.train

    def spy(model, data, cfg, teacher=None, **kw):
        seen.append((cfg.kd_weight, teacher))
        return real_train(model, data, cfg, teacher=teacher, **kw)

    monkeypatch.setattr(compare, "train", spy)
    c = Comparison(_cfg(digits_ckpt, tmp_path / "kd", strategies=("uniform",),
                        channels_last=True))  # kd_weight 0.5: the default
    c.run()
    assert seen == [(0.5, None), (0.5, c.dense)]  # the dense fine-tune has no teacher
    # the teacher is the dense model the strategies prune: training moved it to the device (in
    # channels-last here) and back, as it found it
    convs = [q for q in c.dense.parameters() if q.dim() == 4 and q.shape[1] > 1]
    assert convs and all(q.is_contiguous() for q in convs)


def test_distillation_after_adapting_teaches_with_the_adapted_model(digits_ckpt, tmp_path,
                                                                   monkeypatch):
    """With --search-on adapted the strategies prune the fine-tuned dense model, so their
    fine-tunes distil from it, not from the public checkpoint (which scores lower on the
    user's data)."""
    import amc.report.compare as compare

    seen = []
    real_train = compare.train

    def spy(model, data, cfg, teacher=None, **kw):
        seen.append(None if teacher is None else {k: v.clone()
                                                   for k, v in teacher.state_dict().items()})
        return real_train(model, data, cfg, teacher=teacher, **kw)

    monkeypatch.setattr(compare, "train", spy)
    c = Comparison(_cfg(digits_ckpt, tmp_path / "kda", strategies=("uniform",), kd_weight=0.5,
                        search_on="adapted"))
    c.run()
    assert len(seen) == 2 and seen[0] is None  # the dense fine-tune (no teacher), then
    sd = seen[1]  # the uniform network's: taught by the adapted model, not the checkpoint
    assert all(torch.equal(v, sd[k]) for k, v in c.dense.state_dict().items())
    assert not all(torch.equal(v, sd[k]) for k, v in c.pretrained.state_dict().items())


def test_seeds_give_mean_and_std_over_calibration_draws(digits_ckpt, tmp_path):
    out = tmp_path / "s"
    rows = Comparison(_cfg(digits_ckpt, out, strategies=("uniform", "global"), seeds=2,
                           finetune_runs=1, budgets=("flops:0.4",))).run()
    assert [(r["strategy"], r["run"]) for r in rows] == [("uniform", 0), ("global", 0),
                                                          ("uniform", 1), ("global", 1)]
    runs = list(csv.DictReader(open(out / "table_runs.csv")))
    agg = {r["strategy"]: r for r in csv.DictReader(open(out / "table.csv"))}
    assert len(runs) == 4 and {r["n"] for r in agg.values()} == {"2"}
    for s in ("uniform", "global"):
        mine = [r for r in rows if r["strategy"] == s]
        # the same policy, BN recalibrated on another draw: other scores before fine-tuning
        p0, p1 = (out / "policies" / f"{s}_flops0.4{x}.json" for x in ("", "_s1"))
        assert json.loads(p0.read_text())["units"] == json.loads(p1.read_text())["units"]
        vals = [m["val_before"] for m in mine]
        assert float(agg[s]["val_before"]) == pytest.approx(np.mean(vals))
        assert float(agg[s]["val_before_std"]) == pytest.approx(np.std(vals, ddof=1))
    # another draw moves some score (val has 143 images: on some CPUs only test's 360 move)
    assert any(float(agg[s][f"{split}_before_std"]) > 0 for s in agg for split in ("val", "test"))
    # only the first run was fine-tuned: its after-scores stand alone, and say so
    assert [r["test_after"] is None for r in rows] == [False, False, True, True]
    assert all(agg[s]["test_after_n"] == "1" for s in agg)
    assert not list(out.glob("eval/*_s1_after.json"))
    assert "(n=1)" in (out / "table.md").read_text()


def test_winner_needs_a_margin_beyond_the_combined_standard_error():
    from amc.report.compare_table import winners

    def row(s, m, sd, n=3):
        return {"strategy": s, "budget": "flops:0.5", "n": n, **{
            k: v for c in ("test_before", "test_after", "speedup_b64", "speedup_b64_1thread")
            for k, v in ((c, m), (f"{c}_std", sd))}}

    se = math.hypot(0.5 / math.sqrt(3), 0.5 / math.sqrt(3))  # 0.41
    assert ("a", "flops:0.5", "test_before") in winners([row("a", 70 + 1.2 * se, 0.5),
                                                         row("b", 70, 0.5)])
    assert not winners([row("a", 70 + 0.8 * se, 0.5), row("b", 70, 0.5)])
    # one run each: the test set's binomial error (10,000 images: 0.46 points at 70 %)
    one = [row("a", 70.5, 0, 1), row("b", 70, 0, 1)]
    assert ("a", "flops:0.5", "test_before") not in winners(one, n_test=10000)
    one = [row("a", 71, 0, 1), row("b", 70, 0, 1)]
    assert ("a", "flops:0.5", "test_before") in winners(one, n_test=10000)


def test_search_on_adapted_prunes_the_fine_tuned_dense_model(digits_ckpt, tmp_path):
    import torch

    from amc.models.registry import create_model

    out = tmp_path / "a"
    c = Comparison(_cfg(digits_ckpt, out, strategies=("uniform",), search_on="adapted"))
    c.run()
    ft = create_model("digits_cnn", checkpoint=out / "models" / "dense_ft.pt").state_dict()
    assert all(torch.equal(v, ft[k]) for k, v in c.dense.state_dict().items())
    pre = create_model("digits_cnn", checkpoint=digits_ckpt).state_dict()
    assert not all(torch.equal(v, pre[k]) for k, v in c.dense.state_dict().items())
    before = json.loads((out / "eval" / "dense_before.json").read_text())
    after = json.loads((out / "eval" / "dense_ft.json").read_text())
    assert before["test_top1"] == after["test_top1"]  # "before" is the adapted model


def test_sweep_warm_start_replays_the_sensitivity_allocation(digits_ckpt, tmp_path):
    """AMC's warm-up replays the comparison's sensitivity allocation, exactly, and its
    search time counts the sweep's."""
    from amc.cli.compare import amc_policy
    from amc.prune.policy import load_policy

    out = tmp_path / "w"
    c = Comparison(_cfg(digits_ckpt, out, strategies=("sensitivity", "amc"),
                        sweep_warm_start=True, finetune_epochs=0.1), amc_policy)
    rows = {r["strategy"]: r for r in c.run()}
    run = out / "search" / "flops0.5"
    sens = load_policy(out / "policies" / "sensitivity_flops0.5.json")
    demo = load_policy(run / "sensitivity_policy.json")
    # the same channels (the demonstration is kept as exact channel fractions)
    assert demo.ratios == pytest.approx(c.scorer.pm.canonical(sens.ratios), abs=1e-6)
    with open(run / "episodes.csv", newline="") as f:
        episodes = list(csv.DictReader(f))
    replayed = [[float(r[f"ratio:{u['name']}"]) for u in demo.units] for r in episodes[:3]]
    assert any(r == pytest.approx(demo.ratios, abs=1e-5) for r in replayed)
    amc = load_policy(out / "policies" / "amc_flops0.5.json")
    sweep_s = json.loads((out / "sensitivity.json").read_text())["seconds"]
    assert amc.provenance["sweep_seconds"] == sweep_s
    assert amc.provenance["search_seconds"] > sweep_s
    assert rows["amc"]["search_seconds"] > sweep_s  # the table counts the sweep too
    plain = tmp_path / "p"  # without the option the sweep is not replayed
    Comparison(_cfg(digits_ckpt, plain, strategies=("sensitivity", "amc"),
                    finetune_epochs=0.1, noise_min=0.07, drop_swap=0.2, pair_moves=0.3,
                    anchor_every=2, finalists=2, finalist_images=64), amc_policy).run()
    assert not (plain / "search" / "flops0.5" / "sensitivity_policy.json").exists()
    # the comparison's search races as `amc search` does (the baselines have no use for it)
    searched = json.loads((plain / "search" / "flops0.5" / "config.json").read_text())
    assert searched["race"]
    assert searched["noise_min"] == 0.07  # the comparison's --noise-min reaches its searches
    assert searched["drop_swap"] == 0.2  # and its --drop-swap
    assert (searched["pair_moves"], searched["anchor_every"]) == (0.3, 2)  # and these
    assert (searched["finalists"], searched["finalist_images"]) == (2, 64)


def test_sweep_time_limit_gives_each_search_the_sweeps_seconds(digits_ckpt, tmp_path):
    """--sweep-time-limit: each AMC search runs with the sweep's measured seconds as its
    --time-limit (without it, none); it and --time-limit together are refused."""
    from amc.cli.compare import amc_policy
    from amc.utils.errors import AmcError

    out = tmp_path / "t"
    Comparison(_cfg(digits_ckpt, out, strategies=("sensitivity", "amc"), seeds=2,
                    finetune_runs=0, sweep_time_limit=True), amc_policy).run()
    sweep_s = json.loads((out / "sensitivity.json").read_text())["seconds"]
    for run in ("flops0.5", "flops0.5_s1"):
        searched = json.loads((out / "search" / run / "config.json").read_text())
        assert searched["time_limit"] == sweep_s
    plain = tmp_path / "p"
    Comparison(_cfg(digits_ckpt, plain, strategies=("amc",), finetune_runs=0),
               amc_policy).run()
    assert json.loads((plain / "search" / "flops0.5" / "config.json").read_text())[
        "time_limit"] is None
    with pytest.raises(AmcError, match="--sweep-time-limit and --time-limit"):
        CompareConfig(sweep_time_limit=True, time_limit=60.0).validate()


@pytest.mark.parametrize("field, value, match", [
    ("search_on", "finetuned", "--search-on"), ("warm_start", "smart", "--warm-start"),
    ("strategies", ("amc", "magic"), "magic"), ("noise_min", 1.5, "--noise-min"),
    ("drop_swap", -0.1, "--drop-swap"), ("pair_moves", 1.5, "--pair-moves"),
    ("anchor_every", -1, "--anchor-every"), ("finalists", -1, "--finalists"),
    ("finalist_epochs", 0.0, "--finalist-epochs")])
def test_bad_compare_settings_refused_in_one_line(tmp_path, field, value, match):
    from amc.utils.errors import AmcError

    cfg = CompareConfig(**{field: value}, out=str(tmp_path / "x"))
    with pytest.raises(AmcError, match=match) as e:
        cfg.validate()
    assert "\n" not in str(e.value) and not (tmp_path / "x").exists()


def test_folder_made_with_other_settings_is_refused_untouched(digits_ckpt, tmp_path):
    """Rerunning a comparison with a changed setting (or after an upgrade that added one)
    would reuse artifacts made with the old ones and relabel them: refused in one line
    before anything is written. Settings that only add jobs are accepted."""
    from amc.utils.errors import AmcError

    out = tmp_path / "c"
    cfg = _cfg(digits_ckpt, out, strategies=("uniform",))
    Comparison(cfg).run()
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    with pytest.raises(AmcError, match=r"other settings \(finetune_epochs, lr\).*--out"):
        Comparison(replace(cfg, finetune_epochs=0.5, lr=0.1))
    stored = json.loads((out / "config.json").read_text())
    del stored["noise_min"]  # made by an amc before the setting existed
    (out / "config.json").write_text(json.dumps(stored))
    with pytest.raises(AmcError, match=r"other settings \(noise_min\)"):
        Comparison(cfg)
    (out / "config.json").write_bytes(before[out / "config.json"])
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    Comparison(replace(cfg, budgets=("flops:0.5", "flops:0.7"), seeds=2, threads=2))


def test_latency_budgets_measured_with_an_older_latency_table_are_refused(tmp_path,
                                                                         monkeypatch):
    """A folder whose latency budgets were searched and scaled with an older latency table
    (or before the table's method was recorded) is refused in one line; a FLOPs-only folder
    made before stays reusable and may gain a latency budget (its jobs are new)."""
    from dataclasses import asdict

    import amc.prune.latency_table as lt
    from amc.report.compare_config import check_cached
    from amc.utils.errors import AmcError
    from amc.utils.io import write_json

    cfg = CompareConfig(budgets=("flops:0.5", "latency:0.7"), out=str(tmp_path))
    write_json(tmp_path / "config.json", asdict(cfg))
    check_cached(cfg)  # made with today's table
    old = asdict(cfg)
    del old["latency_table_method"]  # made before the method was recorded
    write_json(tmp_path / "config.json", old)
    with pytest.raises(AmcError, match="older latency table.*--out") as e:
        check_cached(cfg)
    assert "\n" not in str(e.value)
    flops = CompareConfig(budgets=("flops:0.5",), out=str(tmp_path))
    old = asdict(flops)
    del old["latency_table_method"]
    write_json(tmp_path / "config.json", old)
    check_cached(flops)
    check_cached(cfg)  # a latency budget added to a FLOPs-only folder: new jobs
    write_json(tmp_path / "config.json", asdict(cfg))
    monkeypatch.setattr(lt, "METHOD", lt.METHOD + 1)  # an amc with another table
    with pytest.raises(AmcError, match="older latency table"):
        check_cached(CompareConfig(budgets=cfg.budgets, out=str(tmp_path)))


def test_a_folder_made_before_block_dropping_existed_is_reused(tmp_path):
    """A comparison cached before ``drop_blocks`` was a setting ran without dropping blocks:
    it reruns with ``drop_blocks`` off (the default) and is refused with it on."""
    from dataclasses import asdict

    from amc.report.compare_config import check_cached
    from amc.utils.errors import AmcError
    from amc.utils.io import write_json

    cfg = CompareConfig(budgets=("flops:0.5",), out=str(tmp_path))
    old = asdict(cfg)
    del old["drop_blocks"]
    write_json(tmp_path / "config.json", old)
    check_cached(cfg)
    with pytest.raises(AmcError, match="other settings \\(drop_blocks\\)"):
        check_cached(replace(cfg, drop_blocks=True))


def test_random_in_a_comparison_picks_on_all_of_val(digits_ckpt, tmp_path):
    """--rescore-top reaches the random strategy: its policy is random_search's pick with the
    rest of val (for a seed whose pick on all of val is another one than the first val
    images' best: the case the check must tell apart)."""
    from amc.data.datasets import load_dataset
    from amc.prune.baselines import random_search
    from amc.prune.budget import Budget
    from amc.prune.policy import load_policy
    from amc.prune.scoring import build_scorer

    out = tmp_path / "r"
    cfg = _cfg(digits_ckpt, out, strategies=("random",), budgets=("flops:0.3",), n_random=12,
               rescore_top=4, finetune_runs=0)
    x, y = load_dataset("digits").tensors("val")
    old = torch.get_num_threads()
    # scored on the comparison's threads: bf16 scores on an AMX CPU change with the thread
    # count (its kernels block the sums differently), and so can the pick
    torch.set_num_threads(cfg.threads)
    try:
        for seed in range(20):  # the trained weights (and so the picks) vary with the ISA
            scorer = build_scorer("digits_cnn", digits_ckpt, val_limit=64, seed=seed,
                                  amp=cfg.score_amp)
            args = (scorer, Budget.parse("flops:0.3"), 12, seed)
            want = random_search(*args, rescore_top=4, rest=(x[64:], y[64:]))[0]
            if want != random_search(*args)[0]:
                break
        else:
            pytest.fail("no seed in 0-19 where all of val changes random's pick")
    finally:
        torch.set_num_threads(old)
    Comparison(replace(cfg, seed=seed)).run()
    got = load_policy(out / "policies" / "random_flops0.3.json")
    assert got.ratios_for(u.name for u in scorer.pm.units) == pytest.approx(want, abs=1e-9)


def test_latency_is_timed_again_when_a_model_changed(digits_ckpt, tmp_path):
    """latency.json is reused only for the architectures it timed: a policy whose kept
    channels differ from the recorded ones times every model again."""
    out = tmp_path / "r"
    cfg = _cfg(digits_ckpt, out, strategies=("uniform",), finetune_runs=0)
    Comparison(cfg).run()
    path = out / "latency.json"
    lat = json.loads(path.read_text())
    arch = lat["arch"]["uniform_flops0.5"]
    assert len(arch) == 4 and lat["arch"]["dense"] == []  # digits_cnn: 4 units
    lat["t1"]["b64"]["uniform_flops0.5"]["median_ms"] = 12345.0  # a marker
    path.write_text(json.dumps(lat))
    Comparison(cfg).run()
    assert json.loads(path.read_text())["t1"]["b64"]["uniform_flops0.5"]["median_ms"] == 12345.0
    lat["arch"]["uniform_flops0.5"] = [a + 1 for a in arch]  # as if timed for another policy
    path.write_text(json.dumps(lat))
    Comparison(cfg).run()
    again = json.loads(path.read_text())
    assert again["arch"]["uniform_flops0.5"] == arch
    assert again["t1"]["b64"]["uniform_flops0.5"]["median_ms"] != 12345.0
    # timed under another allocator state (or before it was recorded): timed again
    assert again["allocator"] == allocator.state()
    again["t1"]["b64"]["uniform_flops0.5"]["median_ms"] = 12345.0
    del again["allocator"]
    path.write_text(json.dumps(again))
    Comparison(cfg).run()
    last = json.loads(path.read_text())
    assert last["allocator"] == allocator.state()
    assert last["t1"]["b64"]["uniform_flops0.5"]["median_ms"] != 12345.0


def test_search_wall_seconds_counts_every_env_of_a_search(tmp_path):
    """A resumed search's seconds are its episodes' env seconds per env: 4 envs on 2 workers
    (--envs-per-worker 2) ran 400 env-seconds in 100 s, not 200."""
    from amc.utils.io import write_json

    write_json(tmp_path / "summary.json", {"workers": 2, "wall_seconds_this_run": 60.0,
                                           "search_seconds": 400.0, "rescore_seconds": 5.0})
    assert search_wall_seconds(tmp_path) == 205.0  # a search made before the option: 2 envs
    write_json(tmp_path / "config.json", {"envs_per_worker": 2})
    assert search_wall_seconds(tmp_path) == 105.0
    # the fine-tunes of --finalists and --blocks-finalists count too
    write_json(tmp_path / "summary.json", {"workers": 2, "wall_seconds_this_run": 60.0,
                                           "search_seconds": 400.0, "rescore_seconds": 5.0,
                                           "finalist_seconds": 30.0,
                                           "blocks_finalist_seconds": 20.0})
    assert search_wall_seconds(tmp_path) == 155.0


def test_reconstruction_can_rank_policies_without_refitting_the_delivered_networks(
        digits_ckpt, tmp_path):
    """--no-reconstruct-delivered: the scores (here the sensitivity sweep that picks the
    policy) are reconstructed ones, and the delivered network is the plainly pruned,
    BN-recalibrated one; with the default both are reconstructed."""
    from amc.models.evaluate import top1
    from amc.prune.policy import load_policy
    from amc.utils.errors import AmcError

    kw = dict(strategies=("sensitivity",), reconstruct=True, finetune_runs=0)
    both = Comparison(_cfg(digits_ckpt, tmp_path / "both", **kw))
    both.run()
    reward = Comparison(_cfg(digits_ckpt, tmp_path / "reward", reconstruct_delivered=False,
                             **kw))
    reward.run()
    for f in ("sensitivity.json", "policies/sensitivity_flops0.5.json"):  # the same reward
        a, b = (json.loads((c.dir / f).read_text()) for c in (both, reward))
        assert a.get("val_top1") == b.get("val_top1") and a.get("units") == b.get("units")
    s = reward.scorer  # run 0's (the pretrained model is pruned)
    ratios = load_policy(reward.dir / "policies" / "sensitivity_flops0.5.json").ratios_for(
        u.name for u in s.pm.units)
    x, y = reward.data.tensors("test")
    plain = top1(replace(s, reconstruct=False).pruned(ratios), x, y)
    refit = top1(s.pruned(ratios), x, y)
    assert plain != refit  # the check below tells the two deliveries apart
    got = {c: json.loads((c.dir / "eval" / "sensitivity_flops0.5_before.json").read_text())
           ["test_top1"] for c in (both, reward)}
    assert got[reward] == plain and got[both] == refit
    assert "not (plainly pruned" in (reward.dir / "table.md").read_text()
    with pytest.raises(AmcError, match="only with --reconstruct"):
        _cfg(digits_ckpt, tmp_path / "x", reconstruct=False,
             reconstruct_delivered=False).validate()


def test_fine_tunes_start_from_the_plainly_pruned_network_by_default(digits_ckpt, tmp_path,
                                                                    monkeypatch):
    """With --reconstruct the network scored before fine-tuning is the reconstructed one, and
    its fine-tune starts from the plainly pruned, BN-recalibrated one (``finetune_from``
    pruned, the default); ``finetune_from`` delivered starts from the reconstructed one."""
    import amc.report.compare as compare_mod
    from amc.prune.policy import load_policy
    from amc.utils.errors import AmcError

    started: list[torch.Tensor] = []
    x = torch.randn(32, 1, 8, 8, generator=torch.Generator().manual_seed(0))

    def fake_train(model, data, cfg, teacher=None, log_csv=None):  # records where it started
        with torch.no_grad():
            started.append(model.eval()(x))
        return []

    monkeypatch.setattr(compare_mod, "train", fake_train)
    kw = dict(strategies=("uniform",), reconstruct=True, finetune_runs=1, kd_weight=0.0)
    logits = {}
    for mode in ("pruned", "delivered"):
        c = Comparison(_cfg(digits_ckpt, tmp_path / mode, finetune_from=mode, **kw))
        c.run()
        logits[mode] = started[-1]  # the last fine-tune: uniform's (the dense one comes first)
    s = c.scorer
    ratios = load_policy(c.dir / "policies" / "uniform_flops0.5.json").ratios_for(
        u.name for u in s.pm.units)
    with torch.no_grad():
        plain = replace(s, reconstruct=False).pruned(ratios).eval()(x)
        refit = s.pruned(ratios).eval()(x)
    tol = 1e-5 * float(plain.abs().max())
    assert float((refit - plain).abs().max()) > 100 * tol  # the two starts differ
    assert float((logits["pruned"] - plain).abs().max()) <= tol
    assert float((logits["delivered"] - refit).abs().max()) <= tol
    before = json.loads((tmp_path / "pruned" / "eval" / "uniform_flops0.5_before.json")
                        .read_text())["test_top1"]
    assert before == json.loads((tmp_path / "delivered" / "eval" /
                                 "uniform_flops0.5_before.json").read_text())["test_top1"]
    assert "Fine-tuned from the plainly pruned" in (tmp_path / "pruned" / "table.md").read_text()
    with pytest.raises(AmcError, match="unknown --finetune-from 'x'; use pruned or delivered"):
        _cfg(digits_ckpt, tmp_path / "x", finetune_from="x").validate()


def test_a_strategy_that_cannot_reach_a_budget_is_left_out_with_a_note(digits_ckpt, tmp_path):
    out = tmp_path / "u"
    rows = Comparison(_cfg(digits_ckpt, out, strategies=("uniform", "global"), finetune_runs=0,
                           budgets=("flops:0.4", "flops:0.01"))).run()
    assert {(r["strategy"], r["budget"]) for r in rows} == {("uniform", "flops:0.4"),
                                                            ("global", "flops:0.4")}
    table = (out / "table.md").read_text()
    assert "uniform at flops:0.01: left out (unreachable budget" in table
    assert "global at flops:0.01: left out (budget flops:0.01 is out of reach" in table
    assert not list(out.glob("policies/*flops0.01*"))


def test_latency_budget_rows_show_the_tables_predicted_speedup_beside_the_measured(
        digits_ckpt, tmp_path, isolated_cache):
    """A policy found at a latency budget gets the table's predicted speed-up (1 / its
    recorded latency ratio) next to the measured one; a FLOPs row has none. A loose budget:
    under load the tiny model's measured table can put 0.8 out of uniform's reach."""
    out = tmp_path / "lat"
    rows = Comparison(_cfg(digits_ckpt, out, strategies=("uniform",), finetune_runs=0,
                           budgets=("flops:0.5", "latency:0.95"))).run()
    by = {r["budget"]: r for r in rows}
    pol = json.loads((out / "policies" / "uniform_latency0.95.json").read_text())
    ratio = pol["achieved"]["latency_ratio"]
    assert ratio <= 0.95
    assert by["latency:0.95"]["speedup_b64_table"] == pytest.approx(1 / ratio, rel=1e-9)
    assert "speedup_b64_table" not in by["flops:0.5"]
    runs = {r["budget"]: r for r in csv.DictReader(open(out / "table_runs.csv"))}
    assert runs["flops:0.5"]["speedup_b64_table"] == ""
    assert float(runs["latency:0.95"]["speedup_b64_table"]) == pytest.approx(1 / ratio)
    md = (out / "table.md").read_text().splitlines()
    head = next(line for line in md if line.startswith("| strategy"))
    col = [c.strip() for c in head.split("|")].index("speedup_b64_table")
    cells = {line.split("|")[2].strip(): line.split("|")[col].strip()
             for line in md if line.startswith("| uniform")}
    assert cells == {"flops:0.5": "–", "latency:0.95": f"{1 / ratio:.2f}"}


def test_a_dense_model_far_better_on_val_than_test_gets_a_note():
    """The note's threshold is computed: 2 points and 4 combined binomial standard errors."""
    from amc.report.compare_table import val_memory_note
    from amc.utils.stats import binomial_se

    public = {"val_top1": 88.20, "test_top1": 82.73}  # the public ResNet-56 on our copy
    note = val_memory_note(public, 5000, 10000)
    assert note and "5.47 points higher on val" in note and "no --checkpoint" in note
    assert val_memory_note({"val_top1": 83.2, "test_top1": 82.73}, 5000, 10000) is None
    # a ResNet-56 trained here without val (results/val_gap_scratch56.md): no note
    assert val_memory_note({"val_top1": 88.90, "test_top1": 87.94}, 5000, 10000) is None
    # 3 points on 100 val images is within 4 standard errors (3.6 points each): no note
    gap3 = {"val_top1": 85.73, "test_top1": 82.73}
    se = (binomial_se(85.73, 100) ** 2 + binomial_se(82.73, 10000) ** 2) ** 0.5
    assert 3.0 < 4 * se and val_memory_note(gap3, 100, 10000) is None
    assert val_memory_note(gap3, 5000, 10000) is not None  # the same gap on 5,000: a note
