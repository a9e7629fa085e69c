"""Fine-tuning schedules: cubic formula, exact sparsity, rollback, resume, lottery, CLI.

All runs use digits_cnn on the embedded 8x8 digits data, a few epochs of a 320-image subset.
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import pytest
import torch

import amc.train.finetune as ft
from amc.cli import main
from amc.data.datasets import load_dataset
from amc.models.checkpoint import read_file
from amc.models.registry import create_model
from amc.prune.masks import (
    ChannelPruner,
    apply_masks,
    layer_sparsity,
    magnitude_masks,
    nm_masks,
    prunable_weights,
    sparsity,
)
from amc.prune.schedules import cubic_sparsity, round_levels
from amc.train.finetune import FinetuneConfig, run_finetune
from amc.train.loop import TrainConfig, lr_at, train

SPE = 5  # steps per epoch: 320 images at batch 64


@pytest.fixture(scope="module")
def ckpt(digits_ckpt: str) -> str:
    return digits_ckpt


def cfg(ckpt: str, out: Path, **kw) -> FinetuneConfig:
    base = dict(model="digits_cnn", checkpoint=ckpt, data="digits", train_limit=320,
                batch_size=64, lr=0.05, epochs=2, test_every_epoch=False, out=str(out))
    return FinetuneConfig(**{**base, **kw})


def state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def same(a: dict, b: dict, atol: float = 0.0) -> bool:
    return a.keys() == b.keys() and all(torch.allclose(a[k].float(), b[k].float(), atol=atol)
                                        for k in a)


# ----------------------------------------------------------------------------- pure functions


def test_schedule_math_and_masks() -> None:
    # the cubic formula, written out independently
    s_i, s_f, t0, n, dt = 0.1, 0.8, 10, 5, 4
    for k in range(n + 1):
        t = t0 + k * dt
        assert cubic_sparsity(t, s_i, s_f, t0, n, dt) == pytest.approx(
            s_f + (s_i - s_f) * (1 - (t - t0) / (n * dt)) ** 3)
    assert cubic_sparsity(t0 + 10 * n * dt, s_i, s_f, t0, n, dt) == pytest.approx(s_f)
    assert round_levels(1.0, 4) == [0.25, 0.5, 0.75, 1.0]
    geo = round_levels(0.9, 0, step=0.2, level_for_sparsity=lambda s: s)
    assert geo[:3] == pytest.approx([0.2, 0.36, 0.488]) and geo[-1] == 0.9
    assert len(geo) == 11  # 1 - 0.8**10 = 0.893 < 0.9 <= 1 - 0.8**11

    torch.manual_seed(0)
    model = create_model("digits_cnn")
    names = prunable_weights(model)
    caps = {names[0]: 0.3, names[-1]: 0.3}
    for scope in ("global", "layer"):
        m = copy.deepcopy(model)
        masks = magnitude_masks(m, 0.9, names, caps, scope)
        apply_masks(m, masks)
        assert sparsity(m) == pytest.approx(0.9, abs=1e-5)
        per = layer_sparsity(m)
        assert per[names[0]] <= 0.3 + 1e-6 and per[names[-1]] <= 0.3 + 1e-6
    m = copy.deepcopy(model)
    apply_masks(m, nm_masks(m, names))
    w = dict(m.named_parameters())["features.3.weight"].detach()
    groups = w.permute(0, 2, 3, 1).reshape(-1, 4)
    assert ((groups != 0).sum(1) <= 2).all() and (groups != 0).sum(1).float().mean() == 2
    assert names[0] not in nm_masks(m, names)  # 1 input channel: not divisible by 4


def test_channel_masks_compute_what_physical_pruning_computes() -> None:
    torch.manual_seed(0)
    model = create_model("digits_cnn").eval()
    pruner = ChannelPruner([0.5, 0.25, 0.5, 0.75], (1, 8, 8), "all", "l1")
    half = pruner.masks(model, 0.5)
    masked = copy.deepcopy(model)
    full = pruner.masks(masked, 1.0)
    apply_masks(masked, full)
    small = pruner.physical(masked)
    x = torch.randn(16, 1, 8, 8)
    with torch.no_grad():
        assert torch.allclose(masked(x), small(x), atol=1e-5)
    assert small.features[0].out_channels == 16
    # nested: a lower level prunes a subset of what a higher level prunes
    assert all(((half[k] == 0) <= (full[k] == 0)).all() for k in half)


def test_train_window_and_constant_lr() -> None:
    data = ft.subset(load_dataset("digits"), FinetuneConfig(train_limit=256))
    torch.manual_seed(0)
    model = create_model("digits_cnn")
    rows = train(model, data, TrainConfig(epochs=4, batch_size=64, lr=0.1, eval_splits=()),
                 start_step=4, stop_step=7)
    assert [r["step"] for r in rows] == [7]  # 4 steps per epoch: the window 4..7
    assert rows[0]["lr"] == pytest.approx(lr_at(6, 16, 0, 0.1))
    rows = train(model, data, TrainConfig(epochs=0.5, batch_size=64, lr=0.02,
                                          lr_schedule="constant", eval_splits=()))
    assert rows[-1]["lr"] == 0.02 and rows[-1]["step"] == 2


# ----------------------------------------------------------------------------- runs


def test_cubic_follows_formula_and_hits_target(ckpt: str, tmp_path: Path) -> None:
    c = cfg(ckpt, tmp_path / "cubic", schedule="cubic", target="sparsity:0.8", epochs=4,
            initial_sparsity=0.1, prune_start=0.4, prune_end=3.0, prune_every=2,
            first_last_max=0.5)
    s = run_finetune(c)
    t0, n, dt = 2, 6, 2  # 0.4 and 3.0 epochs of 5 steps; (15 - 2) // 2 = 6 pruning steps
    events = s["prune_events"]
    assert [e["step"] for e in events] == [t0 + k * dt for k in range(n + 1)]
    total = sum(p.numel() for n_, p in create_model("digits_cnn").named_parameters()
                if n_ in prunable_weights(create_model("digits_cnn")))
    for e in events:
        expect = 0.8 + (0.1 - 0.8) * (1 - (e["step"] - t0) / (n * dt)) ** 3
        assert e["level"] == pytest.approx(expect)
        assert e["weight_sparsity"] == pytest.approx(expect, abs=1.0 / total)
    model = create_model("digits_cnn", checkpoint=tmp_path / "cubic" / "model.pt")
    assert abs(sparsity(model) - 0.8) <= 0.005
    per = layer_sparsity(model)
    names = prunable_weights(model)
    assert per[names[0]] <= 0.5 + 1e-6 and per[names[-1]] <= 0.5 + 1e-6
    rows = (tmp_path / "cubic" / "metrics.csv").read_text().splitlines()
    assert len(rows) == 1 + 4 and (tmp_path / "cubic" / "tb").is_dir()


def test_structured_iterative_rollback_keeps_checkpointed_model(ckpt: str,
                                                                tmp_path: Path) -> None:
    seen: dict[int, list[dict]] = {}
    corrupted = []

    def before(model, stage):
        seen.setdefault(stage["index"], []).append(state(model))

    def after(model, stage):
        if stage["round"] == 2 and not corrupted:  # an injected bad round
            corrupted.append(stage["index"])
            with torch.no_grad():
                for p in model.parameters():
                    p.copy_(torch.randn_like(p))

    c = cfg(ckpt, tmp_path / "it", schedule="iterative", target="flops:0.5", rounds=2,
            round_epochs=0.4, epochs=2, max_drop=30.0, max_retries=1)
    # 30 points: far above a real round's drop on digits, far below the injected one's
    s = run_finetune(c, hooks={"before_stage": before, "after_stage": after})
    assert len(s["rollbacks"]) == 1
    rb = s["rollbacks"][0]
    assert rb["round"] == 2 and rb["level"] == 1.0 and rb["retry_level"] == pytest.approx(0.75)
    assert rb["drop"] > 30.0
    # the retry started from the checkpoint taken before the bad round, not the bad model
    first, retry = seen[1][0], seen[1][1]
    ck = read_file(tmp_path / "it" / "checkpoints" / "stage_01.pt")["model"]
    assert same(retry, ck) and same(first, retry)
    assert [st["level"] for st in s["stages"]] == [0.5, 0.75, 1.0, 1.0]
    assert [r["level"] for r in s["rounds"]] == [0.5, 0.75, 1.0]
    assert s["final"]["macs_ratio"] <= 0.5 + 1e-6 and s["final"]["val_top1"] > 50
    model = create_model("digits_cnn", checkpoint=tmp_path / "it" / "model.pt")
    assert model.features[0].out_channels < 32
    assert json.loads((tmp_path / "it" / "policy.json").read_text())["format"] == "amc-policy"


def test_a_round_accepted_despite_its_drop_says_so(ckpt: str, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture) -> None:
    """Out of retries (--max-retries 0), a round that fell more than --max-drop is kept, and
    a line says so (it was recorded in summary.json only)."""
    def after(model, stage):
        if stage["round"] == 2:  # an injected bad round
            with torch.no_grad():
                for p in model.parameters():
                    p.copy_(torch.randn_like(p))

    c = cfg(ckpt, tmp_path / "it", schedule="iterative", target="flops:0.5", rounds=2,
            round_epochs=0.4, epochs=1, max_drop=30.0, max_retries=0)
    s = run_finetune(c, hooks={"after_stage": after})
    assert not s["rollbacks"] and s["rounds"][-1]["accepted_despite_drop"]
    out = capsys.readouterr().out
    assert re.search(r"round 2: val [\d.]+% is [\d.]+ points below the previous round; "
                     r"accepted after 0 rollback\(s\) \(--max-retries 0\)", out), out


def test_resume_after_kill_continues_at_the_right_epoch(ckpt: str, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    kw = dict(schedule="cubic", target="sparsity:0.7", epochs=3, prune_end=2.6)
    full = run_finetune(cfg(ckpt, tmp_path / "full", **kw))

    class Killed(Exception):
        pass

    def kill(row):
        if row["epoch"] == 2:
            raise Killed

    c = cfg(ckpt, tmp_path / "killed", **kw)
    with pytest.raises(Killed):
        run_finetune(c, hooks={"on_epoch": kill})
    last = read_file(tmp_path / "killed" / "checkpoints" / "last.pt")
    assert last["step"] == 2 * SPE and last["optimizer"]["state"]

    calls = []
    real = ft.train

    def spy(model, data, tcfg, *a, **kw):
        # copied: train updates the momentum buffers in place
        calls.append({k: copy.deepcopy(kw[k]) for k in ("start_step", "optimizer_state")})
        return real(model, data, tcfg, *a, **kw)

    monkeypatch.setattr(ft, "train", spy)
    s = run_finetune(c, resume=True)
    assert calls[0]["start_step"] == 2 * SPE
    got, saved = calls[0]["optimizer_state"], last["optimizer"]
    assert got["param_groups"] == saved["param_groups"]
    assert all(torch.equal(got["state"][i]["momentum_buffer"], saved["state"][i]
                           ["momentum_buffer"]) for i in saved["state"])
    epochs = [r.split(",")[5] for r in
              (tmp_path / "killed" / "metrics.csv").read_text().splitlines()[1:]]
    assert epochs == ["1", "2", "3"]
    assert [e["step"] for e in full["prune_events"]][-3:] == [11, 12, 13]  # after the kill
    assert [e["step"] for e in s["prune_events"]] == [e["step"] for e in full["prune_events"]]
    a = create_model("digits_cnn", checkpoint=tmp_path / "full" / "model.pt").state_dict()
    b = create_model("digits_cnn", checkpoint=tmp_path / "killed" / "model.pt").state_dict()
    assert same(a, b, atol=1e-5)
    # --resume of the finished run says so and writes nothing (no file touched)
    from amc.cli import main

    run = tmp_path / "killed"
    stamps = {p: p.stat().st_mtime_ns for p in run.rglob("*") if p.is_file()}
    assert main(["finetune", "--resume", str(run)]) == 0
    assert {p: p.stat().st_mtime_ns for p in run.rglob("*") if p.is_file()} == stamps


def test_lottery_resets_survivors_to_init(ckpt: str, tmp_path: Path) -> None:
    torch.manual_seed(0)  # train_digits initialised digits_cnn under seed 0
    init = state(create_model("digits_cnn"))
    trained = create_model("digits_cnn", checkpoint=ckpt)
    names = prunable_weights(trained)
    masks = magnitude_masks(trained, 0.8, names)
    got = {}
    c = cfg(ckpt, tmp_path / "lt", schedule="lottery", target="sparsity:0.8",
            lottery_init="seed:0", epochs=1)
    s = run_finetune(c, hooks={"after_begin": lambda m, st: got.update(state(m))})
    for k, v in init.items():
        expect = v * masks[k] if k in masks else v
        assert torch.equal(got[k], expect), k
    assert abs(s["final"]["weight_sparsity"] - 0.8) <= 0.005


def test_dense_finetune_cli_and_errors(ckpt: str, tmp_path: Path,
                                       capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "dense"
    args = ["finetune", "--checkpoint", ckpt, "--train-limit", "320", "--batch-size", "64",
            "--epochs", "1", "--out", str(out), "--no-test-every-epoch"]
    assert main(args) == 0
    assert {"config.json", "metrics.csv", "summary.json", "model.pt", "tb",
            "checkpoints"} <= {p.name for p in out.iterdir()}
    s = json.loads((out / "summary.json").read_text())
    assert s["final"]["macs_ratio"] == 1.0 and s["speed"]["dense"]["images_per_s"] > 0
    create_model("digits_cnn", checkpoint=out / "model.pt")
    capsys.readouterr()
    bad = [
        args,  # the run directory exists
        ["finetune", "--target", "sparsity:1.5", "--out", str(tmp_path / "x")],
        ["finetune", "--schedule", "iterative", "--out", str(tmp_path / "x")],
        ["finetune", "--schedule", "lottery", "--target", "sparsity:0.5",
         "--out", str(tmp_path / "x")],
        ["finetune", "--schedule", "cubic", "--target", "2:4", "--out", str(tmp_path / "x")],
        ["finetune", "--schedule", "warp", "--out", str(tmp_path / "x")],
        ["finetune", "--resume", str(tmp_path / "nothing")],
    ]
    for argv in bad:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert err.startswith("amc: error: ") and err.count("\n") == 1, err


def test_out_folder_of_other_files_needs_force(ckpt: str, tmp_path: Path) -> None:
    from amc.utils.errors import AmcError

    out = tmp_path / "proj"
    out.mkdir()
    (out / "notes.md").write_text("mine\n")
    with pytest.raises(AmcError, match="holds files amc did not write"):
        run_finetune(cfg(ckpt, out, epochs=1))
    assert [p.name for p in out.iterdir()] == ["notes.md"]
    run_finetune(cfg(ckpt, out, epochs=1, force=True))
    assert (out / "notes.md").read_text() == "mine\n" and (out / "model.pt").is_file()


def test_failed_start_leaves_no_folder(tmp_path: Path) -> None:
    """A model that does not fit the data is refused before the run folder is made."""
    from amc.utils.errors import AmcError

    out = tmp_path / "new" / "run"
    with pytest.raises(AmcError, match="--num-classes 10"):
        run_finetune(cfg(None, out, num_classes=5, epochs=1))
    assert not (tmp_path / "new").exists()


@pytest.mark.parametrize("schedule", ["iterative", "lottery"])
def test_option_a_resnet_with_units_all_prunes_its_residual_stream(tmp_path: Path,
                                                                    schedule: str) -> None:
    """Iterative masks and the lottery reset on a CIFAR ResNet with ``--units all``: both act
    on the network with selection-conv shortcuts, and the file they write reloads."""
    from amc.data.synthetic import write_synthetic_imagefolder

    root = tmp_path / "synth"
    write_synthetic_imagefolder(root, 64, 16, classes=4, min_size=32, max_size=32)
    c = FinetuneConfig(model="resnet20", num_classes=4, data=f"imagefolder:{root}",
                       train_limit=64, batch_size=32, lr=0.05, epochs=2,
                       test_every_epoch=False, units="all", schedule=schedule,
                       target="flops:0.5", rounds=2, round_epochs=0.5, lottery_init="seed:0",
                       out=str(tmp_path / "ft"))
    s = run_finetune(c)
    assert s["final"]["macs_ratio"] <= 0.5 + 1e-6
    model = create_model("resnet20", num_classes=4, checkpoint=tmp_path / "ft" / "model.pt")
    assert isinstance(model.layer2[0].shortcut, torch.nn.Conv2d)
    assert model.layer1[0].conv2.out_channels < 16 and model.layer3[2].conv2.out_channels < 64


def test_distillation_by_default_teaches_pruned_networks_only(ckpt: str, tmp_path: Path
                                                              ) -> None:
    """kd_weight defaults to 0.5: a run that prunes distils from the dense model (its
    teacher's weights are the checkpoint's); a dense fine-tune, with nothing to recover, has
    no teacher; --kd-weight 0 turns it off."""
    dense = create_model("digits_cnn", checkpoint=ckpt).state_dict()
    pruning = ft.Runner(cfg(ckpt, tmp_path / "p", target="flops:0.5"))
    assert pruning.cfg.kd_weight == 0.5 and pruning.teacher is not None
    assert all(torch.equal(v, dense[k]) for k, v in pruning.teacher.state_dict().items())
    assert ft.Runner(cfg(ckpt, tmp_path / "d")).teacher is None
    assert ft.Runner(cfg(ckpt, tmp_path / "o", target="flops:0.5", kd_weight=0.0)
                     ).teacher is None


def test_a_pruned_checkpoint_is_fine_tuned_as_pruned_and_distils_from_a_teacher(
        ckpt: str, tmp_path: Path, caplog: pytest.LogCaptureFixture,
        capsys: pytest.CaptureFixture) -> None:
    """An `amc apply` output fine-tuned: it is no dense network (its MACs against the
    architecture's are recorded and printed), it has nothing to distil from (a notice says
    so), and --teacher DENSE makes the dense model its teacher, which changes the training."""
    from amc.cost.macs import model_cost
    from amc.models.checkpoint import save_model
    from amc.prune.units import PrunableModel

    dense = create_model("digits_cnn", checkpoint=ckpt)
    pm = PrunableModel(dense, (1, 8, 8))
    pruned = pm.prune([0.5] * len(pm.units))
    path = str(save_model(pruned, tmp_path / "pruned.pt", "digits_cnn"))
    ratio = model_cost(pruned, (1, 8, 8))[0] / model_cost(dense, (1, 8, 8))[0]
    assert ratio < 0.9
    with caplog.at_level("WARNING"):
        plain = ft.Runner(cfg(path, tmp_path / "a"))
    assert plain.start_macs_ratio == pytest.approx(ratio) and plain.teacher is None
    assert "already pruned" in caplog.text and "pass --teacher" in caplog.text
    taught = ft.Runner(cfg(path, tmp_path / "b", teacher=ckpt))
    assert all(torch.equal(v, dense.state_dict()[k])
               for k, v in taught.teacher.state_dict().items())
    assert ft.Runner(cfg(ckpt, tmp_path / "c")).start_macs_ratio == 1.0

    losses = {}
    for name, extra in (("plain", []), ("taught", ["--teacher", ckpt])):
        out = tmp_path / f"cli_{name}"
        assert main(["finetune", "--checkpoint", path, "--train-limit", "320", "--batch-size",
                     "64", "--epochs", "1", "--no-test-every-epoch", "--out", str(out),
                     *extra]) == 0
        s = json.loads((out / "summary.json").read_text())["final"]
        assert s["start_macs_ratio"] == pytest.approx(ratio) and s["macs_ratio"] == 1.0
        losses[name] = (out / "metrics.csv").read_text()
        line = capsys.readouterr().out
        assert f"digits_cnn pruned ({ratio:.3f} of the architecture's MACs)" in line, line
        assert "of the start" in line and "of dense" not in line, line
    assert losses["plain"] != losses["taught"]  # the teacher's logits enter the loss


def test_a_pruning_stage_starts_from_recalibrated_batchnorm(ckpt: str, tmp_path: Path) -> None:
    """Once a stage prunes, BatchNorm's statistics are the pruned network's on the
    calibration images, not the dense network's (a short fine-tune would not replace them)."""
    from amc.prune.repair import recalibrate_bn

    runner = ft.Runner(cfg(ckpt, tmp_path / "r", target="flops:0.5", kd_weight=0.0))
    runner.st = runner.fresh_state()
    stage = next(s for s in runner.st["stages"] if s["level"] is not None)
    model = runner.begin(ft.bake(runner.dense), stage)
    calib = runner.data.calibration(256, runner.cfg.seed)[0]
    again = recalibrate_bn(copy.deepcopy(model), calib.split(64))
    bns = [(a, b) for a, b in zip(model.modules(), again.modules())
           if isinstance(a, torch.nn.BatchNorm2d)]
    assert bns and all(torch.allclose(a.running_mean, b.running_mean, atol=1e-5)
                       and torch.allclose(a.running_var, b.running_var, atol=1e-5)
                       for a, b in bns)


def test_a_policy_is_fine_tuned_as_made(ckpt: str, tmp_path: Path) -> None:
    """--policy prunes exactly the policy's ratios, as amc apply does: a policy made with
    --max-ratio 0.9 is not capped again by the fine-tune's --max-ratio (0.8 by default)."""
    from amc.prune.policy import apply_policy, load_policy, make_policy
    from amc.prune.units import PrunableModel

    dense = create_model("digits_cnn", checkpoint=ckpt)
    pm = PrunableModel(dense, (1, 8, 8), "all")
    ratios = [0.9] + [0.3] * (len(pm.units) - 1)
    path = make_policy(pm, ratios, "digits_cnn", "flops:0.5", "random",
                       max_ratio=0.9).save(tmp_path / "p.json")
    runner = ft.Runner(cfg(ckpt, tmp_path / "r", policy=str(path), kd_weight=0.0))
    assert runner.cfg.max_ratio == 0.8 and runner.pruner.ratios == ratios
    applied = apply_policy(dense, load_policy(path), "digits_cnn")
    final = runner.pruner.pm_dense.prune(runner.pruner.ratios)
    assert [p.shape for p in final.parameters()] == [p.shape for p in applied.parameters()]


def test_the_eta_is_never_negative(tmp_path: Path) -> None:
    """Steps past the planned total (a rolled-back round's retries) leave an ETA of zero, not
    a negative one (printed as -1:59:46)."""
    from amc.train.runlog import RunLog

    log = RunLog(tmp_path, total_steps=10)
    for _ in range(12):
        log.step()
    assert log.eta() == 0.0
    log.close()


def test_each_iterative_round_records_its_pruned_val(ckpt: str, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture) -> None:
    """Every round of an iterative fine-tune records val top-1 right after its pruning,
    before its training (only the val after its training was recorded, so what each step's
    pruning cost did not show): the value a hook measures on the model then, not the
    round's val after training nor the previous round's."""
    from amc.models.evaluate import evaluate

    data = ft.subset(load_dataset("digits"), cfg(ckpt, tmp_path / "x"))
    seen: dict[int, float] = {}

    def after_begin(model, stage):
        if stage["check"]:
            seen[stage["round"]] = evaluate(model, *data.tensors("val")).top1

    c = cfg(ckpt, tmp_path / "it", schedule="iterative", target="flops:0.3", rounds=3,
            round_epochs=0.5, epochs=2, kd_weight=0.0, max_drop=-1.0)  # no rollbacks
    s = run_finetune(c, hooks={"after_begin": after_begin})
    rounds = s["rounds"]
    assert [r["round"] for r in rounds] == sorted(seen) and len(rounds) == 3
    for r in rounds:
        assert r["pruned_val_top1"] == pytest.approx(seen[r["round"]], abs=1e-9)
    # a round's pruning costs val below where the previous round ended, and its training
    # moves it (neither the previous round's val nor its own val after training)
    assert any(r["pruned_val_top1"] < r["prev_val_top1"] for r in rounds), rounds
    assert any(r["pruned_val_top1"] != r["val_top1"] for r in rounds), rounds
    # and on the command's last lines, round by round
    capsys.readouterr()
    assert main(["finetune", "--checkpoint", ckpt, "--schedule", "iterative", "--target",
                 "flops:0.3", "--rounds", "2", "--round-epochs", "0.4", "--epochs", "1",
                 "--max-drop", "-1", "--train-limit", "320", "--batch-size", "64",
                 "--no-test-every-epoch", "--out", str(tmp_path / "cli")]) == 0
    got = json.loads((tmp_path / "cli" / "summary.json").read_text())["rounds"]
    assert ("rounds, val top-1 after pruning -> after training: " + ", ".join(
        f"{r['round']} {r['pruned_val_top1']:.2f} -> {r['val_top1']:.2f}%" for r in got)
        in capsys.readouterr().out) and len(got) == 2


def test_a_oneshot_fine_tune_reports_the_network_it_starts_from(ckpt: str, tmp_path: Path,
                                                                capsys: pytest.CaptureFixture
                                                                ) -> None:
    """The summary and the last line give val top-1 of the pruned, recalibrated network
    before its fine-tune (only the dense model's was recorded), so what the fine-tune gained
    shows."""
    from amc.models.evaluate import evaluate

    data = ft.subset(load_dataset("digits"), cfg(ckpt, tmp_path / "x"))
    seen = []

    def after_begin(model, stage):
        seen.append(evaluate(model, *data.tensors("val")).top1)

    s = run_finetune(cfg(ckpt, tmp_path / "a", target="flops:0.3", kd_weight=0.0),
                     hooks={"after_begin": after_begin})
    assert len(seen) == 1 and s["pruned_val_top1"] == pytest.approx(seen[0])
    assert s["pruned_val_top1"] < s["start_val_top1"]  # the dense model's, recorded before
    assert main(["finetune", "--checkpoint", ckpt, "--target", "flops:0.3", "--train-limit",
                 "320", "--batch-size", "64", "--epochs", "1", "--no-test-every-epoch",
                 "--out", str(tmp_path / "b")]) == 0
    pruned = json.loads((tmp_path / "b" / "summary.json").read_text())["pruned_val_top1"]
    assert f"% ({pruned:.2f}% pruned, before fine-tuning)" in capsys.readouterr().out
