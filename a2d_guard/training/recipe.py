"""Named presets of ``TrainConfig`` values, shipped as YAML in ``training/recipes/``.

A recipe is a starting point, not a lock: precedence is built-in defaults < recipe < config
file < command-line flags, so ``--recipe paper --lr 1e-4`` is the paper's run with another
learning rate. The run's ``config.yaml`` records every resolved value and the recipe's name.
"""

from __future__ import annotations

from importlib import resources
from typing import Any

from a2d_guard.errors import A2DGuardError

RECIPE_KEY = "recipe"


def _folder():
    return resources.files("a2d_guard").joinpath("training", "recipes")


def recipe_names() -> list[str]:
    """The recipes this install ships (``paper``, ...)."""
    return sorted(p.name[: -len(".yaml")] for p in _folder().iterdir() if p.name.endswith(".yaml"))


def recipe_values(name: str) -> dict[str, Any]:
    """The ``TrainConfig`` keys of recipe ``name``; an unknown name names the available ones."""
    import yaml

    names = recipe_names()
    if name not in names:
        raise A2DGuardError(f"unknown recipe {name!r}; available recipes: {', '.join(names)}")
    values = yaml.safe_load(_folder().joinpath(f"{name}.yaml").read_text(encoding="utf-8")) or {}
    if not isinstance(values, dict) or RECIPE_KEY in values:
        raise A2DGuardError(f"recipe {name!r} is damaged (not a mapping of TrainConfig keys); reinstall a2d-guard")
    return values
