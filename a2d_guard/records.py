"""The one reader of row files (JSONL, JSON, CSV) for training and evaluation data.

Every record comes with its position ("file:line" or "file: row i"), so a bad row is named
where the user can find it.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from a2d_guard.errors import A2DGuardError


def _decode(path: Path) -> str:
    data = path.read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise A2DGuardError(f"{path}:{line}: bytes that are not UTF-8; re-save the file as UTF-8") from None


def read_records(path: Path, also: str = ""):
    """Yield (record, "file:line") from a JSONL, JSON or CSV file.

    A bad JSONL line is yielded as an ``A2DGuardError`` in place of its record, so a caller that
    skips bad rows can go on; ``also`` names the other sources the caller takes, for the
    unknown-format message.
    """
    text = _decode(path)
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".ndjson"):
        for n, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                yield json.loads(line), f"{path}:{n}"
            except json.JSONDecodeError as exc:
                yield A2DGuardError(f"{path}:{n}: not valid JSON ({exc.msg}); one JSON object per line"), f"{path}:{n}"
    elif suffix == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise A2DGuardError(f"{path}:{exc.lineno}: not valid JSON ({exc.msg})") from None
        if isinstance(data, dict) and isinstance(data.get("data"), list):
            data = data["data"]
        if not isinstance(data, list):
            raise A2DGuardError(f"{path}: a .json data file must hold a list of rows (or {{'data': [...]}})")
        for i, obj in enumerate(data):
            yield obj, f"{path}: row {i}"
    elif suffix == ".csv":
        reader = csv.DictReader(io.StringIO(text, newline=""))
        for obj in reader:
            yield dict(obj), f"{path}:{reader.line_num}"
    else:
        raise A2DGuardError(f"{path}: unknown data format {suffix!r}; use .jsonl, .json or .csv{also}")
