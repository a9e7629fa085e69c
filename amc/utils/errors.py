"""User-facing errors.

Every problem a user can fix (bad name, missing file, wrong shape) is raised as
:class:`AmcError`; the CLI prints its message on one line and exits with code 2.
"""

from __future__ import annotations


class AmcError(Exception):
    """An error caused by the user's input, with a message that names the fix."""
