"""How an adapter names its base model, and the warning when it is loaded on another one.

``adapter_config.json`` has ``base_model_name_or_path``. Written as the user typed it, a
relative folder (``runs/base/model``) means nothing once the adapter is used from another
working directory or machine, so we record a reference that stays meaningful:

- ``tiny`` stays ``tiny`` (the built-in model),
- an existing local folder becomes its absolute path; a folder inside the Hugging Face
  cache (``.../models--ORG--NAME/snapshots/REV``) becomes the Hub id ``ORG/NAME``,
- anything else (a Hub id) is kept as given.

An adapter loaded on a base of the same layer shapes loads without any error, yet its
update was learned against other weights and means something else there. Shapes cannot
tell; names can, so ``warn_if_other_base`` compares the two references and warns (a
warning, not an error: the same weights may live under two names). When both names are
existing local folders (e.g. a copied run or demo folder), their weights files are compared
cheaply first (``_weights_signature``) and identical weights under another path stay silent.
"""

from __future__ import annotations

import hashlib
import re
import warnings
from pathlib import Path

from a2d_guard.errors import A2DGuardWarning

TINY = "tiny"
_HF_CACHE_SNAPSHOT = re.compile(r"models--(?P<org>[^/]+?)--(?P<name>[^/]+)/snapshots/[^/]+/?$")


def base_reference(name_or_path: str | Path) -> str:
    """The name to record for (and compare with) a base model; see the module docstring."""
    name = str(name_or_path)
    if name == TINY:
        return TINY
    path = Path(name).expanduser()
    if path.exists():
        resolved = path.resolve()
        cached = _HF_CACHE_SNAPSHOT.search(resolved.as_posix())
        return f"{cached['org']}/{cached['name']}" if cached else str(resolved)
    return name


_SAMPLE = 1 << 20  # bytes read from each end of every weights file


def _weights_signature(folder: Path) -> list[tuple[str, int, str]]:
    """(name, size, sha256 of the first and last MiB) per ``*.safetensors`` file: enough to tell
    two checkpoints apart (the first bytes hold the header and the first tensors) without
    reading gigabytes."""
    signature = []
    for path in sorted(folder.glob("*.safetensors")):
        size = path.stat().st_size
        digest = hashlib.sha256()
        with path.open("rb") as f:
            digest.update(f.read(_SAMPLE))
            f.seek(max(size - _SAMPLE, 0))
            digest.update(f.read(_SAMPLE))
        signature.append((path.name, size, digest.hexdigest()))
    return signature


def _same_local_weights(a: str, b: str) -> bool:
    pa, pb = Path(a), Path(b)
    if not (pa.is_dir() and pb.is_dir()):
        return False
    sig = _weights_signature(pa)
    return bool(sig) and sig == _weights_signature(pb)


def warn_if_other_base(recorded: str | None, loading: str | Path | None, adapter: str | Path) -> None:
    """Warn (``A2DGuardWarning``) when ``adapter`` was trained on another base than ``loading``."""
    if not recorded or loading is None:
        return
    trained_on, loaded_on = base_reference(recorded), base_reference(loading)
    if trained_on == loaded_on or _same_local_weights(trained_on, loaded_on):
        return
    warnings.warn(
        f"adapter {str(adapter)!r} was trained on base {trained_on!r} but is being loaded on {loaded_on!r}; "
        "the layer shapes fit, but a LoRA update only means what it learned on its own base: load it on "
        f"{trained_on!r}, or retrain it on this base (ignore this if both names hold the same weights)",
        A2DGuardWarning,
        stacklevel=4,  # the caller of load_model
    )
