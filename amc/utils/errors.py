"""User-facing errors.

Every problem a user can fix (bad name, missing file, wrong shape) is raised as
:class:`AmcError`; the CLI prints its message on one line and exits with code 2.
"""

from __future__ import annotations

import re


class AmcError(Exception):
    """An error caused by the user's input, with a message that names the fix."""


def and_more(names: list[str]) -> str:
    """``"a"``, or ``"a and 2 more"``: the first of several things a message names."""
    return names[0] + (f" and {len(names) - 1} more" if len(names) > 1 else "")


def one_line(e: BaseException) -> str:
    """The first line of the innermost cause of ``e`` (at most 200 characters), for one-line
    error messages that quote a library's exception."""
    while e.__cause__ is not None:  # the innermost cause names the real problem
        e = e.__cause__
    lines = re.sub(r"\x1b\[[0-9;]*m", "", str(e)).strip().splitlines() or [type(e).__name__]
    return lines[0] if len(lines[0]) <= 200 else lines[0][:197] + "..."
