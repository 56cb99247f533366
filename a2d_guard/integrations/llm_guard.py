"""llm-guard-style scanners: ``A2DScanner().scan(prompt)`` and ``A2DOutputScanner().scan(prompt,
output)`` return llm-guard's ``(sanitized, is_valid, risk_score)``. llm-guard is not imported
(it pins an old transformers); its pipelines only call ``scan``, so these drop into
``scan_prompt([...])`` / ``scan_output([...])`` as they are.

The text is returned unchanged (the A2D guard scores, it does not rewrite); ``is_valid`` is
False exactly when the guard flags; ``risk_score`` is p(unsafe) (``gateway_shapes``), 0.5 at
the guard's threshold.
"""

from __future__ import annotations

from a2d_guard.gateway_shapes import scanner_result
from a2d_guard.integrations.shared import GuardHandle


class A2DScanner:
    """An input scanner: the prompt is checked as a prompt (probe C)."""

    def __init__(self, guard=None, **guard_options):
        """``guard``: a ``Guard`` to share; else ``Guard(**guard_options)`` (model, adapter, threshold, ...)."""
        self.handle = GuardHandle(guard, **guard_options)

    def scan(self, prompt: str) -> tuple[str, bool, float]:
        return scanner_result(prompt, self.handle.check([prompt])[0])


class A2DOutputScanner:
    """An output scanner: the output is checked as a response to the prompt (probe B)."""

    def __init__(self, guard=None, **guard_options):
        self.handle = GuardHandle(guard, **guard_options)

    def scan(self, prompt: str, output: str) -> tuple[str, bool, float]:
        return scanner_result(output, self.handle.check([(prompt, output)])[0])
