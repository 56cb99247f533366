"""Where a request's masks are under its decode protocol, and what the protocol fixes.

One small module because three places must agree on it: the readable decoders
(``protocols.py``), the request check (``reference.validate_request``: does the canvas fit
the model?) and the engine's ``Sequence`` (the canvas it admits). ``ours`` and ``llada``
append ``gen_length`` answer masks to the prompt; ``a2d`` (the A2D authors' DIJA decode)
has no answer canvas: it decodes the prompt's own masks, and appends the authors'
``mask_counts`` masks only to a prompt that has none. ``a2d`` also fixes the temperature.
"""

from __future__ import annotations

from collections.abc import Sequence

from a2d_guard.config import SamplingParams

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
