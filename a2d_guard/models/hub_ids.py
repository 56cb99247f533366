"""Hub ids next to local paths: tell them apart, and fetch only the files we read.

Why one place: ``--model`` and ``--adapter`` both take "a local folder or a Hub id", and
must agree on which is which (an existing path always wins; ``ORG/NAME`` that is not a
path goes to the Hub).
"""

from __future__ import annotations

import os
from pathlib import Path

from a2d_guard.errors import A2DGuardError


def looks_like_hub_id(name: str) -> bool:
    """``ORG/NAME``: one slash, not a relative or absolute path spelling."""
    return (
        str(name).count("/") == 1
        and not str(name).startswith((".", "/", "~"))
        and not str(name).endswith("/")
        and os.sep == "/"
    )


def fetch_snapshot(repo_id: str, patterns: list[str], what: str) -> Path:
    """Download (or reuse from the cache) the files of ``repo_id`` matching ``patterns``."""
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(repo_id, allow_patterns=patterns))
    except Exception as exc:  # network, auth, missing repo: all user-fixable
        raise A2DGuardError(
            f"{what} {repo_id!r} is not a local folder, and fetching it from the Hub failed "
            f"({type(exc).__name__}); check the id and your network (and `hf auth login` for a private "
            "repo), or pass a local folder"
        ) from None
