"""The input processor: from a prompt (text, chat turns or token ids) + ``SamplingParams`` to a
request the engine can run, checked once, before any tokenizer or queue sees it (DESIGN §13).

Why bounds *before* tokenizing: the tokenizer's work and memory grow with the text, so a
50 MB prompt must be refused by its length in characters, never by the length of its
tokens. A prompt longer than ``max_prompt_chars`` (default ``CHARS_PER_TOKEN`` characters per
position of ``max_model_len``, more than any tokenizer packs into one token of real text)
cannot fit the model, so refusing it loses nothing. Text must be well-formed Unicode (a lone
surrogate like ``"\\ud800"`` is valid JSON but no tokenizer can encode it).

Every error is an ``A2DGuardError`` whose ``param`` names the field (``prompt``,
``messages``, or a ``SamplingParams`` field), so the server answers a 400 naming it and the
library raises the same error for the same input.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from a2d_guard.config import SamplingParams
from a2d_guard.diffusion.canvas import check_request, check_token_ids, positions_room
from a2d_guard.diffusion.prompts import encode_messages, encode_prompt
from a2d_guard.errors import A2DGuardError
from a2d_guard.models.spec import ModelSpec

CHARS_PER_TOKEN = 16  # characters per model position a prompt may hold before it is refused untokenized


def check_text(value, param: str, max_chars: int | None = None) -> str:
    """``value`` if it is a ``str`` of well-formed Unicode within ``max_chars`` characters."""
    if not isinstance(value, str):
        raise A2DGuardError(f"{param} must be text, got {type(value).__name__}", param=param)
    if max_chars is not None and len(value) > max_chars:
        raise A2DGuardError(f"{param} holds {len(value):,} characters, more than the {max_chars:,} a request to "
                            "this model may carry (max_model_len x 16); shorten it", param=param)
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise A2DGuardError(f"{param} is not valid Unicode text: a lone surrogate {value[exc.start]!r} at "
                            f"character {exc.start}; send well-formed UTF-8", param=param) from None
    return value


@dataclass(frozen=True)
class RequestLimits:
    """What one request may ask of the model: canvas positions and prompt characters."""

    max_model_len: int
    max_prompt_chars: int

    @classmethod
    def for_model(cls, spec: ModelSpec, max_model_len: int | None = None,
                  max_prompt_chars: int | None = None) -> RequestLimits:
        positions = spec.max_positions
        if max_model_len is None:
            max_model_len = positions
        if isinstance(max_model_len, bool) or not isinstance(max_model_len, int) or max_model_len < 1:
            raise A2DGuardError(f"max_model_len must be a positive integer, got {max_model_len!r}",
                                param="max_model_len")
        if positions and max_model_len > positions:
            raise A2DGuardError(f"max_model_len {max_model_len} exceeds the model's {positions} positions; "
                                f"use at most {positions}", param="max_model_len")
        if max_prompt_chars is None:
            max_prompt_chars = CHARS_PER_TOKEN * max_model_len
        if isinstance(max_prompt_chars, bool) or not isinstance(max_prompt_chars, int) or max_prompt_chars < 1:
            raise A2DGuardError(f"max_prompt_chars must be a positive integer, got {max_prompt_chars!r}",
                                param="max_prompt_chars")
        return cls(max_model_len, max_prompt_chars)


class InputProcessor:
    """Checks and encodes requests for one loaded model (tokenizer + spec + limits)."""

    def __init__(self, tokenizer, spec: ModelSpec, limits: RequestLimits | None = None):
        self.tokenizer, self.spec = tokenizer, spec
        self.limits = limits or RequestLimits.for_model(spec)

    def check_text(self, value, param: str) -> str:
        return check_text(value, param, self.limits.max_prompt_chars)

    def encode_prompt(self, prompt, prefill: str | None = None, chat: bool = True, param: str = "prompt") -> list[int]:
        """Canvas prefix of a text prompt (chat template, ``<mask:N>`` expanded), bounded first."""
        prompt = self.check_text(prompt, param)
        if not prompt.strip():
            raise A2DGuardError(f"{param} is empty; send some text", param=param)
        if prefill is not None:
            self.check_text(prefill, "prefill")
            self._check_total_chars(len(prompt) + len(prefill), param)
        return self._with_param(param, encode_prompt, self.tokenizer, self.spec, prompt, prefill=prefill, chat=chat)

    def encode_messages(self, turns: Sequence[dict], chat: bool = True, param: str = "messages") -> list[int]:
        """Canvas prefix of a chat (``{"role", "content"}`` turns), bounded on all its text together."""
        total = 0
        for i, turn in enumerate(turns):  # shapes (roles, missing fields) are the encoder's to name
            if isinstance(turn, dict) and isinstance(turn.get("content"), str):
                total += len(self.check_text(turn["content"], f"{param}.{i}.content"))
        self._check_total_chars(total, param)
        return self._with_param(param, encode_messages, self.tokenizer, self.spec, list(turns), chat=chat)

    def token_ids(self, ids, what: str = "prompt", param: str = "prompt") -> list[int]:
        """Token ids as plain ints of the vocabulary, at most ``max_model_len`` of them."""
        if len(ids) > self.limits.max_model_len:
            room = positions_room(self.spec, self.limits.max_model_len)
            raise A2DGuardError(f"{what} holds {len(ids):,} token ids, which exceeds {room}; shorten it",
                                param=param)
        return check_token_ids(self.spec, ids, what, param=param)

    def check(self, prompt_ids: Sequence[int], params: SamplingParams, param: str = "prompt") -> None:
        """The request as a whole: ids in the vocabulary, every parameter in bounds, and the
        canvas within ``max_model_len`` (raises ``A2DGuardError`` with ``param``)."""
        if not isinstance(params, SamplingParams):
            raise A2DGuardError(f"sampling params must be SamplingParams(...), got {type(params).__name__}",
                                param="sampling_params")
        check_request(self.spec, prompt_ids, params, self.limits.max_model_len, param=param)

    def _check_total_chars(self, total: int, param: str) -> None:
        if total > self.limits.max_prompt_chars:
            raise A2DGuardError(f"{param} holds {total:,} characters in all, more than the "
                                f"{self.limits.max_prompt_chars:,} a request to this model may carry; shorten it",
                                param=param)

    @staticmethod
    def _with_param(param: str, fn, *args, **kwargs) -> list[int]:
        """Run an encoder; its ``A2DGuardError`` (a bad ``<mask:N>``) names ``param``."""
        try:
            return fn(*args, **kwargs)
        except A2DGuardError as exc:
            if exc.param is None:
                exc.param = param
            raise
