"""What a demo model *is*, as a hash: reuse a trained model by content, never by path or time.

A demo stage is reused when the fingerprint of what would be trained equals the one
recorded when its model was trained. The fingerprint covers everything that decides the
trained weights and nothing that only says where things live:

- the ``TrainConfig`` without ``output`` (a copied or moved demo folder keeps its models)
  and without ``progress`` (display only);
- the *contents* of the data file instead of its path (the demo rewrites its data files
  from the templates; a template change must retrain, a moved folder must not);
- the *contents* of a local base-model folder instead of its path (an adapter is trained
  on the base the previous stage wrote: a retrained base changes its adapters' fingerprints;
  a copied one does not);
- the versions of the code that computes the weights: a2d-guard, torch, transformers, peft.

Modification times are never read: copying a folder changes them and a rewrite of the same
bytes must not cost a retraining.
"""

from __future__ import annotations

import hashlib
import json
import os
from importlib import metadata
from pathlib import Path

from a2d_guard.training import TrainConfig

IGNORED_KEYS = ("output", "progress")
VERSIONED = ("a2d-guard", "torch", "transformers", "peft")
_CHUNK = 1 << 20


def _hash_file(path: Path, h) -> None:
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)


def content_hash(path: str | Path) -> str:
    """sha256 of a file, or of a folder's files (relative names and bytes, sorted by name)."""
    path = Path(path)
    h = hashlib.sha256()
    if path.is_file():
        _hash_file(path, h)
        return h.hexdigest()
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        h.update(file.relative_to(path).as_posix().encode() + b"\0")
        _hash_file(file, h)
        h.update(b"\0")
    return h.hexdigest()


def versions() -> dict[str, str | None]:
    found = {}
    for name in VERSIONED:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    return found


def _by_content(value: str | None) -> str | None:
    """A local file or folder becomes ``sha256:<hash>`` of its contents; anything else (a Hub
    id, ``tiny``, ``hf:NAME``) stays as written."""
    if value is not None and Path(value).exists():
        return "sha256:" + content_hash(value)
    return value


def fingerprint(config: TrainConfig) -> str:
    """The hex sha256 of what decides the weights ``config`` trains; see the module docstring."""
    described = {k: v for k, v in config.to_dict().items() if k not in IGNORED_KEYS}
    described["model"] = _by_content(config.model)
    described["data"] = _by_content(config.data)
    described["versions"] = versions()
    return hashlib.sha256(json.dumps(described, sort_keys=True).encode()).hexdigest()


class FingerprintBook:
    """``fingerprints.json`` in the demo folder: stage name -> fingerprint of its trained model.

    Kept beside the stage folders, not inside them: those are ``train``'s own output folders.
    Written whole under a temporary name and renamed, so a crash never leaves half a file.
    """

    FILE = "fingerprints.json"

    def __init__(self, folder: Path):
        self.path = Path(folder) / self.FILE

    def read(self) -> dict[str, str]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (FileNotFoundError, json.JSONDecodeError):
            return {}  # unknown or unreadable: nothing is reused, everything retrains
        return data if isinstance(data, dict) else {}

    def matches(self, stage: str, value: str) -> bool:
        return self.read().get(stage) == value

    def record(self, stage: str, value: str) -> None:
        book = self.read()
        book[stage] = value
        tmp = self.path.with_name(f".tmp-{self.FILE}-{os.getpid()}")
        tmp.write_text(json.dumps(book, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        os.replace(tmp, self.path)
