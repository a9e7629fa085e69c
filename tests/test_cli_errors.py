"""The ``amc`` command line on bad input: exit code 2, one ``amc: error:`` line, no traceback.

A few cases run ``python -m amc.cli`` in a subprocess (so a traceback, a stray warning or a
wrong exit status of the real program shows). Starting Python and importing torch takes ~3 s,
so one fixture runs them three at a time and the tests check the results; every other case
goes through the same ``amc.cli.main`` in-process.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch

from amc.cli import main
from amc.models.registry import create_model

pytestmark = pytest.mark.cli

# case id -> (argv, substrings the error line must contain); these run as subprocesses
ERROR_CASES: dict[str, tuple[list[str], list[str]]] = {
    "unknown-model": (["profile", "--model", "nope"], ["unknown model 'nope'", "amc models"]),
    "search-episodes-0": (["search", "--checkpoint", "{ckpt}", "--episodes", "0", "--out",
                           "{tmp}/s0"], ["--episodes must be at least 1, got 0"]),
    "pickled-code": (["profile", "--model", "digits_cnn", "--checkpoint", "{tmp}/evil.pt"],
                     ["evil.pt", "posix.system", "--unsafe-load would run the file's code"]),
}

# paths the subprocess cases above must not leave behind
ABSENT_AFTER = {"search-episodes-0": "s0"}

# more bad inputs, checked in-process through amc.cli.main (a subprocess costs ~3 s of torch
# import each; the code path after the import is the same)
IN_PROCESS_CASES: dict[str, tuple[list[str], list[str]]] = {
    "missing-checkpoint": (["profile", "--model", "resnet20", "--checkpoint", "{tmp}/none.pt"],
                           ["none.pt", "does not exist"]),
    "other-architecture": (["profile", "--model", "resnet32", "--checkpoint", "{tmp}/r20.pt"],
                           ["r20.pt", "missing tensor 'layer1.3.conv1.weight'"]),
    "shape-mismatch": (["profile", "--model", "digits_cnn", "--checkpoint", "{tmp}/d5.pt"],
                       ["'classifier.weight'", "(5, 128)", "(10, 128)"]),
    "random-bytes": (["profile", "--model", "digits_cnn", "--checkpoint", "{tmp}/random.bin"],
                     ["random.bin", "not a PyTorch checkpoint"]),
    "text-file": (["profile", "--model", "digits_cnn", "--checkpoint", "{tmp}/notes.txt"],
                  ["notes.txt", "PyTorch checkpoint"]),
    "missing-data-dir": (["eval", "--model", "resnet20", "--data", "cifar10", "--data-dir",
                          "/nonexistent"], ["'/nonexistent' does not exist", "--data-dir"]),
    "unknown-dataset": (["eval", "--model", "digits_cnn", "--data", "mnist"],
                        ["unknown dataset 'mnist'"]),
    "bad-split": (["eval", "--model", "digits_cnn", "--split", "foo"],
                  ["unknown split 'foo'", "train, val, test"]),
    "export-out-under-a-file": (["export", "--checkpoint", "{ckpt}", "--out",
                                 "{tmp}/notes.txt/m.onnx"],
                                ["--out", "notes.txt is a file, not a folder"]),
    "unknown-tv-model": (["profile", "--model", "tv:nope"], ["unknown model 'tv:nope'"]),
    "extra-tensors": (["profile", "--model", "resnet20", "--checkpoint", "{tmp}/r32.pt"],
                      ["unexpected tensor 'layer1.3.conv1.weight'"]),
    "empty-file": (["profile", "--model", "digits_cnn", "--checkpoint", "{tmp}/empty.pt"],
                   ["empty.pt", "PyTorch checkpoint"]),
    "zip-not-torch": (["profile", "--model", "digits_cnn", "--checkpoint", "{tmp}/zip.pt"],
                      ["zip.pt", "PyTorch checkpoint"]),
    "pickled-objects": (["profile", "--model", "digits_cnn", "--checkpoint",
                         "{tmp}/pickled.pt"], ["pickled objects", "--unsafe-load"]),
    "directory-as-checkpoint": (["profile", "--model", "digits_cnn", "--checkpoint", "{tmp}"],
                                ["is not a file"]),
    "no-state-dict": (["profile", "--model", "digits_cnn", "--checkpoint", "{tmp}/list.pt"],
                      ["holds no state dict"]),
    "data-dir-is-a-file": (["eval", "--model", "resnet20", "--data", "cifar10", "--data-dir",
                            "{tmp}/notes.txt"], ["is not a directory"]),
    "empty-data-dir": (["eval", "--model", "resnet20", "--data", "cifar10", "--data-dir",
                        "{tmp}/emptydir"], ["no CIFAR-10 found"]),
    "no-model-option": (["profile"], ["no --model given and no amc checkpoint names one"]),
    # an amc model file names its model: a command without --model works on it (here it then
    # refuses the digits data, which shows the model it chose), --model another is refused
    **{f"{c}-takes-the-model-an-amc-checkpoint-names": (
        [c, "--checkpoint", "{tmp}/r20amc.pt", "--out", "{tmp}/new/x"],
        ["resnet20 cannot take digits images"]) for c in ("search", "finetune", "compare")},
    "eval-amc-checkpoint-of-another-model": (
        ["eval", "--model", "resnet56", "--checkpoint", "{tmp}/r20amc.pt"],
        ["r20amc.pt holds a resnet20, not a resnet56; pass --model resnet20"]),
    "report-pruned-file-names-no-model": (
        ["report", "--dense", "{tmp}/r20.pt", "--pruned", "{tmp}/r20.pt", "--data", "digits",
         "--out", "{tmp}/new/r"], ["--pruned", "r20.pt does not name one; pass --model"]),
    "search-plain-checkpoint-without-model": (
        ["search", "--checkpoint", "{tmp}/r20.pt", "--out", "{tmp}/new/s"],
        ["r20.pt does not fit digits_cnn", "or the --model it was made for"]),
    "finetune-teacher-without-distillation": (
        ["finetune", "--checkpoint", "{ckpt}", "--teacher", "{ckpt}", "--kd-weight", "0",
         "--out", "{tmp}/new/f"], ["--teacher is read only with distillation on"]),
    "finetune-teacher-missing": (
        ["finetune", "--checkpoint", "{ckpt}", "--teacher", "{tmp}/none.pt", "--out",
         "{tmp}/new/f"], ["--teacher '", "none.pt' is no file; pass the dense checkpoint"]),
    "unknown-command": (["frobnicate"], ["frobnicate"]),
    "bad-int-option": (["eval", "--model", "digits_cnn", "--batch-size", "many"], ["many"]),
    # counts and sizes: refused before anything is read or written
    "search-negative-episodes": (["search", "--checkpoint", "{ckpt}", "--episodes", "-3",
                                  "--out", "{tmp}/new/s"], ["--episodes must be at least 1"]),
    "search-negative-warmup": (["search", "--checkpoint", "{ckpt}", "--warmup-episodes", "-1",
                                "--out", "{tmp}/new/s"], ["--warmup-episodes", "at least 0"]),
    "search-negative-workers": (["search", "--checkpoint", "{ckpt}", "--workers", "-2",
                                 "--out", "{tmp}/new/s"], ["--workers", "at least 0"]),
    "search-hidden-0": (["search", "--checkpoint", "{ckpt}", "--hidden", "0", "--out",
                         "{tmp}/new/s"], ["--hidden must be at least 1"]),
    "finetune-epochs-0": (["finetune", "--checkpoint", "{ckpt}", "--epochs", "0", "--out",
                           "{tmp}/new/f"], ["--epochs must be positive"]),
    "compare-episodes-0": (["compare", "--checkpoint", "{ckpt}", "--episodes", "0", "--out",
                            "{tmp}/new/c"], ["--episodes must be at least 1"]),
    "compare-reward-only-without-reconstruct": (
        ["compare", "--checkpoint", "{ckpt}", "--no-reconstruct", "--no-reconstruct-delivered",
         "--out",
         "{tmp}/new/c"], ["--no-reconstruct-delivered applies only with --reconstruct"]),
    "baseline-calib-size-0": (["baseline", "--checkpoint", "{ckpt}", "--calib-size", "0",
                               "--out", "{tmp}/new/p.json"], ["--calib-size", "at least 1"]),
    "export-calib-images-0": (["export", "--checkpoint", "{ckpt}", "--int8", "--calib-images",
                               "0", "--out", "{tmp}/new/m.onnx"], ["--calib-images"]),
    "eval-batch-size-0": (["eval", "--checkpoint", "{ckpt}", "--batch-size", "0"],
                          ["--batch-size must be at least 1"]),
    "eval-negative-threads": (["eval", "--checkpoint", "{ckpt}", "--threads", "-1"],
                              ["--threads must be at least 0"]),
    "search-negative-anchor": (["search", "--checkpoint", "{ckpt}", "--anchor-every", "-1",
                                "--out", "{tmp}/new/s"], ["--anchor-every must be at least 0"]),
    "search-pair-moves-above-1": (["search", "--checkpoint", "{ckpt}", "--pair-moves", "1.5",
                                   "--out", "{tmp}/new/s"],
                                  ["--pair-moves must be in [0, 1], got 1.5"]),
    "search-zero-finalist-images": (["search", "--checkpoint", "{ckpt}", "--finalists", "3",
                                     "--finalist-images", "0", "--out", "{tmp}/new/s"],
                                    ["--finalist-images must be at least 1, got 0"]),
    "compare-negative-finalist-margin": (["compare", "--checkpoint", "{ckpt}", "--finalists", "3",
                                          "--finalist-margin-se", "-1", "--out", "{tmp}/new/c"],
                                         ["--finalist-margin-se must be at least 0, got -1"]),
    "search-zero-time-limit": (["search", "--checkpoint", "{ckpt}", "--time-limit", "0",
                                "--out", "{tmp}/s"], ["--time-limit must be positive"]),
    "search-time-limit-finalists-without-limit": (
        ["search", "--checkpoint", "{ckpt}", "--time-limit-finalists", "--out", "{tmp}/new/s"],
        ["--time-limit-finalists puts the finalists inside", "add --time-limit SECONDS"]),
    "compare-time-limit-finalists-without-limit": (
        ["compare", "--checkpoint", "{ckpt}", "--time-limit-finalists", "--out", "{tmp}/new/c"],
        ["--time-limit-finalists", "or --sweep-time-limit"]),
    "search-negative-rescore-top": (["search", "--checkpoint", "{ckpt}", "--rescore-top", "-1",
                                     "--out", "{tmp}/new/s"],
                                    ["--rescore-top must be at least 0"]),
    "search-unknown-score-amp": (["search", "--checkpoint", "{ckpt}", "--score-amp", "fp8",
                                  "--out", "{tmp}/new/s"],
                                 ["unknown --score-amp 'fp8'", "auto, bf16, fp16, off"]),
    "search-unknown-envs-on": (["search", "--checkpoint", "{ckpt}", "--envs-on", "gpu",
                                "--out", "{tmp}/new/s"],
                               ["unknown --envs-on 'gpu'", "driver, workers"]),
    "search-unknown-recal-on": (["search", "--checkpoint", "{ckpt}", "--recal-on", "test",
                                 "--out", "{tmp}/new/s"],
                                ["unknown --recal-on 'test'", "calib, val"]),
    "search-envs-per-worker-on-workers": (["search", "--checkpoint", "{ckpt}", "--workers", "2",
                                           "--envs-on", "workers", "--envs-per-worker", "2",
                                           "--out", "{tmp}/new/s"],
                                          ["--envs-per-worker 2 needs the envs on the driver"]),
    "compare-envs-per-worker-on-workers": (["compare", "--checkpoint", "{ckpt}",
                                            "--envs-on", "workers", "--envs-per-worker", "2",
                                            "--out", "{tmp}/new/c"],
                                           ["--envs-per-worker 2 needs the envs on the driver"]),
    "search-zero-envs-per-worker": (["search", "--checkpoint", "{ckpt}", "--envs-per-worker",
                                     "0", "--out", "{tmp}/new/s"],
                                    ["--envs-per-worker must be at least 1"]),
    "finetune-unknown-amp": (["finetune", "--checkpoint", "{ckpt}", "--amp", "fp8", "--out",
                              "{tmp}/new/f"], ["unknown --amp 'fp8'", "auto, bf16, fp16, off"]),
    "finetune-kd-weight-above-1": (["finetune", "--checkpoint", "{ckpt}", "--kd-weight", "1.5",
                                    "--out", "{tmp}/new/f"],
                                   ["--kd-weight must be in [0, 1], got 1.5"]),
    "compare-kd-temperature-0": (["compare", "--checkpoint", "{ckpt}", "--kd-temperature", "0",
                                  "--out", "{tmp}/new/c"], ["--kd-temperature must be positive"]),
    "compare-unknown-finetune-from": (["compare", "--checkpoint", "{ckpt}", "--finetune-from",
                                       "scratch", "--out", "{tmp}/new/c"],
                                      ["unknown --finetune-from 'scratch'", "pruned or delivered"]),
    "baseline-unknown-score-amp": (["baseline", "--checkpoint", "{ckpt}", "--score-amp",
                                    "half", "--out", "{tmp}/new/p.json"],
                                   ["unknown --score-amp 'half'"]),
    "search-missing-blocks-policy": (["search", "--checkpoint", "{ckpt}", "--blocks-policy",
                                      "{tmp}/none.json", "--out", "{tmp}/new/s"],
                                     ["--blocks-policy", "none.json does not exist"]),
    "demo-episodes-0": (["demo", "--episodes", "0", "--out", "{tmp}/new/d"],
                        ["--episodes must be at least 1"]),
    "demo-bad-budget": (["demo", "--budget", "flops:2", "--out", "{tmp}/new/d"],
                        ["bad budget 'flops:2'", "0 < fraction <= 1"]),
    "profile-input-size-0": (["profile", "--model", "digits_cnn", "--input-size", "0", "8",
                              "8"], ["--input-size must be at least 1, got 0 8 8"]),
    "profile-wrong-input-size": (["profile", "--model", "digits_cnn", "--input-size", "3", "8",
                                  "8"], ["cannot take inputs of size 3x8x8", "--input-size"]),
    # an --out that cannot be written: one line naming it, in every command
    **{f"{argv[0]}-out-under-a-file": (argv, ["notes.txt is a file, not a folder"])
       for argv in (
        ["search", "--checkpoint", "{ckpt}", "--out", "{tmp}/notes.txt/s"],
        ["finetune", "--checkpoint", "{ckpt}", "--out", "{tmp}/notes.txt/f"],
        ["baseline", "--checkpoint", "{ckpt}", "--out", "{tmp}/notes.txt/p.json"],
        ["sensitivity", "--checkpoint", "{ckpt}", "--out", "{tmp}/notes.txt/s.csv"],
        ["apply", "--checkpoint", "{ckpt}", "--policy", "{tmp}/none.json", "--out",
         "{tmp}/notes.txt/p.pt"],
        ["profile", "--model", "digits_cnn", "--json", "{tmp}/notes.txt/p.json"],
        ["compare", "--checkpoint", "{ckpt}", "--out", "{tmp}/notes.txt/c"],
        ["report", "--dense", "{ckpt}", "--pruned", "{ckpt}", "--data", "digits", "--out",
         "{tmp}/notes.txt/r"],
        ["demo", "--out", "{tmp}/notes.txt/d"],
    )},
    **({"search-out-read-only": (["search", "--checkpoint", "{ckpt}", "--out", "/proc/amc/s"],
                                 ["--out /proc/amc/s cannot be written", "/proc"]),
        "export-out-read-only": (["export", "--checkpoint", "{ckpt}", "--out", "/proc/m.onnx"],
                                 ["--out /proc/m.onnx cannot be written"])}
       if Path("/proc/self").is_dir() else {}),
    # an --out folder holding files amc did not write is refused without --force
    "search-foreign-folder": (["search", "--checkpoint", "{ckpt}", "--out", "{tmp}/proj"],
                              ["proj holds files amc did not write", "'notes.md'", "--force"]),
    "finetune-foreign-folder": (["finetune", "--checkpoint", "{ckpt}", "--out", "{tmp}/proj"],
                                ["proj holds files amc did not write", "--force"]),
    # a model whose classifier does not match the data's classes
    **{f"{cmd}-class-mismatch": ([cmd, "--model", "digits_cnn", "--num-classes", "5", *extra],
                                 ["5 outputs", "digits has 10 classes", "--num-classes 10"])
       for cmd, extra in (("search", ["--out", "{tmp}/new/s"]),
                          ("finetune", ["--out", "{tmp}/new/f"]),
                          ("compare", ["--strategies", "uniform", "--out", "{tmp}/new/c"]),
                          ("baseline", ["--out", "{tmp}/new/p.json"]),
                          ("eval", []))},
    "search-model-takes-other-images": (["search", "--model", "tv:resnet18", "--out",
                                         "{tmp}/new/s"], ["cannot take digits images"]),
    "search-unknown-reward": (["search", "--checkpoint", "{ckpt}", "--reward", "capacty",
                               "--out", "{tmp}/new/s"],
                              ["unknown reward 'capacty'", "latency, capacity"]),
    "compare-seeds-0": (["compare", "--checkpoint", "{ckpt}", "--seeds", "0", "--out",
                         "{tmp}/new/c"], ["--seeds must be at least 1, got 0"]),
    "finetune-label-smoothing-2": (["finetune", "--checkpoint", "{ckpt}", "--label-smoothing",
                                    "2", "--out", "{tmp}/new/f"],
                                   ["--label-smoothing must be in [0, 1], got 2.0"]),
    **{f"{cmd}-max-ratio-{v}": ([cmd, "--checkpoint", "{ckpt}", "--max-ratio", v, "--out", out],
                                [f"--max-ratio must lie in (0, 1), got {float(v)}"])
       for cmd, v, out in (("baseline", "1.5", "{tmp}/new/p.json"),
                           ("sensitivity", "-1", "{tmp}/new/s.csv"),
                           ("search", "1", "{tmp}/new/s"))},
    # outputs that exist are refused before any work, every file a command writes
    "profile-json-exists": (["profile", "--model", "digits_cnn", "--json", "{tmp}/notes.txt"],
                            ["notes.txt already exists", "--force", "another --json"]),
    "sensitivity-png-exists": (["sensitivity", "--checkpoint", "{ckpt}", "--out",
                                "{tmp}/sweep.csv"], ["sweep.png already exists", "--force"]),
    "compare-folder-with-a-table-but-no-comparison": (
        ["compare", "--checkpoint", "{ckpt}", "--out", "{tmp}/tables"],
        ["--out", "tables holds table.md and 1 more but no comparison (no config.json)"]),
    # --resume on another command's run
    "search-resume-a-finetune-run": (["search", "--resume", "{tmp}/ftrun"],
                                     ["ftrun is not an amc search run", "another command"]),
    "finetune-resume-a-search-run": (["finetune", "--resume", "{tmp}/searchrun"],
                                     ["searchrun is not an amc finetune run"]),
    # policies that do not fit the model
    "apply-policy-for-other-images": (["apply", "--checkpoint", "{ckpt}", "--policy",
                                       "{tmp}/p_rgb.json", "--out", "{tmp}/new/p.pt"],
                                      ["input size 3x32x32 does not fit digits_cnn",
                                       "pass a policy made for this model"]),
    "apply-policy-round-to-negative": (["apply", "--checkpoint", "{ckpt}", "--policy",
                                        "{tmp}/p_round.json", "--out", "{tmp}/new/p.pt"],
                                       ["has round_to -3", "at least 1 or null"]),
    "apply-factory-that-is-no-model": (["apply", "--model", "os:getcwd", "--checkpoint",
                                        "{ckpt}", "--policy", "{tmp}/p_rgb.json", "--out",
                                        "{tmp}/new/p.pt"],
                                       ["os:getcwd(num_classes=10) failed",
                                        "takes num_classes and returns an nn.Module"]),
    "apply-to-a-pruned-model": (["apply", "--checkpoint", "{tmp}/pruned.pt", "--policy",
                                 "{tmp}/p.json", "--out", "{tmp}/new/p.pt"],
                                ["the policy was made for 32 channels in unit 'features.0', "
                                 "which has 24 here", "dense model"]),
    "apply-policy-is-a-folder": (["apply", "--checkpoint", "{ckpt}", "--policy", "{tmp}/tables",
                                  "--out", "{tmp}/new/p.pt"], ["tables' is a folder"]),
    "search-resume-with-other-options": (["search", "--resume", "{tmp}/searchrun",
                                          "--episodes", "8"],
                                         ["--resume", "searchrun continues the run with the "
                                          "settings in its config.json; drop --episodes"]),
    "finetune-resume-with-other-options": (["finetune", "--resume", "{tmp}/ftrun", "--lr", "0.5",
                                            "--epochs", "3"], ["drop --lr and 1 more"]),
    "compare-strategy-twice": (["compare", "--checkpoint", "{ckpt}", "--strategies",
                                "uniform,global,uniform", "--out", "{tmp}/new/c"],
                               ["--strategies names uniform twice", "--seeds"]),
    "compare-more-finetunes-than-runs": (["compare", "--checkpoint", "{ckpt}", "--seeds", "1",
                                          "--finetune-runs", "3", "--out", "{tmp}/new/c"],
                                         ["--finetune-runs 3 is more than the --seeds 1 runs"]),
    "search-input-size-one-number": (["search", "--checkpoint", "{ckpt}", "--input-size", "8",
                                      "--out", "{tmp}/new/s"],
                                     ["--input-size takes three numbers, C H W; got 8"]),
    "search-negative-noise-sigma": (["search", "--checkpoint", "{ckpt}", "--noise-sigma", "-1",
                                     "--out", "{tmp}/new/s"],
                                    ["--noise-sigma must be at least 0, got -1.0"]),
    "export-pt-into-an-onnx-name": (["export", "--checkpoint", "{ckpt}", "--format", "pt",
                                     "--out", "{tmp}/new/m.onnx"],
                                    ["--out", "m.onnx and --format pt disagree"]),
    "export-onnx-into-a-pt-name": (["export", "--checkpoint", "{ckpt}", "--format", "onnx",
                                    "--out", "{tmp}/new/m.pt"],
                                   ["m.pt and --format onnx disagree"]),
    "nan-checkpoint": (["eval", "--model", "digits_cnn", "--checkpoint", "{tmp}/nan.pt"],
                       ["nan.pt holds NaN values in 'features.0.weight'", "finite weights"]),
    "apply-out-is-a-folder": (["apply", "--checkpoint", "{ckpt}", "--policy", "{tmp}/p.json",
                               "--out", "{tmp}/emptydir", "--force"],
                              ["emptydir is a folder, where a file is written"]),
}


class Pickled:
    """A class that weights-only loading must refuse."""


class Payload:
    """Pickles as a call of ``os.system`` (what a malicious checkpoint holds)."""

    def __reduce__(self):
        return os.system, ("echo payload-ran",)


def _env(tmp: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(OMP_NUM_THREADS="1", AMC_QUIET="1", AMC_CACHE_DIR=str(tmp / "cache"))
    return env


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory, digits_ckpt) -> Path:
    """A folder with the bad inputs and a copy of the session's digits checkpoint."""
    tmp = tmp_path_factory.mktemp("cli")
    torch.save(create_model("resnet20").state_dict(), tmp / "r20.pt")
    torch.save(create_model("resnet32").state_dict(), tmp / "r32.pt")
    torch.save(create_model("digits_cnn", num_classes=5).state_dict(), tmp / "d5.pt")
    torch.save([1, 2, 3], tmp / "list.pt")
    (tmp / "random.bin").write_bytes(torch.randint(0, 256, (4096,),
                                                   generator=torch.Generator().manual_seed(0))
                                     .to(torch.uint8).numpy().tobytes())
    (tmp / "notes.txt").write_text("hello\nthis is not a checkpoint\n")
    (tmp / "empty.pt").write_bytes(b"")
    (tmp / "emptydir").mkdir()
    torch.save({"weights": Pickled()}, tmp / "pickled.pt")
    torch.save({"state_dict": Payload()}, tmp / "evil.pt")
    (tmp / "proj").mkdir()
    (tmp / "proj" / "notes.md").write_text("the user's own notes\n")
    with zipfile.ZipFile(tmp / "zip.pt", "w") as z:
        z.writestr("x", "y")

    (tmp / "digits").mkdir()
    shutil.copy(digits_ckpt, tmp / "digits" / "digits_cnn.pt")
    (tmp / "sweep.png").write_bytes(b"the user's figure")
    nan = create_model("digits_cnn").state_dict()
    nan["features.0.weight"][0, 0, 0, 0] = float("nan")  # one value of a diverged run
    torch.save(nan, tmp / "nan.pt")
    (tmp / "tables").mkdir()
    for name in ("table.md", "pareto.png"):
        (tmp / "tables" / name).write_text("the user's own\n")
    for run, cfg in (("ftrun", {"model": "digits_cnn", "epochs": 1.0}),
                     ("searchrun", {"model": "digits_cnn", "episodes": 4,
                                    "budget": "flops:0.5"})):
        (tmp / run).mkdir()
        (tmp / run / "config.json").write_text(json.dumps(cfg))
    from amc.prune.policy import make_policy
    from amc.prune.units import PrunableModel

    pm = PrunableModel(create_model("digits_cnn", checkpoint=digits_ckpt), (1, 8, 8))
    doc = make_policy(pm, [0.25] * len(pm.units), "digits_cnn", "flops:0.5", "uniform").to_dict()
    (tmp / "p.json").write_text(json.dumps(doc))
    (tmp / "p_rgb.json").write_text(json.dumps({**doc, "input_size": [3, 32, 32]}))
    (tmp / "p_round.json").write_text(json.dumps({**doc, "round_to": -3}))
    from amc.models.checkpoint import save_model  # a model pruned once already

    save_model(pm.prune([0.25] * len(pm.units)), tmp / "pruned.pt", "digits_cnn")
    save_model(create_model("resnet20"), tmp / "r20amc.pt", "resnet20")  # names its model
    return tmp


@pytest.fixture(scope="module")
def cli_runs(bad_files) -> dict[str, tuple[subprocess.CompletedProcess, list[str]]]:
    """Run every subprocess case, a few side by side."""
    tmp = bad_files
    ckpt = tmp / "digits" / "digits_cnn.pt"

    from amc.data.datasets import load_dataset
    from amc.models.evaluate import evaluate

    data = load_dataset("digits")
    expected = evaluate(create_model("digits_cnn", checkpoint=ckpt), *data.tensors("test"))

    cases = {k: (_fill(argv, tmp), want) for k, (argv, want) in ERROR_CASES.items()}
    cases["eval-digits"] = (["eval", "--model", "digits_cnn", "--checkpoint", str(ckpt),
                             "--data", "digits"], [f"top-1 {expected.top1:.2f}%"])

    def run(argv: list[str]) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "amc.cli", *argv], cwd=tmp, env=_env(tmp),
                              capture_output=True, text=True, timeout=300)

    with ThreadPoolExecutor(max_workers=3) as pool:
        futures = {k: pool.submit(run, argv) for k, (argv, _) in cases.items()}
        return {k: (f.result(), cases[k][1]) for k, f in futures.items()}


@pytest.mark.parametrize("case", list(ERROR_CASES))
def test_bad_input_gives_one_error_line(cli_runs, bad_files, case):
    res, want = cli_runs[case]
    lines = res.stderr.strip().splitlines()
    assert "Traceback" not in res.stderr + res.stdout, res.stderr
    assert res.returncode == 2, res.stderr
    assert len(lines) == 1, res.stderr
    assert lines[0].startswith("amc: error: ")
    for w in want:
        assert w in lines[0], (w, lines[0])
    if case in ABSENT_AFTER:  # refused before anything was written: no half-made folder
        assert not (bad_files / ABSENT_AFTER[case]).exists()


TOP1 = re.compile(r"digits_cnn on digits/test \(360 images\): top-1 (\d+\.\d\d)%")


def test_eval_prints_top1(cli_runs):
    res, want = cli_runs["eval-digits"]
    assert res.returncode == 0, res.stderr
    assert "Traceback" not in res.stderr
    m = TOP1.search(res.stdout)
    assert m, res.stdout
    assert want[0] in res.stdout  # the same top-1 as evaluating in-process
    assert float(m.group(1)) > 50.0  # one epoch of training is far above chance (10 %)


def test_eval_takes_the_model_name_from_an_amc_checkpoint(bad_files, capsys, monkeypatch):
    monkeypatch.setenv("AMC_QUIET", "1")
    rc = main(["eval", "--checkpoint", str(bad_files / "digits" / "digits_cnn.pt")])
    out = capsys.readouterr().out
    assert rc == 0 and TOP1.search(out), out


def test_profile_takes_the_model_name_from_an_amc_checkpoint(bad_files, capsys):
    assert main(["profile", "--checkpoint", str(bad_files / "r20amc.pt")]) == 0
    out = capsys.readouterr().out
    assert "resnet20 at 3x32x32" in out and "total: 40.74M MACs" in out, out


def test_eval_without_a_checkpoint_says_the_weights_are_untrained(bad_files, capsys,
                                                                  monkeypatch):
    monkeypatch.setenv("AMC_QUIET", "1")
    ckpt = str(bad_files / "digits" / "digits_cnn.pt")
    for argv, note in ((["eval", "--model", "digits_cnn"], True),
                       (["eval", "--model", "digits_cnn", "--checkpoint", ckpt], False)):
        assert main(argv) == 0
        out = capsys.readouterr().out
        assert TOP1.search(out), out
        assert ("randomly initialised weights; pass --checkpoint" in out) == note, out


@pytest.mark.parametrize("case", list(IN_PROCESS_CASES))
def test_bad_input_in_process(bad_files, capsys, monkeypatch, case):
    monkeypatch.chdir(bad_files)
    argv = _fill(IN_PROCESS_CASES[case][0], bad_files)
    before = _snapshot(bad_files)
    try:
        rc = main(argv)
    except SystemExit as e:  # argparse errors exit from inside parse_args
        rc = e.code
    err = capsys.readouterr().err
    assert rc == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("amc: error: "), err
    for w in IN_PROCESS_CASES[case][1]:
        assert w in lines[0], (w, lines[0])
    # nothing written, overwritten or removed, and no half-made folder (e.g. new/)
    assert _snapshot(bad_files) == before


def _fill(argv: list[str], tmp: Path) -> list[str]:
    ckpt = str(tmp / "digits" / "digits_cnn.pt")
    return [a.replace("{ckpt}", ckpt).replace("{tmp}", str(tmp)) for a in argv]


def _snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    """Every path under ``folder`` (the dataset cache aside) with the size and mtime of each
    file."""
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
            if p.is_file() else (-1, 0)
            for p in folder.rglob("*") if "cache" not in p.relative_to(folder).parts}


def test_unsafe_load_warns_before_the_file_runs(bad_files):
    """--unsafe-load prints its warning before the pickled os.system call runs."""
    argv = _fill(["profile", "--model", "digits_cnn", "--checkpoint", "{tmp}/evil.pt",
                  "--unsafe-load"], bad_files)
    r = subprocess.run([sys.executable, "-m", "amc.cli", *argv], cwd=bad_files,
                       env=_env(bad_files), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       text=True, timeout=300)
    lines = r.stdout.strip().splitlines()
    assert lines[0].startswith("amc: warning: --unsafe-load: "), r.stdout
    assert "runs any code it holds" in lines[0]
    assert lines.index("payload-ran") > 0, r.stdout  # the file's code ran, after the warning
    assert "Traceback" not in r.stdout and r.returncode == 2
    assert lines[-1].startswith("amc: error: ") and "holds no state dict" in lines[-1]
