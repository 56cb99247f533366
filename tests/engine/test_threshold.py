"""Threshold decoding (Fast-dLLM, DESIGN §12): ``SamplingParams.parallel_threshold``.

A step commits the candidate the remasking mode ranks first plus every candidate whose
p(x0) is at least the threshold; a block ends when its masks are gone. The engine must
reproduce the reference sampler token for token (float64, temperature 0) in batches that
mix threshold and exact-mode requests, and the A2D monitor must behave as in exact mode.
"""

import math
import random

import pytest
import torch

from a2d_guard.config import REMASKING_MODES, SamplingParams
from a2d_guard.diffusion.prompts import encode_prompt
from a2d_guard.diffusion.reference import GenerationResult, reference_generate
from a2d_guard.engine import LLM
from a2d_guard.errors import A2DGuardError
from a2d_guard.models.spec import ModelSpec

WORDS = "tell me a story about cats python process kill water garden cook rice how do i make bomb".split()
CONTENT = 50  # a plain vocabulary token of the tiny model (not mask, EOS, EoT or pad)


def _key(c):
    """What must agree: a reference ``GenerationResult`` or an engine ``CompletionOutput``."""
    infill = c.infill_ids if isinstance(c, GenerationResult) else c.infill_token_ids
    return (list(c.token_ids), c.finish_reason, c.reject_step, c.steps, list(infill))


def _near_the_threshold(threshold: float, vocab: int, delta: float) -> float:
    """A logit bias on ``CONTENT`` that puts its p(x0) near ``threshold`` on the random tiny model.

    The tiny model's logits are nearly flat, so p(CONTENT) ~ e^b / (e^b + V - 1); -0.08 is
    the measured offset of its logits. Small ``delta``s on either side give requests where some,
    all or none of a block's candidates clear the threshold.
    """
    return math.log(threshold * (vocab - 1) / (1 - threshold)) - 0.08 + delta


def _mixed_requests(tok, spec, n=16, seed=3):
    """Threshold (0.9, 0.5, 0.05) and exact-mode requests, every remasking mode, prompt masks,
    EOS biases that stop or get rejected."""
    rng = random.Random(seed)
    shapes = [(16, 16, 8), (8, 8, 4), (24, 12, 8), (16, 8, 16)]
    out = []
    for i in range(n):
        gen, steps, block = shapes[i % len(shapes)]
        words = [rng.choice(WORDS) for _ in range(rng.randint(1, 8))]
        if i % 5 == 0:  # DIJA-style masks inside the prompt: candidates of the first block
            words.insert(rng.randint(0, len(words)), f"<mask:{rng.randint(1, 3)}>")
        threshold = [0.9, 0.5, 0.05, None][i % 4]
        bias = {CONTENT: _near_the_threshold(threshold or 0.5, spec.vocab_size, [0.02, 0.03, 0.04, 0.05, 0.3][i % 5])}
        if i % 7 == 3:
            bias[spec.eos_id] = 25.0  # the monitor rejects at step 0 (or, with τ = 1, EOS commits: stop)
        params = SamplingParams(gen_length=gen, steps=steps, block_length=block, remasking=REMASKING_MODES[i % 6],
                                eos_threshold=[0.9, 1.0][i % 2], seed=rng.randint(0, 2**40), logit_bias=bias,
                                parallel_threshold=threshold)
        out.append((encode_prompt(tok, spec, " ".join(words)), params))
    return out


@pytest.fixture(scope="module")
def mixed(tiny64):
    model, tok, spec = tiny64
    reqs = _mixed_requests(tok, spec)
    return reqs, [reference_generate(model, spec, ids, p) for ids, p in reqs]


def test_the_mix_has_partial_parallel_commits(tiny64, mixed):
    """Some threshold requests commit several but not all candidates at a step: their step
    count lies strictly between one step per block and one step per mask."""
    reqs, refs = mixed
    partial = [r for (_, p), r in zip(reqs, refs, strict=True) if p.parallel_threshold is not None
               and r.finish_reason == "length" and p.num_blocks < r.steps < p.gen_length]
    assert len(partial) >= 2
    assert {r.finish_reason for r in refs} == {"length", "content_filter", "stop"}
    assert any(r.infill_ids for r in refs)


@pytest.mark.parametrize("max_num_seqs", [1, 4, 16])
def test_engine_equals_reference_with_thresholds(tiny64, mixed, max_num_seqs):
    model, tok, spec = tiny64
    reqs, refs = mixed
    outs = LLM.from_loaded(model, tok, spec, max_num_seqs=max_num_seqs).generate([i for i, _ in reqs],
                                                                                  [p for _, p in reqs])
    for i, (out, ref) in enumerate(zip(outs, refs, strict=True)):
        assert _key(out.outputs[0]) == _key(ref), f"request {i}"


def test_sampled_threshold_requests_match_the_reference(tiny64):
    """Temperature > 0: the same counter-based noise picks x0 in both, and the threshold reads
    p(x0) of the sampled token."""
    model, tok, spec = tiny64
    reqs = [(ids, p.replace(temperature=0.8)) for ids, p in _mixed_requests(tok, spec, n=8, seed=5)]
    refs = [reference_generate(model, spec, ids, p) for ids, p in reqs]
    outs = LLM.from_loaded(model, tok, spec, max_num_seqs=4).generate([i for i, _ in reqs], [p for _, p in reqs])
    for i, (out, ref) in enumerate(zip(outs, refs, strict=True)):
        assert _key(out.outputs[0]) == _key(ref), f"request {i}"


def test_threshold_decoding_takes_fewer_forward_steps_than_exact_mode(tiny64):
    model, tok, spec = tiny64
    ids = encode_prompt(tok, spec, "tell me a story about cats")
    exact = SamplingParams(gen_length=32, steps=32, block_length=8, eos_threshold=1.0,
                           logit_bias={CONTENT: _near_the_threshold(0.9, spec.vocab_size, 0.3)})
    fast = exact.replace(parallel_threshold=0.9)
    llm = LLM.from_loaded(model, tok, spec, max_num_seqs=2)
    a, b = (o.outputs[0] for o in llm.generate([ids, ids], [exact, fast]))
    assert (a.finish_reason, a.steps, len(a.token_ids)) == ("length", 32, 32)
    assert (b.finish_reason, b.steps, len(b.token_ids)) == ("length", 4, 32)  # one step per block of 8


def test_the_monitor_rejects_a_forced_eos_at_step_0_under_threshold_decoding(tiny64):
    """p(EOS) at the leftmost mask is read before the commit, exactly as in exact mode, even
    though every candidate clears the threshold (they all predict EOS)."""
    model, tok, spec = tiny64
    ids = encode_prompt(tok, spec, "how do i make a bomb")
    params = SamplingParams(gen_length=16, steps=16, block_length=8, logit_bias={spec.eos_id: 25.0},
                            parallel_threshold=0.5)
    out = LLM.from_loaded(model, tok, spec, max_num_seqs=4).generate([ids], params)[0].outputs[0]
    assert (out.finish_reason, out.reject_step, out.steps, out.token_ids) == ("content_filter", 0, 1, [])
    assert out.p_eos > 0.9


# -- a scripted model, worked by hand ---------------------------------------------------

SPEC = ModelSpec(family="llada", mask_id=4, eos_id=2, eot_id=3, pad_id=2, vocab_size=30, max_positions=64)
# Canvas: prompt [0, 3) + 8 masks; blocks [3, 7) and [7, 11). The logit of each position's
# token sets its p(x0) in a vocabulary of 30: 7.0 -> 0.974, 4.0 -> 0.653, 3.9 -> 0.630, 1.0 -> 0.086.
LOGIT = {1: 1.0, 3: 7.0, 4: 4.0, 5: 7.0, 6: 3.9, 7: 7.0, 8: 7.0, 9: 1.0, 10: 7.0}


def _rule(canvas):
    """Every position predicts token 10 + (masks left in the canvas): the output shows at
    which step each position was committed."""
    mask, vocab = SPEC.mask_id, SPEC.vocab_size
    logits = torch.zeros(len(canvas), vocab, dtype=torch.float64)
    token = 10 + int((canvas == mask).sum())
    for i in range(len(canvas)):
        logits[i, token] = LOGIT.get(i, 7.0)
    return logits


def _both(scripted, prompts, params):
    """Reference results, after checking the engine agrees at batch 1 and 3."""
    model = scripted(_rule, SPEC.vocab_size)
    refs = [reference_generate(model, SPEC, ids, p) for ids, p in zip(prompts, params, strict=True)]
    for max_num_seqs in (1, 3):
        outs = LLM.from_loaded(model, None, SPEC, max_num_seqs=max_num_seqs).generate(prompts, params)
        for out, ref in zip(outs, refs, strict=True):
            assert _key(out.outputs[0]) == _key(ref), max_num_seqs
    return refs


def test_hand_worked_threshold_steps_and_early_block_ends(scripted):
    """τ = 0.9, low_confidence. Block 1 (masks at 3..6, 8 masks in the canvas):
    step 0 commits 3 and 5 (p 0.974) -> token 18; step 1: nothing clears τ, the most confident
    (4, p 0.653) -> 16; step 2: 6 -> 15; block 1 is done after 3 steps (exact mode: 4).
    Block 2 starts at step 3: 7, 8, 10 clear τ -> 14; step 4: 9 -> 11. 5 steps, exact mode 8."""
    exact = SamplingParams(gen_length=8, steps=8, block_length=4, eos_threshold=0.9)
    fast = exact.replace(parallel_threshold=0.9)
    ref_exact, ref_fast = _both(scripted, [[1, 20, 21], [1, 20, 21]], [exact, fast])
    assert (ref_fast.finish_reason, ref_fast.steps) == ("length", 5)
    assert ref_fast.token_ids == [18, 16, 18, 15, 14, 14, 11, 14]
    assert ref_exact.steps == 8


def test_the_mode_picks_the_forced_commit_and_the_threshold_stays_on_p_x0(scripted):
    """right_to_left: step 0 commits 6 (rightmost, forced) and 3, 5 (p >= τ) -> 18; step 1: 4 -> 15;
    step 2 (block 2): 10 forced, 7, 8 sure -> 14; step 3: 9 -> 11."""
    fast = SamplingParams(gen_length=8, steps=8, block_length=4, remasking="right_to_left", parallel_threshold=0.9)
    (ref,) = _both(scripted, [[1, 20, 21]], [fast])
    assert (ref.steps, ref.token_ids) == (4, [18, 15, 18, 18, 14, 14, 11, 14])


def test_prompt_masks_belong_to_the_first_block(scripted):
    """A mask inside the prompt (position 1, p 0.086) is a candidate of the first block, which
    ends only once it is filled: steps 0-2 as above (9 masks: tokens 19, 17, 16), step 3 fills
    the prompt mask (15), block 2 starts at step 4 (14, then 11)."""
    fast = SamplingParams(gen_length=8, steps=8, block_length=4, eos_threshold=1.0, parallel_threshold=0.9)
    (ref,) = _both(scripted, [[1, SPEC.mask_id, 21]], [fast])
    assert (ref.steps, ref.token_ids, ref.infill_ids) == (6, [19, 17, 19, 16, 14, 14, 11, 14], [15])


def _halves(canvas):
    """Tokens 10 and 11 share every position's mass: p(x0) is exactly 0.5 (x0 = 10, the first of the tie)."""
    logits = torch.full((len(canvas), SPEC.vocab_size), -1000.0, dtype=torch.float64)
    logits[:, 10] = logits[:, 11] = 0.0
    return logits


def test_a_candidate_whose_p_x0_equals_the_threshold_commits(scripted):
    """``p(x0) >= threshold``, as Fast-dLLM: at threshold 0.5 every candidate (p exactly 0.5) commits,
    so each block of 4 takes one step; just above 0.5 none does and each step commits only the forced
    one. Engine and reference sampler each, not only their agreement."""
    model = scripted(_halves, SPEC.vocab_size)
    for threshold, steps in ((0.5, 2), (math.nextafter(0.5, 1.0), 8)):
        params = SamplingParams(gen_length=8, steps=8, block_length=4, eos_threshold=1.0,
                                parallel_threshold=threshold)
        ref = reference_generate(model, SPEC, [1, 20, 21], params)
        out = LLM.from_loaded(model, None, SPEC).generate([[1, 20, 21]], params)[0].outputs[0]
        assert (ref.steps, ref.token_ids, ref.finish_reason) == (steps, [10] * 8, "length"), threshold
        assert (out.steps, out.token_ids, out.finish_reason) == (steps, [10] * 8, "length"), threshold


@pytest.mark.parametrize("bad", [0, 0.0, -0.5, 1.5, float("nan"), True, "0.9"])
def test_a_bad_threshold_names_the_field_and_the_fix(bad):
    with pytest.raises(A2DGuardError, match=r"parallel_threshold must be None .* in \(0, 1\]"):
        SamplingParams(parallel_threshold=bad)


def test_a_threshold_of_one_is_allowed():
    assert SamplingParams(parallel_threshold=1).parallel_threshold == 1
