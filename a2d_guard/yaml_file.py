"""The one reader of the YAML settings files of ``train``, ``serve`` and ``eval`` (``--config``).

Why one: the three commands used to say different things for the same mistake (a missing
file, a tab in the wrong place, a list where settings were expected); now each way a
settings file can be wrong has one message, naming the file, the line and the fix.
"""

from __future__ import annotations

from pathlib import Path

from a2d_guard.errors import A2DGuardError
from a2d_guard.paths import require_file


def read_yaml_mapping(path: str | Path, what: str = "--config") -> dict:
    """The mapping at the top of a YAML file (``{}`` for an empty file), keys as text with ``-`` as ``_``.

    ``what`` names the file in messages (``--config``, ``config file``).
    """
    import yaml

    path = require_file(path, what, "pass a YAML file to --config")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise A2DGuardError(f"{what} {str(path)!r} is not UTF-8 text; save it as UTF-8") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f" line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None)
        raise A2DGuardError(f"{what} {str(path)!r}{line} is not valid YAML" + (f" ({problem})" if problem else "")
                            + "; fix the syntax") from None
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise A2DGuardError(f"{what} {str(path)!r} must hold a mapping of setting: value lines, "
                            f"not a {type(raw).__name__}")
    return {str(k).replace("-", "_"): v for k, v in raw.items()}
