"""Datasets: digits splits, tensors, ImageFolder trees and archives, the on-disk cache, CIFAR."""

from __future__ import annotations

import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import amc.data.datasets
from amc.data.datasets import CIFAR10_CLASSES, cache_dir, load_dataset
from amc.utils.errors import AmcError


@pytest.fixture
def fresh_memory(monkeypatch):
    """Empty the in-process dataset cache so a load really rebuilds the splits."""
    monkeypatch.setattr(amc.data.datasets, "_MEMORY", {})


def test_digits_loads_without_files(fresh_memory, isolated_cache):
    ds = load_dataset("digits")
    assert ds.classes == [str(i) for i in range(10)] and ds.num_classes == 10
    assert ds.input_size == (1, 8, 8)
    assert not ds.augment
    n = {s: len(ds.labels[s]) for s in ("train", "val", "test")}
    assert n == {"train": 1437 - 143, "val": 143, "test": 360}
    for s in n:
        assert ds.images[s].dtype == np.uint8 and ds.images[s].shape[1:] == (8, 8, 1)
        assert len(ds.images[s]) == n[s]
    assert not isolated_cache.exists()  # digits never writes the on-disk cache


def test_digits_read_directly_equal_scikit_learns_loader(monkeypatch):
    """The digits read from scikit-learn's CSV (no scikit-learn import) are its own loader's,
    pixel for pixel; without that file the loader itself is used."""
    from sklearn.datasets import load_digits

    from amc.data.datasets import digits_arrays

    ref = load_digits()
    images, target = digits_arrays()
    assert images.shape == (1797, 8, 8) and np.array_equal(images, ref.images)
    assert np.array_equal(target, ref.target)
    calls = []

    def loader():
        calls.append(1)
        return ref

    monkeypatch.setattr("sklearn.datasets.load_digits", loader)
    digits_arrays()
    assert calls == []  # read directly
    monkeypatch.setattr("importlib.util.find_spec", lambda name: None)
    fallback = digits_arrays()
    assert calls == [1]
    assert np.array_equal(fallback[0], ref.images) and np.array_equal(fallback[1], ref.target)


def test_val_is_a_disjoint_part_of_train(fresh_memory):
    images, labels, _ = amc.data.datasets._load_digits()
    ds = load_dataset("digits", seed=0)
    n_orig = len(labels["train"])
    val = ds.val_index
    rest = np.setdiff1d(np.arange(n_orig), val)
    assert len(np.unique(val)) == len(val)
    assert len(val) + len(ds.labels["train"]) == n_orig
    assert len(np.intersect1d(val, rest)) == 0
    np.testing.assert_array_equal(ds.images["val"], images["train"][val])
    np.testing.assert_array_equal(ds.labels["val"], labels["train"][val])
    np.testing.assert_array_equal(ds.images["train"], images["train"][rest])
    np.testing.assert_array_equal(ds.images["test"], images["test"][ds.test_index])


def test_val_depends_only_on_the_seed(monkeypatch):
    monkeypatch.setattr(amc.data.datasets, "_MEMORY", {})
    a = load_dataset("digits", seed=0).val_index
    monkeypatch.setattr(amc.data.datasets, "_MEMORY", {})  # rebuild, do not reuse the cached object
    b = load_dataset("digits", seed=0).val_index
    c = load_dataset("digits", seed=1).val_index
    np.testing.assert_array_equal(a, b)
    assert len(a) == len(c) and not np.array_equal(a, c)
    assert len(load_dataset("digits", val_size=100).val_index) == 100


def test_tensors_are_normalised_float32_nchw():
    ds = load_dataset("digits")
    x, y = ds.tensors("val")
    assert x.dtype == torch.float32 and y.dtype == torch.long
    assert x.shape == (len(ds.labels["val"]), 1, 8, 8) and x.is_contiguous()
    raw = torch.as_tensor(ds.images["val"]).permute(0, 3, 1, 2).float() / 255
    expected = (raw - ds.mean[0]) / ds.std[0]
    torch.testing.assert_close(x, expected)
    assert torch.equal(y, torch.as_tensor(ds.labels["val"]))
    xl, yl = ds.tensors("val", limit=10)
    assert torch.equal(xl, x[:10]) and torch.equal(yl, y[:10])
    with pytest.raises(AmcError, match="unknown split"):
        ds.tensors("foo")


def test_bad_val_size_and_unknown_dataset():
    with pytest.raises(AmcError, match="val size"):
        load_dataset("digits", val_size=10_000)
    with pytest.raises(AmcError, match="unknown dataset"):
        load_dataset("mnist")


# ----------------------------------------------------------------------------- image folders

COLOURS = {"cat": [(255, 0, 0), (200, 10, 10), (180, 0, 30)],
           "dog": [(0, 0, 255), (10, 20, 200), (0, 40, 160)]}


def make_tree(root: Path) -> dict[str, dict[str, list[np.ndarray]]]:
    """train/<cls>/ with 3 PNGs and test/<cls>/ with 1 PNG per class; returns the pixels."""
    pixels: dict[str, dict[str, list[np.ndarray]]] = {"train": {}, "test": {}}
    for cls, colours in COLOURS.items():
        for split, cols in (("train", colours), ("test", colours[:1])):
            d = root / split / cls
            d.mkdir(parents=True, exist_ok=True)
            for i, c in enumerate(cols):
                a = np.zeros((6, 6, 3), np.uint8)
                a[...] = c
                a[i, i] = (i * 40, 255, i * 40)  # distinguishable files
                Image.fromarray(a).save(d / f"{i:03d}.png")
                pixels[split].setdefault(cls, []).append(a)
    return pixels


def check_tree_dataset(ds, pixels, val_size: int) -> None:
    assert ds.classes == ["cat", "dog"]
    assert ds.input_size == (3, 6, 6)
    expected_train = np.stack(pixels["train"]["cat"] + pixels["train"]["dog"])
    labels_train = np.array([0, 0, 0, 1, 1, 1])
    np.testing.assert_array_equal(ds.images["val"], expected_train[ds.val_index])
    rest = np.setdiff1d(np.arange(6), ds.val_index)
    np.testing.assert_array_equal(ds.images["train"], expected_train[rest])
    np.testing.assert_array_equal(ds.labels["train"], labels_train[rest])
    assert len(ds.labels["val"]) == val_size
    np.testing.assert_array_equal(
        ds.images["test"],
        np.stack(pixels["test"]["cat"] + pixels["test"]["dog"])[ds.test_index])
    np.testing.assert_array_equal(ds.labels["test"], np.array([0, 1])[ds.test_index])


def test_imagefolder_tree_is_streamed(tmp_path, isolated_cache):
    from amc.data.stream import IMAGENET_MEAN, IMAGENET_STD

    make_tree(tmp_path / "tree")
    ds = load_dataset(f"imagefolder:{tmp_path / 'tree'}", input_size=(3, 6, 6),
                      loader_workers=0)
    assert ds.classes == ["cat", "dog"] and ds.input_size == (3, 6, 6)
    assert ds.streamed("train") and ds.streamed("test") and not ds.streamed("val")
    assert (ds.mean, ds.std) == (IMAGENET_MEAN, IMAGENET_STD)  # ImageNet convention
    # val: 10 % of train, at least 1, held out of train; files and labels stay aligned
    assert len(ds.labels["val"]) == 1 and len(ds.files["train"]) == 5
    tree = tmp_path / "tree"
    all_train = sorted(str(p) for p in (tree / "train").rglob("*.png"))
    assert sorted(ds.files["train"]) == sorted(np.delete(all_train, ds.val_index))
    for f, y in zip(ds.files["train"], ds.labels["train"]):
        assert Path(f).parent.name == ds.classes[y]
    assert [Path(f).parent.name for f in ds.files["test"]] == \
        [ds.classes[y] for y in ds.labels["test"]]
    # val is decoded at the eval transform to the input size: the file's colour, as uint8
    (val_file,) = [all_train[i] for i in ds.val_index]
    colour = np.asarray(Image.open(val_file))[0, -1]  # off the marked diagonal
    assert ds.images["val"].shape == (1, 6, 6, 3) and ds.images["val"].dtype == np.uint8
    assert np.abs(ds.images["val"][0, 0, -1].astype(int) - colour).max() <= 8
    assert len(list(isolated_cache.glob("stream/*.npy"))) == 1
    # a streamed split decodes on demand, at the eval transform
    x, y = ds.tensors("test")
    assert x.shape == (2, 3, 6, 6) and y.tolist() == ds.labels["test"].tolist()


def test_cifar_archive_and_disk_cache(tmp_path, isolated_cache, monkeypatch):
    pixels = make_tree(tmp_path / "tree" / "cifar10")
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    archive = data_dir / "cifar10-small.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tmp_path / "tree" / "cifar10", arcname="cifar10")

    assert cache_dir() == isolated_cache
    ds = load_dataset("cifar10", data_dir=data_dir, val_size=2)
    check_tree_dataset(ds, pixels, val_size=2)
    assert ds.mean == amc.data.datasets.CIFAR10_MEAN and ds.augment
    cached = list(isolated_cache.glob("cifar10-small.tar.gz-*.npz"))
    assert len(cached) == 1

    # second load in a fresh process state: must come from the .npz, not from the archive
    monkeypatch.setattr(amc.data.datasets, "_MEMORY", {})

    def no_decode(src):
        raise AssertionError(f"decoded {src} again instead of using the cache")

    monkeypatch.setattr(amc.data.datasets, "_read_image_source", no_decode)
    again = load_dataset("cifar10", data_dir=data_dir, val_size=2)
    for s in ("train", "val", "test"):
        np.testing.assert_array_equal(again.images[s], ds.images[s])
        np.testing.assert_array_equal(again.labels[s], ds.labels[s])
    assert again.classes == ds.classes


def test_missing_and_empty_data_dirs(tmp_path, isolated_cache):
    with pytest.raises(AmcError, match="does not exist"):
        load_dataset("cifar10", data_dir=tmp_path / "missing")
    with pytest.raises(AmcError, match="no CIFAR-10 found"):
        load_dataset("cifar10", data_dir=tmp_path)
    with pytest.raises(AmcError, match="does not exist"):
        load_dataset(f"imagefolder:{tmp_path / 'missing'}")
    (tmp_path / "flat").mkdir()
    with pytest.raises(AmcError, match="train/<class>/"):
        load_dataset(f"imagefolder:{tmp_path / 'flat'}")


def test_broken_image_is_a_clean_error(tmp_path, isolated_cache):
    from amc.data.loader import BatchPlan

    make_tree(tmp_path / "tree")
    (tmp_path / "tree" / "train" / "cat" / "999.png").write_bytes(b"not a png")
    # streamed: found when it is read (val decode or a batch), also in a loader worker, and
    # said on one line
    with pytest.raises(AmcError, match="999.png") as e:
        ds = load_dataset(f"imagefolder:{tmp_path / 'tree'}", input_size=(3, 6, 6),
                          val_size=1, loader_workers=1)
        list(ds.batches("train", BatchPlan(len(ds.labels["train"]), 8, shuffle=False)))
    assert "\n" not in str(e.value) and "Traceback" not in str(e.value)


# ----------------------------------------------------------------------------- shared CIFAR-10


@pytest.fixture(scope="module")
def cifar10(needs_shared):
    # default cache (~/.cache/amc or $AMC_CACHE_DIR): decoded at most once per machine
    return load_dataset("cifar10", data_dir=needs_shared / "data")


@pytest.mark.needs_shared
def test_cifar10_splits(cifar10):
    n = {s: len(cifar10.labels[s]) for s in ("train", "val", "test")}
    assert n == {"train": 45000, "val": 5000, "test": 10000}
    assert cifar10.classes == CIFAR10_CLASSES
    assert cifar10.input_size == (3, 32, 32)
    assert np.bincount(cifar10.labels["test"]).tolist() == [1000] * 10
    val = cifar10.val_index
    assert len(np.unique(val)) == 5000 and val.min() >= 0 and val.max() < 50000


@pytest.mark.needs_shared
def test_resnet20_checkpoint_sanity_on_cifar10(cifar10, needs_shared):
    from amc.models.evaluate import evaluate
    from amc.models.registry import create_model

    model = create_model("resnet20", checkpoint=needs_shared / "models" / "resnet20-cifar10.th")
    x, y = cifar10.tensors("test")
    # the test split is kept in a fixed shuffled order: its first 1000 images mix all classes
    xs, ys = x[:1000], y[:1000]
    assert np.bincount(ys.numpy(), minlength=10).min() >= 60
    res = evaluate(model, xs, ys, num_classes=10)
    assert res.n == 1000
    assert res.top1 > 70.0, res.top1
