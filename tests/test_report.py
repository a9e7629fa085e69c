"""``amc report``: every section in report.md/report.json, verdict exit codes 1 and 0, bad
inputs (exit 2, one line, nothing overwritten), and the pure parts (class flags, margins,
verdict) on constructed cases. The CLI runs in-process on a 3-epoch digits CNN pruned to 50 %
FLOPs with `amc baseline --strategy uniform` + `amc apply`."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from amc.cli import main
from amc.report.build import flag_classes, margins, near_boundary, verdict
from amc.utils.errors import AmcError

SECTIONS = ("## Verdict", "## Accuracy on test", "## Per-class top-1", "## Near-boundary slice",
            "## Latency", "## Size and memory", "## ONNX exports", "## Provenance")
KEYS = ("accuracy", "per_class", "near_boundary", "latency", "size", "memory", "onnx", "verdict",
        "provenance")
FAST = ["--runs", "2", "--rounds", "1"]


def one_line_error(capsys: pytest.CaptureFixture, rc: int, text: str) -> None:
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert rc == 2, err
    assert len(lines) == 1 and lines[0].startswith("amc: error: ") and text in lines[0], lines


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory, digits_ckpt: str) -> dict[str, Path]:
    """Dense and pruned (uniform, 50 % FLOPs) digits CNN files."""
    tmp = tmp_path_factory.mktemp("report")
    dense = Path(digits_ckpt)
    common = ["--data", "digits", "--checkpoint", str(dense)]
    assert main(["baseline", "--model", "digits_cnn", *common, "--strategy", "uniform",
                 "--budget", "flops:0.5", "--out", str(tmp / "uniform.json")]) == 0
    assert main(["apply", *common, "--policy", str(tmp / "uniform.json"),
                 "--out", str(tmp / "pruned.pt")]) == 0
    return {"dir": tmp, "dense": dense, "pruned": tmp / "pruned.pt"}


@pytest.fixture(scope="module")
def drop(models: dict[str, Path]) -> float:
    """The pruned model's top-1 drop on digits test, computed here independently of report."""
    from amc.data.datasets import load_dataset
    from amc.models.evaluate import top1
    from amc.models.registry import create_model

    x, y = load_dataset("digits").tensors("test")
    return (top1(create_model("digits_cnn", checkpoint=models["dense"]), x, y)
            - top1(create_model("digits_cnn", checkpoint=models["pruned"]), x, y))


def report_args(models: dict[str, Path], out: Path, *extra: str) -> list[str]:
    return ["report", "--dense", str(models["dense"]), "--pruned", str(models["pruned"]),
            "--model", "digits_cnn", "--data", "digits", "--out", str(out), *FAST, *extra]


@pytest.fixture(scope="module")
def passing(models: dict[str, Path], drop: float) -> tuple[int, Path, Path]:
    """A report without INT8 whose accuracy limit lies just above the measured drop (and a
    generous speed limit: timings vary), ONNX files in their own folder."""
    out, onnx_dir = models["dir"] / "rep_pass", models["dir"] / "onnx_pass"
    rc = main(report_args(models, out, "--max-drop", f"{drop + 0.25:.6f}", "--min-speedup",
                          "0.001", "--onnx-dir", str(onnx_dir)))
    return rc, out, onnx_dir


@pytest.fixture(scope="module")
def failing(models: dict[str, Path], passing, drop: float) -> tuple[int, Path]:
    """A full report with INT8 (quantized from the first report's pruned.onnx, which saves an
    export) whose accuracy limit lies just below the measured drop: its verdict must fail."""
    from amc.data.datasets import load_dataset
    from amc.deploy.quantize import quantize_int8
    from amc.models.registry import create_model

    pruned = create_model("digits_cnn", checkpoint=models["pruned"])
    x = load_dataset("digits").tensors("train")[0]
    int8 = models["dir"] / "pruned.int8.onnx"
    quantize_int8(passing[2] / "pruned.onnx", int8, [x[:64], x[64:128]], model=pruned)
    out = models["dir"] / "rep_fail"
    return main(report_args(models, out, "--int8", str(int8), "--max-drop",
                            f"{drop - 0.25:.6f}", "--min-speedup", "0.001")), out


def test_report_has_every_section_and_fails_the_verdict(failing, drop):
    rc, out = failing
    assert rc == 1
    md = (out / "report.md").read_text()
    for s in SECTIONS:
        assert s in md, s
    assert "**FAIL**: failed top1_drop" in md and "INT8 (onnxruntime, of the pruned model)" in md
    for png in ("per_class.png", "latency.png", "margin.png"):
        assert (out / png).read_bytes()[:4] == b"\x89PNG"
    rep = json.loads((out / "report.json").read_text())
    assert all(k in rep for k in KEYS)
    assert set(rep["accuracy"]["models"]) == {"dense", "pruned", "int8"}
    assert set(rep["accuracy"]["diff"]) == {"pruned_vs_dense", "int8_vs_dense"}
    assert rep["inputs"]["int8_of"] == "pruned" and rep["inputs"]["n_test"] == 360
    top1_check = rep["verdict"]["checks"][0]
    assert top1_check["value"] == pytest.approx(drop, rel=1e-5)  # the drop computed here (fp32)
    assert top1_check["limit"] == pytest.approx(drop - 0.25, abs=1e-5)
    v = rep["verdict"]
    assert not v["pass"] and v["failed"] == ["top1_drop"]
    assert [c["check"] for c in v["checks"]] == ["top1_drop", "speedup_pytorch_b64"]
    rows = rep["per_class"]["rows"]
    assert len(rows) == 10 and all("int8" in r for r in rows)
    assert rep["per_class"]["flagged"] == [r["class"] for r in rows if r["dense"] - r["pruned"] > 2]
    nb = rep["near_boundary"]
    assert nb["n"] == 36 and set(nb["models"]) == {"dense", "pruned", "int8"}
    assert nb["models"]["dense"]["agree_with_dense"] == 100
    lat = rep["latency"]
    assert {(r["engine"], r["model"], r["batch"]) for r in lat["rows"]} == {
        (e, m, b) for b in (1, 64) for e, ms in (("pytorch", ("dense", "pruned")),
                                                 ("onnxruntime", ("dense", "pruned", "int8")))
        for m in ms}
    assert all(r["median_ms"] > 0 and r["iqr_ms"] >= 0 and r["threads"] >= 1
               for r in lat["rows"])
    assert set(lat["speedup"]) == {"pytorch", "onnxruntime"} and set(lat["int8_speedup"]) == {
        "1", "64"}
    size = rep["size"]
    assert size["pruned"]["macs"] < 0.6 * size["dense"]["macs"]
    assert size["pruned"]["params"] < size["dense"]["params"]
    assert size["int8"]["onnx_bytes"] < size["pruned"]["onnx_bytes"] < size["dense"]["onnx_bytes"]
    assert size["dense"]["checkpoint_bytes"] == Path(rep["inputs"]["dense"]).stat().st_size
    probes = rep["memory"]["probes"]
    assert set(probes) == {"pytorch/dense", "pytorch/pruned", "onnxruntime/dense",
                           "onnxruntime/pruned", "onnxruntime/int8"}
    for p in probes.values():
        assert p["peak_mb"] >= p["baseline_mb"] > 0 and p["delta_mb"] >= 0
        assert p["output_shape"] == [64, 10]
    # the probes do not inherit this (large, torch-importing) process's peak RSS
    assert probes["onnxruntime/dense"]["baseline_mb"] < probes["pytorch/dense"]["baseline_mb"]
    assert probes["onnxruntime/dense"]["baseline_mb"] < 400
    assert all(rep["onnx"][k]["channels_ok"] for k in ("dense", "pruned", "int8"))
    assert rep["onnx"]["pruned"]["max_abs_diff"] < 1e-4
    assert (out / "dense.onnx").is_file() and (out / "pruned.onnx").is_file()


def test_existing_report_is_not_overwritten(failing, models, capsys):
    _, out = failing
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    rc = main(report_args(models, out))
    one_line_error(capsys, rc, "already holds report.md and 4 more of a report's files; pass "
                               "--force")
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_a_folder_with_some_of_a_reports_files_is_not_overwritten(models, tmp_path, capsys):
    """Only report.json and latency.png there (no report.md): still refused, both kept."""
    out = tmp_path / "partial"
    out.mkdir()
    (out / "report.json").write_text("{}\n")
    (out / "latency.png").write_bytes(b"mine")
    rc = main(report_args(models, out))
    one_line_error(capsys, rc, "already holds report.json and 1 more of a report's files")
    assert sorted(p.name for p in out.iterdir()) == ["latency.png", "report.json"]
    assert (out / "latency.png").read_bytes() == b"mine"


def test_thresholds_just_above_the_measured_drop_pass(passing, drop):
    rc, out, onnx_dir = passing
    assert rc == 0
    rep = json.loads((out / "report.json").read_text())
    assert rep["verdict"]["pass"] and rep["verdict"]["failed"] == []
    assert rep["verdict"]["checks"][0]["value"] == pytest.approx(drop, rel=1e-5)
    assert "**PASS**" in (out / "report.md").read_text()
    assert "int8" not in rep["accuracy"]["models"] and "int8_speedup" not in rep["latency"]
    assert sorted(p.name for p in out.iterdir()) == ["latency.png", "margin.png",
                                                     "per_class.png", "report.json", "report.md"]
    assert sorted(p.name for p in onnx_dir.iterdir()) == ["dense.onnx", "pruned.onnx"]


def test_missing_pruned_file(models, tmp_path, capsys):
    out = tmp_path / "rep"
    args = report_args(models, out)
    args[args.index("--pruned") + 1] = str(tmp_path / "nope.pt")
    one_line_error(capsys, main(args), "nope.pt' does not exist")
    assert not out.exists()


@pytest.mark.parametrize("case", ["garbage-int8", "dense-as-pruned", "no-data"])
def test_bad_inputs_write_nothing(models, tmp_path, capsys, case):
    out = tmp_path / "rep"
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not onnx")
    args, text = {
        "garbage-int8": (report_args(models, out, "--int8", str(bad)), "not a valid ONNX model"),
        "dense-as-pruned": (report_args(models, out), "not a model file written by `amc apply`"),
        "no-data": ([a for a in report_args(models, out) if a not in ("--data", "digits")],
                    "needs the test images"),
    }[case]
    if case == "dense-as-pruned":  # a plain state dict, as a dense checkpoint usually is
        torch.save(torch.load(models["dense"])["state_dict"], tmp_path / "plain.pt")
        args[args.index("--pruned") + 1] = str(tmp_path / "plain.pt")
    one_line_error(capsys, main(args), text)
    assert not out.exists()


# ----------------------------------------------------------------------------- pure parts


def test_flag_classes_constructed_case():
    rows = flag_classes(["a", "b", "c", "d", "e", "f"],
                        [90.0, 90.0, 90.0, 50.0, float("nan"), 80.0],
                        [88.0, 87.99, 95.0, 10.0, 30.0, 78.5], points=2.0)
    assert [r["flagged"] for r in rows] == [False, True, False, True, False, False]
    assert rows[1]["diff"] == pytest.approx(-2.01) and rows[2]["diff"] == pytest.approx(5.0)
    assert math.isnan(rows[4]["diff"])  # a class without test images is never flagged
    assert [r["class"] for r in flag_classes(["x", "y"], [100.0, 100.0], [99.0, 95.0],
                                             points=0.5) if r["flagged"]] == ["x", "y"]
    with pytest.raises(AmcError, match="differ in length"):
        flag_classes(["a"], [1.0, 2.0], [1.0, 2.0])


def test_near_boundary_slice_picks_the_smallest_margins():
    # rows 0..9: the margin grows with the row index; labels say row 0 and 5 are wrong for
    # dense, the "pruned" predictions are wrong on rows 0-1 only
    logits = torch.stack([torch.tensor([float(i), 0.0, -5.0]) for i in range(10)])
    m = margins(logits)
    assert torch.all(m[1:] > m[:-1]) and m[0] == pytest.approx(0.0, abs=1e-6)
    y = torch.zeros(10, dtype=torch.long)
    y[5] = 1
    dense_pred = logits.argmax(1)
    pruned_pred = dense_pred.clone()
    pruned_pred[:2] = 2
    nb = near_boundary(logits, y, {"dense": dense_pred, "pruned": pruned_pred}, fraction=0.2)
    assert nb["n"] == 2 and nb["margin_max"] == pytest.approx(float(m[1]))
    assert nb["models"]["dense"]["top1"] == 100.0  # rows 0 and 1: argmax 0 (a tie on row 0)
    assert nb["models"]["pruned"]["top1"] == 0.0
    assert nb["models"]["pruned"]["agree_with_dense"] == 0.0
    assert nb["models"]["dense"]["top1_rest"] == pytest.approx(700 / 8)
    assert len(nb["deciles"]["dense"]) == 10


def test_verdict_names_the_failed_checks():
    assert verdict(0.5, 1.5, 1.0, 1.3)["pass"]
    assert verdict(1.0, 1.3, 1.0, 1.3)["pass"]  # the limits themselves pass
    assert verdict(15.0, 1.5, 1.0, 1.3)["failed"] == ["top1_drop"]
    assert verdict(0.0, 1.1, 1.0, 1.3)["failed"] == ["speedup_pytorch_b64"]
    assert verdict(2.0, 1.0, 1.0, 1.3)["failed"] == ["top1_drop", "speedup_pytorch_b64"]
