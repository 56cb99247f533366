"""NeMo Guardrails loads a config folder's ``actions.py``: this one registers a2d-guard's actions."""

from a2d_guard.integrations.nemo import a2d_check_input, a2d_check_output

__all__ = ["a2d_check_input", "a2d_check_output"]
