"""The one exception type for user mistakes.

Why a subclass of ``ValueError``: library callers that already catch ``ValueError`` keep
working, while the CLI can tell a user mistake (print one line, exit 1) from a bug
(traceback) by catching exactly this type.
"""

from __future__ import annotations


class A2DGuardError(ValueError):
    """A bad input: the message names the bad value and how to fix it.

    ``param`` names the field at fault when there is one (a ``SamplingParams`` field, or
    ``prompt``/``messages``): the server puts it in OpenAI's error body as it is, so no
    caller ever has to find the field by reading the message.
    """

    def __init__(self, message: str = "", param: str | None = None):
        super().__init__(message)
        self.param = param


class A2DGuardWarning(UserWarning):
    """Something the user should know but that does not stop the work (e.g. an adapter loaded
    on another base than it was trained on). The CLI prints it as one ``warning:`` line."""
