"""Content-keyed rows (``--content-rows``): an extension of A2D the paper does not have.

Why: every harmful row of an A2D data set pairs a harmful prompt with a harmful response,
so the model can learn "harmful prompt -> EOS" and never look at the response. Its p(EOS)
is then a prompt guard: a harmful answer under a benign question scores about 0 (measured
on the demo, issue 10). Crossing the rows breaks that shortcut:

- harmful content under a *benign* prompt, labelled harmful (target EOS at every masked
  position, like any harmful row): a window of the harmful response as many words long as
  the safe answer it is paired with, so an answer's length says nothing about its harm;
- the harmful prompt with a *benign* response, labelled safe (target the benign response).

Both kinds mask at most ``MAX_MASK_RATIO`` of their response (``Row.max_mask_ratio``, read by
``objective.draw_masks``): what they teach is what *visible* text means. Fully masked, they
would teach "benign prompt, nothing seen -> stop" and "harmful prompt -> go on", which is
what the original rows already answer the other way.

The benign side comes from the data set's own safe rows, picked evenly spaced through
them (deterministic: the same file gives the same rows, in the same order, after the
original rows). Rows with an empty response take no part: an empty harmful response under
a benign prompt would teach "benign prompt -> stop".
"""

from __future__ import annotations

from a2d_guard.errors import A2DGuardError
from a2d_guard.training.data import Row

# Content rows mask at most this share of their response: the text they teach about stays
# partly visible (a guard's response probe masks a quarter). Fully masked, a content row
# would teach "benign prompt, nothing seen -> stop" and "harmful prompt -> go on".
MAX_MASK_RATIO = 0.5


def content_keyed_rows(rows: list[Row]) -> list[Row]:
    """The crossed rows for ``rows`` (without ``rows`` themselves): for harmful row ``i``
    (of ``H``) and the safe row ``j = i * S // H`` (of ``S``), in this order:
    ``(safe_j.prompt, harmful_i.response, harmful)`` and ``(harmful_i.prompt, safe_j.response, safe)``."""
    harmful = [r for r in rows if r.is_harmful and r.response.strip()]
    safe = [r for r in rows if not r.is_harmful and r.response.strip()]
    if not harmful or not safe:
        missing = "harmful" if not harmful else "safe"
        raise A2DGuardError(f"--content-rows crosses harmful with safe rows, but the data has no {missing} row "
                            "with a response; add some, or train without --content-rows")
    out = []
    for i, h in enumerate(harmful):
        s = safe[i * len(safe) // len(harmful)]
        piece = fragment(h.response, len(s.response.split()), i)
        out.append(Row(s.prompt, piece, True, f"{h.where} (content row: its response under {s.where}'s prompt)",
                       MAX_MASK_RATIO))
        out.append(Row(h.prompt, s.response, False, f"{h.where} (content row: its prompt with {s.where}'s response)",
                       MAX_MASK_RATIO))
    return out


def fragment(text: str, words: int, index: int) -> str:
    """``words`` consecutive words of ``text``, the window starting at ``index`` modulo the
    number of windows: harmful content as long as the safe answer it stands beside, so the
    length of an answer says nothing about its harm."""
    split = text.split()
    if len(split) <= words:
        return text
    start = index % (len(split) - words + 1)
    return " ".join(split[start : start + words])
