"""Turn user mistakes into one clear line and exit code 1 (never a traceback)."""

from __future__ import annotations

import functools
import sys
import warnings
from collections.abc import Callable
from typing import Any

import typer

from a2d_guard.errors import A2DGuardError

# What counts as a user mistake: our own error type (raised where input is checked, with the
# fix named) and the OS saying a path is wrong. Not every ValueError: one from a bug here or in
# a dependency must keep its traceback, or nobody can find it.
USER_ERRORS: tuple[type[BaseException], ...] = (A2DGuardError, OSError)


def fail(message: str) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code=1)


def _one_line_warnings(previous: Callable[..., None]) -> Callable[..., None]:
    """A ``warnings.showwarning`` that prints our warnings as one ``warning: <message>`` line and
    hands anyone else's to ``previous`` (Python's own, or a test harness's)."""

    def show(message, category, filename, lineno, file=None, line=None) -> None:
        from a2d_guard.errors import A2DGuardWarning

        if issubclass(category, A2DGuardWarning):
            print(f"warning: {message}", file=sys.stderr)
        else:
            previous(message, category, filename, lineno, file, line)

    return show


def user_errors_exit_1(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Decorator for commands: a user error prints ``error: <message>`` and exits 1; an
    ``A2DGuardWarning`` prints ``warning: <message>`` (one line, no source location)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            with warnings.catch_warnings():
                warnings.showwarning = _one_line_warnings(warnings.showwarning)
                return fn(*args, **kwargs)
        except typer.Exit:
            raise
        except USER_ERRORS as exc:
            message = str(exc) or type(exc).__name__
            if isinstance(exc, OSError) and exc.filename is not None:
                message = f"{exc.strerror}: {exc.filename!r}"
            print(f"error: {message}", file=sys.stderr)
            raise typer.Exit(code=1) from None

    return wrapper
