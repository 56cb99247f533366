"""The server under bad input, overload, dropped clients, failing requests, auth and SIGTERM."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time

import httpx
import pytest
import torch

from .conftest import chat_concurrently, running_server, slow_forwards, wait_until

CHAT = "/v1/chat/completions"


def _msg(text="hello there"):
    return [{"role": "user", "content": text}]


BAD_INPUTS = [
    # (body or raw bytes, status, param named in the error)
    (b"{not json", 400, None),
    (b"[1, 2]", 400, None),
    ({"messages": "hello"}, 400, "messages"),
    ({"messages": []}, 400, "messages"),
    ({"messages": [{"role": "wizard", "content": "x"}]}, 400, "messages.0.role"),
    ({"messages": [{"role": "assistant", "content": "x"}]}, 400, "messages"),
    ({"messages": _msg(), "max_tokens": 0}, 400, "max_tokens"),
    ({"messages": _msg(), "max_tokens": -4}, 400, "max_tokens"),
    ({"messages": _msg(), "max_tokens": 100000}, 400, "max_tokens"),
    ({"messages": _msg(), "max_tokens": "many"}, 400, "max_tokens"),
    ({"messages": _msg(), "max_tokens": 16, "block_length": 5}, 400, "block_length"),
    ({"messages": _msg(), "steps": 3}, 400, "steps"),
    ({"messages": _msg(), "remasking": "sideways"}, 400, "remasking"),
    ({"messages": _msg(), "eos_threshold": 1.5}, 400, "eos_threshold"),
    ({"messages": _msg(), "temperature": -1}, 400, "temperature"),
    ({"messages": _msg(), "n": 0}, 400, "n"),
    ({"messages": _msg(), "n": 9}, 400, "n"),
    ({"messages": _msg(), "seed": -1}, 400, "seed"),
    ({"messages": _msg(), "logit_bias": {"abc": 1}}, 400, "logit_bias"),
    ({"messages": _msg(), "logit_bias": {"99999999": 1}}, 400, "logit_bias"),
    ({"messages": _msg(), "logit_bias": {"3": 1000}}, 400, "logit_bias"),
    ({"messages": _msg(), "stop": ["a", "b", "c", "d", "e"]}, 400, "stop"),
    ({"messages": _msg(), "top_p": 0.5}, 400, "top_p"),
    ({"messages": _msg(), "logprobs": True}, 400, "logprobs"),
    ({"messages": _msg(), "tools": [{"type": "function"}]}, 400, "tools"),
    ({"messages": _msg(), "max_token": 16}, 400, "max_token"),
    ({"messages": _msg(), "stream_options": {"include_usage": True}}, 400, "stream_options"),
    ({"messages": _msg(), "model": "gpt-4o"}, 404, "model"),
    ({"messages": _msg("fill <mask:0> here")}, 400, "messages"),
    ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]}, 400,
     "messages"),
]


@pytest.mark.parametrize("body, status, param", BAD_INPUTS, ids=[str(i) for i in range(len(BAD_INPUTS))])
def test_bad_input_is_a_4xx_naming_the_field(server, body, status, param):
    url, _ = server
    if isinstance(body, bytes):
        r = httpx.post(url + CHAT, content=body, headers={"content-type": "application/json"})
    else:
        r = httpx.post(url + CHAT, json=body)
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["message"]
    assert error["param"] == param
    if param:
        assert param.split(".")[0] in error["message"] or error["type"] == "invalid_request_error"


def test_bad_completion_prompts(server):
    url, _ = server
    for prompt in ("", "   ", [], [99999]):
        r = httpx.post(url + "/v1/completions", json={"prompt": prompt})
        assert r.status_code == 400 and r.json()["error"]["param"] == "prompt", r.text


def test_other_requests_carry_on_after_bad_ones(server):
    url, _ = server
    good = httpx.post(url + CHAT, json={"messages": _msg(), "seed": 0}).json()["choices"][0]
    assert httpx.post(url + CHAT, json={"messages": _msg(), "n": 0}).status_code == 400
    r = httpx.post(url + CHAT, json={"messages": _msg(), "seed": 0})
    assert r.status_code == 200 and r.json()["choices"][0] == good


def test_health_and_metrics(server):
    url, _ = server
    assert httpx.get(url + "/health").status_code == 200
    httpx.post(url + CHAT, json={"messages": _msg(), "seed": 0})
    text = httpx.get(url + "/metrics").text
    for name in ("a2d_guard:num_requests_running", "a2d_guard:num_requests_waiting",
                 "a2d_guard:request_success_total", "a2d_guard:request_rejections_total",
                 "a2d_guard:step_time_seconds_bucket", "a2d_guard:batch_occupancy_bucket",
                 "a2d_guard:time_to_first_token_seconds_bucket", "a2d_guard:e2e_request_latency_seconds_bucket",
                 "a2d_guard:prompt_tokens_total", "a2d_guard:generation_tokens_total"):
        assert name in text, name
    assert re.search(r'a2d_guard:request_success_total\{finished_reason="(stop|length)"\} [1-9]', text)


def _long(**kw):
    return {"messages": _msg("tell me a long story"), "max_tokens": 256, "steps": 256, "block_length": 32,
            "eos_threshold": 1.0, "logit_bias": {"2": -100, "3": -100}, "seed": 0, **kw}


def test_dropped_stream_frees_its_slot(tiny64):
    with slow_forwards(tiny64[0]), running_server(tiny64, batch=2) as (url, state):
        with httpx.stream("POST", url + CHAT, json=_long(stream=True), timeout=60) as r:
            # keep the line iterator referenced: a closed iterator closes the connection
            lines = r.iter_lines()
            assert next(line for line in lines if line.startswith("data:"))  # the first chunk: queued or running
            assert wait_until(lambda: state.llm.engine.num_running == 1)
        assert wait_until(lambda: state.llm.engine.num_running == 0 and state.loop.num_pending == 0)
        text = httpx.get(url + "/metrics").text
        assert 'a2d_guard:request_success_total{finished_reason="abort"} 1.0' in text  # dropped, not finished


def _finished_count(url: str, reason: str) -> float:
    name = re.escape(f'a2d_guard:request_success_total{{finished_reason="{reason}"}}')
    match = re.search(name + r" (\S+)", httpx.get(url + "/metrics").text)
    return float(match.group(1)) if match else 0.0


def test_dropped_plain_request_is_aborted_and_frees_its_slot(tiny64):
    """A non-streaming client that hangs up: its request is aborted (not decoded to the end) and
    its slot serves the next request. The first forward is held until the HTTP side has asked
    the loop to abort, so the request cannot finish on its own first, however slow the machine;
    ``loop.abort`` is wrapped (the real one still runs) only to see that it was called."""
    model, _, _ = tiny64
    entered, release = threading.Event(), threading.Event()

    def hold(module, args, output):
        entered.set()
        release.wait(60)
        return output

    handle = model.get_input_embeddings().register_forward_hook(hold)
    try:
        with running_server(tiny64, batch=2) as (url, state):
            aborted = []
            real_abort = state.loop.abort
            state.loop.abort = lambda request_id, stop_cut=False: (aborted.append(request_id),
                                                                   real_abort(request_id, stop_cut))
            host, port = url.removeprefix("http://").split(":")
            body = json.dumps(_long()).encode()
            sock = socket.create_connection((host, int(port)))
            sock.sendall(b"POST " + CHAT.encode() + b" HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                         b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
            assert entered.wait(60) and state.llm.engine.num_running == 1  # admitted, its first step held
            sock.close()
            seen = wait_until(lambda: len(aborted) == 1)
            release.set()
            handle.remove()
            assert seen, "the server did not abort the request of a client that hung up"
            assert wait_until(lambda: state.llm.engine.num_running == 0 and state.loop.num_pending == 0)
            assert (_finished_count(url, "abort"), _finished_count(url, "length")) == (1.0, 0.0)
            # the freed slot serves the next request
            assert httpx.post(url + CHAT, json={"messages": _msg(), "seed": 0}, timeout=60).status_code == 200
    finally:
        release.set()
        handle.remove()


def test_overload_is_429_with_retry_after(tiny64):
    with running_server(tiny64, batch=1, max_waiting=1) as (url, state):
        results = []

        def call():
            results.append(httpx.post(url + CHAT, json=_long(max_tokens=64, steps=64), timeout=120))

        threads = [threading.Thread(target=call) for _ in range(2)]
        for t in threads:
            t.start()
        assert wait_until(lambda: state.loop.num_pending == 2)
        r = httpx.post(url + CHAT, json={"messages": _msg()})
        assert r.status_code == 429 and r.headers["retry-after"] == "1"
        assert r.json()["error"]["code"] == "rate_limit_exceeded"
        for t in threads:
            t.join()
        assert [x.status_code for x in results] == [200, 200]
        assert "a2d_guard:request_overload_rejections_total 1.0" in httpx.get(url + "/metrics").text


def test_api_key(tiny64):
    with running_server(tiny64, batch=2, api_key="s3cret") as (url, _):
        body = {"messages": _msg(), "seed": 0}
        assert httpx.post(url + CHAT, json=body).status_code == 401
        r = httpx.post(url + CHAT, json=body, headers={"Authorization": "Bearer wrong"})
        assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"
        assert "s3cret" not in r.text
        assert httpx.get(url + "/v1/models", headers={"Authorization": "Bearer s3cret"}).status_code == 200
        assert httpx.post(url + CHAT, json=body, headers={"Authorization": "Bearer s3cret"}).status_code == 200
        assert httpx.get(url + "/health").status_code == 200  # probes need no key


def test_a_request_with_non_finite_logits_fails_alone(tiny64):
    """Fault injection: a forward hook poisons the rows that hold a marker token."""
    model, tokenizer, _ = tiny64
    marker = tokenizer.convert_tokens_to_ids("canada")

    def poison(module, args, output):
        rows = (args[0] == marker).any(dim=1)
        output[rows] = float("nan")
        return output

    handle = model.get_input_embeddings().register_forward_hook(poison)
    try:
        with running_server(tiny64, batch=4) as (url, _):
            body = {"seed": 0, "logit_bias": {str(marker): -100}}  # the marker is never generated
            results = chat_concurrently(url, {"bad": {**body, "messages": _msg("canada")},
                                              "ok": {**body, "messages": _msg("hello there")}})
            assert results["bad"].status_code == 500 and "non-finite" in results["bad"].json()["error"]["message"]
            assert results["ok"].status_code == 200
            assert httpx.get(url + "/health").status_code == 200
    finally:
        handle.remove()
    assert torch.isfinite(model.get_input_embeddings()(torch.tensor([[marker]]))).all()


@pytest.mark.slow
def test_sigterm_drains_running_requests_and_exits_0(tmp_path):
    env = {**os.environ, "A2D_GUARD_API_KEY": "k3y"}
    proc = subprocess.Popen([sys.executable, "-m", "a2d_guard.cli.main", "serve", "--port", "0", "--batch", "4",
                             "--gen-length", "16", "--steps", "16", "--block-length", "8", "--shutdown-timeout", "60"],
                            stderr=subprocess.PIPE, text=True, env=env)
    try:
        line = proc.stderr.readline()
        while line and "serving" not in line:
            line = proc.stderr.readline()
        url = re.search(r"http://\S+:\d+", line).group(0)
        assert "k3y" not in line
        headers = {"Authorization": "Bearer k3y"}
        result = {}

        def long_request():
            result["r"] = httpx.post(url + CHAT, json=_long(max_tokens=128, steps=128), headers=headers, timeout=120)

        t = threading.Thread(target=long_request)
        t.start()
        time.sleep(1.0)  # the request is running
        proc.send_signal(signal.SIGTERM)
        t.join(120)
        assert result["r"].status_code == 200
        assert result["r"].json()["choices"][0]["finish_reason"] == "length"
        assert proc.wait(60) == 0
        with pytest.raises(httpx.ConnectError):
            httpx.post(url + CHAT, json={"messages": _msg()}, headers=headers)
        assert "k3y" not in proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_draining_server_answers_503(tiny64):
    with running_server(tiny64, batch=2) as (url, state):
        state.draining = True
        r = httpx.post(url + CHAT, json={"messages": _msg()})
        assert r.status_code == 503 and r.json()["error"]["type"] == "service_unavailable"
        assert httpx.get(url + "/health").status_code == 503
