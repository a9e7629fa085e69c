"""Policies: JSON round trip, reproducible application (in-process and through `amc apply`),
one-line errors for bad policies, and the `amc baseline` strategies on the digits model.

`amc apply` and a latency baseline run as real subprocesses (`python -m amc.cli ...`, one
torch thread each), two at a time, started once for the module by the ``cli`` fixture; the
other baselines and the refusals go through the same ``amc.cli.main`` in this process.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from amc.cost.macs import model_cost
from amc.models.registry import create_model
from amc.prune.budget import Budget, uniform_ratio
from amc.prune.policy import apply_policy, load_policy, make_policy
from amc.prune.units import PrunableModel
from amc.utils.errors import AmcError

BUDGET = "flops:0.5"


@pytest.fixture(autouse=True, scope="module")
def _one_thread(one_thread):
    """Every test of this module on one torch thread (the conftest fixture)."""


@pytest.fixture(scope="module")
def digits_pm(digits_ckpt) -> PrunableModel:
    return PrunableModel(create_model("digits_cnn", checkpoint=digits_ckpt), (1, 8, 8), "all")


def _uniform(pm: PrunableModel, budget: str = BUDGET) -> list[float]:
    return [uniform_ratio(pm, Budget.parse(budget), 0.8)] * len(pm.units)


def _shapes(model: nn.Module) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def _same_model(a: nn.Module, b: nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert {k: v.shape for k, v in sa.items()} == {k: v.shape for k, v in sb.items()}
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k


# --------------------------------------------------------------------------- in process


def test_policy_save_load_round_trip(digits_pm, tmp_path):
    ratios = np.random.default_rng(0).uniform(0, 0.8, len(digits_pm.units)).tolist()
    pol = make_policy(digits_pm, ratios, "digits_cnn", BUDGET, "random", seed=3,
                      max_ratio=0.8, metrics={"val_top1": 51.25}, note="round trip")
    path = pol.save(tmp_path / "sub" / "policy.json")
    assert not list(path.parent.glob("*.tmp"))  # written atomically
    assert json.loads(path.read_text()) == pol.to_dict()
    loaded = load_policy(path)
    assert loaded.to_dict() == pol.to_dict()
    assert loaded.ratios == ratios  # exact: a reloaded policy prunes the same channels
    assert loaded.provenance["note"] == "round trip" and loaded.provenance["seed"] == 3


def test_ratios_for_orders_by_unit_name(digits_pm):
    ratios = np.random.default_rng(1).uniform(0, 0.8, len(digits_pm.units)).tolist()
    pol = make_policy(digits_pm, ratios, "digits_cnn", BUDGET, "random")
    names = [u.name for u in digits_pm.units]
    assert pol.ratios_for(reversed(names)) == ratios[::-1]  # by name, not by position
    pol.units = pol.units[1:]
    with pytest.raises(AmcError, match=f"no ratio for unit {names[0]!r}"):
        pol.ratios_for(names)


@pytest.mark.parametrize("how", ["uniform", "random"])
def test_apply_policy_reproduces_pruned_model(digits_ckpt, digits_pm, tmp_path, how):
    pm = digits_pm
    ratios = (_uniform(pm) if how == "uniform"
              else np.random.default_rng(1).uniform(0, 0.8, len(pm.units)).tolist())
    pruned = pm.prune(ratios)
    pol = make_policy(pm, ratios, "digits_cnn", BUDGET, how, max_ratio=0.8)
    loaded = load_policy(pol.save(tmp_path / "p.json"))
    again = apply_policy(create_model("digits_cnn", checkpoint=digits_ckpt), loaded,
                         "digits_cnn")
    _same_model(pruned, again)
    macs, params = model_cost(again, (1, 8, 8))
    assert (macs, params) == model_cost(pruned, (1, 8, 8))
    assert (loaded.achieved["macs"], loaded.achieved["params"]) == (macs, params)
    assert [u["kept"] for u in loaded.units] == [
        again.get_submodule(u.name).out_channels for u in pm.units]
    if how == "uniform":
        assert macs <= 0.5 * pm.dense_macs


def test_a_policy_edited_in_kept_but_not_in_ratio_is_refused(digits_ckpt, digits_pm):
    """``kept`` is written beside each ratio for the reader, and the ratio is what is
    applied: a file whose ``kept`` was edited (or whose ratio was, leaving ``kept``) is
    refused in one line naming the unit, both counts and the fix, rather than silently
    applied by its ratio; without ``kept`` the ratio applies as it is."""
    pm = digits_pm
    pol = make_policy(pm, [0.25] * len(pm.units), "digits_cnn", BUDGET, "uniform")
    model = create_model("digits_cnn", checkpoint=digits_ckpt)
    apply_policy(model, pol, "digits_cnn")  # as written: consistent
    u = pol.units[1]
    edited = copy.deepcopy(pol)
    edited.units[1]["kept"] = u["kept"] - 2  # the count edited, the ratio left
    with pytest.raises(AmcError, match=(
            rf"unit {u['name']!r} says kept {u['kept'] - 2} of {u['channels']} channels, but "
            rf"its ratio 0.25 keeps {u['kept']} .*fix the ratio, or delete 'kept'")):
        apply_policy(model, edited, "digits_cnn")
    edited = copy.deepcopy(pol)
    edited.units[1]["ratio"] = 0.5  # the ratio edited, the count left
    with pytest.raises(AmcError, match=rf"says kept {u['kept']} of"):
        apply_policy(model, edited, "digits_cnn")
    del edited.units[1]["kept"]  # the fix: the ratio applies
    got = apply_policy(model, edited, "digits_cnn")
    assert got.get_submodule(u["name"]).out_channels == pm.kept(1, 0.5) < u["kept"]


def test_apply_policy_resnet20_internal(tmp_path):
    torch.manual_seed(0)
    dense = create_model("resnet20")
    pm = PrunableModel(dense, (3, 32, 32), "internal")
    ratios = _uniform(pm, "flops:0.6")
    pol = make_policy(pm, ratios, "resnet20", "flops:0.6", "uniform", max_ratio=0.8)
    again = apply_policy(copy.deepcopy(dense), load_policy(pol.save(tmp_path / "p.json")),
                         "resnet20")
    _same_model(pm.prune(ratios), again)
    assert model_cost(again, (3, 32, 32))[0] <= 0.6 * pm.dense_macs


# --------------------------------------------------------------------------- command line

BAD = {  # case -> (how to spoil a good policy document, what the message must say)
    "wrong_model": (lambda d: d.update(model="resnet20"), "for model 'resnet20'"),
    "unknown_unit": (lambda d: d["units"][1].update(name="features.99"), "features.99"),
    "missing_unit": (lambda d: d["units"].pop(), "no ratio for unit"),
    "ratio_1.2": (lambda d: d["units"][0].update(ratio=1.2), "ratio 1.2"),
    "missing_field": (lambda d: d.pop("criterion"), "'criterion'"),
    "wrong_version": (lambda d: d.update(version=3), "version 3"),
    "drop_without_drop_blocks": (lambda d: d["units"][0].update(ratio=1.0), "ratio 1.0"),
    "drop_undroppable": (lambda d: (d.update(drop_blocks=True), d["units"][0].update(ratio=1.0)),
                         "not the inner width of a droppable basic block"),
    "drop_blocks_not_bool": (lambda d: d.update(drop_blocks="yes"), "drop_blocks 'yes'"),
    "not_json": (None, "not valid JSON"),
}
STRATEGIES = ("uniform", "global", "sensitivity", "random")


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    # a latency budget's table goes to this folder's cache, not the user's
    env = {**os.environ, "OMP_NUM_THREADS": "1", "AMC_CACHE_DIR": str(cwd / "cache")}
    return subprocess.run([sys.executable, "-m", "amc.cli", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)


def _run_here(args: list[str]) -> subprocess.CompletedProcess:
    """``amc ARGS`` through :func:`amc.cli.main` in this process, as a finished process."""
    from amc.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(args)
    return subprocess.CompletedProcess(args, rc, out.getvalue(), err.getvalue())


@pytest.fixture(scope="module")
def cli(digits_ckpt, digits_pm, tmp_path_factory) -> dict:
    """Prepare every command-line case, run them (the work two at a time), return their
    results."""
    d = tmp_path_factory.mktemp("cli")
    ckpt = str(digits_ckpt)
    model = ["--model", "digits_cnn", "--checkpoint", ckpt, "--threads", "1"]
    ratios = _uniform(digits_pm)
    good = make_policy(digits_pm, ratios, "digits_cnn", BUDGET, "uniform", max_ratio=0.8)
    good_path = good.save(d / "good.json")
    jobs: dict[str, list[str]] = {
        "apply": ["apply", *model, "--policy", str(good_path), "--no-bn-recalib",
                  "--no-reconstruct", "--out", str(d / "pruned.pt")],
        # reconstruction is the default
        "apply_reconstruct": ["apply", *model, "--policy", str(good_path),
                              "--out", str(d / "rebuilt.pt")]}
    for case, (spoil, _) in BAD.items():
        p = d / f"bad_{case}.json"
        if spoil is None:
            p.write_text('{"format": "amc-policy", "version": 1, units: [')
        else:
            doc = good.to_dict()
            spoil(doc)
            p.write_text(json.dumps(doc))
        jobs[f"bad:{case}"] = ["apply", *model, "--policy", str(p),
                               "--out", str(d / f"bad_{case}.pt")]
    for s in STRATEGIES:
        jobs[f"baseline:{s}"] = ["baseline", *model, "--strategy", s, "--budget", BUDGET,
                                 "--max-ratio", "0.8", "--n-random", "4",
                                 "--out", str(d / f"{s}.json")]
    jobs["baseline:latency"] = ["baseline", *model, "--strategy", "uniform", "--budget",
                                "latency:0.8", "--latency-batch", "16", "--latency-threads", "1",
                                "--max-ratio", "0.8", "--out", str(d / "latency.json")]
    existing = d / "existing.json"
    existing.write_text("keep me\n")
    jobs["overwrite:baseline"] = ["baseline", *model, "--out", str(existing)]
    jobs["overwrite:apply"] = ["apply", *model, "--policy", str(good_path),
                               "--out", str(existing)]
    # the refusals in this process (the same main(); a subprocess costs ~3 s of imports each,
    # and tests/test_cli_errors.py runs the real entry point), the work two at a time
    # (and the strategies' baselines: apply and the latency baseline stay real processes)
    fails = [k for k in jobs if k.startswith(("bad:", "overwrite:"))
             or (k.startswith("baseline:") and k != "baseline:latency")]
    results = {k: _run_here(jobs[k]) for k in fails}
    with ThreadPoolExecutor(max_workers=2) as ex:
        futures = {k: ex.submit(_run, v, d) for k, v in jobs.items() if k not in fails}
        results.update({k: f.result() for k, f in futures.items()})
    return {"dir": d, "jobs": jobs, "results": results, "ratios": ratios, "good": good,
            "existing": existing}


def _assert_one_line_error(res: subprocess.CompletedProcess) -> str:
    assert res.returncode == 2, (res.returncode, res.stderr[-2000:])
    assert "Traceback" not in res.stderr + res.stdout
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    assert lines[0].startswith("amc: error:")
    return lines[0]


@pytest.mark.cli
def test_cli_apply_saves_reloadable_pruned_model(cli, digits_pm):
    res = cli["results"]["apply"]
    assert res.returncode == 0, res.stderr[-2000:]
    out = cli["dir"] / "pruned.pt"
    loaded = create_model("digits_cnn", checkpoint=out)
    expected = digits_pm.prune(cli["ratios"])
    assert _shapes(loaded) == _shapes(expected)
    assert model_cost(loaded, (1, 8, 8)) == model_cost(expected, (1, 8, 8))
    assert model_cost(loaded, (1, 8, 8))[0] == cli["good"].achieved["macs"]
    x = torch.randn(16, 1, 8, 8)  # no repair was asked for: the same network
    with torch.inference_mode():
        assert torch.allclose(loaded(x), expected(x), atol=1e-5)


@pytest.mark.cli
def test_cli_apply_reconstructs_in_the_recalibration_pass(cli, digits_ckpt):
    """`amc apply` (reconstruction is on by default) refits the pruned convs as the search's
    scores do, in a BatchNorm recalibration pass on the first 256 calibration images, then
    re-estimates the statistics on the whole draw; refitting first and recalibrating after
    (the two-pass repair) gives another network (must fail)."""
    from amc.data.datasets import load_dataset
    from amc.prune.policy import prunable_for
    from amc.prune.repair import recalibrate_bn, reconstruct

    res = cli["results"]["apply_reconstruct"]
    assert res.returncode == 0, res.stderr[-2000:]
    loaded = create_model("digits_cnn", checkpoint=cli["dir"] / "rebuilt.pt").eval()
    calib = load_dataset("digits").calibration(512, 0)

    def rebuilt(one_pass: bool) -> torch.nn.Module:
        dense = create_model("digits_cnn", checkpoint=digits_ckpt)
        net = apply_policy(dense, cli["good"], "digits_cnn", calib)
        pm = prunable_for(cli["good"], dense, calib)
        reconstruct(pm, net, cli["good"].ratios_for(u.name for u in pm.units),
                    calib[0][:256], recalibrate=one_pass)
        return recalibrate_bn(net, calib[0].split(128)).eval()

    x = torch.randn(64, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    nets = loaded, rebuilt(True), rebuilt(False)  # (tracing the graph needs autograd)
    with torch.inference_mode():
        got, want, two_pass = (n(x) for n in nets)
    scale = float(want.abs().max())
    assert float((got - want).abs().max()) < 1e-4 * scale
    assert float((two_pass - want).abs().max()) > 1e-2 * scale


@pytest.mark.cli
@pytest.mark.parametrize("case", list(BAD))
def test_cli_bad_policy_one_line_error(cli, case):
    line = _assert_one_line_error(cli["results"][f"bad:{case}"])
    assert BAD[case][1] in line, line
    assert not (cli["dir"] / f"bad_{case}.pt").exists()
    assert not list(cli["dir"].glob(f"bad_{case}.pt*"))


@pytest.mark.cli
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_cli_baseline_writes_policy_meeting_budget(cli, digits_ckpt, strategy):
    res = cli["results"][f"baseline:{strategy}"]
    assert res.returncode == 0, res.stderr[-2000:]
    pol = load_policy(cli["dir"] / f"{strategy}.json")
    assert pol.model == "digits_cnn" and pol.budget == BUDGET
    assert pol.provenance["strategy"] == strategy
    assert 0 <= pol.metrics["val_top1"] <= 100
    assert all(0 <= r <= 0.8 for r in pol.ratios)
    assert pol.achieved["macs_ratio"] <= 0.5
    pruned = apply_policy(create_model("digits_cnn", checkpoint=digits_ckpt), pol, "digits_cnn")
    macs, _ = model_cost(pruned, (1, 8, 8))
    dense = model_cost(create_model("digits_cnn"), (1, 8, 8))[0]
    assert macs == pol.achieved["macs"]
    assert 0.95 * 0.5 * dense <= macs <= 0.5 * dense  # scaled to the budget


@pytest.mark.cli
def test_cli_baseline_at_a_latency_budget_records_and_prints_the_tables_prediction(cli):
    """The policy keeps the fraction of dense latency its table predicts (within the budget)
    and where the table was measured; the command prints it."""
    res = cli["results"]["baseline:latency"]
    assert res.returncode == 0, res.stderr[-2000:]
    pol = load_policy(cli["dir"] / "latency.json")
    lat = pol.achieved["latency_ratio"]
    assert lat <= 0.8 + 1e-9 and pol.budget == "latency:0.8"
    assert pol.provenance["latency_table"] == {"backend": "torch", "batch": 16, "threads": 1}
    assert f"latency {lat:.3f} (table)" in res.stdout, res.stdout
    assert "latency_ratio" not in load_policy(cli["dir"] / "uniform.json").achieved  # FLOPs


@pytest.mark.cli
@pytest.mark.parametrize("command", ["baseline", "apply"])
def test_cli_refuses_to_overwrite(cli, command):
    line = _assert_one_line_error(cli["results"][f"overwrite:{command}"])
    assert "--force" in line
    assert cli["existing"].read_text() == "keep me\n"
