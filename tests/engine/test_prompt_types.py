"""``LLM.generate`` prompt types: every bad prompt is an ``A2DGuardError`` naming its index
(and the bad token) and what is accepted; nothing is queued. Good forms keep working."""

import pytest
import torch

from a2d_guard import LLM, SamplingParams
from a2d_guard.errors import A2DGuardError

P8 = SamplingParams(gen_length=8, steps=8, block_length=8)


@pytest.fixture(scope="module")
def llm(tiny32):
    return LLM.from_loaded(*tiny32, max_num_seqs=4)


@pytest.mark.parametrize("prompts, match", [
    ([None], r"prompt 0 is None \(NoneType\); a prompt is a str or a list of int token ids"),
    (["hi", None], r"prompt 1 is None"),
    (["hi", 3], r"prompt 1 is 3 \(int\); a prompt is a str"),
    ([[1, 20], 7], r"prompt 1 is 7 \(int\)"),
    ([b"hi"], r"prompt 0 is b'hi' \(bytes\)"),
    (None, r"prompts must be a str, a list of int token ids, or a list of those; got NoneType"),
    (5, r"prompts must be .*; got int"),
    ([[]], r"prompt 0 is an empty list of token ids"),
    ([1, "a"], r"prompt 0: token 1 is 'a' \(str\); token ids must be ints in \[0, \d+\)"),
    ([[1, 20], [1, 2.5]], r"prompt 1: token 1 is 2.5 \(float\)"),
    ([[1, True]], r"prompt 0: token 1 is True \(bool\)"),
    ([[1, -1]], r"prompt 0: token id -1 \(position 1\) is outside the model's vocabulary"),
    ([[1, 10**9]], r"token id 1000000000 \(position 1\) is outside"),
])
def test_bad_prompts_name_the_index(llm, prompts, match):
    with pytest.raises(A2DGuardError, match=match):
        llm.generate(prompts, P8)
    assert not llm.engine.has_unfinished_requests()  # validated before anything was queued


def test_bad_sampling_params_are_named(llm):
    with pytest.raises(A2DGuardError, match=r"sampling params 1 is a dict; pass SamplingParams"):
        llm.generate(["a", "b"], [P8, {"gen_length": 8}])


def test_accepted_forms(llm):
    assert llm.generate([], P8) == []  # nothing to decode
    one = llm.generate([1, 20], P8)[0].outputs[0].token_ids
    assert llm.generate([[1, 20]], P8)[0].outputs[0].token_ids == one
    assert llm.generate(torch.tensor([1, 20]), P8)[0].outputs[0].token_ids == one
    assert llm.generate([(1, 20), torch.tensor([1, 20])], P8)[1].outputs[0].token_ids == one
    assert len(llm.generate("hi", P8)) == 1 and len(llm.generate(["hi", [1, 20]], P8)) == 2


def test_engine_add_request_checks_token_ids_too(llm):
    with pytest.raises(A2DGuardError, match=r"prompt: token 1 is 2.5 \(float\)"):
        llm.engine.add_request(None, [1, 2.5], P8)
    with pytest.raises(A2DGuardError, match=r"token id 100000 \(position 0\) is outside"):
        llm.engine.add_request(None, [100000], P8)
    assert not llm.engine.has_unfinished_requests()
