"""Synthetic image folders for tests and benchmarks: ``train/<class>/`` and ``test/<class>/``
trees of JPEGs of mixed sizes, drawn procedurally or resized from CIFAR-10.

Procedural images are learnable: class ``k`` of ``K`` is a sinusoidal grating at angle
``180° k / K`` tinted with hue ``k / K``, with random frequency, phase, contrast and noise.
Each image gets its own random height and width in [min_size, max_size]. Files are named by
index and written atomically, so an interrupted write resumes where it stopped.
"""

from __future__ import annotations

import colorsys
from pathlib import Path

import numpy as np

from amc.utils.errors import AmcError
from amc.utils.io import atomic_write


def grating(label: int, classes: int, h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    """One procedural RGB image (uint8, h x w x 3) of class ``label``."""
    theta = np.pi * label / classes
    freq = rng.uniform(3.0, 8.0)
    y = np.linspace(0.0, 1.0, h, dtype=np.float32)[:, None]
    x = np.linspace(0.0, 1.0, w, dtype=np.float32)[None, :]
    wave = np.sin(2 * np.pi * freq * (x * np.cos(theta) + y * np.sin(theta))
                  + rng.uniform(0, 2 * np.pi))
    tint = np.array(colorsys.hsv_to_rgb(label / classes, 0.8, 1.0), np.float32)
    contrast = rng.uniform(0.3, 0.5)
    img = 0.5 + contrast * wave[..., None] * tint[None, None, :]
    img += rng.normal(0.0, 0.06, (h, w, 1)).astype(np.float32)
    return (np.clip(img, 0.0, 1.0) * 255).astype(np.uint8)


def _cifar_images(data_dir: str | Path | None, n: dict[str, int], seed: int):
    from amc.data.datasets import load_dataset

    ds = load_dataset("cifar10", data_dir=data_dir, val_size=1)
    rng = np.random.default_rng(seed)
    out = {}
    for split, count in n.items():
        src = "train" if split == "train" else "test"
        if count > len(ds.labels[src]):
            raise AmcError(f"CIFAR-10 has {len(ds.labels[src])} {src} images; ask for fewer")
        idx = np.sort(rng.choice(len(ds.labels[src]), count, replace=False))
        out[split] = (ds.images[src], ds.labels[src], idx)
    return ds.classes, out


def write_synthetic_imagefolder(out: str | Path, n_train: int, n_test: int, classes: int = 10,
                                min_size: int = 160, max_size: int = 500, seed: int = 0,
                                source: str = "procedural", data_dir: str | Path | None = None,
                                quality: int = 90) -> dict[str, int]:
    """Write (or complete) a synthetic image folder.

    Args:
        out: The folder (``train/<class>/``, ``test/<class>/`` go inside).
        n_train: Training images (spread evenly over the classes).
        n_test: Test images.
        classes: Number of classes (procedural only; CIFAR-10 has 10).
        min_size: Smallest height or width in pixels.
        max_size: Largest height or width in pixels.
        seed: Seed of sizes and contents (the same seed writes the same folder).
        source: ``procedural`` or ``cifar10`` (CIFAR-10 images resized; needs ``data_dir``).
        data_dir: Where CIFAR-10 lives (see :func:`amc.data.datasets.load_dataset`).
        quality: JPEG quality.

    Returns:
        Images per split, and how many were newly written.
    """
    from PIL import Image

    if not 1 <= min_size <= max_size:
        raise AmcError(f"sizes must satisfy 1 <= min-size <= max-size, got {min_size}, "
                       f"{max_size}")
    if source not in ("procedural", "cifar10"):
        raise AmcError(f"unknown source {source!r}; use procedural or cifar10")
    counts = {"train": n_train, "test": n_test}
    if source == "cifar10":
        names, cifar = _cifar_images(data_dir, counts, seed)
    else:
        names = [f"class{k:02d}" for k in range(classes)]
    root, written = Path(out), 0
    for s_i, (split, n) in enumerate(counts.items()):
        rng = np.random.default_rng([seed, s_i])
        sizes = rng.integers(min_size, max_size + 1, (n, 2))
        for i in range(n):
            if source == "cifar10":
                images, labels, idx = cifar[split]
                label = int(labels[idx[i]])
            else:
                label = i % len(names)
            f = root / split / names[label] / f"{i:06d}.jpg"
            if f.is_file():
                continue
            h, w = (int(v) for v in sizes[i])
            img_rng = np.random.default_rng([seed, s_i, i])
            if source == "cifar10":
                im = Image.fromarray(images[idx[i]]).resize((w, h), Image.Resampling.BICUBIC)
            else:
                im = Image.fromarray(grating(label, len(names), h, w, img_rng))
            with atomic_write(f, suffix=".jpg") as tmp:
                im.save(tmp, format="JPEG", quality=quality)
            written += 1
    return {**counts, "written": written}
