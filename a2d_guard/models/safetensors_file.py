"""Check and read ``.safetensors`` files so that a damaged one is a user error, not a traceback.

A copy or download that stopped early leaves a file that is shorter than its header says.
The safetensors library then raises its own ``SafetensorError`` ("incomplete metadata,
file not fully covered"), and transformers wraps it in a longer traceback, neither of
which names the file or what to do. ``check_safetensors`` reads only the 8-byte length
and the JSON header (no tensor data), so it is cheap enough to run on every weights file
of a model folder before loading it.

File layout (the safetensors spec): ``u64 little-endian N`` | ``N bytes of JSON header``
| tensor bytes, where each tensor's ``data_offsets`` [begin, end) index the tensor bytes
and the largest ``end`` is exactly the size of that part.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import torch

from a2d_guard.errors import A2DGuardError

_MAX_HEADER = 100_000_000  # the safetensors library's own limit on the header size


def _problem(path: Path) -> str | None:
    """What is wrong with the file at ``path`` (None: the header and size agree)."""
    size = path.stat().st_size
    if size < 8:
        return f"{size} bytes, shorter than the 8-byte header length"
    with path.open("rb") as f:
        (header_len,) = struct.unpack("<Q", f.read(8))
        if header_len > _MAX_HEADER or 8 + header_len > size:
            return f"its header says {header_len} header bytes but the file has {size} bytes"
        try:
            header = json.loads(f.read(header_len))
        except (UnicodeDecodeError, json.JSONDecodeError):
            return "its header is not valid JSON"
    if not isinstance(header, dict):
        return "its header is not a JSON object"
    try:
        ends = [int(info["data_offsets"][1]) for key, info in header.items() if key != "__metadata__"]
    except (TypeError, KeyError, IndexError, ValueError):
        return "its header does not describe tensors"
    expected = 8 + header_len + max(ends, default=0)
    if expected != size:
        return f"{size} bytes where its header describes {expected}"
    return None


def check_safetensors(path: str | Path, fix: str) -> None:
    """Raise ``A2DGuardError`` naming ``path`` and ``fix`` if the file is truncated or damaged."""
    path = Path(path)
    problem = _problem(path)
    if problem is not None:
        raise A2DGuardError(f"{path} is truncated or damaged ({problem}); {fix}")


def load_safetensors(path: str | Path, fix: str) -> dict[str, torch.Tensor]:
    """``safetensors.torch.load_file`` after ``check_safetensors``; any remaining read error is named too."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    check_safetensors(path, fix)
    try:
        return load_file(str(path))
    except SafetensorError as exc:
        raise A2DGuardError(f"{path} cannot be read ({exc}); {fix}") from None


def check_weights_folder(folder: str | Path, fix: str) -> None:
    """``check_safetensors`` on every ``*.safetensors`` file directly in ``folder`` (shards included)."""
    for path in sorted(Path(folder).glob("*.safetensors")):
        check_safetensors(path, fix)
