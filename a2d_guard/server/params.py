"""From an OpenAI request (+ the server's defaults) to the engine's ``SamplingParams``.

``max_tokens`` is the canvas length (``gen_length``): a diffusion model decodes a fixed
canvas, and stops early only at a visible EOS. When a request sets ``max_tokens`` but not
``block_length``/``steps``, the server's defaults are fitted to it, so that plain OpenAI
clients (which know nothing of blocks) never see a divisibility error:
- ``block_length``: the server default when it divides ``max_tokens``, else the largest
  divisor of ``max_tokens`` below it;
- ``steps``: the server's steps-per-token ratio applied to ``max_tokens``, rounded to a
  multiple of the number of blocks.
Values a request sets itself are never adjusted: a bad one is a 400 naming it.

``max_tokens`` is checked against ``max_model_len`` before anything is fitted to it, and
``seed + n - 1`` against the RNG's range (``protocol._Request.check_unsupported``), so no
value a client can send reaches the engine unchecked.
"""

from __future__ import annotations

import secrets

from a2d_guard.config import SamplingParams
from a2d_guard.errors import A2DGuardError
from a2d_guard.server.protocol import RequestError, _Request

# SamplingParams field -> the request field a user sets for it (errors name the latter)
_PARAM_OF_FIELD = {
    "gen_length": "max_tokens",
    "block_length": "block_length",
    "steps": "steps",
    "temperature": "temperature",
    "remasking": "remasking",
    "eos_threshold": "eos_threshold",
    "parallel_threshold": "parallel_threshold",
    "seed": "seed",
    "logit_bias": "logit_bias",
}


def _fitted_block_length(gen_length: int, default: int) -> int:
    if gen_length % default == 0:
        return default
    return max(d for d in range(1, min(gen_length, default) + 1) if gen_length % d == 0)


def _fitted_steps(gen_length: int, num_blocks: int, defaults: SamplingParams) -> int:
    per_token = defaults.steps / defaults.gen_length
    return num_blocks * max(1, round(gen_length * per_token / num_blocks))


def request_field(param: str | None) -> str | None:
    """The request field a ``SamplingParams`` field is set by (``gen_length`` is ``max_tokens``)."""
    return _PARAM_OF_FIELD.get(param, param)


def sampling_params(req: _Request, defaults: SamplingParams, max_tokens: int | None = None,
                    max_model_len: int | None = None) -> list[SamplingParams]:
    """One ``SamplingParams`` per sample (``n``); sample i uses seed + i."""
    gen_length = max_tokens if max_tokens is not None else req.max_tokens
    if gen_length is None:
        gen_length = defaults.gen_length
    elif gen_length <= 0:
        raise RequestError(f"max_tokens must be a positive integer, got {gen_length}", param="max_tokens")
    elif max_model_len is not None and gen_length >= max_model_len:
        raise RequestError(f"max_tokens {gen_length} leaves no room for a prompt in the {max_model_len} positions "
                           f"this server's model takes; send at most {max_model_len - 1}", param="max_tokens")
    block_length = req.block_length
    if block_length is None:
        block_length = _fitted_block_length(gen_length, defaults.block_length)
    steps = req.steps
    if steps is None and block_length > 0 and gen_length % block_length == 0:
        steps = _fitted_steps(gen_length, gen_length // block_length, defaults)
    seed = req.seed if req.seed is not None else secrets.randbelow(2**31)
    base = dict(
        gen_length=gen_length, block_length=block_length, steps=steps if steps is not None else defaults.steps,
        temperature=req.temperature if req.temperature is not None else defaults.temperature,
        remasking=req.remasking if req.remasking is not None else defaults.remasking,
        eos_threshold=req.eos_threshold if req.eos_threshold is not None else defaults.eos_threshold,
        refusal_text=req.refusal_text if req.refusal_text is not None else defaults.refusal_text,
        parallel_threshold=(req.parallel_threshold if req.parallel_threshold is not None
                            else defaults.parallel_threshold),
        logit_bias=req.token_bias(),
    )
    try:
        return [SamplingParams(seed=seed + i, **base) for i in range(req.n)]
    except A2DGuardError as exc:
        raise RequestError(str(exc), param=request_field(exc.param)) from None
