"""From a user prompt to canvas ids: chat template, DIJA mask placeholders, prefill.

DIJA (and the A2D evaluation data) writes ``<mask:N>`` in the *user turn* for N mask tokens:
the attack asks the model to fill a harmful scaffold. The model's own mask token string
(e.g. ``<|mdm_mask|>``) is accepted too. A ``prefill`` is text placed after the assistant
header (the prefilling attack); generation continues after it.

What counts as a placeholder: ``<mask:`` then anything up to the next ``>`` on the same
line. Its content must be a whole number N >= 1 written with digits only (``<mask:3>``);
anything else (``<mask:0>``, ``<mask:-3>``, ``<mask:x>``, ``<mask:>``, ``<mask: 3>``) is an
``A2DGuardError``, because it was almost surely meant as a placeholder and taking it as
literal text (or as zero masks) would silently run a different prompt than the user wrote.
N may not exceed the model's positions (a typo like ``<mask:99999999>`` would otherwise
try to build that canvas). ``<mask:`` without a closing ``>`` on its line, ``<mask>`` and
other spellings (``<MASK:3>``) are ordinary text.
"""

from __future__ import annotations

import re

from a2d_guard.errors import A2DGuardError
from a2d_guard.models.spec import ModelSpec

MASK_PLACEHOLDER = re.compile(r"<mask:(\d+)>")  # the valid form
_PLACEHOLDER_LIKE = r"<mask:([^<>\n]*)>"  # anything written as one (validated in _mask_count)


def _mask_count(placeholder: str, content: str, max_masks: int | None) -> int:
    """N of a ``<mask:N>`` placeholder, or an error saying what is wrong with it."""
    digits = content.lstrip("0") if MASK_PLACEHOLDER.fullmatch(placeholder) else ""
    if not digits:
        raise A2DGuardError(
            f"prompt placeholder {placeholder!r}: <mask:N> needs a whole number N >= 1 (the number of mask "
            "tokens to insert), e.g. <mask:4>; fix or remove it"
        )
    if max_masks and (len(digits) > len(str(max_masks)) or int(digits) > max_masks):  # no huge int() parse
        raise A2DGuardError(
            f"prompt placeholder {placeholder!r} asks for more masks than the model's {max_masks} positions; "
            "use a smaller N"
        )
    return int(digits)


def _segments(text: str, mask_token: str | None, max_masks: int | None = None) -> list[tuple[str, int]]:
    """Split text into (plain text, number of masks that follow) pieces."""
    pattern = _PLACEHOLDER_LIKE + (f"|({re.escape(mask_token)})" if mask_token else "")
    pieces: list[tuple[str, int]] = []
    last = 0
    for m in re.finditer(pattern, text):
        n = _mask_count(m.group(0), m.group(1), max_masks) if m.group(1) is not None else 1
        pieces.append((text[last : m.start()], n))
        last = m.end()
    pieces.append((text[last:], 0))
    return pieces


def _encode(tokenizer, text: str, spec: ModelSpec, mask_token: str | None) -> list[int]:
    ids: list[int] = []
    for plain, n_masks in _segments(text, mask_token, spec.max_positions):
        if plain:
            ids.extend(tokenizer(plain, add_special_tokens=False)["input_ids"])
        ids.extend([spec.mask_id] * n_masks)
    return ids


def encode_prompt(
    tokenizer, spec: ModelSpec, prompt: str, prefill: str | None = None, chat: bool = True
) -> list[int]:
    """Canvas prefix for one request: templated prompt (+ prefill), masks expanded."""
    mask_token = tokenizer.convert_ids_to_tokens(spec.mask_id)
    if chat and getattr(tokenizer, "chat_template", None):
        text = tokenizer.apply_chat_template(
            [{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True
        )
        ids = _encode(tokenizer, text, spec, mask_token)
    else:
        start = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.cls_token_id
        ids = ([start] if start is not None else []) + _encode(tokenizer, prompt, spec, mask_token)
    if prefill:
        ids.extend(_encode(tokenizer, prefill, spec, mask_token))
    return ids


def encode_messages(tokenizer, spec: ModelSpec, messages: list[dict], chat: bool = True) -> list[int]:
    """Canvas prefix for a chat: every turn through the chat template, masks expanded.

    A trailing ``assistant`` message is a prefill (the OpenAI-server way to say "continue
    from here"): the template closes the conversation with the assistant header and the
    message's text follows it, exactly as ``encode_prompt(..., prefill=...)`` places it.
    Messages are ``{"role": ..., "content": str}``; content parts are joined by the caller.
    """
    turns, prefill = list(messages), None
    if turns and turns[-1]["role"] == "assistant":
        prefill = turns.pop()["content"]
    mask_token = tokenizer.convert_ids_to_tokens(spec.mask_id)
    if chat and getattr(tokenizer, "chat_template", None):
        text = tokenizer.apply_chat_template(turns, tokenize=False, add_generation_prompt=True)
        ids = _encode(tokenizer, text, spec, mask_token)
    else:  # no template: the turns' text one after another, as a raw prompt
        ids = encode_prompt(tokenizer, spec, "\n".join(t["content"] for t in turns), chat=False)
    if prefill:
        ids.extend(_encode(tokenizer, prefill, spec, mask_token))
    return ids
