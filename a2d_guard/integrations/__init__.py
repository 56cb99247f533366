"""Adapters for the guardrail frameworks users already run; the core never imports them.

- ``nemo``: NeMo Guardrails actions (``a2d_check_input``, ``a2d_check_output``) and a ready
  rails config folder (``nemo_rails/``, ``rails_config_path()``);
- ``litellm``: ``A2DGuardrail``, a LiteLLM ``CustomGuardrail``;
- ``llm_guard``: ``A2DScanner`` / ``A2DOutputScanner`` with llm-guard's ``scan`` signatures
  (llm-guard itself is not imported: it pins an old transformers).

Each wraps one ``Guard`` (``shared.GuardHandle``), so all of a process's checks share its
batching and its one copy of the weights.
"""
