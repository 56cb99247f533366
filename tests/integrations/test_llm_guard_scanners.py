"""llm-guard's scanner interface: `scan(prompt)` and `scan(prompt, output)` give
`(sanitized, is_valid, risk_score)`, invalid exactly when the guard flags; a pipeline in
llm-guard's style (scan every scanner, valid only if all are) drives them."""

from __future__ import annotations

from a2d_guard.integrations.llm_guard import A2DOutputScanner, A2DScanner

from .conftest import BENIGN, FLAGGED


def _scan_prompt(scanners, prompt):
    """llm-guard's `scan_prompt` loop: each scanner's sanitized text feeds the next."""
    valid, scores = {}, {}
    for scanner in scanners:
        prompt, valid[type(scanner).__name__], scores[type(scanner).__name__] = scanner.scan(prompt)
    return prompt, valid, scores


def test_input_scanner_tuples(guard):
    scanner = A2DScanner(guard=guard)
    text, is_valid, risk = scanner.scan(FLAGGED)
    assert (text, is_valid) == (FLAGGED, False) and risk > 0.5
    text, is_valid, risk = scanner.scan(BENIGN)
    assert (text, is_valid) == (BENIGN, True) and 0.0 <= risk < 0.5
    sanitized, valid, scores = _scan_prompt([scanner], FLAGGED)
    assert sanitized == FLAGGED and valid == {"A2DScanner": False} and scores["A2DScanner"] > 0.5


def test_output_scanner_tuples(guard):
    scanner = A2DOutputScanner(guard=guard)
    out, is_valid, risk = scanner.scan(BENIGN, "sure, canada is big")
    assert (out, is_valid) == ("sure, canada is big", False) and risk > 0.5
    out, is_valid, risk = scanner.scan(BENIGN, "four is the answer here")
    assert (out, is_valid) == ("four is the answer here", True) and risk < 0.5


def test_a_scanner_builds_its_guard_lazily():
    scanner = A2DScanner(model="tiny", threshold=0.9)
    assert scanner.handle._guard is None  # constructing it loaded nothing
    _, is_valid, _ = scanner.scan("hello there")
    assert is_valid and scanner.handle._guard is not None
