"""a2d-guard: token-level safety alignment (A2D), guarded serving and ODLRI compression
for masked diffusion language models (LLaDA, Dream, any bidirectional masked LM).

Public API only; everything heavy is imported lazily so ``import a2d_guard`` stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = [
    "__version__",
    "A2DGuardError",
    "Guard",
    "LLM",
    "ModelSpec",
    "RequestOutput",
    "SamplingParams",
    "Verdict",
    "load_model",
    "save_model",
    "reference_generate",
]

_LAZY = {
    "A2DGuardError": ("a2d_guard.errors", "A2DGuardError"),
    "Guard": ("a2d_guard.guard", "Guard"),
    "Verdict": ("a2d_guard.guard", "Verdict"),
    "LLM": ("a2d_guard.engine.llm", "LLM"),
    "RequestOutput": ("a2d_guard.engine.outputs", "RequestOutput"),
    "ModelSpec": ("a2d_guard.models.spec", "ModelSpec"),
    "SamplingParams": ("a2d_guard.config", "SamplingParams"),
    "load_model": ("a2d_guard.models.loader", "load_model"),
    "save_model": ("a2d_guard.models.loader", "save_model"),
    "reference_generate": ("a2d_guard.diffusion.reference", "reference_generate"),
}

if TYPE_CHECKING:  # pragma: no cover
    from a2d_guard.config import SamplingParams
    from a2d_guard.diffusion.reference import reference_generate
    from a2d_guard.engine.llm import LLM
    from a2d_guard.engine.outputs import RequestOutput
    from a2d_guard.errors import A2DGuardError
    from a2d_guard.guard import Guard, Verdict
    from a2d_guard.models.loader import load_model, save_model
    from a2d_guard.models.spec import ModelSpec


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'a2d_guard' has no attribute {name!r}")
