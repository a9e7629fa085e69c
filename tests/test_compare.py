"""``amc compare`` on digits: every column filled, and a killed run resumes without redoing
finished stages."""

from __future__ import annotations

import csv
import subprocess
import sys

import pytest

from amc.report.compare import CompareConfig, Comparison


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
    assert len(rows) == 8  # 4 strategies x 2 budgets
    assert {r["strategy"] for r in rows} == {"amc", "uniform", "sensitivity", "random"}
    for row in rows:
        for col, value in row.items():
            assert value not in ("", "nan", "None"), (row["strategy"], col)
        assert float(row["macs_ratio"]) <= float(row["budget"].split(":")[1]) + 1e-9
    for f in ("table.md", "pareto.png", "ratios.png", "eval/dense_ft.json"):
        assert (out / f).is_file(), f
    assert len(list((out / "policies").glob("*.json"))) == 8


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
    c = Comparison(_cfg(digits_ckpt, tmp_path / "kd", strategies=("uniform",), kd_weight=0.5))
    c.run()
    assert len(seen) == 2  # the dense model and the uniform one, both distilled
    assert all(w == 0.5 and t is c.dense for w, t in seen)
