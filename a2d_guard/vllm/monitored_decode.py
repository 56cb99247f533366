"""LLaDA's block schedule with the A2D monitor, driven one denoising step at a time by the
per-position statistics the vLLM guard model returns (``guard_model.StepStatsPooler``).

Why this shape: vLLM has no diffusion sampler for LLaDA or Dream, but its pooling runner
(CPU and GPU builds alike) batches whatever full-canvas forwards are in flight from every
request at each engine step. So one denoising step is one ``encode`` of the canvas, the
engine answers ``STATS`` numbers per position, and this state machine (in the API process)
commits tokens and runs the monitor, exactly as ``diffusion/reference.py`` defines a step
(DESIGN §4): p(EOS) at the leftmost mask is read *before* the step's commit; the top-k
candidates of the current block by p(x0) are committed (k from ``num_transfer_tokens``,
or Fast-dLLM's ``parallel_threshold``); a committed EOS with no mask to its left ends the
request with ``stop``. A rejected request sends no further step: its slot in the engine's
batch is free at once.

What the statistics allow: x0 is the argmax (temperature 0) and the confidence p(x0)
(``low_confidence``), the schedule LLaDA's ``generate.py`` and our exact mode use. Other
modes need the whole distribution per position and are refused by ``check_params``.
No vLLM import: the main suite tests this against the reference sampler.
"""

from __future__ import annotations

from collections.abc import Generator, Sequence

import torch

from a2d_guard.config import SamplingParams
from a2d_guard.diffusion.canvas import response_tokens
from a2d_guard.diffusion.confidence import select_top_k
from a2d_guard.diffusion.monitor import first_visible_end, leftmost_masked, should_reject
from a2d_guard.diffusion.policies import DEFAULT_POLICY
from a2d_guard.errors import A2DGuardError

# Columns of the per-position statistics the pooler returns.  # [L, STATS] float32
X0, P_X0, P_EOS = 0, 1, 2
STATS = 3


def check_params(params: SamplingParams) -> None:
    """What the step statistics can decode; ``A2DGuardError`` naming the request field."""
    if params.temperature != 0:
        raise A2DGuardError(f"temperature={params.temperature} needs the whole distribution per position; the "
                            "vLLM guard decodes greedily (temperature 0, LLaDA's exact mode)", param="temperature")
    if params.remasking != "low_confidence":
        raise A2DGuardError(f"remasking={params.remasking!r} is not available on vLLM; use low_confidence "
                            "(or a2d-guard serve for every mode)", param="remasking")
    if params.logit_bias:
        raise A2DGuardError("logit_bias is not available on vLLM (the engine returns statistics, not logits); "
                            "leave it unset or use a2d-guard serve", param="logit_bias")
    if params.policy is not DEFAULT_POLICY:
        raise A2DGuardError(f"protocol={params.protocol!r} is not available on vLLM", param="protocol")


def step_stats(logits: torch.Tensor, eos_id: int) -> torch.Tensor:
    """The ``STATS`` columns from one canvas's logits (float32 softmax, as the pooler computes
    them).  [L, V] -> [L, STATS]"""
    probs = torch.softmax(logits.to(torch.promote_types(logits.dtype, torch.float32)), dim=-1)  # [L, V]
    p_x0, x0 = probs.max(dim=-1)  # [L], [L]: max() returns the first maximum, as argmax does
    return torch.stack([x0.float(), p_x0, probs[:, eos_id]], dim=-1)


def monitored_decode(prompt_ids: Sequence[int], params: SamplingParams, mask_id: int,
                     end_ids: tuple[int, ...]) -> Generator[list[int], torch.Tensor, dict]:
    """Yield the canvas to run; receive its ``[L, STATS]`` statistics; return the outcome.

    The outcome is ``{"token_ids", "finish_reason", "steps", "p_eos", "reject_step",
    "reject_position", "canvas"}`` (the fields of ``reference.GenerationResult`` a client sees).
    """
    check_params(params)
    prompt_length = len(prompt_ids)
    canvas = torch.tensor(list(prompt_ids) + [mask_id] * params.gen_length)  # [L]
    generated = canvas == mask_id  # [L] positions the sampler fills (prompt masks included)
    positions = torch.arange(canvas.numel())
    in_response = generated & (positions >= prompt_length)
    steps_run, last_p_eos = 0, None

    def outcome(reason: str, stop_at: int, reject_step=None, reject_position=None) -> dict:
        return {"token_ids": response_tokens(canvas, prompt_length, end_ids, stop_at), "finish_reason": reason,
                "steps": steps_run, "p_eos": last_p_eos, "reject_step": reject_step,
                "reject_position": reject_position, "canvas": canvas.tolist()}

    policy = params.policy
    for block in range(policy.num_blocks(params)):
        end = policy.block_end(prompt_length, canvas.numel(), block, params)
        in_reach = positions < end  # [L]
        for k in policy.block_steps(canvas, end, mask_id, params):
            if k == 0:  # nothing left in reach this step: no forward pass
                continue
            masked = canvas == mask_id  # [L]
            cand = (masked & in_reach).nonzero().squeeze(-1)  # [N] candidate positions
            step = steps_run
            steps_run += 1
            stats = yield canvas.tolist()  # [L, STATS]
            leftmost = leftmost_masked(canvas[None], mask_id)  # [1]
            p_eos = stats[leftmost, P_EOS].double()  # [1]
            last_p_eos = float(p_eos)
            if bool(should_reject(canvas[None], generated[None], leftmost, p_eos, mask_id, end_ids,
                                  params.eos_threshold)[0]):
                return outcome("content_filter", int(leftmost), step, int(leftmost))
            x0, conf = stats[cand, X0].long(), stats[cand, P_X0]  # [N], [N]
            chosen = torch.zeros_like(cand, dtype=torch.bool)  # [N]
            chosen[select_top_k(conf, k)] = True
            if params.parallel_threshold is not None:  # Fast-dLLM: every candidate sure enough, too
                chosen |= conf >= params.parallel_threshold
            canvas[cand[chosen]] = x0[chosen]
            stop = int(first_visible_end(canvas[None], in_response[None], mask_id, end_ids)[0])
            if stop >= 0:
                return outcome("stop", stop)
    return outcome("length", canvas.numel())
