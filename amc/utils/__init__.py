"""Infrastructure every stage uses: user-facing errors, atomic file writes, progress bars,
provenance (versions, git commit, time) and the one bisection."""

from amc.utils.bisection import bisect
from amc.utils.errors import AmcError
from amc.utils.io import atomic_write, write_json, write_text

__all__ = ["AmcError", "atomic_write", "bisect", "write_json", "write_text"]
