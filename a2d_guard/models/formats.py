"""Checkpoint formats beyond the families' own: how ``load_model`` learns to read them.

``models`` is the lower layer: ``compress`` builds on it (it saves its folders with the
families' key names and configs), so ``models`` must never import ``compress``. Yet
``load_model(folder)`` has to read a compressed folder, so that it works wherever
``--model DIR`` is accepted. This registry is the seam: a format says how to recognise
its folder (``detect(raw_config) -> bool``) and how to build the model from it
(``load(folder, raw_config, family, dtype, device) -> nn.Module``); the loader asks the
registry before it tries the plain families.

How a format gets registered. ``load`` is either a callable or a ``"package.module:function"``
string that is imported the first time a folder of that format is loaded. The built-in
compressed format is registered below with such a string, so

- a user who never imported ``a2d_guard.compress`` still loads a compressed folder (the
  registration lives here, in the module the loader itself imports: nothing depends on
  who imported what first);
- ``models`` names ``compress`` only as data, resolved at call time: no import edge from
  ``models`` to ``compress`` (``tests/test_packaging.py`` walks the imports and enforces it),
  and loading a plain model never imports ``compress`` at all.

Another package (a plugin) calls ``register_checkpoint_format`` with callables after
importing ``a2d_guard.models``; a later registration under the same name replaces the
earlier one.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

COMPRESSION_KEY = "a2d_guard_compression"  # config.json key written by `a2d-guard compress`

Detect = Callable[[dict], bool]
Load = Callable[..., object]  # (folder: Path, raw_config: dict, family: str, dtype, device) -> nn.Module


@dataclass(frozen=True)
class CheckpointFormat:
    name: str
    detect: Detect
    load: Load | str  # a callable, or "package.module:function" imported on first use

    def loader(self) -> Load:
        """The load function, importing its module now if it was registered by name."""
        if callable(self.load):
            return self.load
        module, _, attr = self.load.partition(":")
        return getattr(importlib.import_module(module), attr)


_FORMATS: dict[str, CheckpointFormat] = {}


def register_checkpoint_format(name: str, detect: Detect, load: Load | str) -> CheckpointFormat:
    """Teach ``load_model`` a folder format; see the module docstring for ``load`` as a string."""
    if isinstance(load, str) and (load.count(":") != 1 or not all(load.split(":"))):
        raise ValueError(f"load={load!r}: pass a callable or 'package.module:function'")
    fmt = CheckpointFormat(name, detect, load)
    _FORMATS[name] = fmt
    return fmt


def find_format(raw_config: dict) -> CheckpointFormat | None:
    """The first registered format whose ``detect`` accepts this config.json, if any."""
    return next((fmt for fmt in _FORMATS.values() if fmt.detect(raw_config)), None)


def load_with_format(fmt: CheckpointFormat, folder: Path, raw_config: dict, family: str, dtype, device):
    return fmt.loader()(folder, raw_config, family, dtype, device)


register_checkpoint_format(
    "a2d-guard-qlr",
    detect=lambda raw: COMPRESSION_KEY in raw,
    load="a2d_guard.compress.storage:load_compressed",
)
