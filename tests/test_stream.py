"""Streamed image folders (mixed image sizes, read lazily), the batch plans every worker
shares, mixed precision on the training path, and tv:resnet18 pruned and fine-tuned on a
folder of mixed-size JPEGs."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import amc.data.stream
from amc.data.datasets import load_dataset
from amc.data.loader import BatchPlan, epoch_order, steps_per_epoch
from amc.data.synthetic import write_synthetic_imagefolder
from amc.utils.errors import AmcError

SIZE = (3, 32, 32)


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    """48 training and 12 test JPEGs of 4 classes, each of its own size (24-96 px a side)."""
    root = tmp_path_factory.mktemp("synthetic") / "folder"
    write_synthetic_imagefolder(root, 48, 12, classes=4, min_size=24, max_size=96)
    return root


def test_synthetic_folder_has_mixed_sizes(folder):
    files = sorted(folder.rglob("*.jpg"))
    assert len(files) == 60 and {f.parent.parent.name for f in files} == {"train", "test"}
    sizes = {Image.open(f).size for f in files}
    assert len(sizes) > 20 and min(min(s) for s in sizes) >= 24 and max(max(s) for s in sizes) <= 96
    # a second call completes the folder without rewriting it
    assert write_synthetic_imagefolder(folder, 48, 12, classes=4, min_size=24,
                                       max_size=96)["written"] == 0


def test_mixed_sizes_stream_at_the_input_size(folder, isolated_cache):
    ds = load_dataset(f"imagefolder:{folder}", input_size=SIZE, loader_workers=1)
    assert ds.num_classes == 4 and ds.input_size == SIZE
    n = {s: len(ds.labels[s]) for s in ("train", "val", "test")}
    assert n == {"train": 44, "val": 4, "test": 12}
    assert ds.images["val"].shape == (4, 32, 32, 3) and "train" not in ds.images
    plan = BatchPlan(n["train"], 16, seed=0, epoch=0)
    batches = list(ds.batches("train", plan, augment=True))
    assert [len(y) for _, y in batches] == [16, 16, 12]
    xb, yb = batches[0]
    assert xb.dtype == torch.uint8 and xb.shape == (16, *SIZE)
    idx = next(iter(plan))
    assert yb.tolist() == ds.labels["train"][idx].tolist()  # labels follow the plan
    x = ds.to_input(xb, "cpu")
    assert x.dtype == torch.float32 and abs(float(x.mean())) < 2.5
    # eval batches are the deterministic centre crops that val was decoded with
    xt, yt = ds.tensors("test")
    assert xt.shape == (12, *SIZE) and torch.equal(yt, torch.as_tensor(ds.labels["test"]))


def test_tar_of_a_folder_is_extracted_once(folder, tmp_path, isolated_cache):
    archive = tmp_path / "folder.tar"
    with tarfile.open(archive, "w") as tar:
        tar.add(folder, arcname="top")
    ds = load_dataset(f"imagefolder:{archive}", input_size=SIZE, loader_workers=0)
    assert len(ds.labels["train"]) == 44 and len(ds.files["test"]) == 12
    (extracted,) = (isolated_cache / "folders").iterdir()
    assert all(Path(f).is_relative_to(extracted) for f in ds.files["train"])
    with pytest.raises(AmcError, match="tar"):
        (tmp_path / "bad.tar").write_bytes(b"no tar")
        load_dataset(f"imagefolder:{tmp_path / 'bad.tar'}", input_size=SIZE)


def test_search_data_never_reads_the_training_split(folder, isolated_cache, monkeypatch):
    """The scorer decodes val and the calibration draw once; the rest of train is not read."""
    from amc.prune.scoring import build_scorer

    reads: list[str] = []
    orig = amc.data.stream.ImageFiles.__getitem__

    def counting(self, i):
        reads.append(self.files[i])
        return orig(self, i)

    monkeypatch.setattr(amc.data.stream.ImageFiles, "__getitem__", counting)
    sc = build_scorer("resnet20", data=f"imagefolder:{folder}", num_classes=4, calib_size=8,
                      units="internal",
                      bn_recalib=True, loader_workers=0)
    assert sc.x.shape == (4, *SIZE)  # resnet20's own input size: 3 x 32 x 32
    assert len(reads) == 4 + 8 and len(set(reads)) == 12
    assert 0.0 <= sc.score([0.5] * len(sc.pm.units)).top1 <= 100.0
    # built again (a new process, say): val and calibration come from the disk cache
    monkeypatch.setattr(amc.data.datasets, "_MEMORY", {})
    reads.clear()
    build_scorer("resnet20", data=f"imagefolder:{folder}", num_classes=4, calib_size=8,
                 units="internal", loader_workers=0)
    assert reads == []


def test_workers_share_the_global_batches():
    n, batch = 50, 8
    one = list(BatchPlan(n, batch, seed=1, epoch=2))
    two = [list(BatchPlan(n, batch, seed=1, epoch=2, rank=r, world=2)) for r in range(2)]
    assert len(one) == len(two[0]) == len(two[1]) == steps_per_epoch(n, batch, 2) == 7
    for b, idx in enumerate(one):
        assert sorted(two[0][b] + two[1][b]) == sorted(idx) and not set(two[0][b]) & set(two[1][b])
    assert sorted(i for b in one for i in b) == list(range(n))
    assert list(BatchPlan(n, batch, seed=1, epoch=2, start=3)) == one[3:]  # resumed mid-epoch
    assert not torch.equal(epoch_order(n, 1, 2), epoch_order(n, 1, 3))
    # a last global batch too small to give each worker an image is left out
    assert steps_per_epoch(17, 8, 1) == 3 and steps_per_epoch(17, 8, 2) == 2


@pytest.mark.parametrize("amp, dtype", [("auto", torch.float32), ("bf16", torch.bfloat16),
                                        ("fp16", torch.float16)])
def test_mixed_precision_and_channels_last_on_the_training_path(amp, dtype):
    """The CUDA code path (autocast, fp16 gradient scaler, channels-last) runs on the CPU."""
    from amc.models.registry import create_model
    from amc.train.loop import TrainConfig, train

    torch.manual_seed(0)
    data = load_dataset("digits")
    model = create_model("digits_cnn")
    before = [p.detach().clone() for p in model.parameters()]
    seen = []
    model.features[0].register_forward_hook(lambda m, i, o: seen.append(
        (o.dtype, i[0].is_contiguous(memory_format=torch.channels_last))))
    hist = train(model, data, TrainConfig(epochs=0.1, batch_size=64, lr=0.05, amp=amp,
                                          channels_last=True, eval_splits=(), device="cpu"))
    assert seen[0] == (dtype, True)
    assert np.isfinite(hist[-1]["loss"]) and hist[-1]["step"] == 2
    changed = [not torch.equal(a, b) for a, b in zip(before, model.parameters())]
    assert all(changed)  # a scaled step that skipped the update would leave them alone
    assert model.features[0].weight.is_contiguous()  # handed back in the default layout


@pytest.mark.slow
def test_compile_trains_and_leaves_the_model_plain():
    """``--compile``: the step runs through torch.compile (minutes of compiling on a CPU)."""
    from amc.models.registry import create_model
    from amc.train.loop import TrainConfig, train

    torch.manual_seed(0)
    model = create_model("digits_cnn")
    hist = train(model, load_dataset("digits"), TrainConfig(
        epochs=1, batch_size=64, lr=0.05, compile=True, eval_splits=("val",), device="cpu"))
    assert hist[-1]["val_top1"] > 50.0
    assert all(not k.startswith("_orig_mod") for k in model.state_dict())


def test_bad_amp_is_one_line():
    from amc.utils.precision import precision

    with pytest.raises(AmcError, match="--amp"):
        precision("fp8", torch.device("cpu"))


def test_tv_resnet18_prunes_and_finetunes_on_mixed_size_jpegs(folder, tmp_path,
                                                             isolated_cache):
    """No resize step by the user: the JPEGs (24-96 px) are cropped to 32 x 32 on the fly."""
    from amc.models.registry import create_model
    from amc.train.finetune import FinetuneConfig, run_finetune

    out = tmp_path / "ft"
    s = run_finetune(FinetuneConfig(
        model="tv:resnet18", num_classes=4, data=f"imagefolder:{folder}",
        input_size=(3, 32, 32), target="flops:0.5", schedule="oneshot", epochs=1.0,
        batch_size=11, lr=0.01, loader_workers=1, threads=2, out=str(out)))
    f = s["final"]
    assert 0.3 < f["macs_ratio"] <= 0.55 and f["params_ratio"] < 0.9
    assert s["train_images"] == 44 and s["epochs_trained"] == pytest.approx(1.0)
    assert 0.0 <= f["test_top1"] <= 100.0
    with open(out / "metrics.csv") as fh:
        rows = fh.read().splitlines()
    header, row = rows[0].split(","), rows[1].split(",")
    assert len(rows) == 2 and int(row[header.index("images")]) == 44
    assert int(row[header.index("step")]) == 4
    pruned = create_model("tv:resnet18", num_classes=4, checkpoint=out / "model.pt")
    assert pruned(torch.zeros(1, 3, 32, 32)).shape == (1, 4)
    assert json.loads((out / "policy.json").read_text())["model"] == "tv:resnet18"
