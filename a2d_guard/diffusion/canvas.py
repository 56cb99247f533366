"""Where a request's masks are under its decode protocol, and what the protocol fixes.

One small module because three places must agree on it: the readable decoders
(``protocols.py``), the request check (``check_request``: are the ids tokens of the model,
does the canvas fit its positions?) and the engine's ``Sequence`` (the canvas it admits). ``ours`` and ``llada``
append ``gen_length`` answer masks to the prompt; ``a2d`` (the A2D authors' DIJA decode)
has no answer canvas: it decodes the prompt's own masks, and appends the authors'
``mask_counts`` masks only to a prompt that has none. ``a2d`` also fixes the temperature.
"""

from __future__ import annotations

import operator
from collections.abc import Sequence

import torch

from a2d_guard.config import SamplingParams
from a2d_guard.errors import A2DGuardError
from a2d_guard.models.spec import ModelSpec

A2D_TEMPERATURE = 0.2  # hard-coded in the A2D authors' harmbench_llada.py
A2D_FALLBACK_MASKS = 36  # their eval.sh mask_counts, appended to a prompt without masks


def answer_length(prompt_ids: Sequence[int], mask_id: int, gen_length: int, protocol: str) -> int:
    """Masks appended after the prompt: ``gen_length``; under ``a2d`` 0, or the fallback masks."""
    if protocol == "a2d":
        return 0 if mask_id in prompt_ids else A2D_FALLBACK_MASKS
    return gen_length


def initial_canvas(prompt_ids: Sequence[int], params: SamplingParams, mask_id: int) -> list[int]:
    """The canvas a decode starts from: the prompt, then its protocol's answer masks."""
    return list(prompt_ids) + [mask_id] * answer_length(prompt_ids, mask_id, params.gen_length, params.protocol)


def protocol_params(params: SamplingParams) -> SamplingParams:
    """The settings the decode runs with: ``a2d`` samples at ``A2D_TEMPERATURE``, whatever was asked."""
    return params.replace(temperature=A2D_TEMPERATURE) if params.protocol == "a2d" else params


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
    the vocabulary, and the canvas the request's protocol decodes (prompt + ``answer_length``)
    within ``max_model_len`` positions (default: the model's)."""
    if len(prompt_ids) == 0:
        raise A2DGuardError("prompt is empty; pass at least one token of prompt text", param=param)
    check_token_ids(spec, prompt_ids, param=param)
    params.validate(vocab_size=spec.vocab_size)
    limit = max_model_len or spec.max_positions
    room = positions_room(spec, limit)
    total = len(prompt_ids) + answer_length(prompt_ids, spec.mask_id, params.gen_length, params.protocol)
    if limit and total > limit and params.protocol == "a2d":
        raise A2DGuardError(f"the a2d canvas ({total} tokens) exceeds {room}; shorten the prompt", param=param)
    if limit and total > limit:
        raise A2DGuardError(
            f"prompt ({len(prompt_ids)} tokens) + gen_length ({params.gen_length}) = {total} exceeds "
            f"{room}; shorten the prompt or lower gen_length",
            param=param if len(prompt_ids) >= limit else "gen_length",
        )


def response_tokens(canvas: torch.Tensor, prompt_length: int, end_ids: tuple[int, ...], stop_at: int) -> list[int]:
    """Visible response: canvas[prompt_length:stop_at], cut at the first end token."""
    out: list[int] = []
    for tok in canvas[prompt_length:max(stop_at, prompt_length)].tolist():
        if tok in end_ids:
            break
        out.append(tok)
    return out
