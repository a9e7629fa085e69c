"""Every script in ``scripts/`` loads and parses its arguments: most of them run only as
benchmarks, never in CI, so a renamed option or module would otherwise surface hours into a
benchmark (or on a GPU machine)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

SCRIPTS = sorted((Path(__file__).resolve().parents[1] / "scripts").glob("*.py"))


def test_there_are_scripts():
    assert len(SCRIPTS) >= 15


@pytest.mark.parametrize("path", SCRIPTS, ids=lambda p: p.stem)
def test_script_loads_and_prints_its_help(path, run_script, capsys):
    with pytest.raises(SystemExit) as e:
        run_script(path, ["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: {path.name}") and "--help" in out


def test_finetune_summary_groups_runs_by_name(run_script, tmp_path):
    """Runs named <name> and <name>_s<k> are one group: mean and sample std of their final
    top-1 and of their training seconds (every stage's epochs); a folder without a summary is
    not a run."""
    import json

    runs = tmp_path / "runs"
    for name, test, sec in (("amc_x", 80.0, 10.0), ("amc_x_s1", 82.0, 7.0), ("uni_y", 70.0, 1.0)):
        (runs / name).mkdir(parents=True)
        (runs / name / "summary.json").write_text(json.dumps({
            "final": {"test_top1": test, "val_top1": test + 1, "macs_ratio": 0.5},
            "speed": {"a": {"seconds_per_epoch": sec, "epochs_measured": 1},
                      "b": {"seconds_per_epoch": sec, "epochs_measured": 2}},
            "config": {"epochs": 1, "seed": 0, "policy": "p.json"}, "train_images": 10}))
    (runs / "amc_x_s2").mkdir()  # unfinished: no summary
    run_script(SCRIPTS[0].parent / "finetune_summary.py", ["--runs", str(runs),
                                                                 "--out", str(tmp_path / "s")])
    doc = json.loads((tmp_path / "s.json").read_text())
    assert doc["names"]["amc_x"]["test_top1"]["mean"] == 81.0
    assert doc["names"]["amc_x"]["test_top1"]["std"] == pytest.approx(2 ** 0.5)
    assert doc["names"]["uni_y"]["test_top1"]["n"] == 1
    assert doc["names"]["amc_x"]["train_seconds"]["mean"] == 25.5  # (30 + 21) / 2
    assert "| amc_x | 2 | 81.00 ± 1.41 | 82.00 ± 1.41 | 0.500 | 26 |" in (
        tmp_path / "s.md").read_text()


def test_finetune_summary_differences_against_a_named_group(run_script, tmp_path):
    """``--against``: each other group's mean minus the named group's, with the combined SE
    of the two means, and the differences paired by fine-tuning seed (a seed the reference
    lacks is left out of the pairs); an unknown name is refused in one line."""
    import json
    import math

    runs = tmp_path / "runs"
    rows = (("amc_x", 80.0, 0), ("amc_x_s1", 83.0, 1), ("amc_x_s2", 81.0, 7),
            ("uni_y", 81.0, 0), ("uni_y_s1", 81.5, 1), ("uni_y_s2", 82.5, 2))
    for name, test, seed in rows:
        (runs / name).mkdir(parents=True)
        (runs / name / "summary.json").write_text(json.dumps({
            "final": {"test_top1": test, "val_top1": test, "macs_ratio": 0.5}, "speed": {},
            "config": {"epochs": 1, "seed": seed, "policy": "p.json"}}))
    run_script(SCRIPTS[0].parent / "finetune_summary.py", [
        "--runs", str(runs), "--out", str(tmp_path / "s"), "--against", "uni_y"])
    d = json.loads((tmp_path / "s.json").read_text())["against"]["uni_y"]["amc_x"]
    assert d["difference"] == pytest.approx(81.3333333 - 81.6666667)
    se_a, se_b = math.sqrt(7 / 3) / math.sqrt(3), math.sqrt(1.75 / 3) / math.sqrt(3)
    assert d["combined_se"] == pytest.approx(math.hypot(se_a, se_b))
    assert d["paired"]["values"] == [-1.0, 1.5]  # seeds 0 and 1; seed 7 has no partner
    with pytest.raises(SystemExit, match="--against nope names no run group"):
        run_script(SCRIPTS[0].parent / "finetune_summary.py", [
            "--runs", str(runs), "--out", str(tmp_path / "t"), "--against", "nope"])


def test_quality_summary_checks_amc_after_a_longer_fine_tune():
    """``--longer``: each AMC group of a ``finetune_summary.py --against`` document is checked
    against the reference group (met only at a difference >= 0), other groups are not."""
    import runpy

    checks = runpy.run_path(str(SCRIPTS[0].parent / "quality_summary.py"))["checks"]
    d = {"config": {"budgets": []}, "agg": [], "sweep": None}
    runs = [{"train_images": 45000}] * 2
    longer = {"runs": {"amc_a": runs, "amc_b": runs, "blocks_a": runs},
              "against": {"uni": {
                  "amc_a": {"difference": 0.3, "combined_se": 0.2,
                            "paired": {"mean": 0.3, "std": 0.1, "n": 2}},
                  "amc_b": {"difference": -0.01, "combined_se": None, "paired": None},
                  "blocks_a": {"difference": -1.0, "combined_se": 0.2, "paired": None}}}}
    rows = checks(d, None, longer, "ft.json")
    assert [(r["check"].split(" ")[0], r["met"]) for r in rows] == [
        ("amc_a", True), ("amc_b", False)]
    assert "45000 images, `ft.json`" in rows[0]["check"]
    assert rows[0]["note"] == "combined SE 0.20; paired by seed +0.30 ± 0.10 (n 2)"


def test_quality_summary_times_amc_with_what_was_made_for_its_search():
    """The search-time check takes AMC's seconds as its runs' table rows count them (the
    search plus the blocks policy it warm-starts from), not the search folder's alone: a
    search just inside the sweep's time whose blocks policy puts it past is a miss."""
    import runpy

    checks = runpy.run_path(str(SCRIPTS[0].parent / "quality_summary.py"))["checks"]
    runs = [{"strategy": "amc", "search_seconds": 540.0 + 60.0},  # search 540 + blocks 60
            {"strategy": "amc", "search_seconds": 500.0},
            {"strategy": "blocks", "search_seconds": 900.0}]  # not AMC's: left out
    for sweep_s, met in ((563.0, False), (600.0, True)):
        d = {"config": {"budgets": []}, "agg": [], "runs": runs, "sweep": {"seconds": sweep_s}}
        (row,) = checks(d)
        assert row["value"] == pytest.approx(600.0 / sweep_s) and row["met"] is met
        assert row["note"].startswith("500-600 s (mean 550 s")


def test_a_runs_name_splits_back_and_a_mean_std_formats():
    from amc.report.compare import _name, split_run
    from amc.utils.stats import format_mean_std, mean_std

    assert split_run(_name("amc", "latency:0.55", 2)) == ("amc_latency0.55", 2)
    assert split_run(_name("uniform", "flops:0.5")) == ("uniform_flops0.5", 0)
    assert split_run("blocks_s1x") == ("blocks_s1x", 0)  # not a run suffix
    assert format_mean_std(mean_std([1.0, 3.0])) == "2.00 ± 1.41"
    assert format_mean_std(mean_std([1.234])) == "1.23"


def test_lane_fill_rounds_kept_widths_up_to_whole_vectors():
    """`bench_lane_fill.py`'s filled policies: every kept width becomes the next multiple of
    the vector (or the unit's full width), a dropped block stays dropped, and the ratios
    keep exactly those counts when pruned (a ratio a hair off would keep one channel more
    or less)."""
    import runpy

    from amc.models.registry import create_model
    from amc.prune.depth import DROP
    from amc.prune.policy import make_policy
    from amc.prune.units import PrunableModel

    filled = runpy.run_path(str(SCRIPTS[0].parent / "bench_lane_fill.py"))["filled"]
    pm = PrunableModel(create_model("resnet20"), (3, 32, 32), "internal", drop_blocks=True)
    ratios = [0.7, DROP, 0.1, 0.45, 0.0, 0.8, 0.3, 0.55, 0.05][:len(pm.units)]
    policy = make_policy(pm, ratios, "resnet20", "latency:0.5", "amc")
    before = [pm.kept(i, r) for i, r in enumerate(ratios)]
    for lanes in (8, 16):
        after = [pm.kept(i, r) for i, r in enumerate(filled(policy, pm, lanes))]
        want = [0 if k == 0 else min(u.n, -(-k // lanes) * lanes)
                for k, u in zip(before, pm.units)]
        assert after == want and after != before
        past = [pm.kept(i, r) for i, r in enumerate(filled(policy, pm, lanes, past=True))]
        assert past == [k if k <= lanes else w for k, w in zip(before, want)]
    assert before[1] == 0 and any(k % 8 for k in before)
    assert any(0 < k <= 8 and k != w for k, w in zip(before, want))  # past= leaves those


def test_conv_vectors_times_both_sides_of_every_vector_and_scores_step_models():
    """`bench_conv_vectors.py` times the counts on both sides of every 4-, 8- and 16-channel
    step (and the full width), and its model error is zero for a step function counted in
    whole vectors but not for the same steps counted linearly."""
    import runpy

    from amc.prune.latency_timing import vector_inputs, whole_vectors

    ns = runpy.run_path(str(SCRIPTS[0].parent / "bench_conv_vectors.py"))
    ks = ns["kept_counts"](64)
    assert {1, 8, 9, 16, 17, 32, 33, 48, 49, 64} <= set(ks) and max(ks) == 64
    assert ns["kept_counts"](16)[-1] == 16
    steps = [0.05 + whole_vectors(k, 16) / 64 for k in ks]
    err = ns["model_error"]
    assert err(steps, [whole_vectors(k, 16) for k in ks]) < 1e-9
    assert err(steps, ks) > 0.02
    inputs = [vector_inputs(k, 16) for k in ks]  # linear to 16, then in vectors
    assert inputs[:8] == list(range(1, 9)) and vector_inputs(17, 16) == 32


def test_quality_summary_speed_check_names_the_tables_prediction():
    """The measured speed-up is the check; the table's predicted one (a latency-budget
    policy's) is noted beside it, at the table's thread count only."""
    import runpy

    checks = runpy.run_path(str(SCRIPTS[0].parent / "quality_summary.py"))["checks"]
    base = {"n": 3, "test_before": 70.0, "test_after": 80.0, "test_before_std": 1.0,
            "test_after_std": 1.0, "speedup_b64": 1.79, "speedup_b64_1thread": 1.84}
    agg = [{**base, "strategy": "amc", "budget": "latency:0.54", "speedup_b64_table": 1.86},
           {**base, "strategy": "blocks", "budget": "latency:0.54"},
           {**base, "strategy": "uniform", "budget": "flops:0.5", "speedup_b64": 1.48,
            "speedup_b64_1thread": 1.51}]
    d = {"config": {"budgets": ["latency:0.54"], "threads": 2}, "agg": agg, "sweep": None}
    rows = {r["check"]: r for r in checks(d)}
    two = rows["latency:0.54: AMC speed-up at batch 64, 2 threads"]
    assert (two["met"], two["note"]) == (False, "the latency table predicted 1.86")
    one = rows["latency:0.54: AMC speed-up at batch 64, 1 thread"]
    assert (one["met"], one["note"]) == (True, "")


def test_quality_summary_never_shows_a_miss_rounded_into_a_pass():
    """A check's value is shown with as many decimals as keep it from reading as the other
    verdict: 1.798 against >= 1.8 is a miss and must not print as 1.80."""
    import runpy

    shown = runpy.run_path(str(SCRIPTS[0].parent / "quality_summary.py"))["shown"]
    assert shown(1.798, ">= 1.8", False) == "1.798"
    assert shown(1.84, ">= 1.8", True) == "1.84"
    assert shown(1.0004, "<= 1", False) == "1.0004"
    assert shown(0.96, "<= 1", True) == "0.96"
    assert shown(-2.02, ">= 0", False) == "-2.02"


def test_quality_summary_reads_the_folders_own_uniform_flops_runs(tmp_path):
    """A folder whose uniform flops:0.5 runs were made by an earlier call of the same
    comparison (``table_uniform_flops0.5.csv``) has the latency budget's accuracy check made
    against them, for accuracy only (no speed ratio: timed in that other call); a folder
    without the file has none."""
    import runpy

    ns = runpy.run_path(str(SCRIPTS[0].parent / "quality_summary.py"))
    checks, own_uniform = ns["checks"], ns["own_uniform"]
    assert own_uniform(tmp_path) is None
    (tmp_path / "table_uniform_flops0.5.csv").write_text(
        "strategy,budget,n,test_before,test_after,test_after_std,speedup_b64\n"
        "uniform,flops:0.5,3,71.7,83.1,0.42,1.40\n")
    base = {"n": 3, "test_before": 66.0, "test_before_std": 2.0, "test_after_std": 1.5,
            "speedup_b64": 1.81, "speedup_b64_1thread": 1.85}
    agg = [{**base, "strategy": "amc", "budget": "latency:0.53", "test_after": 82.0},
           {**base, "strategy": "blocks", "budget": "latency:0.53", "test_after": 81.0}]
    d = {"config": {"budgets": ["latency:0.53"], "threads": 2}, "agg": agg, "sweep": None}
    rows = {r["check"]: r for r in checks(d, own_uniform(tmp_path))}
    (acc,) = [r for k, r in rows.items() if "uniform flops:0.5" in k]
    assert str(tmp_path / "table_uniform_flops0.5.csv") in acc["check"]
    assert acc["value"] == pytest.approx(82.0 - 83.1) and acc["met"] is False
    assert not any(k.startswith("latency:0.53 AMC speed-up / uniform") for k in rows)
    assert not any("uniform flops:0.5" in r["check"] for r in checks(d, None))


def test_quality_summary_checks_speed_on_a_side_by_side_retime():
    """``--retimed``: the folder's AMC row of a bench_retime.py document is checked against
    1.8x and against uniform flops:0.5's row (from any folder), per thread count."""
    import runpy

    retimed_checks = runpy.run_path(
        str(SCRIPTS[0].parent / "quality_summary.py"))["retimed_checks"]

    def row(mean, std=0.0, n=3):
        return {"mean": mean, "std": std, "n": n}

    retimed = {"rounds": [{}, {}, {}], "summary": {
        "t2": {"per_row": {"dense": row(1.0), "f/amc_latency0.54": row(1.82, 0.04),
                           "g/amc_latency0.54": row(1.5), "g/uniform_flops0.5": row(1.45)}},
        "t1": {"per_row": {"f/amc_latency0.54": row(1.79), "g/uniform_flops0.5": row(1.80)}}}}
    rows = retimed_checks("f", "latency:0.54", retimed, "r.json")
    assert [(re.search(r"\d threads?", r["check"])[0], r["target"], r["met"])
            for r in rows] == [
        ("2 threads", ">= 1.8", True), ("2 threads", ">= 1", True),
        ("1 thread", ">= 1.8", False), ("1 thread", ">= 1", False)]
    assert rows[0]["value"] == 1.82 and rows[0]["note"] == "± 0.04 over 3 networks"
    assert rows[1]["value"] == pytest.approx(1.82 / 1.45)
    assert "(`r.json`, 3 rounds)" in rows[0]["check"]
    assert retimed_checks("h", "latency:0.54", retimed, "r.json") == []


def test_quality_summary_refuses_a_retime_that_did_not_time_the_folder():
    """``--retimed`` naming a document without the folder's AMC networks is refused in one
    line instead of silently adding no speed check."""
    import runpy

    checks = runpy.run_path(str(SCRIPTS[0].parent / "quality_summary.py"))["checks"]
    d = {"config": {"budgets": ["latency:0.54"], "threads": 2}, "agg": [], "sweep": None,
         "folder": "results/f"}
    retimed = {"rounds": [{}], "summary": {"t2": {"per_row": {
        "g/amc_latency0.54": {"mean": 1.9, "std": 0.0, "n": 1}}}}}
    with pytest.raises(SystemExit, match="--retimed r.json did not time this folder's AMC "
                                         "networks at latency:0.54; pass a bench_retime.py "
                                         "JSON made with --folders results/f"):
        checks(d, retimed=retimed, retimed_file="r.json")
    retimed["summary"]["t2"]["per_row"]["f/amc_latency0.54"] = {"mean": 1.9, "std": 0.0, "n": 1}
    rows = checks(d, retimed=retimed, retimed_file="r.json")  # the budget's own rows: not run
    assert [(r["check"], r["met"]) for r in rows[1:]] == [(
        "latency:0.54: AMC speed-up at batch 64, 2 threads, timed side by side (`r.json`, 1 "
        "rounds)", True)]


def test_val_gap_fits_the_gap_on_the_blocks_each_policy_drops(synth8, resnet20_4, tmp_path,
                                                              run_script):
    """scripts/val_gap.py: blocks dropped counted from each run's policy, the gap's line
    recovered exactly where val − test = 1 + 0.25 × blocks; --min-test leaves runs out."""
    import json

    from amc.agents import SearchConfig
    from amc.prune.budget import Budget
    from amc.prune.policy import make_policy
    from amc.prune.scoring import build_scorer

    cfg = SearchConfig(model="resnet20", num_classes=4, checkpoint=resnet20_4, data=synth8,
                       input_size=(3, 8, 8), units="internal", drop_blocks=True,
                       calib_size=16, recal_size=16, val_size=16, threads=1,
                       loader_workers=0)
    pm = build_scorer(**cfg.scorer_kwargs()).pm
    assert len(pm.blocks) >= 4
    runs = []
    for k in (0, 2, 4):
        ratios = [1.0 if u in sorted(pm.blocks)[:k] else 0.2 for u in range(len(pm.units))]
        path = tmp_path / f"p{k}.json"
        make_policy(pm, ratios, "resnet20", Budget.parse("flops:0.9"), "x", 0, 0.9,
                    {}).save(path)
        runs.append({"run": f"net_s{k}", "val_top1": 81.0 + 0.25 * k, "test_top1": 80.0,
                     "macs_ratio": 0.5, "policy": str(path)})
    runs.append({**runs[0], "test_top1": 10.0, "val_top1": 30.0})  # near chance
    (tmp_path / "ft.json").write_text(json.dumps({"runs": {"net": runs}}))
    script = Path(__file__).parents[1] / "scripts" / "val_gap.py"
    run_script(script, ["--finetune", str(tmp_path / "ft.json"), "--min-test", "50",
                        "--out", str(tmp_path / "g")])
    res = json.loads((tmp_path / "g.json").read_text())
    assert [r["dropped"] for r in res["runs"]] == [0, 2, 4]
    fit = res["lines"][str(tmp_path / "ft.json")]
    assert fit["n"] == 3 and abs(fit["slope"] - 0.25) < 1e-9 and abs(fit["r"] - 1) < 1e-9
    run_script(script, ["--finetune", str(tmp_path / "ft.json"), "--out", str(tmp_path / "h")])
    kept = json.loads((tmp_path / "h.json").read_text())["lines"][str(tmp_path / "ft.json")]
    assert kept["n"] == 4 and kept["slope"] < 0.25  # the near-chance run pulls the line
