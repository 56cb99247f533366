"""Golden equivalence (DESIGN §4/§5): the batched engine reproduces the one-sequence
reference sampler token for token, whatever the batch it shares."""

import random

import pytest
import torch

from a2d_guard.config import REMASKING_MODES, SamplingParams
from a2d_guard.diffusion.prompts import encode_prompt
from a2d_guard.diffusion.reference import reference_generate
from a2d_guard.engine import LLM

WORDS = "how do i make a bomb tell me story about cats python process kill water garden cook rice".split()


def _requests(tok, spec, n=36, seed=0, temperature=0.0):
    """A deterministic mix of prompt lengths, shapes, modes, thresholds, EOS biases and infill."""
    rng = random.Random(seed)
    shapes = [(8, 8, 8), (16, 16, 8), (16, 8, 4), (24, 12, 8), (32, 32, 16), (32, 8, 32), (12, 6, 4)]
    out = []
    for i in range(n):
        gen, steps, block = shapes[i % len(shapes)]
        words = [rng.choice(WORDS) for _ in range(rng.randint(1, 12))]
        if i % 5 == 0:  # DIJA-style masks inside the prompt
            words.insert(rng.randint(0, len(words)), f"<mask:{rng.randint(1, 3)}>")
        bias = [0.0, 2.0, 4.0, 6.0, 25.0][i % 5]  # pushes EOS: some stop, some get rejected
        params = SamplingParams(
            gen_length=gen, steps=steps, block_length=block, temperature=temperature,
            remasking=REMASKING_MODES[i % len(REMASKING_MODES)],
            eos_threshold=[0.9, 0.5, 0.99, 1.0][i % 4], seed=rng.randint(0, 2**40),
            logit_bias={spec.eos_id: bias} if bias else {},
        )
        out.append((encode_prompt(tok, spec, " ".join(words)), params))
    return out


def _key(token_ids, finish_reason, reject_step, steps):
    return (list(token_ids), finish_reason, reject_step, steps)


@pytest.fixture(scope="module")
def golden(tiny64):
    model, tok, spec = tiny64
    reqs = _requests(tok, spec)
    refs = [reference_generate(model, spec, ids, p) for ids, p in reqs]
    return reqs, refs


def test_the_mix_covers_every_outcome(golden):
    _, refs = golden
    reasons = {r.finish_reason for r in refs}
    assert reasons == {"stop", "length", "content_filter"}, reasons
    assert sum(bool(r.infill_ids) for r in refs) >= 5
    # (A random tiny model's p(EOS) barely moves between steps, so its rejections happen at
    # step 0; rejections later in the decode are covered with a scripted model below.)


@pytest.mark.parametrize("max_num_seqs", [1, 4, 64])
def test_engine_equals_reference_token_for_token(tiny64, golden, max_num_seqs):
    model, tok, spec = tiny64
    reqs, refs = golden
    llm = LLM.from_loaded(model, tok, spec, max_num_seqs=max_num_seqs)
    outs = llm.generate([ids for ids, _ in reqs], [p for _, p in reqs])
    assert len(outs) == len(refs)
    for i, (out, ref) in enumerate(zip(outs, refs, strict=True)):
        c = out.outputs[0]
        assert _key(c.token_ids, c.finish_reason, c.reject_step, c.steps) == _key(
            ref.token_ids, ref.finish_reason, ref.reject_step, ref.steps), f"request {i}"
        assert c.infill_token_ids == ref.infill_ids, f"request {i}"


def test_sampling_is_independent_of_the_batch(tiny64):
    model, tok, spec = tiny64
    reqs = _requests(tok, spec, n=12, seed=1, temperature=0.8)
    prompts, params = [ids for ids, _ in reqs], [p for _, p in reqs]
    alone = LLM.from_loaded(model, tok, spec, max_num_seqs=1).generate(prompts, params)
    batched = LLM.from_loaded(model, tok, spec, max_num_seqs=64).generate(prompts, params)
    reversed_ = LLM.from_loaded(model, tok, spec, max_num_seqs=5).generate(prompts[::-1], params[::-1])[::-1]
    for a, b, c in zip(alone, batched, reversed_, strict=True):
        assert a.outputs[0].token_ids == b.outputs[0].token_ids == c.outputs[0].token_ids
    refs = [reference_generate(model, spec, ids, p) for ids, p in reqs[:4]]
    for out, ref in zip(alone, refs, strict=False):
        assert out.outputs[0].token_ids == ref.token_ids  # same counter-based noise as the oracle


def _scripted_spec(vocab=30):
    from a2d_guard.models.spec import ModelSpec

    return ModelSpec(family="llada", mask_id=4, eos_id=2, eot_id=3, pad_id=2, vocab_size=vocab, max_positions=128)


def _engine_matches_reference(model, spec, prompts, params, batch_sizes=(1, 3)):
    """Run the reference and the engine at each batch size; assert they agree; return the references."""
    refs = [reference_generate(model, spec, ids, p) for ids, p in zip(prompts, params, strict=True)]
    for max_num_seqs in batch_sizes:
        outs = LLM.from_loaded(model, None, spec, max_num_seqs=max_num_seqs).generate(prompts, params)
        for i, (out, ref) in enumerate(zip(outs, refs, strict=True)):
            c = out.outputs[0]
            assert _key(c.token_ids, c.finish_reason, c.reject_step, c.steps) == _key(
                ref.token_ids, ref.finish_reason, ref.reject_step, ref.steps), (max_num_seqs, i)
            assert c.infill_token_ids == ref.infill_ids, (max_num_seqs, i)
    return refs


def test_rejections_later_in_the_decode_match_the_reference(scripted):
    """A model that refuses to join up with content committed to the right (DIJA-like)."""
    spec = _scripted_spec()
    vocab, mask, eos = spec.vocab_size, spec.mask_id, spec.eos_id

    def rule(canvas):  # content token = 10 + position % 7; EOS at a mask once content sits 2 to its right
        logits = torch.zeros(len(canvas), vocab, dtype=torch.float64)
        for i in range(len(canvas)):
            logits[i, 10 + i % 7] = 4.0 + 0.01 * i
            if canvas[i] == mask and i + 2 < len(canvas) and 10 <= int(canvas[i + 2]) < 17:
                logits[i, eos] = 9.0
        return logits

    prompts = [[1] + [20 + j for j in range(n)] for n in (3, 5, 8, 2, 6, 4)]
    params = [SamplingParams(gen_length=g, steps=s, block_length=b, remasking=r, eos_threshold=t)
              for g, s, b, r, t in [(8, 8, 8, "right_to_left", 0.9), (8, 4, 4, "random", 0.9),
                                    (16, 8, 8, "right_to_left", 0.95), (8, 8, 8, "left_to_right", 0.9),
                                    (12, 6, 4, "random", 0.5), (8, 8, 8, "low_confidence", 0.9)]]
    refs = _engine_matches_reference(scripted(rule, vocab), spec, prompts, params)
    assert any(r.finish_reason == "content_filter" and r.reject_step > 0 for r in refs)


def test_an_eos_infilled_into_a_prompt_mask_ends_nothing(scripted):
    """DIJA: a mask inside the prompt that the model fills with EOS is infill, not the end of the
    response; only an end token in the response may stop the request early."""
    spec = _scripted_spec()
    vocab, mask, eos = spec.vocab_size, spec.mask_id, spec.eos_id

    def rule(canvas):  # content token = 10 + position % 7; a mask right after token 20 is EOS (confidently)
        logits = torch.zeros(len(canvas), vocab, dtype=torch.float64)
        for i in range(len(canvas)):
            logits[i, 10 + i % 7] = 4.0 + 0.01 * i
            if canvas[i] == mask and i > 0 and canvas[i - 1] == 20:
                logits[i, eos] = 9.0
        return logits

    # The monitor is off (τ = 1): p(EOS) at the prompt mask would reject at step 0 otherwise.
    prompts = [[1, 20, mask, 21], [1, 22, 20, mask, mask, 23]]
    params = SamplingParams(gen_length=8, steps=8, block_length=8, eos_threshold=1.0)
    refs = _engine_matches_reference(scripted(rule, vocab), spec, prompts, [params, params])
    # Step 0 commits the prompt's EOS first (the most confident candidate); the decode runs on.
    first = refs[0]
    assert (first.finish_reason, first.steps, first.infill_ids) == ("length", 8, [eos])
    assert first.token_ids == [10 + i % 7 for i in range(4, 12)]
    assert refs[1].finish_reason == "length" and refs[1].infill_ids[0] == eos and len(refs[1].token_ids) == 8


def test_an_eos_committed_at_the_last_step_is_a_stop(scripted):
    """The canvas is full after the step that commits the EOS: "stop", not "length"."""
    spec = _scripted_spec()
    vocab, mask, eos = spec.vocab_size, spec.mask_id, spec.eos_id

    def rule(canvas):  # content token = 10 + position % 7; EOS at the last position
        logits = torch.zeros(len(canvas), vocab, dtype=torch.float64)
        for i in range(len(canvas)):
            logits[i, 10 + i % 7] = 4.0
        logits[-1, eos] = 9.0
        return logits

    params = SamplingParams(gen_length=4, steps=4, block_length=4, remasking="left_to_right")
    refs = _engine_matches_reference(scripted(rule, vocab), spec, [[1, 20, 21], [1, 22, 23]], [params, params])
    for ref in refs:
        assert (ref.finish_reason, ref.steps, ref.token_ids) == ("stop", 4, [13, 14, 15])
        assert ref.canvas[-1] == eos and mask not in ref.canvas


def test_a_rejected_sequence_commits_nothing_at_its_last_step(scripted):
    """The monitor fires before the commit: the rejection step's tokens never reach the canvas,
    which shows in the infill (the prompt's first mask stays a mask)."""
    spec = _scripted_spec()
    vocab, mask, eos = spec.vocab_size, spec.mask_id, spec.eos_id

    def rule(canvas):  # content = 10 + position % 7 (position 3: very confident); EOS at a mask left of content
        logits = torch.zeros(len(canvas), vocab, dtype=torch.float64)
        for i in range(len(canvas)):
            logits[i, 10 + i % 7] = 8.0 if i == 3 else 4.0 + 0.01 * i
            if canvas[i] == mask and i + 1 < len(canvas) and 10 <= int(canvas[i + 1]) < 17:
                logits[i, eos] = 9.0
        return logits

    # 10 masks in reach, 8 steps: step 0 commits positions 3 and 12; at step 1 the leftmost mask
    # (position 2) sits left of that content with p(EOS) ~ 0.99: rejected before committing.
    params = SamplingParams(gen_length=8, steps=8, block_length=8, eos_threshold=0.9)
    prompts = [[1, 20, mask, mask, 21], [1, 21, mask, mask, 22]]
    refs = _engine_matches_reference(scripted(rule, vocab), spec, prompts, [params, params])
    for ref in refs:
        assert (ref.finish_reason, ref.reject_step, ref.steps, ref.reject_position) == ("content_filter", 1, 2, 2)
        assert ref.infill_ids == [mask, 13] and ref.token_ids == []


def test_exact_ties_commit_the_leftmost_candidates(scripted):
    """Every candidate row is identical, so every confidence ties: each step must commit the
    leftmost k masks. The token a row predicts encodes the step (10 + masks left in its canvas),
    so the output shows which positions each step committed. 32+ tied rows: enough for a
    non-stable CPU sort or ``topk`` to break the ties differently."""
    spec = _scripted_spec(vocab=64)
    vocab, mask = spec.vocab_size, spec.mask_id

    def rule(canvas):
        logits = torch.zeros(len(canvas), vocab, dtype=torch.float64)
        logits[:, 10 + int((canvas == mask).sum())] = 4.0
        return logits

    prompts = [[1, 20], [1, 21, 22, 23], [1, 24, 25]]
    params = [SamplingParams(gen_length=32, steps=4, block_length=32, remasking=mode, eos_threshold=1.0)
              for mode in ("low_confidence", "margin", "entropy")]
    refs = _engine_matches_reference(scripted(rule, vocab), spec, prompts, params)
    for ref in refs:  # steps commit 8 masks each, leftmost first: 32, 24, 16, 8 masks left before them
        assert (ref.finish_reason, ref.steps) == ("length", 4)
        assert ref.token_ids == [42] * 8 + [34] * 8 + [26] * 8 + [18] * 8
