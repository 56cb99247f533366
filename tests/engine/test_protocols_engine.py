"""The decode protocols in the engine (DESIGN §11, issue 12): batched, mixed in one batch, with
the A2D monitor, and token for token what the readable decoder (``reference.reference_generate``)
writes, whatever the batch; plus the hand-worked examples of ``tests/diffusion/test_protocols.py``
through the engine."""

import random

import pytest
import torch

from a2d_guard.config import PROTOCOLS, REMASKING_MODES, SamplingParams
from a2d_guard.diffusion.canvas import initial_canvas
from a2d_guard.diffusion.policies import A2D_FALLBACK_MASKS
from a2d_guard.diffusion.prompts import encode_prompt
from a2d_guard.diffusion.reference import reference_generate
from a2d_guard.engine import LLM
from a2d_guard.errors import A2DGuardError
from a2d_guard.models.spec import ModelSpec

WORDS = "how do i make a bomb tell me story about cats python process kill water garden cook rice".split()


# (prompt has masks, temperature, τ, EOS bias): monitor off and on, greedy and sampled, EOS pushed so that
# ours stops, the monitor rejects, and a2d's ban on EOS decides the token
SETTINGS = [(True, 0.0, 1.0, 0.0), (False, 0.0, 1.0, 25.0), (True, 0.8, 1.0, 25.0), (False, 0.8, 0.9, 3.0),
            (True, 0.0, 0.5, 3.0), (False, 0.0, 0.9, 25.0), (True, 0.8, 0.5, 0.0), (False, 0.8, 1.0, 3.0)]


def _requests(tok, spec, seed=3):
    """Every protocol x ``SETTINGS``, over canvas shapes and remasking modes."""
    rng = random.Random(seed)
    shapes = [(8, 8, 4), (16, 8, 8), (12, 12, 4), (8, 4, 8)]
    out = []
    for i, (protocol, (masked, temperature, tau, bias)) in enumerate(
            (p, setting) for p in PROTOCOLS for setting in SETTINGS):
        gen, steps, block = shapes[i % len(shapes)]
        words = [rng.choice(WORDS) for _ in range(rng.randint(1, 8))]
        if masked:  # DIJA-style masks inside the prompt
            words.insert(rng.randint(0, len(words)), f"<mask:{rng.randint(1, 4)}>")
        params = SamplingParams(
            gen_length=gen, steps=steps, block_length=block, temperature=temperature,
            remasking=REMASKING_MODES[i % len(REMASKING_MODES)], eos_threshold=tau, seed=rng.randint(0, 2**40),
            logit_bias={spec.eos_id: bias} if bias else {}, protocol=protocol,
        )
        out.append((encode_prompt(tok, spec, " ".join(words)), params))
    return out


def _key(c):
    return (list(c.token_ids), c.finish_reason, c.reject_step, c.steps, list(c.infill_token_ids))


def _ref_key(r):
    return (list(r.token_ids), r.finish_reason, r.reject_step, r.steps, list(r.infill_ids))


@pytest.fixture(scope="module")
def mixed(tiny64):
    model, tok, spec = tiny64
    reqs = _requests(tok, spec)
    refs = [reference_generate(model, spec, ids, p) for ids, p in reqs]
    return reqs, refs


def test_the_mix_covers_every_protocol_and_outcome(tiny64, mixed):
    _, tok, spec = tiny64
    reqs, refs = mixed
    by = {p: [(ids, prm, r) for (ids, prm), r in zip(reqs, refs, strict=True) if prm.protocol == p] for p in PROTOCOLS}
    assert {r.finish_reason for *_, r in by["ours"]} == {"stop", "length", "content_filter"}
    assert {r.finish_reason for *_, r in by["llada"]} == {"length", "content_filter"}  # never stops early
    assert {r.finish_reason for *_, r in by["a2d"]} == {"length", "content_filter"}
    # llada: a prompt mask took a block slot, so a mask is left at the end
    assert any(r.finish_reason == "length" and spec.mask_id in r.canvas for *_, r in by["llada"])
    # a2d: prompts with masks decode only those; a prompt without gets the 36 fallback masks
    for ids, _, r in by["a2d"]:
        assert len(r.canvas) == len(ids) + (0 if spec.mask_id in ids else A2D_FALLBACK_MASKS)
    # a2d with EOS pushed to the top (bias 25, monitor off): EOS is never the chosen token
    banned = [(initial_canvas(ids, prm, spec.mask_id), r) for ids, prm, r in by["a2d"]
              if prm.logit_bias.get(spec.eos_id) == 25.0 and prm.eos_threshold == 1.0]
    assert len(banned) == 2 and all(r.finish_reason == "length" for _, r in banned)
    for start, r in banned:
        assert [r.canvas[j] for j, t in enumerate(start) if t == spec.mask_id and r.canvas[j] == spec.eos_id] == []
    assert any(prm.temperature > 0 for _, prm, _ in by["a2d"]) and any(
        prm.temperature == 0 for _, prm, _ in by["a2d"])  # a2d samples at 0.2 whatever was asked


@pytest.mark.parametrize("max_num_seqs", [1, 5, 64])
def test_mixed_protocols_in_one_batch_equal_the_readable_decoder(tiny64, mixed, max_num_seqs):
    model, tok, spec = tiny64
    reqs, refs = mixed
    outs = LLM.from_loaded(model, tok, spec, max_num_seqs=max_num_seqs).generate(
        [ids for ids, _ in reqs], [p for _, p in reqs])
    for i, (out, ref) in enumerate(zip(outs, refs, strict=True)):
        assert _key(out.outputs[0]) == _ref_key(ref), (max_num_seqs, i, reqs[i][1].protocol)


@pytest.mark.parametrize("protocol", ["llada", "a2d"])
def test_one_protocol_batch_is_the_batch_1_output(tiny64, mixed, protocol):
    """A batch of one protocol only (no ``ours`` neighbours), in reverse order, equals batch 1."""
    model, tok, spec = tiny64
    reqs, refs = mixed
    picked = [(ids, p, r) for (ids, p), r in zip(reqs, refs, strict=True) if p.protocol == protocol][::-1]
    outs = LLM.from_loaded(model, tok, spec, max_num_seqs=8).generate([x[0] for x in picked], [x[1] for x in picked])
    for out, (_, _, ref) in zip(outs, picked, strict=True):
        assert _key(out.outputs[0]) == _ref_key(ref)


# --- the hand-worked examples, through the engine ------------------------------------------------

V, MASK, EOS, EOT = 20, 4, 2, 3
SPEC = ModelSpec(family="llada", mask_id=MASK, eos_id=EOS, eot_id=EOT, pad_id=EOS, vocab_size=V, max_positions=64)
PARAMS = SamplingParams(gen_length=4, steps=4, block_length=2, eos_threshold=1.0)  # 2 blocks x 2 steps


def left_first(canvas):
    """Position i proposes token 5 + i, more confidently the further left it is."""
    out = torch.zeros(len(canvas), V, dtype=torch.float64)
    for i in range(len(canvas)):
        out[i, 5 + i] = 8.0 - 0.5 * i
    return out


def eos_at_two(canvas):
    """Position 2 wants EOS (20) over token 13 (10); position 3 wants token 14 (12)."""
    out = torch.zeros(len(canvas), V, dtype=torch.float64)
    out[2, EOS], out[2, 13] = 20.0, 10.0
    out[3, 14] = 12.0
    return out


def _engine(model, prompts, params, max_num_seqs=4):
    return [o.outputs[0] for o in LLM.from_loaded(model, None, SPEC, max_num_seqs=max_num_seqs).generate(
        prompts, params)]


def test_engine_hand_worked_llada_and_ours_share_a_batch(scripted):
    # The examples of tests/diffusion/test_protocols.py: ours fills the prompt mask inside block 0's budget;
    # llada's budget counts only the block's own masks, so position 7 stays a mask (it is in the output)
    ours, llada = _engine(scripted(left_first, V), [[1, 11, MASK, 12]] * 2,
                          [PARAMS, PARAMS.replace(protocol="llada")])
    assert (ours.token_ids, ours.infill_token_ids, ours.steps, ours.finish_reason) == ([9, 10, 11, 12], [7], 4,
                                                                                       "length")
    assert (llada.token_ids, llada.infill_token_ids, llada.steps, llada.finish_reason) == ([9, 10, 11, MASK], [7],
                                                                                           4, "length")


def test_engine_hand_worked_llada_never_stops_early(scripted):
    def eos_first(canvas):
        out = left_first(canvas)
        out[4] = 0.0
        out[4, EOS] = 9.0
        return out

    ours, llada = _engine(scripted(eos_first, V), [[1, 11, 12, 13]] * 2, [PARAMS, PARAMS.replace(protocol="llada")])
    assert (ours.finish_reason, ours.steps, ours.token_ids) == ("stop", 1, [])
    assert (llada.finish_reason, llada.steps, llada.token_ids) == ("length", 4, [])


def test_engine_hand_worked_a2d(scripted):
    a2d = PARAMS.replace(protocol="a2d")
    # EOS banned at position 2 (13 commits there, after 14 at position 3); the monitor still refuses at τ = 0.9
    banned, refused = _engine(scripted(eos_at_two, V), [[1, 11, MASK, MASK, 12]] * 2,
                              [a2d, a2d.replace(eos_threshold=0.9)])
    assert (banned.infill_token_ids, banned.token_ids, banned.steps, banned.finish_reason) == ([13, 14], [], 2,
                                                                                               "length")
    assert (refused.finish_reason, refused.reject_step) == ("content_filter", 0)


def test_engine_a2d_appends_the_fallback_masks(scripted):
    def sevens(canvas):
        out = torch.zeros(len(canvas), V, dtype=torch.float64)
        out[:, 7] = 5.0
        return out

    (out,) = _engine(scripted(sevens, V), [[1, 11, 12]], [PARAMS.replace(protocol="a2d")])
    assert out.token_ids == [7] * A2D_FALLBACK_MASKS and out.steps == A2D_FALLBACK_MASKS


def test_engine_checks_the_protocols_canvas(scripted):
    llm = LLM.from_loaded(scripted(left_first, V), None, SPEC)
    with pytest.raises(A2DGuardError, match=r"the a2d canvas \(65 tokens\) exceeds"):
        llm.generate([[1] * 29], PARAMS.replace(protocol="a2d"))  # + 36 fallback masks
    with pytest.raises(A2DGuardError, match="exceeds the model's 64 positions"):
        llm.generate([[1] * 60 + [MASK]], PARAMS.replace(protocol="llada"))
