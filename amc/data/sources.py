"""Decoding image sources into memory: CIFAR-10's pickled batches, and ImageFolder trees or
tar archives of images of one size (the in-memory path of ``cifar10``), as uint8 NHWC
arrays."""

from __future__ import annotations

import hashlib
import io
import pickle
import tarfile
from pathlib import Path

import numpy as np

from amc.utils.errors import AmcError

CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                   "ship", "truck"]
IMG_EXT = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".webp")


def decode_image(data: bytes, name: str = "image") -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as im:
            return np.asarray(im.convert("RGB"), dtype=np.uint8)
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise AmcError(f"cannot decode image {name} ({type(e).__name__}); remove or replace "
                       "the broken file") from e


def from_members(members: list[tuple[str, bytes]], what: str) -> tuple[dict, dict, list[str]]:
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
        decoded = [decode_image(d, f"{split}/{c}/{f}") for c, f, d in items]
        if len({a.shape for a in decoded}) > 1:
            raise AmcError(f"{what} holds images of different sizes in {split} "
                           f"({sorted({a.shape[:2] for a in decoded})[:3]}); load it as "
                           "imagefolder:PATH (streamed, any sizes) or resize them to one size")
        images[split] = np.stack(decoded)
        labels[split] = np.array([index[c] for c, _, _ in items], dtype=np.int64)
    return images, labels, classes


def read_archive(path: Path) -> list[tuple[str, bytes]]:
    try:
        with tarfile.open(path) as tar:
            return [(m.name, tar.extractfile(m).read()) for m in tar if m.isfile()]
    except (tarfile.TarError, OSError, EOFError) as e:
        raise AmcError(f"{path} is not a readable tar archive ({e}); pass a .tar.gz of an "
                       "ImageFolder tree") from e


def read_tree(root: Path) -> list[tuple[str, bytes]]:
    return [(str(p.relative_to(root)), p.read_bytes()) for p in sorted(root.rglob("*"))
            if p.is_file() and p.suffix.lower() in IMG_EXT]


def read_cifar_batches(root: Path) -> tuple[dict, dict, list[str]]:
    def load(name: str) -> tuple[np.ndarray, np.ndarray]:
        with open(root / name, "rb") as f:
            d = pickle.load(f, encoding="latin1")  # torchvision's own format
        return (np.asarray(d["data"], np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1),
                np.asarray(d["labels"], np.int64))

    parts = [load(f"data_batch_{i}") for i in range(1, 6)]
    xt, yt = load("test_batch")
    return ({"train": np.concatenate([p[0] for p in parts]), "test": xt},
            {"train": np.concatenate([p[1] for p in parts]), "test": yt}, list(CIFAR10_CLASSES))


def source_hash(path: Path) -> str:
    """A short hash of a file's content or of a folder's listing (names, sizes, times)."""
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
