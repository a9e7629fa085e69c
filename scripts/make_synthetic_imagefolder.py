"""Write a synthetic ImageFolder tree (``train/<class>/``, ``test/<class>/``) of JPEGs of mixed
sizes, for tests and benchmarks of ``imagefolder:PATH``.

    .venv/bin/python scripts/make_synthetic_imagefolder.py --out runs/synth5k --train 5000
    .venv/bin/python scripts/make_synthetic_imagefolder.py --out runs/cifar_sub --train 5000 \\
        --source cifar10 --data-dir ../shared/data --min-size 32 --max-size 32

Images are drawn procedurally (class-specific tinted gratings, learnable) or resized from
CIFAR-10 (``--source cifar10``); every image gets its own height and width in
[--min-size, --max-size]. A second run with the same options completes an interrupted folder
without rewriting it. Write it under ``runs/`` or a temporary folder (git ignores ``runs/``).
"""

from __future__ import annotations

import argparse
import sys
import time

from amc.data.synthetic import write_synthetic_imagefolder
from amc.utils.errors import AmcError


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, help="folder to write (train/ and test/ inside)")
    p.add_argument("--train", type=int, default=5000, help="training images")
    p.add_argument("--test", type=int, default=None, help="test images (default: train / 10)")
    p.add_argument("--classes", type=int, default=10, help="classes (procedural source)")
    p.add_argument("--min-size", type=int, default=160, help="smallest side in pixels")
    p.add_argument("--max-size", type=int, default=500, help="largest side in pixels")
    p.add_argument("--source", default="procedural", help="procedural or cifar10")
    p.add_argument("--data-dir", default=None, help="where CIFAR-10 lives (--source cifar10)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quality", type=int, default=90, help="JPEG quality")
    a = p.parse_args()
    t = time.perf_counter()
    try:
        n = write_synthetic_imagefolder(a.out, a.train, a.test if a.test is not None
                                        else max(1, a.train // 10), a.classes, a.min_size,
                                        a.max_size, a.seed, a.source, a.data_dir, a.quality)
    except AmcError as e:
        print(f"make_synthetic_imagefolder: error: {e}", file=sys.stderr)
        return 2
    print(f"{a.out}: {n['train']} train + {n['test']} test JPEGs ({n['written']} written now, "
          f"{time.perf_counter() - t:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
