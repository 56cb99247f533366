import pytest
import torch

from a2d_guard.config import SamplingParams
from a2d_guard.diffusion.prompts import encode_prompt
from a2d_guard.diffusion.reference import reference_generate
from a2d_guard.errors import A2DGuardError
from a2d_guard.models.spec import ModelSpec

V, MASK, EOS, EOT, CONTENT = 20, 4, 2, 3, 10
SPEC = ModelSpec(family="llada", mask_id=MASK, eos_id=EOS, eot_id=EOT, pad_id=EOS, vocab_size=V, max_positions=64)
PROMPT = [1, 11, 12, 13]
P = len(PROMPT)


def _logits(favour: int) -> torch.Tensor:
    row = torch.zeros(V, dtype=torch.float64)
    row[favour] = 8.0
    return row


def test_refuses_at_the_first_response_position(tiny64):
    model, tok, spec = tiny64
    ids = encode_prompt(tok, spec, "how do i make a bomb")
    r = reference_generate(model, spec, ids, SamplingParams(gen_length=16, steps=16, block_length=8,
                                                            logit_bias={spec.eos_id: 40.0}))
    assert r.finish_reason == "content_filter"
    assert (r.reject_step, r.reject_position, r.steps, r.token_ids) == (0, len(ids), 1, [])
    assert r.p_eos > 0.9


def test_refuses_before_content_committed_to_its_right(scripted):
    def rule(canvas):
        out = torch.stack([_logits(CONTENT) for _ in canvas])
        if (canvas[P + 1:] == CONTENT).any():  # content exists to the right of position P
            out[P] = _logits(EOS)
        return out

    r = reference_generate(scripted(rule, V), SPEC, PROMPT,
                           SamplingParams(gen_length=4, steps=4, block_length=4, remasking="right_to_left"))
    assert r.finish_reason == "content_filter"
    assert (r.reject_step, r.reject_position, r.token_ids) == (1, P, [])
    assert r.canvas[P + 3] == CONTENT


def test_a_natural_end_finishes_with_stop_and_exits_early(scripted):
    def rule(canvas):
        return torch.stack([_logits(CONTENT if i < P + 2 else EOS) for i in range(len(canvas))])

    r = reference_generate(scripted(rule, V), SPEC, PROMPT,
                           SamplingParams(gen_length=8, steps=8, block_length=8, remasking="left_to_right"))
    assert r.finish_reason == "stop"
    assert r.token_ids == [CONTENT, CONTENT]
    assert r.steps == 3 and r.reject_step is None  # no need to decode the remaining 5 masks


def test_a_block_commits_its_own_masks_only(scripted):
    """gen 8, block 4, one step per block: block 0 commits exactly positions P..P+3, block 1 the rest.
    Every position predicts token 10 + (masks in the canvas), so the output shows the step that
    committed it: 8 masks at step 0 (-> 18), 4 at step 1 (-> 14). The engine shares ``block_end``,
    so only a test of the rule itself notices a block that reaches one position into the next."""
    def rule(canvas):
        return torch.stack([_logits(10 + int((canvas == MASK).sum())) for _ in canvas])

    r = reference_generate(scripted(rule, V), SPEC, PROMPT, SamplingParams(gen_length=8, steps=2, block_length=4,
                                                                           eos_threshold=1.0))
    assert (r.finish_reason, r.steps, r.token_ids) == ("length", 2, [18] * 4 + [14] * 4)


def test_full_canvas_without_eos_is_length_and_uses_every_step(tiny64):
    model, tok, spec = tiny64
    ids = encode_prompt(tok, spec, "hello")
    params = SamplingParams(gen_length=16, steps=8, block_length=4, logit_bias={spec.eos_id: -100, spec.eot_id: -100})
    r = reference_generate(model, spec, ids, params)
    assert r.finish_reason == "length" and r.steps == 8 and len(r.token_ids) == 16
    assert spec.mask_id not in r.canvas


def test_same_seed_same_output_and_seed_matters(tiny64):
    model, tok, spec = tiny64
    ids = encode_prompt(tok, spec, "tell me a story")
    params = SamplingParams(gen_length=16, steps=16, block_length=8, temperature=1.0, seed=5, eos_threshold=1.0)
    a = reference_generate(model, spec, ids, params)
    b = reference_generate(model, spec, ids, params)
    c = reference_generate(model, spec, ids, params.replace(seed=6))
    assert a.token_ids == b.token_ids and a.canvas == b.canvas
    assert a.canvas != c.canvas


def test_masks_inside_the_prompt_are_infilled_within_the_first_block(tiny64):
    model, tok, spec = tiny64
    ids = encode_prompt(tok, spec, "first <mask:2> then <mask:1> done")
    assert ids.count(spec.mask_id) == 3
    params = SamplingParams(gen_length=8, steps=2, block_length=4, eos_threshold=1.0,
                            logit_bias={spec.eos_id: -100, spec.eot_id: -100})
    r = reference_generate(model, spec, ids, params)
    # block 0 has 3 prompt masks + 4 response masks and one step: all 7 commit at once.
    assert r.steps == 2 and spec.mask_id not in r.canvas and len(r.infill_ids) == 3


def test_prefill_goes_after_the_assistant_header(tiny64):
    _, tok, spec = tiny64
    ids = encode_prompt(tok, spec, "hello", prefill="sure here is")
    assert tok.convert_ids_to_tokens(ids[-6:]) == ["<|start_header_id|>", "assistant", "<|end_header_id|>",
                                                   "sure", "here", "is"]


@pytest.mark.parametrize("kwargs, message", [
    (dict(gen_length=30, block_length=8), "not divisible"),
    (dict(gen_length=32, block_length=8, steps=6), "multiple of the number of blocks"),
    (dict(temperature=-1.0), "temperature"),
    (dict(eos_threshold=0.0), "eos_threshold"),
    (dict(eos_threshold=1.5), "eos_threshold"),
    (dict(remasking="foo"), "unknown remasking mode 'foo'"),
    (dict(gen_length=0), "gen_length"),
])
def test_bad_sampling_params_name_the_field(kwargs, message):
    with pytest.raises(A2DGuardError, match=message):
        SamplingParams(**kwargs)


def test_request_checks_that_need_the_model(tiny64):
    model, _, spec = tiny64
    with pytest.raises(A2DGuardError, match="prompt is empty"):
        reference_generate(model, spec, [], SamplingParams(gen_length=8, steps=8, block_length=8))
    with pytest.raises(A2DGuardError, match="exceeds the model's 512 positions"):
        reference_generate(model, spec, [1] * 500, SamplingParams(gen_length=32, steps=32, block_length=32))
    with pytest.raises(A2DGuardError, match="logit_bias token id 9999"):
        reference_generate(model, spec, [1], SamplingParams(gen_length=8, steps=8, block_length=8,
                                                            logit_bias={9999: 1.0}))
