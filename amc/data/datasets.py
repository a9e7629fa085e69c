"""Datasets: the embedded ``digits``, ``cifar10`` (batches, ImageFolder tree or archive) and
``imagefolder:PATH``.

Every dataset is decoded once into uint8 NHWC arrays (cached in memory and on disk under
``$AMC_CACHE_DIR`` or ``~/.cache/amc``, keyed by a hash of the source) and split into
``train``, ``val`` and ``test``. ``val`` is a fixed, seeded subset of the *training* split and
is removed from ``train``: searches are rewarded on ``val``, reports use ``test``.
"""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import tarfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from amc.utils.errors import AmcError
from amc.utils.io import atomic_write

SPLITS = ("train", "val", "test")
CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                   "ship", "truck"]
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)
IMG_EXT = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".webp")
_MEMORY: dict[tuple, Dataset] = {}


@dataclass
class Dataset:
    """Decoded images and labels of the three splits.

    Attributes:
        name: Dataset name as given by the user.
        classes: Class names in label order.
        mean: Per-channel mean used for normalisation.
        std: Per-channel standard deviation used for normalisation.
        images: Split name -> uint8 array (N, H, W, C).
        labels: Split name -> int64 array (N,).
        augment: Whether random crop + flip suit this data (natural images).
        val_index: Indices of ``val`` in the original training split.
        test_index: Indices of ``test`` (in its order here) in the source's test split.
    """

    name: str
    classes: list[str]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    images: dict[str, np.ndarray]
    labels: dict[str, np.ndarray]
    augment: bool = True
    val_index: np.ndarray | None = None
    test_index: np.ndarray | None = None
    _tensors: dict[str, tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict,
                                                                     repr=False)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def input_size(self) -> tuple[int, int, int]:
        n, h, w, c = self.images["train"].shape
        return (c, h, w)

    def normalize(self, images_u8: np.ndarray | torch.Tensor) -> torch.Tensor:
        """uint8 NHWC -> normalised float32 NCHW."""
        x = torch.as_tensor(images_u8).permute(0, 3, 1, 2).float().div_(255.0)
        mean = torch.tensor(self.mean).view(1, -1, 1, 1)
        std = torch.tensor(self.std).view(1, -1, 1, 1)
        return x.sub_(mean).div_(std).contiguous()

    def tensors(self, split: str, limit: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Normalised float32 NCHW images and int64 labels of ``split`` (cached)."""
        check_split(split)
        if split not in self._tensors:
            self._tensors[split] = (self.normalize(self.images[split]),
                                    torch.as_tensor(self.labels[split], dtype=torch.long))
        x, y = self._tensors[split]
        return (x[:limit], y[:limit]) if limit else (x, y)

    def calibration(self, n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """The one calibration draw: ``n`` training images (and labels) chosen by ``seed``.

        BN recalibration, reconstruction, taylor ranking and INT8 calibration all use it, so
        the same seed gives the same images everywhere.
        """
        x, y = self.tensors("train")
        idx = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))[:max(1, n)]
        return x[idx], y[idx]

    def select(self, **index: np.ndarray | slice) -> Dataset:
        """A new dataset whose named splits keep only ``index`` (an index array or a slice).

        Splits not named are shared as they are; the index fields (``val_index``,
        ``test_index``) follow their split; the tensor cache starts empty.
        """
        for split in index:
            check_split(split)
        kw: dict[str, Any] = {
            "images": {s: (self.images[s][index[s]] if s in index else a)
                       for s, a in self.images.items()},
            "labels": {s: (self.labels[s][index[s]] if s in index else a)
                       for s, a in self.labels.items()},
            "_tensors": {}}
        for split in ("val", "test"):
            idx = getattr(self, f"{split}_index")
            if idx is not None and split in index:
                kw[f"{split}_index"] = idx[index[split]]
        return replace(self, **kw)


def check_split(split: str) -> None:
    if split not in SPLITS:
        raise AmcError(f"unknown split {split!r}; use one of {', '.join(SPLITS)}")


def cache_dir() -> Path:
    """Where decoded datasets are cached (``$AMC_CACHE_DIR`` or ``~/.cache/amc``)."""
    return Path(os.environ.get("AMC_CACHE_DIR") or Path.home() / ".cache" / "amc")


def default_data_dir() -> Path | None:
    """``$AMC_DATA_DIR`` if set."""
    d = os.environ.get("AMC_DATA_DIR")
    return Path(d) if d else None


# ----------------------------------------------------------------------------- sources


def _load_digits() -> tuple[dict, dict, list[str]]:
    from sklearn.datasets import load_digits

    d = load_digits()
    x = np.rint(d.images * (255.0 / 16.0)).astype(np.uint8)[..., None]
    y = d.target.astype(np.int64)
    perm = np.random.default_rng(12345).permutation(len(y))
    n_test = 360
    test, train = perm[:n_test], perm[n_test:]
    return ({"train": x[train], "test": x[test]}, {"train": y[train], "test": y[test]},
            [str(i) for i in range(10)])


def _decode(data: bytes, name: str = "image") -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as im:
            return np.asarray(im.convert("RGB"), dtype=np.uint8)
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise AmcError(f"cannot decode image {name} ({type(e).__name__}); remove or replace "
                       "the broken file") from e


def _from_members(members: list[tuple[str, bytes]], what: str) -> tuple[dict, dict, list[str]]:
    """Build splits from (relative path, bytes) pairs laid out as ``.../<split>/<class>/f``."""
    by_split: dict[str, list[tuple[str, str, bytes]]] = {}
    for rel, data in members:
        parts = Path(rel).parts
        if len(parts) < 3 or not rel.lower().endswith(IMG_EXT):
            continue
        split, cls = parts[-3], parts[-2]
        split = {"training": "train", "testing": "test", "valid": "test"}.get(split, split)
        if split in ("train", "test"):
            by_split.setdefault(split, []).append((cls, parts[-1], data))
    if "train" not in by_split or "test" not in by_split:
        raise AmcError(f"{what} has no train/<class>/ and test/<class>/ image folders; "
                       "give an ImageFolder tree, an archive of one, or cifar-10-batches-py")
    classes = sorted({c for c, _, _ in by_split["train"]})
    if classes == sorted(CIFAR10_CLASSES):
        classes = list(CIFAR10_CLASSES)
    index = {c: i for i, c in enumerate(classes)}
    images, labels = {}, {}
    for split, items in by_split.items():
        items.sort(key=lambda t: (index.get(t[0], -1), t[1]))
        items = [t for t in items if t[0] in index]
        if not items:
            raise AmcError(f"{what} has no {split} images of the train classes "
                           f"({', '.join(classes)}); give matching {split}/<class>/ folders")
        decoded = [_decode(d, f"{split}/{c}/{f}") for c, f, d in items]
        if len({a.shape for a in decoded}) > 1:
            raise AmcError(f"{what} holds images of different sizes in {split} "
                           f"({sorted({a.shape[:2] for a in decoded})[:3]}); resize them to one "
                           "size first")
        images[split] = np.stack(decoded)
        labels[split] = np.array([index[c] for c, _, _ in items], dtype=np.int64)
    return images, labels, classes


def _read_archive(path: Path) -> list[tuple[str, bytes]]:
    try:
        with tarfile.open(path) as tar:
            return [(m.name, tar.extractfile(m).read()) for m in tar if m.isfile()]
    except (tarfile.TarError, OSError, EOFError) as e:
        raise AmcError(f"{path} is not a readable tar archive ({e}); pass a .tar.gz of an "
                       "ImageFolder tree") from e


def _read_tree(root: Path) -> list[tuple[str, bytes]]:
    return [(str(p.relative_to(root)), p.read_bytes()) for p in sorted(root.rglob("*"))
            if p.is_file() and p.suffix.lower() in IMG_EXT]


def _read_cifar_batches(root: Path) -> tuple[dict, dict, list[str]]:
    def load(name: str) -> tuple[np.ndarray, np.ndarray]:
        with open(root / name, "rb") as f:
            d = pickle.load(f, encoding="latin1")  # torchvision's own format
        return (np.asarray(d["data"], np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1),
                np.asarray(d["labels"], np.int64))

    parts = [load(f"data_batch_{i}") for i in range(1, 6)]
    xt, yt = load("test_batch")
    return ({"train": np.concatenate([p[0] for p in parts]), "test": xt},
            {"train": np.concatenate([p[1] for p in parts]), "test": yt}, list(CIFAR10_CLASSES))


def _source_hash(path: Path) -> str:
    h = hashlib.sha256()
    if path.is_file():
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    else:
        for p in sorted(path.rglob("*")):
            if p.is_file():
                st = p.stat()
                h.update(f"{p.relative_to(path)}:{st.st_size}:{st.st_mtime_ns}".encode())
    return h.hexdigest()[:16]


def _find_cifar_source(data_dir: Path) -> Path:
    candidates = [data_dir / "cifar-10-batches-py", data_dir]
    for c in candidates:
        if (c / "data_batch_1").is_file():
            return c
    for c in (data_dir / "cifar10", data_dir / "cifar-10", data_dir):
        if (c / "train").is_dir() and (c / "test").is_dir():
            return c
    archives = sorted(p for p in data_dir.glob("*cifar*") if p.name.endswith((".tar.gz", ".tgz",
                                                                              ".tar")))
    if archives:
        return archives[0]
    raise AmcError(f"no CIFAR-10 found in {data_dir}; it must hold cifar-10-batches-py, an "
                   "ImageFolder tree (train/, test/) or a cifar*.tar.gz (or pass --download)")


def _load_cached(source: Path, reader) -> tuple[dict, dict, list[str]]:
    key = _source_hash(source)
    f = cache_dir() / f"{source.name}-{key}.npz"
    if f.is_file():
        try:
            with np.load(f, allow_pickle=False) as z:
                return ({s: z[f"x_{s}"] for s in ("train", "test")},
                        {s: z[f"y_{s}"] for s in ("train", "test")}, list(z["classes"]))
        except (OSError, ValueError, KeyError):
            pass  # a broken cache entry is rebuilt
    images, labels, classes = reader(source)
    with atomic_write(f, suffix=".npz") as tmp:
        np.savez(tmp, x_train=images["train"], x_test=images["test"], y_train=labels["train"],
                 y_test=labels["test"], classes=np.array(classes))
    return images, labels, classes


def _read_image_source(src: Path) -> tuple[dict, dict, list[str]]:
    if src.is_file():
        return _from_members(_read_archive(src), str(src))
    if (src / "data_batch_1").is_file():
        return _read_cifar_batches(src)
    return _from_members(_read_tree(src), str(src))


# ----------------------------------------------------------------------------- public API


def load_dataset(name: str, data_dir: str | Path | None = None, val_size: int | None = None,
                 seed: int = 0, download: bool = False) -> Dataset:
    """Load and split a dataset.

    Args:
        name: ``digits``, ``cifar10`` or ``imagefolder:PATH``.
        data_dir: Where ``cifar10`` lives (default ``$AMC_DATA_DIR``).
        val_size: Images held out of ``train`` as ``val`` (default 5,000 for CIFAR-10, 10 %
            of train otherwise).
        seed: Seed of the ``val`` draw; the same seed gives the same ``val``.
        download: Let torchvision download CIFAR-10 into ``data_dir`` (needs network).

    Returns:
        The dataset, cached in memory for the process.
    """
    key = (name, str(data_dir), val_size, seed)
    if key in _MEMORY:
        return _MEMORY[key]
    augment = True
    if name == "digits":
        images, labels, classes = _load_digits()
        mean, std, augment = (0.5,), (0.25,), False
    elif name == "cifar10":
        root = Path(data_dir) if data_dir else default_data_dir()
        if root is None:
            raise AmcError("cifar10 needs a data directory; pass --data-dir DIR or set "
                           "AMC_DATA_DIR")
        if download:
            import torchvision

            root.mkdir(parents=True, exist_ok=True)
            torchvision.datasets.CIFAR10(str(root), train=True, download=True)
        if not root.exists():
            raise AmcError(f"data directory {str(root)!r} does not exist; pass --data-dir with "
                           "the folder that holds CIFAR-10")
        if not root.is_dir():
            raise AmcError(f"data directory {str(root)!r} is not a directory; pass --data-dir "
                           "with the folder that holds CIFAR-10 (or its archive)")
        images, labels, classes = _load_cached(_find_cifar_source(root), _read_image_source)
        mean, std = CIFAR10_MEAN, CIFAR10_STD
        val_size = 5000 if val_size is None else val_size
    elif name.startswith("imagefolder:"):
        src = Path(name.partition(":")[2])
        if not src.exists():
            raise AmcError(f"image folder {str(src)!r} does not exist; pass imagefolder:PATH "
                           "with train/<class>/ and test/<class>/ inside")
        images, labels, classes = _load_cached(src, _read_image_source)
        x = images["train"].reshape(-1, images["train"].shape[-1]).astype(np.float64) / 255
        mean, std = tuple(x.mean(0).tolist()), tuple(x.std(0).tolist())
    else:
        raise AmcError(f"unknown dataset {name!r}; use digits, cifar10 or imagefolder:PATH")
    n_train = len(labels["train"])
    if val_size is None:
        val_size = max(1, n_train // 10)
    if not 0 < val_size < n_train:
        raise AmcError(f"val size {val_size} must be between 1 and {n_train - 1}")
    perm = np.random.default_rng(seed).permutation(n_train)
    # val stays in random order, so its first N images (--val-limit) are a random sample
    val_idx, train_idx = perm[:val_size], np.sort(perm[val_size:])
    # test in one fixed shuffled order (independent of the seed), for the same reason
    test_idx = np.random.default_rng(20180908).permutation(len(labels["test"]))
    ds = Dataset(
        name=name, classes=classes, mean=mean, std=std, augment=augment,
        images={"train": images["train"][train_idx], "val": images["train"][val_idx],
                "test": images["test"][test_idx]},
        labels={"train": labels["train"][train_idx], "val": labels["train"][val_idx],
                "test": labels["test"][test_idx]},
        val_index=val_idx, test_index=test_idx,
    )
    _MEMORY[key] = ds
    return ds
