"""The three decode protocols, each on a hand-worked example with a scripted model (DESIGN §11)."""

import pytest
import torch

from a2d_guard.config import SamplingParams
from a2d_guard.diffusion.reference import reference_generate
from a2d_guard.errors import A2DGuardError
from a2d_guard.models.spec import ModelSpec

V, MASK, EOS, EOT = 20, 4, 2, 3
SPEC = ModelSpec(family="llada", mask_id=MASK, eos_id=EOS, eot_id=EOT, pad_id=EOS, vocab_size=V, max_positions=64)


def left_first(canvas):
    """Position i proposes token 5 + i, more confidently the further left it is."""
    out = torch.zeros(len(canvas), V, dtype=torch.float64)
    for i in range(len(canvas)):
        out[i, 5 + i] = 8.0 - 0.5 * i
    return out


PARAMS = SamplingParams(gen_length=4, steps=4, block_length=2, eos_threshold=1.0)  # 2 blocks x 2 steps
LLADA, A2D = PARAMS.replace(protocol="llada"), PARAMS.replace(protocol="a2d")


def test_ours_counts_prompt_masks_in_the_first_block(scripted):
    # prompt [1, 11, M, 12]: block 0 reaches position 6; its budget is 3 masks (2, 4, 5) over 2 steps: k = 2, 1
    r = reference_generate(scripted(left_first, V), SPEC, [1, 11, MASK, 12], PARAMS)
    assert r.canvas == [1, 11, 7, 12, 9, 10, 11, 12] and r.steps == 4 and r.finish_reason == "length"
    assert r.infill_ids == [7] and r.token_ids == [9, 10, 11, 12]


def test_llada_counts_only_the_blocks_own_masks(scripted):
    # block 0 budget = its own 2 masks (k = 1, 1) but the prompt mask is a candidate and wins step 0:
    #   step 0 commits 2, step 1 commits 4; position 5 stays masked into block 1;
    # block 1 budget = its own 2 masks (6, 7): step 2 commits 5 (leftmost, most confident), step 3 commits 6.
    r = reference_generate(scripted(left_first, V), SPEC, [1, 11, MASK, 12], LLADA)
    assert r.canvas == [1, 11, 7, 12, 9, 10, 11, MASK] and r.steps == 4 and r.finish_reason == "length"


def test_llada_never_stops_early(scripted):
    def eos_first(canvas):
        out = left_first(canvas)
        out[4] = 0.0
        out[4, EOS] = 9.0  # the first answer position is EOS, the most confident of all
        return out

    ours = reference_generate(scripted(eos_first, V), SPEC, [1, 11, 12, 13], PARAMS)
    assert (ours.finish_reason, ours.steps, ours.token_ids) == ("stop", 1, [])
    llada = reference_generate(scripted(eos_first, V), SPEC, [1, 11, 12, 13], LLADA)
    assert (llada.finish_reason, llada.steps, llada.token_ids) == ("length", 4, [])
    assert llada.canvas[4:] == [EOS, 10, 11, 12]


def eos_at_two(canvas):
    """Position 2 wants EOS (20) over token 13 (10); position 3 wants token 14 (12)."""
    out = torch.zeros(len(canvas), V, dtype=torch.float64)
    out[2, EOS], out[2, 13] = 20.0, 10.0
    out[3, 14] = 12.0
    return out


def test_a2d_decodes_only_prompt_masks_one_per_step_with_eos_banned(scripted):
    # No answer canvas. Step 0: x0 with EOS banned is 13 at position 2 (confidence p(13) ~ e^-10 from the
    # unbanned softmax) and 14 at position 3 (p ~ 1): position 3 commits first; step 1 commits 13 at 2.
    prompt = [1, 11, MASK, MASK, 12]
    r = reference_generate(scripted(eos_at_two, V), SPEC, prompt, A2D)
    assert r.canvas == [1, 11, 13, 14, 12] and r.steps == 2 and r.finish_reason == "length"
    assert r.infill_ids == [13, 14] and r.token_ids == []


def test_a2d_keeps_the_monitor(scripted):
    # p(EOS) at the leftmost mask (position 2) is ~1 and nothing was generated yet: the monitor refuses at step 0
    r = reference_generate(scripted(eos_at_two, V), SPEC, [1, 11, MASK, MASK, 12], A2D.replace(eos_threshold=0.9))
    assert (r.finish_reason, r.reject_step, r.reject_position) == ("content_filter", 0, 2)


def test_a2d_appends_the_authors_36_masks_to_a_prompt_without_any(scripted):
    def sevens(canvas):
        out = torch.zeros(len(canvas), V, dtype=torch.float64)
        out[:, 7] = 5.0
        return out

    r = reference_generate(scripted(sevens, V), SPEC, [1, 11, 12], A2D)
    assert r.token_ids == [7] * 36 and r.steps == 36 and r.infill_ids == []


def test_protocol_errors(scripted):
    with pytest.raises(A2DGuardError, match="unknown protocol 'fast'"):
        PARAMS.replace(protocol="fast")
    with pytest.raises(A2DGuardError, match="parallel_threshold=0.9 works with protocol 'ours' only"):
        LLADA.replace(parallel_threshold=0.9)


def test_a2d_positions_count_its_own_canvas(scripted):
    # 61 prompt tokens with one mask fit 64 positions under a2d (gen_length is not used), not under llada
    prompt = [1] * 60 + [MASK]
    assert reference_generate(scripted(all_sevens, V), SPEC, prompt, A2D).steps == 1
    with pytest.raises(A2DGuardError, match="exceeds the model's 64 positions"):
        reference_generate(scripted(all_sevens, V), SPEC, prompt, LLADA)
    with pytest.raises(A2DGuardError, match="the a2d canvas \\(65 tokens\\) exceeds"):
        reference_generate(scripted(all_sevens, V), SPEC, [1] * 29, A2D)  # + 36 fallback masks


def all_sevens(canvas):
    out = torch.zeros(len(canvas), V, dtype=torch.float64)
    out[:, 7] = 5.0
    return out
