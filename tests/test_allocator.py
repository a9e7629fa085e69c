"""The allocator settling (:mod:`amc.utils.allocator`): freed memory stays in the process, so
that a timing does not depend on what the process freed before; and the way out."""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest

# malloc 16 MiB (above glibc's initial 128 KiB mmap threshold, below the settled 32 MiB),
# touch it, free it: how many MiB the process's resident memory drops
_PROBE = """
import ctypes, sys
from amc.utils import allocator
if sys.argv[1] == "settle":
    print(allocator.settle())
else:
    print(allocator.state())
libc = ctypes.CDLL("libc.so.6")
libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
rss = lambda: int(open("/proc/self/statm").read().split()[1]) * 4096
n = 16 << 20
p = libc.malloc(n)
ctypes.memset(p, 1, n)
before = rss()
libc.free(p)
print((before - rss()) >> 20)
"""

glibc = pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc",
                           reason="glibc's mallopt on Linux")


def _probe(mode: str, **env: str) -> tuple[str, int]:
    out = subprocess.run([sys.executable, "-c", _PROBE, mode], capture_output=True, text=True,
                         check=True, env={**os.environ, **env}).stdout.splitlines()
    return out[0], int(out[1])


@glibc
def test_settled_allocator_keeps_freed_memory_for_the_next_allocation():
    state, dropped = _probe("settle")
    assert state == "glibc: mmap 32 MiB, trim 1 GiB"
    assert dropped < 2  # reused by the next allocation, without fresh pages
    state, dropped = _probe("leave")  # must differ: glibc's default gives the pages back
    assert state == "default (not settled)"
    assert dropped >= 14


@glibc
def test_amc_malloc_default_leaves_glibc_as_it_is():
    state, dropped = _probe("settle", AMC_MALLOC="default")
    assert state == "default (AMC_MALLOC=default)"
    assert dropped >= 14
