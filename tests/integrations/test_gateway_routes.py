"""`/classify` (vLLM's shape) and LiteLLM's generic guardrail API on a live server: each answer
follows the guard's verdict, bad bodies are 400s naming the field, and the key is required."""

from __future__ import annotations

import httpx
import pytest

from a2d_guard.gateway_shapes import label_probs, unsafe_probability

from .conftest import BENIGN, FLAGGED

LITELLM = "/beta/litellm_basic_guardrail_api"


def test_classify_labels_follow_the_guard(guard_server, guard):
    url, _ = guard_server
    r = httpx.post(url + "/classify", json={"model": "tiny", "input": [FLAGGED, BENIGN]}, timeout=60)
    assert r.status_code == 200, r.text
    data = r.json()["data"]
    assert [d["label"] for d in data] == ["unsafe", "safe"]
    for item, text in zip(data, (FLAGGED, BENIGN), strict=True):
        verdict = guard.check(text)
        assert item["probs"] == pytest.approx(label_probs(verdict.score, 0.5))
        assert (item["probs"][1] > item["probs"][0]) == verdict.flagged  # argmax == flagged
    single = httpx.post(url + "/v1/classify", json={"input": BENIGN}, timeout=60).json()["data"]
    assert [d["index"] for d in single] == [0] and single[0]["label"] == "safe"


def test_the_threshold_lands_on_one_half():
    for t in (0.1, 0.5, 0.9, 0.999):
        assert unsafe_probability(t, t) == pytest.approx(0.5)
        assert unsafe_probability(0.0, t) == 0.0 and unsafe_probability(1.0, t) == pytest.approx(1.0)
        assert label_probs(t, t)[0] >= label_probs(t, t)[1]  # s == τ is not flagged: "safe" wins the tie
    assert unsafe_probability(0.99, 1.0) < 0.5  # the monitor off never flags


@pytest.mark.parametrize("body, action", [
    ({"input_type": "request", "texts": [FLAGGED]}, "BLOCKED"),
    ({"input_type": "request", "texts": [BENIGN]}, "NONE"),
    ({"input_type": "request", "texts": ["x"], "structured_messages": [{"role": "user", "content": FLAGGED}]},
     "BLOCKED"),
    ({"input_type": "request", "texts": ["x"], "structured_messages": [
        {"role": "user", "content": BENIGN}, {"role": "assistant", "content": "sure, canada is big"}]}, "BLOCKED"),
    ({"input_type": "response", "texts": ["four"], "structured_messages": [{"role": "user", "content": BENIGN}]},
     "NONE"),
    ({"input_type": "response", "texts": ["all about canada"],
      "structured_messages": [{"role": "user", "content": BENIGN}]}, "BLOCKED"),
    ({"input_type": "response", "texts": ["all about canada"]}, "BLOCKED"),
    ({"input_type": "request", "texts": [], "litellm_version": "9.9", "request_data": {}, "images": None}, "NONE"),
])
def test_litellm_guardrail_api_follows_the_guard(guard_server, body, action):
    url, _ = guard_server
    r = httpx.post(url + LITELLM, json=body, timeout=60)
    assert r.status_code == 200, r.text
    answer = r.json()
    assert answer["action"] == action
    if action == "BLOCKED":
        assert "p(EOS)" in answer["blocked_reason"] and "threshold 0.5" in answer["blocked_reason"]


@pytest.mark.parametrize("path, body, param", [
    ("/classify", {}, "input"),
    ("/classify", {"input": ""}, "input"),
    ("/classify", {"input": ["a"] * 129}, "input"),
    ("/classify", {"input": 5}, "input"),
    ("/classify", {"input": "hi", "model": "other"}, "model"),
    ("/classify", {"input": "hi", "colour": 1}, "colour"),
    (LITELLM, {"texts": ["hi"]}, "input_type"),
    (LITELLM, {"input_type": "sideways", "texts": ["hi"]}, "input_type"),
    (LITELLM, {"input_type": "request", "texts": "hi"}, "texts"),
    (LITELLM, {"input_type": "request", "structured_messages": [{"content": "hi"}]}, "structured_messages"),
])
def test_bad_bodies_are_400s_naming_the_field(guard_server, path, body, param):
    url, _ = guard_server
    r = httpx.post(url + path, json=body, timeout=60)
    assert r.status_code in (400, 404), r.text
    assert r.json()["error"]["param"] == param


def test_the_gateway_routes_need_the_key(tiny_guarded):
    from a2d_guard.engine.llm import LLM
    from a2d_guard.server.run import BackgroundServer
    from a2d_guard.server.settings import ServerConfig

    config = ServerConfig(port=0, batch=1, gen_length=16, block_length=8, api_key="k3y")
    with BackgroundServer(LLM.from_loaded(*tiny_guarded, max_num_seqs=1), config) as url:
        for path, body in (("/classify", {"input": BENIGN}), (LITELLM, {"input_type": "request", "texts": [BENIGN]})):
            assert httpx.post(url + path, json=body, timeout=60).status_code == 401
            assert httpx.post(url + path, json=body, headers={"Authorization": "Bearer k3y"}, timeout=60).status_code \
                == 200
            assert httpx.post(url + path, json=body, headers={"x-api-key": "k3y"}, timeout=60).status_code == 200
            assert httpx.post(url + path, json=body, headers={"x-api-key": "nope"}, timeout=60).status_code == 401
