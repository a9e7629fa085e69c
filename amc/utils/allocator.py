"""Keeping freed memory in the process (glibc), so that CPU timings do not depend on what the
process freed before.

PyTorch on CPU allocates every activation with ``malloc``. glibc serves blocks above its mmap
threshold (128 KiB, raised on the fly up to 32 MiB as mmapped blocks are freed) with fresh
``mmap`` pages and gives the top of its heap back to the OS past its trim threshold; either way
the next forward pays page faults for its activations, or not, depending on the heap's history.
On this project's 2-core Xeon the same dense ResNet-56 at batch 64 (2 threads) timed 87 to 261 ms
in different processes, and a uniform-0.8 pruning of it 0.50 to 0.69 of the dense time: the
speed-up of a pruned model was not reproducible from one process to the next.

:func:`settle` fixes both thresholds once per process (mmap: 32 MiB, glibc's largest; trim:
1 GiB), so that freed activations are reused without page faults, as the allocators PyTorch's
CPU performance guide recommends (jemalloc, tcmalloc) do. Timings then agree across processes
(dense 87-92 ms, uniform 0.8 at 0.57-0.60 of it in four processes). The one timer
(:func:`amc.cost.timing.interleaved`) and the ``amc`` command settle it; ``AMC_MALLOC=default``
leaves glibc as it is. Elsewhere than glibc nothing changes.
"""

from __future__ import annotations

import ctypes
import os

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 32 << 20
"""glibc's largest mmap threshold on 64-bit systems (larger values are refused)."""
TRIM_THRESHOLD = 1 << 30

_state: str | None = None


def settle() -> str:
    """Fix glibc's mmap and trim thresholds (once per process; later calls do nothing).

    Returns:
        What the process's allocator now is (:func:`state`).
    """
    global _state
    if _state is None:
        _state = _apply()
    return _state


def state() -> str:
    """How the allocator was left: ``"glibc: mmap 32 MiB, trim 1 GiB"`` once settled, else
    a ``"default …"`` string saying why; recorded with every timing that depends on it."""
    return _state or "default (not settled)"


def _apply() -> str:
    if os.environ.get("AMC_MALLOC", "").lower() == "default":
        return "default (AMC_MALLOC=default)"
    try:  # the process's own symbols: libc is loaded already (no library search)
        libc = ctypes.CDLL(None)
        mallopt = libc.mallopt
        libc.gnu_get_libc_version  # noqa: B018 -- glibc only (musl's mallopt does nothing)
    except (OSError, AttributeError, TypeError):
        return "default (not glibc)"
    if mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) != 1 or \
            mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD) != 1:
        return "default (mallopt refused)"
    return "glibc: mmap 32 MiB, trim 1 GiB"
