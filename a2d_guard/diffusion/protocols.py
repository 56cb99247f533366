"""Decode protocols, because published numbers depend on the decode (DESIGN §11).

- ``ours``: the reference sampler (DESIGN §4): every mask filled, masks inside the prompt
  counted in the first block's budget, stop at a visible EOS.
- ``llada``: LLaDA's ``generate.py``: a block's budget counts only the masks *inside the
  block*, while every mask left of the block's end is a candidate; so a prompt mask that
  wins a slot leaves one of the block's own masks unfilled for good, and as many masks as
  the prompt had stay masked at the end. No early stop: every block runs.
- ``a2d``: the A2D authors' DIJA evaluation decode (``DIJA/utility/generate_function.py``,
  ``generate_llada``): no answer canvas, only the prompt's own masks are decoded, one token
  per step (every mask a candidate) until none is left, at temperature ``A2D_TEMPERATURE``;
  EOS is banned from the chosen token while the confidence is read from the unbanned
  softmax (so a position where the model wants EOS commits its second choice, with EOS's
  confidence behind it). A prompt without masks gets ``A2D_FALLBACK_MASKS`` masks after it,
  as the authors' ``process_prompt_instruct`` appends ``mask_counts`` = 36 (without its
  literal ``<startoftext>``/``<endoftext>`` text around them).

All three keep the EOS monitor (τ = 1.0 turns it off, which is what the authors ran). The
protocol is a request's ``SamplingParams.protocol``; ``protocol_generate`` decodes it here,
one sequence at a time and readable like the reference sampler, as the oracle the engine
(which batches all three, mixed in one batch) must reproduce token for token.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import torch

from a2d_guard.config import PROTOCOLS, SamplingParams
from a2d_guard.diffusion.canvas import (
    A2D_FALLBACK_MASKS,
    A2D_TEMPERATURE,
    answer_length,
    check_request,
    check_token_ids,
    initial_canvas,
    protocol_params,
    response_tokens,
)
from a2d_guard.diffusion.confidence import choose_x0, confidence, select_top_k
from a2d_guard.diffusion.reference import (
    GenerationResult,
    monitored_forward,
    reference_generate,
)
from a2d_guard.diffusion.schedule import block_end, num_transfer_tokens
from a2d_guard.models.spec import ModelSpec

__all__ = ["PROTOCOLS", "A2D_TEMPERATURE", "A2D_FALLBACK_MASKS", "protocol_generate", "canvas_length", "full_steps"]

Plan = Callable[[torch.Tensor], Iterator[tuple[int, int]]]  # canvas -> (reach end, k) per step


def llada_plan(prompt_length: int, params: SamplingParams, mask_id: int) -> Plan:
    """LLaDA's budget: the masks inside each block, spread over its steps (read when the block starts)."""

    def plan(canvas: torch.Tensor) -> Iterator[tuple[int, int]]:
        for block in range(params.num_blocks):
            end = block_end(prompt_length, block, params.block_length)
            n_block = int((canvas[end - params.block_length:end] == mask_id).sum())
            for k in num_transfer_tokens(n_block, params.steps_per_block):
                yield end, k

    return plan


def a2d_plan(mask_id: int) -> Plan:
    """The authors' loop: one token per step over the whole canvas while a mask is left."""

    def plan(canvas: torch.Tensor) -> Iterator[tuple[int, int]]:
        while bool((canvas == mask_id).any()):
            yield canvas.numel(), 1

    return plan


@torch.no_grad()
def _decode(model, spec: ModelSpec, canvas: torch.Tensor, prompt_length: int, params: SamplingParams,
            plan: Plan, ban_eos: bool) -> GenerationResult:
    """Run ``plan`` on ``canvas`` (no early stop): monitor, x0, confidence, top-k commit per step."""
    generated = canvas == spec.mask_id  # [L]
    positions = torch.arange(canvas.numel(), device=canvas.device)  # [L]
    in_response = generated & (positions >= prompt_length)  # [L]
    trace: list[float] = []
    steps = 0

    def finish(reason: str, stop_at: int, p_eos=None, reject_step=None, reject_position=None) -> GenerationResult:
        tokens = response_tokens(canvas, prompt_length, spec.end_ids, stop_at)
        infill = canvas[generated & ~in_response].tolist()
        last = p_eos if p_eos is not None else (trace[-1] if trace else None)
        return GenerationResult(tokens, reason, steps, last, reject_step, canvas.tolist(), prompt_length,
                                reject_position, trace, infill)

    for end, k in plan(canvas):
        cand = ((canvas == spec.mask_id) & (positions < end)).nonzero().squeeze(-1)  # [N]
        if k == 0 or cand.numel() == 0:
            continue  # the canvas would not change: no forward (as the reference sampler)
        step = steps
        steps += 1
        # probs are unbanned: the confidence reads them even when EOS is banned from x0
        logits, probs, p_eos, reject_at = monitored_forward(model, spec, canvas, generated, params)
        trace.append(p_eos)
        if reject_at is not None:
            return finish("content_filter", reject_at, p_eos, step, reject_at)
        cand_logits = logits[cand]  # [N, V]
        if ban_eos:
            cand_logits = cand_logits.clone()
            cand_logits[:, spec.eos_id] = float("-inf")
        x0 = choose_x0(cand_logits, params.temperature, params.seed, step, cand)  # [N]
        conf = confidence(params.remasking, probs[cand], x0, cand, params.seed, step)  # [N]
        chosen = select_top_k(conf, min(k, cand.numel()))
        canvas[cand[chosen]] = x0[chosen]
    return finish("length", canvas.numel())


def num_prompt_masks(spec: ModelSpec, prompt_ids: Sequence[int]) -> int:
    return sum(1 for t in prompt_ids if t == spec.mask_id)


def canvas_length(spec: ModelSpec, prompt_ids: Sequence[int], gen_length: int, protocol: str) -> int:
    """Positions the decode needs: prompt + answer masks (``a2d``: the prompt, or + the fallback masks)."""
    return len(prompt_ids) + answer_length(prompt_ids, spec.mask_id, gen_length, protocol)


def full_steps(spec: ModelSpec, prompt_ids: Sequence[int], steps: int, protocol: str) -> int:
    """Steps of a decode that runs to the end: ``steps`` (``a2d``: one per mask of its canvas)."""
    if protocol == "a2d":
        return num_prompt_masks(spec, prompt_ids) or A2D_FALLBACK_MASKS
    return steps


def protocol_generate(model, spec: ModelSpec, prompt_ids: Sequence[int], params: SamplingParams) -> GenerationResult:
    """Decode ``prompt_ids`` under ``params.protocol``; ``a2d`` ignores ``gen_length`` and ``temperature``.

    Every request is checked as the engine checks it (``canvas.check_request``: under ``a2d`` the
    positions check counts the canvas actually decoded).
    """
    if params.protocol == "ours":
        return reference_generate(model, spec, prompt_ids, params)
    check_request(spec, prompt_ids, params)
    device = next(model.parameters()).device
    ids = check_token_ids(spec, prompt_ids)
    canvas = torch.tensor(initial_canvas(ids, params, spec.mask_id), device=device)  # [L]
    if params.protocol == "llada":
        plan = llada_plan(len(prompt_ids), params, spec.mask_id)
    else:  # a2d: no answer canvas (or the fallback masks), one token per step, EOS banned from x0
        plan = a2d_plan(spec.mask_id)
    return _decode(model, spec, canvas, len(prompt_ids), protocol_params(params), plan,
                   ban_eos=params.protocol == "a2d")
