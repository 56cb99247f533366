"""A request's canvas and the checks that need the model (its vocabulary and positions).

Where a request's masks are is its decode policy's rule (``policies.py``: ``ours`` and
``llada`` append ``gen_length`` answer masks to the prompt, ``a2d`` decodes the prompt's own
masks); the readable decoder (``reference.py``), the request check (``check_request``) and the
engine's ``Sequence`` build the canvas here, so they agree on it.
"""

from __future__ import annotations

import operator
from collections.abc import Sequence

import torch

from a2d_guard.config import SamplingParams
from a2d_guard.errors import A2DGuardError
from a2d_guard.models.spec import ModelSpec


def canvas_length(prompt_ids: Sequence[int], params: SamplingParams, mask_id: int) -> int:
    """Positions the decode needs: the prompt + its policy's answer masks."""
    return len(prompt_ids) + params.policy.answer_length(prompt_ids, mask_id, params.gen_length)


def initial_canvas(prompt_ids: Sequence[int], params: SamplingParams, mask_id: int) -> list[int]:
    """The canvas a decode starts from: the prompt, then its policy's answer masks."""
    return list(prompt_ids) + [mask_id] * params.policy.answer_length(prompt_ids, mask_id, params.gen_length)


def check_token_ids(spec: ModelSpec, ids: Sequence[int], what: str = "prompt", param: str = "prompt") -> list[int]:
    """``ids`` as plain ints, each a token of the model's vocabulary ([0, vocab_size)).

    Accepts anything integer-like (``int``, NumPy or 0-d torch integers) but not ``bool`` or
    floats: a float id is a caller's bug that ``int()`` would hide, and an id outside the
    vocabulary would otherwise fail deep in the embedding with an ``IndexError``.
    """
    out = []
    for j, t in enumerate(ids):
        try:
            if isinstance(t, bool):
                raise TypeError
            v = operator.index(t)
        except TypeError:
            raise A2DGuardError(
                f"{what}: token {j} is {t!r:.40} ({type(t).__name__}); token ids must be ints in "
                f"[0, {spec.vocab_size})", param=param
            ) from None
        if not 0 <= v < spec.vocab_size:
            raise A2DGuardError(
                f"{what}: token id {v} (position {j}) is outside the model's vocabulary [0, {spec.vocab_size}); "
                "encode the text with this model's tokenizer", param=param
            )
        out.append(v)
    return out


def positions_room(spec: ModelSpec, limit: int) -> str:
    """How an error names a request's position limit: the model's, or the server's lower one."""
    return f"the model's {limit} positions" if limit == spec.max_positions else f"max_model_len ({limit} positions)"


def check_request(spec: ModelSpec, prompt_ids: Sequence[int], params: SamplingParams,
                  max_model_len: int | None = None, param: str = "prompt") -> None:
    """Checks that need the model (the rest is in ``SamplingParams.validate``): token ids in
    the vocabulary, and the canvas the request's policy decodes (``canvas_length``) within
    ``max_model_len`` positions (default: the model's)."""
    if len(prompt_ids) == 0:
        raise A2DGuardError("prompt is empty; pass at least one token of prompt text", param=param)
    check_token_ids(spec, prompt_ids, param=param)
    params.validate(vocab_size=spec.vocab_size)
    limit = max_model_len or spec.max_positions
    room = positions_room(spec, limit)
    total = canvas_length(prompt_ids, params, spec.mask_id)
    if limit and total > limit:
        raise params.policy.too_long(len(prompt_ids), params, total, limit, room, param)


def response_tokens(canvas: torch.Tensor, prompt_length: int, end_ids: tuple[int, ...], stop_at: int) -> list[int]:
    """Visible response: canvas[prompt_length:stop_at], cut at the first end token."""
    out: list[int] = []
    for tok in canvas[prompt_length:max(stop_at, prompt_length)].tolist():
        if tok in end_ids:
            break
        out.append(tok)
    return out
