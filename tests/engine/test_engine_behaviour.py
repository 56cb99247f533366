"""Scheduler and engine behaviour: slots, eviction, refill, abort, bad input, per-request errors."""

import pytest
import torch

from a2d_guard.config import SamplingParams
from a2d_guard.diffusion.reference import reference_generate
from a2d_guard.engine import LLM, LLMEngine
from a2d_guard.errors import A2DGuardError
from a2d_guard.models.spec import ModelSpec

P8 = SamplingParams(gen_length=8, steps=8, block_length=8, eos_threshold=1.0)


def _engine(tiny, max_num_seqs=2):
    model, tok, spec = tiny
    return LLMEngine(model, tok, spec, max_num_seqs=max_num_seqs), spec


def _assert_as_alone(tiny, prompt_ids, params, completion):
    """What the engine produced in a shared batch is what the reference sampler produces for
    the same request alone (float64: the golden contract)."""
    model, _, spec = tiny
    ref = reference_generate(model, spec, prompt_ids, params)
    assert (completion.token_ids, completion.finish_reason, completion.steps, completion.reject_step) == (
        ref.token_ids, ref.finish_reason, ref.steps, ref.reject_step)
    return ref


def test_rejected_sequences_free_their_slot_for_a_waiting_request(tiny64):
    engine, spec = _engine(tiny64, max_num_seqs=2)
    reject = P8.replace(eos_threshold=0.9, logit_bias={spec.eos_id: 50.0})
    long = P8.replace(logit_bias={spec.eos_id: -100.0, spec.eot_id: -100.0})
    engine.add_request("bad", [1, 20, 21], reject)
    engine.add_request("long", [1, 22], long)
    engine.add_request("waiting", [1, 23], long)
    first = engine.step()
    assert [o.request_id for o in first] == ["bad"]
    assert first[0].outputs[0].finish_reason == "content_filter" and first[0].outputs[0].reject_step == 0
    assert [s.request_id for s in engine.scheduler.running] == ["long"]
    engine.step()  # the freed slot is taken at the next step boundary
    assert [s.request_id for s in engine.scheduler.running] == ["long", "waiting"]
    assert engine.scheduler.running[1].num_steps == 1
    done = {}
    while engine.has_unfinished_requests():
        for out in engine.step():
            done[out.request_id] = out
    assert done["long"].outputs[0].finish_reason == "length" and done["long"].outputs[0].steps == 8
    m = done["waiting"].metrics
    assert m.queue_time > 0 and m.time_to_finish >= m.queue_time and m.steps == 8
    _assert_as_alone(tiny64, [1, 20, 21], reject, first[0].outputs[0])
    for rid, ids in (("long", [1, 22]), ("waiting", [1, 23])):
        ref = _assert_as_alone(tiny64, ids, long, done[rid].outputs[0])
        assert len(ref.token_ids) == 8  # EOS and EoT are biased away: the full canvas is content


def test_requests_with_different_params_share_a_batch(tiny64):
    model, tok, spec = tiny64
    llm = LLM.from_loaded(model, tok, spec, max_num_seqs=8)
    params = [SamplingParams(gen_length=g, steps=s, block_length=b, remasking=r, eos_threshold=1.0)
              for g, s, b, r in [(8, 8, 8, "margin"), (16, 4, 4, "entropy"), (32, 32, 16, "random")]]
    prompts = ["hello", "how are you", "tell me a story"]
    outs = llm.generate(prompts, params)
    assert [o.outputs[0].steps <= p.steps for o, p in zip(outs, params, strict=True)] == [True] * 3
    assert [o.prompt for o in outs] == prompts
    for text, p, out in zip(prompts, params, outs, strict=True):
        _assert_as_alone(tiny64, llm.encode(text), p, out.outputs[0])


def test_abort_drops_a_request_and_unknown_ids_return_false(tiny64):
    engine, _ = _engine(tiny64)
    engine.add_request("a", [1, 20], P8)
    engine.add_request("b", [1, 21], P8)
    engine.step()
    assert engine.abort("a") is True
    assert engine.abort("a") is False and engine.abort("nope") is False
    outs = engine.step()
    aborted = [o for o in outs if o.request_id == "a"]
    assert aborted and aborted[0].outputs[0].finish_reason == "abort"
    assert [s.request_id for s in engine.scheduler.running] == ["b"]
    while engine.has_unfinished_requests():
        outs += engine.step()
    _assert_as_alone(tiny64, [1, 21], P8, next(o for o in outs if o.request_id == "b").outputs[0])


@pytest.mark.parametrize("prompt, params, field", [
    ([], P8, "prompt is empty"),
    ([1, 2], P8.replace(logit_bias={10**6: 1.0}), "logit_bias token id"),
    ([1] * 600, P8, "exceeds the model's"),
])
def test_bad_requests_raise_at_add_request_and_the_engine_carries_on(tiny64, prompt, params, field):
    engine, _ = _engine(tiny64)
    engine.add_request("ok", [1, 20], P8)
    with pytest.raises(A2DGuardError, match=field):
        engine.add_request("bad", prompt, params)
    outs = []
    while engine.has_unfinished_requests():
        outs += engine.step()
    assert [o.request_id for o in outs] == ["ok"]
    _assert_as_alone(tiny64, [1, 20], P8, outs[0].outputs[0])


def test_duplicate_request_id_is_refused(tiny32):
    engine, _ = _engine(tiny32)
    engine.add_request("x", [1, 20], P8)
    with pytest.raises(A2DGuardError, match="already in use"):
        engine.add_request("x", [1, 21], P8)


def test_a_request_that_fails_inside_a_step_finishes_alone(scripted):
    vocab = 30
    spec = ModelSpec(family="llada", mask_id=4, eos_id=2, eot_id=3, pad_id=2, vocab_size=vocab, max_positions=64)

    def rule(canvas):
        logits = torch.zeros(len(canvas), vocab, dtype=torch.float64)
        logits[:, 12] = 3.0
        if (canvas == 29).any():  # a "poisoned" request produces NaN logits
            logits[:] = float("nan")
        return logits

    llm = LLM.from_loaded(scripted(rule, vocab), None, spec, max_num_seqs=4)
    outs = llm.generate([[1, 20], [1, 29], [1, 21]], P8)
    assert [o.outputs[0].finish_reason for o in outs] == ["length", "error", "length"]
    assert outs[1].outputs[0].error == "non-finite logits"
    assert outs[0].outputs[0].token_ids == outs[2].outputs[0].token_ids == [12] * 8


def test_logit_bias_follows_openai_semantics(tiny32):
    model, tok, spec = tiny32
    llm = LLM.from_loaded(model, tok, spec)
    target = tok.convert_tokens_to_ids("water")
    out = llm.generate("hello", P8.replace(logit_bias={target: 100.0}))[0]
    assert out.outputs[0].token_ids == [target] * 8


def test_refusal_text_and_bad_generate_calls(tiny32):
    model, tok, spec = tiny32
    llm = LLM.from_loaded(model, tok, spec)
    p = P8.replace(eos_threshold=0.5, logit_bias={spec.eos_id: 50.0}, refusal_text="No.")
    out = llm.generate(["hi"], p)[0].outputs[0]
    assert out.rejected and out.text == "No." and out.token_ids == []
    with pytest.raises(A2DGuardError, match="empty"):
        llm.generate(["hi", " "], P8)
    with pytest.raises(A2DGuardError, match="2 prompts but 3"):
        llm.generate(["a", "b"], [P8, P8, P8])
    assert not llm.engine.has_unfinished_requests()  # validated before anything was queued


@pytest.mark.parametrize("kind", ["threshold", "a2d"])
def test_a_model_that_predicts_the_mask_token_cannot_stall_a_request(scripted, kind):
    """Committing the mask id leaves the position masked; the k = 1 paths (threshold decoding,
    the a2d protocol) used to repeat that step forever. Each block now takes at most one step
    per mask it started with, then the request ends ``length``."""
    vocab = 30
    spec = ModelSpec(family="llada", mask_id=4, eos_id=2, eot_id=3, pad_id=2, vocab_size=vocab, max_positions=64)

    def rule(canvas):
        logits = torch.zeros(len(canvas), vocab, dtype=torch.float64)
        logits[:, 4] = 5.0  # the mask token wins every argmax
        return logits

    params = P8.replace(parallel_threshold=0.9) if kind == "threshold" else P8.replace(protocol="a2d")
    prompt = [1, 20, 4, 4, 21] if kind == "a2d" else [1, 20]
    llm = LLM.from_loaded(scripted(rule, vocab), None, spec, max_num_seqs=2)
    out = llm.generate([prompt], params)[0].outputs[0]
    assert out.finish_reason == "length"
    assert out.steps == (2 if kind == "a2d" else 8)  # one step per mask: 2 prompt masks; 8 answer masks

