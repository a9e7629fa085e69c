"""Datasets: the embedded ``digits``, ``cifar10`` (batches, ImageFolder tree or archive) and
``imagefolder:PATH``.

``digits`` and ``cifar10`` are decoded once into uint8 NHWC arrays (cached in memory and on
disk under ``$AMC_CACHE_DIR`` or ``~/.cache/amc``, keyed by a hash of the source);
``imagefolder:PATH`` (images of any sizes) is streamed from its files
(:mod:`amc.data.stream`). Every dataset is split into ``train``, ``val`` and ``test``.
``val`` is a fixed, seeded subset of the *training* split and is removed from ``train``:
searches are rewarded on ``val``, reports use ``test``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from amc.data.sources import CIFAR10_CLASSES as CIFAR10_CLASSES  # re-exported
from amc.data.sources import (
    from_members,
    read_archive,
    read_cifar_batches,
    read_tree,
    source_hash,
)
from amc.utils.errors import AmcError
from amc.utils.io import atomic_write

if TYPE_CHECKING:
    from amc.data.loader import BatchPlan

SPLITS = ("train", "val", "test")
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)
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
        idx = calibration_index(len(y), n, seed)
        return x[idx], y[idx]

    def streamed(self, split: str) -> bool:
        """Whether ``split`` is read from files batch by batch (else it is in memory)."""
        return False

    def batches(self, split: str, plan: BatchPlan, augment: bool = False, seed: int = 0,
                pin: bool = False) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """``split``'s images and labels in the batches of ``plan``
        (:mod:`amc.data.loader`); pass the images through :meth:`to_input`.

        Args:
            split: The split.
            plan: Which indices, batch by batch.
            augment: Random augmentation (training).
            seed: Seed of the augmentation.
            pin: Pinned host memory (for a CUDA device).
        """
        from amc.data.loader import memory_batches

        x, y = self.tensors(split)
        return memory_batches(x, y, plan, augment, seed)

    def to_input(self, xb: torch.Tensor, device: torch.device | str,
                 channels_last: bool = False) -> torch.Tensor:
        """A batch from :meth:`batches` on ``device``, normalised, as the network takes it."""
        from amc.data.loader import to_input

        return to_input(xb, self.mean, self.std, device, channels_last)

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


def calibration_index(n_train: int, n: int, seed: int) -> torch.Tensor:
    """Indices of the calibration draw: ``n`` of ``n_train`` training images, chosen by
    ``seed``."""
    return torch.randperm(n_train, generator=torch.Generator().manual_seed(seed))[:max(1, n)]


def split_indices(n_train: int, n_test: int, val_size: int,
                  seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(val, train, test) indices: ``val_size`` training images drawn by ``seed`` (in random
    order, so the first N of val are a random sample), the rest of train in order, and test
    in one fixed shuffled order (independent of the seed), for the same reason."""
    if not 0 < val_size < n_train:
        raise AmcError(f"val size {val_size} must be between 1 and {n_train - 1}")
    perm = np.random.default_rng(seed).permutation(n_train)
    test_idx = np.random.default_rng(20180908).permutation(n_test)
    return perm[:val_size], np.sort(perm[val_size:]), test_idx


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


def digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's 8x8 digits: images (1797, 8, 8) in 0..16 and labels, read from the
    ``digits.csv.gz`` scikit-learn ships, without importing scikit-learn (1.4 s: it imports
    SciPy); :func:`sklearn.datasets.load_digits` where that file is not found."""
    import gzip
    import importlib.util

    spec = importlib.util.find_spec("sklearn")
    csv = (Path(spec.origin).parent / "datasets" / "data" / "digits.csv.gz"
           if spec is not None and spec.origin else None)
    if csv is None or not csv.is_file():
        from sklearn.datasets import load_digits

        d = load_digits()
        return d.images, d.target
    with gzip.open(csv, "rt") as f:
        data = np.loadtxt(f, delimiter=",")
    return data[:, :-1].reshape(-1, 8, 8), data[:, -1].astype(int)


def _load_digits() -> tuple[dict, dict, list[str]]:
    images, target = digits_arrays()
    x = np.rint(images * (255.0 / 16.0)).astype(np.uint8)[..., None]
    y = target.astype(np.int64)
    perm = np.random.default_rng(12345).permutation(len(y))
    n_test = 360
    test, train = perm[:n_test], perm[n_test:]
    return ({"train": x[train], "test": x[test]}, {"train": y[train], "test": y[test]},
            [str(i) for i in range(10)])


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
    key = source_hash(source)
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
        return from_members(read_archive(src), str(src))
    if (src / "data_batch_1").is_file():
        return read_cifar_batches(src)
    return from_members(read_tree(src), str(src))


# ----------------------------------------------------------------------------- public API


def load_dataset(name: str, data_dir: str | Path | None = None, val_size: int | None = None,
                 seed: int = 0, download: bool = False,
                 input_size: tuple[int, ...] | None = None,
                 loader_workers: int | None = None) -> Dataset:
    """Load and split a dataset.

    Args:
        name: ``digits``, ``cifar10`` or ``imagefolder:PATH``.
        data_dir: Where ``cifar10`` lives (default ``$AMC_DATA_DIR``).
        val_size: Images held out of ``train`` as ``val`` (default 5,000 for CIFAR-10, 10 %
            of train, at most 3,000, for image folders, 10 % of train otherwise).
        seed: Seed of the ``val`` draw; the same seed gives the same ``val``.
        download: Let torchvision download CIFAR-10 into ``data_dir`` (needs network).
        input_size: (C, H, W) an image folder's images are cropped to (default 3 x 224 x
            224); digits and CIFAR-10 keep their own size.
        loader_workers: DataLoader worker processes of an image folder.

    Returns:
        The dataset, cached in memory for the process.
    """
    size = tuple(input_size) if input_size else None
    key = (name, str(data_dir), val_size, seed) + ((size, loader_workers)
                                                   if name.startswith("imagefolder:") else ())
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
        from amc.data.stream import load_imagefolder

        _MEMORY[key] = load_imagefolder(name, src, val_size, seed, size, loader_workers)
        return _MEMORY[key]
    else:
        raise AmcError(f"unknown dataset {name!r}; use digits, cifar10 or imagefolder:PATH")
    n_train = len(labels["train"])
    if val_size is None:
        val_size = max(1, n_train // 10)
    val_idx, train_idx, test_idx = split_indices(n_train, len(labels["test"]), val_size, seed)
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


def train_view(ds: Dataset, limit: int | None, seed: int) -> Dataset:
    """``ds`` with a seeded random ``limit`` of its training images (all: ``ds`` itself), the
    training set of every fine-tuning in a comparison (and of a search's finalists)."""
    if not limit or limit >= len(ds.labels["train"]):
        return ds
    idx = np.random.default_rng(seed).permutation(len(ds.labels["train"]))[:limit]
    return ds.select(train=idx)
