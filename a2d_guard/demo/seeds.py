"""A seed sweep's summary: median and range of every figure over independent demo worlds.

Why: one tiny world is one draw. Its training is chaotic (see ``demo/numerics.py``), so
a different seed, like a different floating-point path, moves figures by many points; a
conclusion is evidence only if it holds across draws. Each world ``i`` of a sweep uses
seed ``plan.seed + i`` for the base's initialisation, the training batches, masks and
LoRA init, and (after the first world, whose held-out phrasings are the YAML's, as the
benches read them) for the corpus split too.

The summary keeps the results' tree and replaces every number that all worlds report by
``{"median", "min", "max"}`` (the median of an even count is the mean of the middle two).
"""

from __future__ import annotations

import statistics
from collections import Counter


def world_seeds(first: int, count: int) -> list[int]:
    """Seeds of a sweep of ``count`` worlds starting at ``first``; a bad count is a user error."""
    if not isinstance(count, int) or isinstance(count, bool) or count < 1:
        from a2d_guard.errors import A2DGuardError

        raise A2DGuardError(f"--seeds {count!r} is not a positive whole number; pass e.g. --seeds 5")
    return [first + i for i in range(count)]


def split_seed(index: int, seed: int) -> int | None:
    """The corpus split of world ``index``: the YAML's for the first, ``seed``'s after it."""
    return None if index == 0 else seed


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _spread(values: list) -> dict | None:
    if not values or not all(_is_number(v) for v in values):
        return None
    return {"median": round(statistics.median(values), 4), "min": min(values), "max": max(values)}


def _merge(trees: list):
    """The tree of the first world, with every leaf that all worlds hold as numbers summarised."""
    if all(isinstance(t, dict) for t in trees):
        out = {}
        for key in trees[0]:
            if all(key in t for t in trees):
                merged = _merge([t[key] for t in trees])
                if merged is not None:
                    out[key] = merged
        return out
    return _spread(trees)


def summarize(worlds: list[dict]) -> dict:
    """``{"n", "seeds", "models": {name: tree of {median, min, max}}, "guard_model": {name: count}}``."""
    models = {name: _merge([w["models"][name] for w in worlds]) for name in worlds[0]["models"]}
    picks = Counter(w["guard_model"]["name"] for w in worlds if "guard_model" in w)
    return {"n": len(worlds), "seeds": [w["seed"] for w in worlds], "models": models,
            "guard_model": dict(sorted(picks.items()))}


def medians(tree):
    """The summary tree with each ``{median, min, max}`` replaced by its median."""
    if isinstance(tree, dict):
        if set(tree) == {"median", "min", "max"}:
            return tree["median"]
        return {k: medians(v) for k, v in tree.items()}
    return tree


def pct(cell) -> str:
    """``97.5%`` for one world; ``97.5% [95.0, 100.0]`` (median [min, max]) for a sweep."""
    if isinstance(cell, dict):
        return f"{cell['median']:.1%} [{100 * cell['min']:.1f}, {100 * cell['max']:.1f}]"
    return f"{cell:.1%}"


def times(cell) -> str:
    """A speedup: ``27.2x`` or ``27.2x [16.0, 27.2]``."""
    if isinstance(cell, dict):
        return f"{cell['median']:.1f}x [{cell['min']:.1f}, {cell['max']:.1f}]"
    return f"{cell:.1f}x"
