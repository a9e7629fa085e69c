"""Streamed image folders: ``imagefolder:PATH``, a ``train/<class>/`` + ``test/<class>/`` tree
(or a tar of one) of images of any sizes, read lazily.

Nothing is decoded up front: the training and test splits are lists of files that a
:class:`torch.utils.data.DataLoader` with worker processes reads batch by batch through
torchvision's transforms, ImageNet convention (train: ``RandomResizedCrop`` + horizontal
flip at the input size; eval: ``Resize`` to size / 0.875, then ``CenterCrop``). Workers
return uint8 tensors; :func:`amc.data.loader.to_input` normalises them on the device.

What the search needs is small and fixed: its reward set ``val`` (held out of ``train``,
3,000 images at most by default, as AMC uses for ImageNet) and the calibration draws are
decoded once at the eval transform to fixed-size uint8 arrays, cached on disk (under
:func:`~amc.data.datasets.cache_dir`, keyed by the folder's content, the files and the
size) and in memory. A tar is extracted once into the cache.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tarfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from amc.data.datasets import (
    Dataset,
    cache_dir,
    calibration_index,
    check_split,
    source_hash,
    split_indices,
)
from amc.data.loader import BatchPlan, epoch_seed
from amc.utils.errors import AmcError, one_line
from amc.utils.io import atomic_write

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
EVAL_CROP = 0.875
"""Eval resizes the shorter side to size / 0.875 and crops the centre (224 from 256)."""
MAX_VAL = 3000
"""Default size of ``val`` for image folders: 10 % of train, at most AMC's 3,000."""
SPLIT_DIRS = {"train": ("train", "training"), "test": ("test", "testing", "valid", "val")}


def default_loader_workers() -> int:
    """DataLoader worker processes when none are asked for: half the CPUs (1 to 8)."""
    return max(1, min(8, (os.cpu_count() or 2) // 2))


def image_transform(size: tuple[int, int, int], train: bool) -> Callable:
    """PIL image -> uint8 CHW tensor at ``size`` (train: random-resized crop and flip)."""
    from torchvision.transforms import v2

    _, h, w = size
    ops = ([v2.RandomResizedCrop((h, w), antialias=True), v2.RandomHorizontalFlip()] if train
           else [v2.Resize(round(min(h, w) / EVAL_CROP), antialias=True), v2.CenterCrop((h, w))])
    return v2.Compose([*ops, v2.PILToTensor()])


class ImageFiles(torch.utils.data.Dataset):
    """Image files and labels, decoded and transformed one at a time (in loader workers).

    Args:
        files: Image paths.
        labels: Their labels.
        size: (C, H, W) of the output; C is 3 (RGB) or 1 (grey).
        train: Random training transform instead of the eval one.
    """

    def __init__(self, files: list[str], labels: np.ndarray, size: tuple[int, int, int],
                 train: bool):
        self.files, self.labels, self.size = files, labels, size
        self.transform = image_transform(size, train)

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        from PIL import Image, UnidentifiedImageError

        try:
            with Image.open(self.files[i]) as im:
                im = im.convert("RGB" if self.size[0] == 3 else "L")
        except (UnidentifiedImageError, OSError, ValueError) as e:
            raise AmcError(f"cannot decode image {self.files[i]} ({type(e).__name__}); remove "
                           "or replace the broken file") from e
        return self.transform(im), int(self.labels[i])


def file_batches(files: list[str], labels: np.ndarray, size: tuple[int, int, int],
                 plan: BatchPlan, train: bool, workers: int, pin: bool = False,
                 seed: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """The plan's batches of ``files`` as uint8 NCHW tensors and int64 labels, read by a
    DataLoader with ``workers`` processes (0: in this process); the random transforms are
    seeded by ``seed``, the plan's epoch and rank."""
    loader = torch.utils.data.DataLoader(
        ImageFiles(files, labels, size, train), batch_sampler=plan, num_workers=workers,
        pin_memory=pin, prefetch_factor=4 if workers else None,
        generator=torch.Generator().manual_seed(epoch_seed(seed, plan.epoch, plan.rank)))
    try:
        yield from loader
    except AmcError as e:  # from a worker, re-raised here with its traceback in the message
        last = str(e).strip().splitlines()[-1]
        if "AmcError: " not in last:
            raise
        raise AmcError(last.partition("AmcError: ")[2]) from None


def decode(files: list[str], size: tuple[int, int, int], workers: int) -> np.ndarray:
    """``files`` at the eval transform, as one uint8 NHWC array (in file order)."""
    out = np.empty((len(files), size[1], size[2], size[0]), np.uint8)
    plan = BatchPlan(len(files), 64, shuffle=False)
    dummy = np.zeros(len(files), np.int64)
    s = 0
    for xb, _ in file_batches(files, dummy, size, plan, False, workers):
        out[s:s + len(xb)] = xb.permute(0, 2, 3, 1).numpy()
        s += len(xb)
    return out


def cached_decode(files: list[str], size: tuple[int, int, int], source: str,
                  workers: int) -> np.ndarray:
    """:func:`decode`, cached on disk by (source content, files, size)."""
    h = hashlib.sha256(f"{source}|{size}|".encode())
    h.update("\n".join(files).encode())
    f = cache_dir() / "stream" / f"{h.hexdigest()[:24]}.npy"
    if f.is_file():
        try:
            a = np.load(f, allow_pickle=False)
            if a.shape == (len(files), size[1], size[2], size[0]):
                return a
        except (OSError, ValueError):
            pass  # a broken cache entry is rebuilt
    a = decode(files, size, workers)
    with atomic_write(f, suffix=f".{os.getpid()}.npy") as tmp:  # concurrent workers
        np.save(tmp, a)
    return a


@dataclass
class StreamedDataset(Dataset):
    """An image folder whose ``train`` and ``test`` splits are streamed from files; ``val``
    is decoded (``images["val"]``) like an in-memory split.

    Attributes:
        files: Split name -> image paths of a streamed split (aligned with ``labels``).
        size: (C, H, W) the images are cropped to.
        source: Key of the folder's content (for the decode cache).
        workers: DataLoader worker processes.
    """

    files: dict[str, list[str]] = field(default_factory=dict)
    size: tuple[int, int, int] = (3, 224, 224)
    source: str = ""
    workers: int = 1

    @property
    def input_size(self) -> tuple[int, int, int]:
        return self.size

    def streamed(self, split: str) -> bool:
        return split in self.files

    def tensors(self, split: str, limit: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Normalised tensors of ``split``; a streamed split's first ``limit`` images (all
        of it by default: only for small folders) are decoded at the eval transform."""
        check_split(split)
        if not self.streamed(split):
            return super().tensors(split, limit)
        n = len(self.files[split]) if limit is None else min(limit, len(self.files[split]))
        key = f"{split}[:{n}]"
        if key not in self._tensors:
            u8 = cached_decode(self.files[split][:n], self.size, self.source, self.workers)
            self._tensors[key] = (self.normalize(u8),
                                  torch.as_tensor(self.labels[split][:n], dtype=torch.long))
        return self._tensors[key]

    def calibration(self, n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """The calibration draw (see :meth:`Dataset.calibration`), decoded from its files."""
        idx = calibration_index(len(self.labels["train"]), n, seed).numpy()
        key = f"calib:{len(idx)}:{seed}"
        if key not in self._tensors:
            files = [self.files["train"][i] for i in idx]
            u8 = cached_decode(files, self.size, self.source, self.workers)
            self._tensors[key] = (self.normalize(u8),
                                  torch.as_tensor(self.labels["train"][idx], dtype=torch.long))
        return self._tensors[key]

    def select(self, **index: np.ndarray | slice) -> StreamedDataset:
        ds = super().select(**index)
        ds.files = {s: ([f[i] for i in np.arange(len(f))[index[s]]] if s in index else f)
                    for s, f in self.files.items()}
        return ds

    def batches(self, split: str, plan: BatchPlan, augment: bool = False, seed: int = 0,
                pin: bool = False) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        if not self.streamed(split):
            return super().batches(split, plan, augment, seed, pin)
        return file_batches(self.files[split], self.labels[split], self.size, plan, augment,
                            self.workers, pin, seed)


def _extracted(archive: Path) -> Path:
    """The folder a tar of an image folder is extracted to once (in the cache)."""
    dest = cache_dir() / "folders" / f"{archive.name}-{source_hash(archive)}"
    if dest.is_dir():
        return dest
    tmp = dest.with_name(f"{dest.name}.tmp{os.getpid()}")
    try:
        with tarfile.open(archive) as tar:
            tar.extractall(tmp, filter="data")
    except (tarfile.TarError, OSError, EOFError) as e:
        shutil.rmtree(tmp, ignore_errors=True)
        raise AmcError(f"{archive} is not a readable tar archive ({one_line(e)}); pass a tar "
                       "of an ImageFolder tree (train/<class>/, test/<class>/)") from e
    try:
        tmp.rename(dest)
    except OSError:  # another process extracted it meanwhile
        shutil.rmtree(tmp, ignore_errors=True)
    return dest


def _split_dirs(root: Path, what: str) -> dict[str, Path]:
    """``train`` and ``test`` folders of ``root`` (or of a folder up to two levels below)."""
    for base in (root, *sorted(p for p in root.glob("*") if p.is_dir()),
                 *sorted(p for p in root.glob("*/*") if p.is_dir())):
        found = {s: next((base / d for d in names if (base / d).is_dir()), None)
                 for s, names in SPLIT_DIRS.items()}
        if all(found.values()):
            return found  # type: ignore[return-value]
    raise AmcError(f"{what} has no train/<class>/ and test/<class>/ image folders; give an "
                   "ImageFolder tree or a tar of one")


def _scan(dirs: dict[str, Path], what: str) -> tuple[list[str], dict, dict]:
    from torchvision.datasets.folder import IMG_EXTENSIONS, find_classes, make_dataset

    try:
        classes, index = find_classes(dirs["train"])
    except FileNotFoundError as e:
        raise AmcError(f"{what}: {one_line(e)}; put the training images in train/<class>/")\
            from e
    files, labels = {}, {}
    for split, d in dirs.items():
        items = make_dataset(d, index, IMG_EXTENSIONS, allow_empty=True)
        if not items:
            raise AmcError(f"{what} has no {split} images of the train classes "
                           f"({', '.join(classes[:5])}, ...); give matching "
                           f"{d.name}/<class>/ folders")
        files[split] = [p for p, _ in items]
        labels[split] = np.array([c for _, c in items], dtype=np.int64)
    return classes, files, labels


def load_imagefolder(name: str, path: Path, val_size: int | None, seed: int,
                     size: tuple[int, ...] | None, workers: int | None) -> StreamedDataset:
    """Scan an image folder (or extract a tar of one), split it and decode ``val``.

    Args:
        name: The dataset's name as the user gave it.
        path: The folder or archive.
        val_size: Training images held out as ``val`` (default 10 %, at most 3,000).
        seed: Seed of the ``val`` draw.
        size: (C, H, W) the images are cropped to (default 3 x 224 x 224).
        workers: DataLoader worker processes (default: :func:`default_loader_workers`).
    """
    size = tuple(size or (3, 224, 224))
    if len(size) != 3 or size[0] not in (1, 3) or min(size) < 1:
        raise AmcError(f"--input-size takes C H W with C 1 or 3, e.g. 3 224 224; got "
                       f"{' '.join(map(str, size))}")
    root = _extracted(path) if path.is_file() else path
    classes, files, labels = _scan(_split_dirs(root, str(path)), str(path))
    n_train = len(labels["train"])
    val_size = min(MAX_VAL, max(1, n_train // 10)) if val_size is None else val_size
    val_idx, train_idx, test_idx = split_indices(n_train, len(labels["test"]), val_size, seed)
    workers = default_loader_workers() if workers is None else workers
    source = f"{path.name}-{source_hash(path)}"
    val_files = [files["train"][i] for i in val_idx]
    channels = size[0]
    mean, std = ((IMAGENET_MEAN, IMAGENET_STD) if channels == 3 else
                 ((sum(IMAGENET_MEAN) / 3,), (sum(IMAGENET_STD) / 3,)))
    return StreamedDataset(
        name=name, classes=classes, mean=mean, std=std,
        images={"val": cached_decode(val_files, size, source, workers)},
        labels={"train": labels["train"][train_idx], "val": labels["train"][val_idx],
                "test": labels["test"][test_idx]},
        val_index=val_idx, test_index=test_idx,
        files={"train": [files["train"][i] for i in train_idx],
               "test": [files["test"][i] for i in test_idx]},
        size=size, source=source, workers=workers)
