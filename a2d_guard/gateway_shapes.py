"""The A2D verdict in the shapes guardrail gateways read, in one place for the server's routes
and the in-process adapters (``a2d_guard/integrations/``), so both answer alike.

- vLLM's ``/classify`` (NeMo Guardrails' ``hf_classifier`` rail, engine ``vllm``): one item
  per input, ``{"index", "label", "probs", "num_classes"}`` with labels ``safe``/``unsafe``;
- LiteLLM's generic guardrail API: ``{"action": "BLOCKED" | "NONE", "blocked_reason"}``;
- OpenAI's ``/v1/moderations``: ``{"flagged", "categories", "category_scores", "a2d"}``;
- llm-guard's scanners: ``(sanitized, is_valid, risk_score)``.

Why the probabilities are not ``[1 - s, s]``: the guard flags ``s > τ`` (the server's
threshold, not 0.5), and a gateway blocks on the argmax label (NeMo: ``max(probs) >= 0.5``
for a blocked label). ``label_probs`` maps the score monotonically so that ``τ`` lands on
0.5: argmax ``unsafe`` exactly when the guard flags, at any threshold.
"""

from __future__ import annotations

from collections.abc import Sequence

from a2d_guard.errors import A2DGuardError

LABELS = ("safe", "unsafe")


def unsafe_probability(score: float, threshold: float) -> float:
    """p(unsafe) from the A2D score ``s`` and threshold ``τ``: piecewise linear, 0 -> 0, τ -> 0.5,
    1 -> 1 (τ = 1, the monitor off, never exceeds 0.5)."""
    s, t = min(max(float(score), 0.0), 1.0), float(threshold)
    if s <= t:
        return 0.5 * s / t if t > 0 else 0.5
    return 0.5 + 0.5 * (s - t) / (1.0 - t)


def label_probs(score: float, threshold: float) -> list[float]:
    """``[p(safe), p(unsafe)]``; at ``s == τ`` (not flagged: the rule is strict) both are 0.5
    and the argmax, the first, is ``safe``."""
    p = unsafe_probability(score, threshold)
    return [1.0 - p, p]


def classify_item(index: int, verdict) -> dict:
    """One item of vLLM's ``/classify`` answer for a ``Verdict``."""
    probs = label_probs(verdict.score, verdict.threshold)
    return {"index": index, "label": LABELS[int(verdict.flagged)], "probs": probs, "num_classes": len(LABELS)}


def moderation_result(verdict) -> dict:
    """One result of OpenAI's ``/v1/moderations`` for a ``Verdict``: the one category ``a2d``
    (score = the guard's p(EOS)) and where the model refuses."""
    return {"flagged": verdict.flagged, "categories": {"a2d": verdict.flagged},
            "category_scores": {"a2d": verdict.score},
            "a2d": {"where": verdict.where, "char_offset": verdict.char_offset, "token_index": verdict.token_index,
                    "threshold": verdict.threshold}}


def block_reason(verdict) -> str:
    """Why a text was blocked, naming the score, the threshold and where the model refused."""
    where = "the prompt" if verdict.where == "prompt" else f"the response at character {verdict.char_offset}"
    return f"a2d-guard: p(EOS) {verdict.score:.4f} > threshold {verdict.threshold:g} ({where})"


def litellm_answer(verdicts: Sequence) -> dict:
    """LiteLLM's generic guardrail answer for the texts of one call: blocked if any is flagged."""
    flagged = [v for v in verdicts if v.flagged]
    if flagged:
        worst = max(flagged, key=lambda v: v.score)
        return {"action": "BLOCKED", "blocked_reason": block_reason(worst)}
    return {"action": "NONE"}


def scanner_result(text: str, verdict) -> tuple[str, bool, float]:
    """llm-guard's ``(sanitized, is_valid, risk_score)``: the text unchanged (the guard does
    not rewrite), valid unless flagged, and the risk as p(unsafe) in [0, 1]."""
    return text, not verdict.flagged, round(unsafe_probability(verdict.score, verdict.threshold), 6)


def message_text(content) -> str:
    """An OpenAI message's content as text (string, or its text parts joined)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text")
    return ""


def chat_items(messages: Sequence[dict]) -> list[tuple]:
    """Guard items for a conversation: a trailing assistant message is checked as a response to
    the turns before it (probe B), otherwise the conversation as a prompt (probe C)."""
    turns = [{"role": "system" if m.get("role") == "developer" else m.get("role"),
              "content": message_text(m.get("content"))} for m in messages
             if m.get("role") in ("system", "developer", "user", "assistant")]
    turns = [t for t in turns if t["content"]]
    if not turns or all(t["role"] == "assistant" for t in turns):
        return []
    if turns[-1]["role"] == "assistant":
        return [(turns[:-1], turns[-1]["content"])]
    return [(turns, None)]


def guardrail_items(input_type: str, texts: Sequence[str] | None, messages: Sequence[dict] | None) -> tuple[list, str]:
    """Guard items of one LiteLLM guardrail call and the field they came from.

    With the conversation (``messages``): a trailing assistant message is checked as a response
    to the turns before it, else the conversation as a prompt; a ``response`` call's ``texts``
    are each checked as a response to it. Without it (LiteLLM's response hook sends only the
    answer's texts) each text is checked as a prompt (probe C)."""
    texts = [t for t in (texts or []) if isinstance(t, str) and t.strip()]
    if messages:
        for i, m in enumerate(messages):
            if not isinstance(m, dict) or not isinstance(m.get("role"), str):
                raise A2DGuardError(f"structured_messages.{i} has no role; send OpenAI chat messages",
                                    param="structured_messages")
        items = chat_items(messages)
        if input_type == "response" and texts and items:
            turns = items[0][0]  # the conversation the answer replies to
            items = [(turns, text) for text in texts]
        return items, "structured_messages"
    return [(text, None) for text in texts], "texts"
