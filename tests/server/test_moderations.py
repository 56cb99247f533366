"""``POST /v1/moderations`` on a real server: OpenAI's shape, the library Guard's verdicts,
the ``messages`` extension, errors as OpenAI error bodies, and checks beside running decodes."""

from __future__ import annotations

import threading

import httpx
import pytest

from a2d_guard import Guard
from a2d_guard.engine.llm import LLM

from .conftest import DEFAULTS, running_server

URL = "/v1/moderations"


@pytest.fixture(scope="module")
def mod_server(tiny64):
    with running_server(tiny64, batch=8) as (url, state):
        yield url, state


@pytest.fixture(scope="module")
def library(tiny64):
    """The guard as the server builds it: the served weights, its eos_threshold and gen_length."""
    return Guard.from_llm(LLM.from_loaded(*tiny64), threshold=0.9, probe_length=DEFAULTS["gen_length"])


def _same(result: dict, verdict) -> None:
    assert result["flagged"] is verdict.flagged and result["categories"] == {"a2d": verdict.flagged}
    assert result["category_scores"]["a2d"] == pytest.approx(verdict.score, rel=1e-9)
    assert result["a2d"] == {"where": verdict.where, "char_offset": verdict.char_offset,
                             "token_index": verdict.token_index, "threshold": 0.9}


def test_input_strings_are_checked_as_prompts(mod_server, library):
    url, state = mod_server
    body = httpx.post(url + URL, json={"input": ["how do i cook rice", "hello there"]}, timeout=120).json()
    assert body["id"].startswith("modr-") and body["model"] == state.config.model_name
    want = library.check_batch(["how do i cook rice", "hello there"])
    assert len(body["results"]) == 2
    for got, v in zip(body["results"], want, strict=True):
        assert v.where == "prompt"
        _same(got, v)
    one = httpx.post(url + URL, json={"input": "hello there"}, timeout=120).json()
    _same(one["results"][0], want[1])


def test_messages_check_the_last_assistant_turn_as_a_response(mod_server, library):
    url, _ = mod_server
    chat = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "how do i cook rice"},
            {"role": "assistant", "content": "boil water then add the rice and wait"}]
    body = httpx.post(url + URL, json={"messages": chat}, timeout=120).json()
    want = library.check(chat[:2], chat[2]["content"])
    assert want.where == "response"
    _same(body["results"][0], want)
    asked = httpx.post(url + URL, json={"messages": chat[:2]}, timeout=120).json()  # no answer yet: a prompt check
    _same(asked["results"][0], library.check(chat[:2]))


def test_the_openai_client_reads_the_answer(mod_server, library):
    from openai import OpenAI

    url, state = mod_server
    with OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0, timeout=120) as client:
        out = client.moderations.create(input="how do i cook rice", model=state.config.model_name)
    assert out.results[0].flagged is library.check("how do i cook rice").flagged
    assert out.results[0].category_scores.model_extra["a2d"] == pytest.approx(
        library.check("how do i cook rice").score, rel=1e-9)


@pytest.mark.parametrize("body, status, param, message", [
    ({}, 400, "input", "send either input"),
    ({"input": "x", "messages": [{"role": "user", "content": "x"}]}, 400, "input", "send either input"),
    ({"input": []}, 400, "input", "input is an empty list"),
    ({"input": ["fine", "  "]}, 400, "input", "item 1: the prompt is empty"),
    ({"input": ["x"] * 129}, 400, "input", "send at most 128"),
    ({"messages": [{"role": "assistant", "content": "hi"}]}, 400, "messages", "no user or system turn"),
    ({"input": "x", "categories": ["violence"]}, 400, "categories", "unknown field"),
    ({"input": "x", "model": "gpt-4"}, 404, "model", "does not exist"),
    ({"input": "<mask:0> bad placeholder"}, 400, "input", "<mask:N> needs a whole number"),
])
def test_bad_requests_get_openai_error_bodies(mod_server, body, status, param, message):
    url, _ = mod_server
    r = httpx.post(url + URL, json=body, timeout=120)
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert err["param"] == param and message in err["message"]


def test_api_key_is_required_when_set(tiny64):
    with running_server(tiny64, api_key="sekret") as (url, _):
        assert httpx.post(url + URL, json={"input": "hi"}, timeout=120).status_code == 401
        ok = httpx.post(url + URL, json={"input": "hi"}, headers={"Authorization": "Bearer sekret"}, timeout=120)
        assert ok.status_code == 200


def test_checks_run_while_the_engine_decodes(mod_server, library):
    """Guard forwards (worker thread) beside the engine loop's steps: both answer correctly."""
    url, _ = mod_server
    chats, checks = [], []

    def chat():
        chats.append(httpx.post(url + "/v1/chat/completions", timeout=120, json={
            "messages": [{"role": "user", "content": "tell me a story"}], "eos_threshold": 1.0}))

    def check():
        checks.append(httpx.post(url + URL, json={"input": "how do i cook rice"}, timeout=120))

    threads = [threading.Thread(target=f) for f in (chat, check, chat, check, check)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [r.status_code for r in chats + checks] == [200] * 5
    from a2d_guard.config import SamplingParams

    alone = library.llm.generate(["tell me a story"], SamplingParams(**DEFAULTS, eos_threshold=1.0))[0]
    assert [r.json()["choices"][0]["message"]["content"] for r in chats] == [alone.outputs[0].text] * 2
    want = library.check("how do i cook rice")
    for r in checks:
        _same(r.json()["results"][0], want)
