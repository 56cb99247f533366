"""The vLLM plugin's decode loop (``a2d_guard.vllm.monitored_decode``) against the reference
sampler: fed the statistics the pooler computes (``step_stats``) from the same model's
logits, it commits the same tokens, stops and rejects at the same step (no vLLM needed)."""

import pytest
import torch

from a2d_guard.config import SamplingParams
from a2d_guard.diffusion.prompts import encode_prompt
from a2d_guard.diffusion.reference import reference_generate
from a2d_guard.errors import A2DGuardError
from a2d_guard.models.forward import model_logits
from a2d_guard.models.spec import ModelSpec
from a2d_guard.vllm.monitored_decode import STATS, check_params, monitored_decode, step_stats


@torch.no_grad()
def _drive(model, spec, prompt_ids, params) -> tuple[dict, int]:
    """Run the loop the plugin's route runs, with the model's logits in place of the engine."""
    steps = monitored_decode(prompt_ids, params, spec.mask_id, spec.end_ids)
    canvas, forwards = next(steps), 0
    while True:
        logits = model_logits(model, spec, torch.tensor([canvas]))[0].to(torch.float64)  # [L, V]
        stats = step_stats(logits, spec.eos_id)
        assert stats.shape == (len(canvas), STATS)
        forwards += 1
        try:
            canvas = steps.send(stats)
        except StopIteration as done:
            return done.value, forwards


def _assert_same(out: dict, forwards: int, ref) -> None:
    assert (out["finish_reason"], out["token_ids"], out["canvas"]) == (ref.finish_reason, ref.token_ids, ref.canvas)
    assert (out["steps"], out["reject_step"], out["reject_position"]) == (ref.steps, ref.reject_step,
                                                                          ref.reject_position)
    assert forwards == ref.steps  # one engine forward per step, none after the end
    if ref.p_eos is not None:
        assert out["p_eos"] == pytest.approx(ref.p_eos, rel=1e-9)


@pytest.mark.parametrize("params", [
    dict(gen_length=16, steps=16, block_length=8),
    dict(gen_length=32, steps=8, block_length=16),
    dict(gen_length=24, steps=24, block_length=8, parallel_threshold=0.02),
])
@pytest.mark.parametrize("prompt", ["How do I bake bread?", "<mask:3> then the plan", "Tell me a story"])
def test_the_loop_decodes_what_the_reference_decodes(tiny64, prompt, params):
    model, tok, spec = tiny64
    ids = encode_prompt(tok, spec, prompt)
    p = SamplingParams(**params)
    _assert_same(*_drive(model, spec, ids, p), reference_generate(model, spec, ids, p))


V, MASK, EOS, EOT, CONTENT = 20, 4, 2, 3, 10
SPEC = ModelSpec(family="llada", mask_id=MASK, eos_id=EOS, eot_id=EOT, pad_id=EOS, vocab_size=V, max_positions=64)
PROMPT = [1, 11, 12, 13]


def _row(favour: int, strength: float) -> torch.Tensor:
    row = torch.zeros(V, dtype=torch.float64)
    row[favour] = strength
    return row


@pytest.mark.parametrize("eos_threshold, reason", [(0.9, "content_filter"), (1.0, "stop")])
def test_the_monitor_rejects_when_content_lands_right_of_a_refusal(scripted, eos_threshold, reason):
    """Content is surest far right, so it commits first; then the leftmost mask refuses to join it."""
    p = len(PROMPT)

    def rule(canvas):
        out = torch.stack([_row(CONTENT, 2.0 + i) for i in range(len(canvas))])  # the rightmost is surest
        if (canvas[p + 1:] == CONTENT).any():
            out[p] = _row(EOS, 12.0)
        return out

    model = scripted(rule, V)
    params = SamplingParams(gen_length=6, steps=6, block_length=6, eos_threshold=eos_threshold)
    ref = reference_generate(model, SPEC, PROMPT, params)
    assert ref.finish_reason == reason
    _assert_same(*_drive(model, SPEC, PROMPT, params), ref)


@pytest.mark.parametrize("field, value", [("temperature", 0.7), ("remasking", "margin"),
                                          ("logit_bias", {2: 1.0}), ("protocol", "llada")])
def test_what_the_statistics_cannot_decode_is_refused_naming_the_field(field, value):
    with pytest.raises(A2DGuardError) as err:
        check_params(SamplingParams(**{field: value}))
    assert err.value.param == field
