"""Checks on paths the user passes in: one message per way a path can be wrong.

Why: "does not exist" for a path that exists but is of the wrong kind (a file where a
folder is wanted, or the reverse) sends the user looking for a typo that is not there.
Each check names what is actually wrong and appends the caller's fix.
"""

from __future__ import annotations

from pathlib import Path

from a2d_guard.errors import A2DGuardError


def require_file(path: str | Path, what: str, fix: str) -> Path:
    """``path`` as a Path if it is a regular file; else A2DGuardError ``"<what> '<path>' ...; <fix>"``."""
    p = Path(path).expanduser()
    if p.is_file():
        return p
    if p.is_dir():
        problem = "is a folder, not a file"
    elif p.exists():
        problem = "is not a regular file"
    else:
        problem = "does not exist"
    raise A2DGuardError(f"{what} {str(path)!r} {problem}; {fix}")


def require_folder(path: str | Path, what: str, fix: str) -> Path:
    """``path`` as a Path if it is a folder; else A2DGuardError ``"<what> '<path>' ...; <fix>"``."""
    p = Path(path).expanduser()
    if p.is_dir():
        return p
    problem = "is a file, not a folder" if p.exists() else "does not exist"
    raise A2DGuardError(f"{what} {str(path)!r} {problem}; {fix}")
