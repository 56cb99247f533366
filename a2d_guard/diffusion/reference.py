"""The reference sampler: one sequence, plain and readable, the golden oracle (DESIGN §4, §13).

One loop for every decode protocol: what differs between them (canvas, block reach, block
budget, stop rule, EOS ban) comes from the request's decode policy (``policies.py``), the
same objects the engine calls. For ``ours``: LLaDA's ``generate.py`` semantics
(semi-autoregressive blocks, low-confidence remasking, Gumbel-max sampling) plus the A2D EOS
monitor and early exit. It runs the LM head and a
float64 softmax over *every* position at every step, which is wasteful and exactly why it
is the oracle and not the production path: the batched engine and every kernel must
reproduce it token for token at temperature 0 in float64 on the tiny model.

One step of the loop:
1. logits of the whole canvas (+ logit_bias), float64 softmax;
2. monitor: p(EOS) at the leftmost mask; reject (``content_filter``) if it fires;
3. x0 (EOS banned where the policy says so) and the confidence of every candidate (masked
   and left of the block end), read from the unbanned softmax;
4. commit the k most confident (k from the policy's block budget); never re-mask;
5. ``stop`` if an EOS/EoT is committed with no mask to its left (policies that stop at a
   visible EOS); ``length`` when every block has run.

Threshold decoding (``parallel_threshold``, Fast-dLLM, DESIGN §12) changes only step 4 and
the length of a block: it commits the candidate the remasking mode ranks first plus every
candidate whose p(x0) is at least the threshold, and a block runs for as long as it has
masks (candidates are the same as in exact mode: masked and left of the block's end, so
masks inside the prompt belong to the first block). The threshold is always on p(x0), as in
Fast-dLLM, whatever the remasking mode; the mode still picks the one forced commit, so
``left_to_right`` still walks left to right when nothing is confident.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from a2d_guard.config import SamplingParams
from a2d_guard.diffusion.canvas import check_request, check_token_ids, initial_canvas, response_tokens
from a2d_guard.diffusion.confidence import choose_x0, confidence, select_top_k
from a2d_guard.diffusion.monitor import first_visible_end, leftmost_masked, should_reject
from a2d_guard.models.forward import model_logits
from a2d_guard.models.spec import ModelSpec


@dataclass
class GenerationResult:
    """What one decode produced.

    ``token_ids``: response tokens (after the prompt) up to the first EOS/EoT; for a
    rejection, what was committed left of the rejection position. ``canvas`` holds every
    final token, including masks filled inside the prompt (DIJA infill).
    """

    token_ids: list[int]
    finish_reason: str
    steps: int
    p_eos: float | None
    reject_step: int | None
    canvas: list[int]
    prompt_length: int
    reject_position: int | None = None
    p_eos_trace: list[float] = field(default_factory=list)
    infill_ids: list[int] = field(default_factory=list)  # tokens decoded at masks inside the prompt


def apply_logit_bias(logits: torch.Tensor, bias: dict[int, float]) -> torch.Tensor:
    """OpenAI semantics: add ``bias[token]`` to that token's logit at every position."""
    if not bias:
        return logits
    logits = logits.clone()
    ids = torch.tensor(list(bias.keys()), device=logits.device)
    vals = torch.tensor(list(bias.values()), dtype=logits.dtype, device=logits.device)
    logits[..., ids] += vals
    return logits


def monitored_forward(model, spec: ModelSpec, canvas: torch.Tensor, generated: torch.Tensor,
                      params: SamplingParams) -> tuple[torch.Tensor, torch.Tensor, float, int | None]:
    """Steps 1-2 of a decode step: the whole canvas's float64 logits (+ logit_bias) and softmax,
    then the A2D monitor on the canvas before any commit (DESIGN §4).

    Returns (logits [L, V], probs [L, V], p(EOS) at the leftmost mask, the rejection position
    or None). Shared by every one-sequence decode (this sampler and the eval protocols), so
    they all read the monitor the same way.
    """
    logits = apply_logit_bias(model_logits(model, spec, canvas[None])[0].to(torch.float64), params.logit_bias)
    probs = torch.softmax(logits, dim=-1)  # [L, V]
    leftmost = leftmost_masked(canvas[None], spec.mask_id)  # [1]
    p_eos = probs[leftmost, spec.eos_id]  # [1]
    rejected = should_reject(canvas[None], generated[None], leftmost, p_eos, spec.mask_id, spec.end_ids,
                             params.eos_threshold)[0]
    return logits, probs, float(p_eos), int(leftmost) if rejected else None


@torch.no_grad()
def reference_generate(model, spec: ModelSpec, prompt_ids: Sequence[int], params: SamplingParams) -> GenerationResult:
    """Decode ``prompt_ids`` under the request's decode policy (``params.policy``): ``ours``
    appends ``params.gen_length`` masks (masks in the prompt are infilled), ``llada`` the same
    with LLaDA's budget, ``a2d`` decodes the prompt's own masks.

    Every request is checked as the engine checks it (``canvas.check_request``: under ``a2d``
    the positions check counts the canvas actually decoded).
    """
    check_request(spec, prompt_ids, params)
    policy = params.policy
    params = policy.decode_params(params)  # a2d: its fixed temperature
    device = next(model.parameters()).device
    prompt_length = len(prompt_ids)
    canvas = torch.tensor(initial_canvas(check_token_ids(spec, prompt_ids), params, spec.mask_id),
                          device=device)  # [L]
    generated = canvas == spec.mask_id  # [L] positions the sampler fills
    positions = torch.arange(canvas.numel(), device=device)
    in_response = generated & (positions >= prompt_length)  # an EOS infilled in the prompt ends nothing
    trace: list[float] = []
    steps_run = 0

    def finish(reason: str, stop_at: int, p_eos=None, reject_step=None, reject_position=None):
        tokens = response_tokens(canvas, prompt_length, spec.end_ids, stop_at)
        infill = canvas[generated & ~in_response].tolist()
        last_p_eos = p_eos if p_eos is not None else (trace[-1] if trace else None)
        return GenerationResult(tokens, reason, steps_run, last_p_eos, reject_step, canvas.tolist(), prompt_length,
                                reject_position, trace, infill)

    for block in range(policy.num_blocks(params)):
        end = policy.block_end(prompt_length, canvas.numel(), block, params)
        in_reach = positions < end  # [L]
        for k in policy.block_steps(canvas, end, spec.mask_id, params):
            cand = ((canvas == spec.mask_id) & in_reach).nonzero().squeeze(-1)  # [N] candidate positions
            if k == 0 or cand.numel() == 0:  # the canvas would not change: no forward pass
                continue
            step = steps_run
            steps_run += 1
            # probs are unbanned: the confidence reads them even when the policy bans EOS from x0
            logits, probs, p_eos, reject_at = monitored_forward(model, spec, canvas, generated, params)
            trace.append(p_eos)
            if reject_at is not None:
                return finish("content_filter", reject_at, p_eos, step, reject_at)
            cand_logits = logits[cand]  # [N, V]
            if policy.ban_eos:
                cand_logits = cand_logits.clone()
                cand_logits[:, spec.eos_id] = float("-inf")
            x0 = choose_x0(cand_logits, params.temperature, params.seed, step, cand)  # [N]
            conf = confidence(params.remasking, probs[cand], x0, cand, params.seed, step)  # [N]
            chosen = torch.zeros_like(cand, dtype=torch.bool)  # [N]
            chosen[select_top_k(conf, min(k, cand.numel()))] = True
            if params.parallel_threshold is not None:  # Fast-dLLM: every candidate sure enough, too
                chosen |= probs[cand].gather(-1, x0[:, None]).squeeze(-1) >= params.parallel_threshold
            canvas[cand[chosen]] = x0[chosen]
            if policy.stops_at_visible_eos:
                stop = int(first_visible_end(canvas[None], in_response[None], spec.mask_id, spec.end_ids)[0])
                if stop >= 0:
                    return finish("stop", stop)
    return finish("length", canvas.numel())
