"""The output processor: what a reader sees of a decoded request, decided in one place (DESIGN §13).

The library (``LLM.generate``), the server (plain and streamed answers), ``Guard.generate``,
the CLI and the vLLM plugin all read answers through these functions, so one request gives
one text everywhere:

- **answer text** (``answer_text``): the response tokens left of where the sequence ended
  (its first end token, or the leftmost mask when the A2D monitor rejected it), detokenized
  without special tokens. A rejection (``content_filter``) answers the request's
  ``refusal_text`` when it sets one, else that committed text, often empty (DESIGN §4: the
  same text a stream has shown by then);
- **stop strings** (``find_stop``) cut the text at the earliest one, which finishes the
  answer with ``stop``;
- **streams** (``TextStream``) show only visible text, detokenized incrementally: each event
  decodes a window of a few tokens, not the whole prefix again. The last visible token is
  held back until the next one (or the end) arrives, so a detokenizer that merges it with
  what follows (WordPiece ``##``, a split UTF-8 character) never has to take text back; with
  stop strings, a tail that could still grow into one is held back too.
"""

from __future__ import annotations

import logging

log = logging.getLogger("a2d_guard.server")

REJECTED = "content_filter"


def find_stop(text: str, stops: list[str]) -> int:
    """Index of the earliest stop string in ``text``; -1 when there is none."""
    hits = [i for i in (text.find(s) for s in stops) if i >= 0]
    return min(hits) if hits else -1


def answer_text(tokenizer, token_ids: list[int], finish_reason: str, refusal_text: str | None) -> str:
    """The text of a finished answer (module docstring): the refusal text for a rejection
    that sets one, else ``token_ids`` (the tokens left of the end) detokenized."""
    if finish_reason == REJECTED and refusal_text is not None:
        return refusal_text
    return tokenizer.decode(token_ids, skip_special_tokens=True) if tokenizer is not None else ""


class IncrementalDetokenizer:
    """Text of a growing token list, one small window per call (vLLM's prefix/read offsets).

    ``push(ids)`` takes the whole list so far (it only grows: committed tokens never change)
    and returns the text it adds; ``peek(ids)`` returns the same without taking it. The
    window starts ``CONTEXT`` tokens back, so tokenizers whose decoding of a token depends on
    its left neighbour (a leading space, ``##`` merges, a byte split over tokens) decode the
    new tokens as the whole list would. A window ending in U+FFFD (a UTF-8 character cut
    between tokens) waits for the next token.
    """

    CONTEXT = 4  # tokens of left context each window decodes again

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        self.ids: list[int] = []  # the tokens whose text was returned

    def _decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True)

    def peek(self, ids: list[int]) -> str:
        read = len(self.ids)
        if len(ids) < read or ids[:read] != self.ids:
            raise ValueError("IncrementalDetokenizer: the token list must extend the one taken before")
        if len(ids) == read:
            return ""
        start = max(0, read - self.CONTEXT)
        seen, window = self._decode(ids[start:read]), self._decode(ids[start:])
        if window.endswith("\ufffd") or len(window) <= len(seen) or not window.startswith(seen):
            return ""  # nothing new that is final yet
        return window[len(seen):]

    def push(self, ids: list[int]) -> str:
        delta = self.peek(ids)
        if delta or not ids[len(self.ids):]:
            self.ids = list(ids)
        return delta


class TextStream:
    """One streamed answer: the visible token prefix in, the text deltas a client is sent out.

    ``visible(ids)`` takes the visible prefix (it only grows) and returns ``(delta,
    stop_text)``; ``stop_text`` is the final text when a stop string became visible (the
    caller then aborts the request). ``advance(final_text)`` returns what is left to send of
    the final text; a text that does not extend what was sent is logged and sends nothing (a
    stream cannot take text back).
    """

    def __init__(self, tokenizer, stops: list[str]):
        self.stops = stops
        self.holdback = max((len(s) for s in stops), default=1) - 1
        self.detok = IncrementalDetokenizer(tokenizer)
        self.decoded = ""  # text of the visible tokens but the last one (held back)
        self.sent = ""  # text already sent

    def visible(self, ids: list[int]) -> tuple[str, str | None]:
        # ids: [n] the visible prefix; all but its last token are decoded for good
        if not ids:
            return "", None
        self.decoded += self.detok.push(ids[:-1])
        if self.stops:
            full = self.decoded + self.detok.peek(ids)
            cut = find_stop(full, self.stops)
            if cut >= 0:  # the text left of a visible stop string is final
                return self.advance(full[:cut]), full[:cut]
        safe = self.decoded
        if self.stops and self.holdback:
            safe = safe[: max(0, len(safe) - self.holdback)]
        return (self.advance(safe) if len(safe) > len(self.sent) else ""), None

    def advance(self, text: str) -> str:
        """The part of ``text`` not sent yet (``text`` extends what was sent)."""
        if not text.startswith(self.sent):  # cannot happen with a prefix-stable detokenizer
            log.warning("streamed text %r is not a prefix of the final text %r", self.sent, text)
            return ""
        delta, self.sent = text[len(self.sent):], text
        return delta
