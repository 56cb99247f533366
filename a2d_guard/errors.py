"""The one exception type for user mistakes.

Why a subclass of ``ValueError``: library callers that already catch ``ValueError`` keep
working, while the CLI can tell a user mistake (print one line, exit 1) from a bug
(traceback) by catching exactly this type.
"""

from __future__ import annotations


class A2DGuardError(ValueError):
    """A bad input: the message names the bad value and how to fix it."""


class A2DGuardWarning(UserWarning):
    """Something the user should know but that does not stop the work (e.g. an adapter loaded
    on another base than it was trained on). The CLI prints it as one ``warning:`` line."""
