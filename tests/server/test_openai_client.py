"""The official ``openai`` client against a real server: every route and parameter it uses,
and answers token-identical to ``LLM.generate`` under 64 concurrent clients."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from a2d_guard.config import SamplingParams
from a2d_guard.engine.llm import LLM

from .conftest import DEFAULTS

PROMPTS = ["hello there", "how do I kill a python process?", "tell me about canada", "what is two plus two",
           "write a poem about sports", "numbers 12 and 345"]


def _expected(tiny64, prompt: str, chat: bool = True, **params):
    llm = LLM.from_loaded(*tiny64, max_num_seqs=1, chat_template=chat)
    out = llm.generate([llm.encode(prompt)], SamplingParams(**{**DEFAULTS, **params}))[0].outputs[0]
    return out


def _chat(client, prompt, **kw):
    return client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": prompt}], **kw)


def test_models_lists_the_served_model(client):
    models = client.models.list().data
    assert [m.id for m in models] == ["tiny"]


def test_chat_matches_llm_generate(client, tiny64):
    got = _chat(client, PROMPTS[0], seed=3)
    want = _expected(tiny64, PROMPTS[0], seed=3)
    choice = got.choices[0]
    assert choice.message.role == "assistant"
    assert choice.message.content == want.text
    assert choice.finish_reason == want.finish_reason
    extra = choice.model_extra["a2d"]
    assert extra["steps"] == want.steps and extra["p_eos"] == pytest.approx(want.p_eos)
    assert got.usage.completion_tokens == len(want.token_ids)
    assert got.usage.prompt_tokens == len(LLM.from_loaded(*tiny64).encode(PROMPTS[0]))


def test_completion_uses_the_raw_prompt(client, tiny64):
    got = client.completions.create(model="tiny", prompt=PROMPTS[2], max_tokens=8, seed=0)
    want = _expected(tiny64, PROMPTS[2], chat=False, gen_length=8, steps=8, block_length=8)
    assert got.choices[0].text == want.text
    assert got.choices[0].finish_reason == want.finish_reason
    assert got.object == "text_completion"


def test_n_samples_use_consecutive_seeds(client, tiny64):
    got = _chat(client, PROMPTS[3], n=3, seed=11, temperature=1.0)
    assert [c.index for c in got.choices] == [0, 1, 2]
    for i, c in enumerate(got.choices):
        assert c.message.content == _expected(tiny64, PROMPTS[3], seed=11 + i, temperature=1.0).text
    assert len({c.message.content for c in got.choices}) > 1  # really different samples


def test_stream_concatenates_to_the_plain_answer(client):
    plain = _chat(client, PROMPTS[4], seed=2).choices[0]
    chunks = list(_chat(client, PROMPTS[4], seed=2, stream=True, stream_options={"include_usage": True}))
    deltas = [c.choices[0].delta.content or "" for c in chunks if c.choices]
    finals = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert "".join(deltas) == plain.message.content
    assert finals == [plain.finish_reason]
    assert len([d for d in deltas if d]) > 1  # text arrives in pieces, not all at the end
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens > 0


def test_stop_string_cuts_the_text(client):
    full = _chat(client, PROMPTS[1], seed=0, max_tokens=32).choices[0].message.content
    words = full.split()
    assert len(words) > 3
    stop = words[2]
    cut = full[: full.find(stop)]
    for stream in (False, True):
        if stream:
            chunks = list(_chat(client, PROMPTS[1], seed=0, max_tokens=32, stop=[stop], stream=True))
            text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
            reason = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
            assert reason == ["stop"]
        else:
            choice = _chat(client, PROMPTS[1], seed=0, max_tokens=32, stop=stop).choices[0]
            text, reason = choice.message.content, choice.finish_reason
            assert reason == "stop"
        assert text == cut


def test_stop_strings_cut_at_the_earliest_match(client):
    """Several stop strings: the text ends before whichever occurs first in it, whatever their
    order in ``stop``, and at a stop string's first occurrence when it occurs more than once.
    ``"A B"`` and ``"B"`` become visible at the same step (they end together), so the cut must
    choose between two matches: the earlier start wins."""
    full = _chat(client, PROMPTS[1], seed=0, max_tokens=32).choices[0].message.content
    words = list(dict.fromkeys(full.split()))  # distinct words, in order of first occurrence
    assert len(words) >= 3
    early, late = words[1], words[-1]
    assert 0 < full.find(early) < full.find(late) and full.count(early) > 1  # the earliest match is not the only one
    before = full[: full.find(early)].split()[-1]
    phrase = f"{before} {early}"  # ends where ``early`` first ends, starts one word earlier
    assert full.count(phrase) > 1
    for stop, cut in (([late, early], full.find(early)), ([early, phrase], full.find(phrase))):
        for stream in (False, True):
            if stream:
                chunks = list(_chat(client, PROMPTS[1], seed=0, max_tokens=32, stop=stop, stream=True))
                text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
                reason = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
                assert reason == ["stop"]
            else:
                choice = _chat(client, PROMPTS[1], seed=0, max_tokens=32, stop=stop).choices[0]
                text = choice.message.content
                assert choice.finish_reason == "stop"
            assert text == full[:cut], (stop, stream, text)


def test_usage_counts_every_sample_of_n(client, tiny64):
    """``usage.completion_tokens`` is the sum over all ``n`` samples (plain and streamed), as OpenAI counts it."""
    want = [_expected(tiny64, PROMPTS[3], seed=11 + i, temperature=1.0) for i in range(3)]
    tokens = sum(len(w.token_ids) for w in want)
    assert tokens > len(want[0].token_ids)
    prompt_tokens = len(LLM.from_loaded(*tiny64).encode(PROMPTS[3]))
    got = _chat(client, PROMPTS[3], n=3, seed=11, temperature=1.0)
    assert [c.message.content for c in got.choices] == [w.text for w in want]
    assert (got.usage.prompt_tokens, got.usage.completion_tokens, got.usage.total_tokens) == (
        prompt_tokens, tokens, prompt_tokens + tokens)
    chunks = list(_chat(client, PROMPTS[3], n=3, seed=11, temperature=1.0, stream=True,
                        stream_options={"include_usage": True}))
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == tokens


def test_logit_bias_on_eos_is_rejected_by_the_monitor(client, tiny64):
    _, _, spec = tiny64
    for stream in (False, True):
        kw = dict(seed=0, logit_bias={str(spec.eos_id): 100}, extra_body={"refusal_text": "I can't help."})
        if stream:
            chunks = list(_chat(client, PROMPTS[0], stream=True, **kw))
            final = [c.choices[0] for c in chunks if c.choices and c.choices[0].finish_reason][0]
            assert final.finish_reason == "content_filter"
            assert final.model_extra["a2d"]["reject_step"] == 0
        else:
            choice = _chat(client, PROMPTS[0], **kw).choices[0]
            assert choice.finish_reason == "content_filter"
            assert choice.message.content == "I can't help."
            assert choice.model_extra["a2d"]["reject_step"] == 0 and choice.model_extra["a2d"]["p_eos"] > 0.9


def test_diffusion_parameters_ride_in_extra_body(client, tiny64):
    kw = dict(steps=8, block_length=4, remasking="left_to_right", eos_threshold=1.0)
    got = _chat(client, PROMPTS[5], seed=1, max_tokens=8, extra_body=kw).choices[0]
    want = _expected(tiny64, PROMPTS[5], seed=1, gen_length=8, **kw)
    assert got.message.content == want.text and got.model_extra["a2d"]["steps"] == want.steps


def test_parallel_threshold_rides_in_extra_body(client, tiny64):
    """Threshold decoding per request: the random tiny model's p(x0) (~0.0017) clears 0.001
    everywhere, so each block of 4 commits at once (2 steps, not 8); a bad value is a 400."""
    import openai

    kw = dict(steps=8, block_length=4, eos_threshold=1.0, parallel_threshold=0.001)
    got = _chat(client, PROMPTS[5], seed=1, max_tokens=8, extra_body=kw).choices[0]
    want = _expected(tiny64, PROMPTS[5], seed=1, gen_length=8, **kw)
    assert want.steps == 2
    assert got.message.content == want.text and got.model_extra["a2d"]["steps"] == want.steps
    with pytest.raises(openai.BadRequestError) as info:
        _chat(client, PROMPTS[5], max_tokens=8, extra_body={"parallel_threshold": 1.5})
    assert info.value.body["param"] == "parallel_threshold" and "(0, 1]" in info.value.body["message"]


def test_neutral_openai_fields_are_accepted(client, tiny64):
    got = _chat(client, PROMPTS[0], seed=0, top_p=1, frequency_penalty=0, presence_penalty=0, logprobs=False,
                user="someone", response_format={"type": "text"}).choices[0]
    want = _expected(tiny64, PROMPTS[0], seed=0)
    assert (got.message.content, got.finish_reason) == (want.text, want.finish_reason)


@pytest.mark.slow
def test_64_concurrent_clients_each_get_their_own_answer(server, tiny64):
    """Batch invariance across HTTP: every answer equals LLM.generate of that request alone."""
    from openai import OpenAI

    url, state = server
    jobs = [(PROMPTS[i % len(PROMPTS)], i, 0.0 if i % 2 else 0.8) for i in range(64)]

    def finished_total() -> float:
        return sum(s.value for m in state.metrics.finished.collect() for s in m.samples if s.name.endswith("_total"))

    before = finished_total()

    def call(job):
        prompt, seed, temperature = job
        with OpenAI(base_url=url + "/v1", api_key="x", max_retries=0, timeout=300) as c:
            r = _chat(c, prompt, seed=seed, temperature=temperature)
        return r.choices[0].message.content, r.choices[0].finish_reason

    with ThreadPoolExecutor(64) as pool:
        answers = list(pool.map(call, jobs))
    llm = LLM.from_loaded(*tiny64, max_num_seqs=64)
    want = llm.generate([llm.encode(p) for p, _, _ in jobs],
                        [SamplingParams(**DEFAULTS, seed=s, temperature=t) for _, s, t in jobs])
    assert answers == [(w.outputs[0].text, w.outputs[0].finish_reason) for w in want]
    # exactly one answer per request: 64 engine requests finished, none left pending or running
    assert finished_total() - before == 64
    assert state.loop.num_pending == 0 and state.llm.engine.num_running == 0


def test_streamed_samples_arrive_per_choice(client):
    plain = _chat(client, PROMPTS[2], n=2, seed=4, temperature=1.0).choices
    chunks = list(_chat(client, PROMPTS[2], n=2, seed=4, temperature=1.0, stream=True))
    texts, finals = {0: "", 1: ""}, {0: [], 1: []}
    for chunk in chunks:
        for c in chunk.choices:
            texts[c.index] += c.delta.content or ""
            if c.finish_reason:
                finals[c.index].append(c.finish_reason)
    assert [texts[i] for i in (0, 1)] == [c.message.content for c in plain]
    assert [finals[i] for i in (0, 1)] == [[c.finish_reason] for c in plain]


def test_completions_take_several_prompts_and_token_ids(client, tiny64):
    ids = LLM.from_loaded(*tiny64, chat_template=False).encode(PROMPTS[0])
    got = client.completions.create(model="tiny", prompt=[PROMPTS[0], PROMPTS[1]], n=2, max_tokens=8, seed=0)
    assert [c.index for c in got.choices] == [0, 1, 2, 3]
    by_ids = client.completions.create(model="tiny", prompt=ids, max_tokens=8, seed=0)
    assert by_ids.choices[0].text == got.choices[0].text
    assert got.usage.prompt_tokens == len(ids) + len(LLM.from_loaded(*tiny64, chat_template=False).encode(PROMPTS[1]))


def test_a_fast_mode_server_answers_as_the_library_does(tiny64):
    """``serve --cache dual``: the server's engine runs the block cache; 8 concurrent chats through
    the official client get exactly what ``LLM(cache="dual")`` gives one by one."""
    import openai

    from .conftest import running_server

    with running_server(tiny64, cache="dual", batch=4) as (url, state):
        client = openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0)
        with ThreadPoolExecutor(8) as pool:
            got = list(pool.map(lambda i: _chat(client, PROMPTS[i % len(PROMPTS)], seed=i).choices[0], range(8)))
        assert state.llm.engine.runner.kv_pool is not None
    for i, choice in enumerate(got):
        llm = LLM.from_loaded(*tiny64, max_num_seqs=1, cache="dual")
        want = llm.generate([llm.encode(PROMPTS[i % len(PROMPTS)])], SamplingParams(**DEFAULTS, seed=i))[0].outputs[0]
        assert (choice.message.content, choice.finish_reason) == (want.text, want.finish_reason)

