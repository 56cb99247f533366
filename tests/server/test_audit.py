"""The audit of `a2d-guard serve` (issue 17) as tests: every poison request an attacker can send,
each followed by a benign request that must still be answered 200, and the medium and low
faults. Stall bounds (how long /health waits) are measured in ``bench/poison.py``, not here.
"""

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

CHAT, COMPLETIONS, MODERATIONS = "/v1/chat/completions", "/v1/completions", "/v1/moderations"
BENIGN = {"messages": [{"role": "user", "content": "hello there"}], "seed": 0}


def _msg(text="hello there"):
    return [{"role": "user", "content": text}]


def _benign(url: str) -> None:
    """The request that must still work after every poison."""
    r = httpx.post(url + CHAT, json=BENIGN, timeout=60)
    assert r.status_code == 200, r.text
    assert httpx.get(url + "/health", timeout=10).json()["status"] == "ok"


def _post_raw(url: str, path: str, body: dict, **kw) -> httpx.Response:
    """POST ``json.dumps(body)`` as it is (ASCII escapes kept: ``"\\ud800"`` reaches the server)."""
    return httpx.post(url + path, content=json.dumps(body), headers={"content-type": "application/json"},
                      timeout=60, **kw)


def _error(r: httpx.Response, status: int, param: str | None) -> str:
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["param"] == param, error
    return error["message"]


@pytest.fixture(scope="module")
def audit(tiny64):
    with running_server(tiny64, batch=8) as (url, state):
        yield url, state


# ---------------------------------------------------------------------------------- critical


@pytest.mark.parametrize("body", [
    {"prompt": "hi", "max_tokens": 16, "seed": 2**63},
    {"prompt": "hi", "max_tokens": 16, "seed": 2**63 - 1, "n": 2},
    {"prompt": "hi", "max_tokens": 16, "seed": 10**30},
], ids=["2**63", "2**63-1+n", "10**30"])
def test_a_seed_past_int64_is_a_400_and_the_engine_lives(audit, body):
    url, state = audit
    _error(httpx.post(url + COMPLETIONS, json=body, timeout=60), 400, "seed")
    assert state.loop.is_alive
    _benign(url)


def test_the_largest_seed_decodes(audit):
    url, _ = audit
    r = httpx.post(url + COMPLETIONS, json={"prompt": "hi", "max_tokens": 16, "seed": 2**63 - 1,
                                            "temperature": 1.0}, timeout=60)
    assert r.status_code == 200, r.text
    r = httpx.post(url + COMPLETIONS, json={"prompt": "hi", "max_tokens": 16, "seed": 2**63 - 2, "n": 2,
                                            "temperature": 1.0}, timeout=60)
    assert r.status_code == 200 and len(r.json()["choices"]) == 2, r.text


@pytest.mark.parametrize("steps", [10**12, 10**8, 17])
def test_more_steps_than_tokens_is_a_400(audit, steps):
    url, state = audit
    body = {"prompt": "hi", "max_tokens": 16, "steps": steps, "block_length": 8}
    message = _error(httpx.post(url + COMPLETIONS, json=body, timeout=60), 400, "steps")
    assert "at most gen_length 16" in message
    assert state.loop.is_alive
    _benign(url)


@pytest.mark.parametrize("body, param", [
    ({"prompt": "hi", "max_tokens": 10**12}, "max_tokens"),
    ({"prompt": "hi", "max_tokens": 16, "block_length": 10**12}, "block_length"),
    ({"prompt": "hi", "max_tokens": 16, "logit_bias": {str(i): 1 for i in range(301)}}, "logit_bias"),
    ({"prompt": "hi", "temperature": 1e308 * 10}, "temperature"),
])
def test_absurd_sizes_are_a_400_naming_the_field(audit, body, param):
    url, _ = audit
    _error(_post_raw(url, COMPLETIONS, body), 400, param)
    _benign(url)


def test_a_body_over_the_limit_is_a_413_before_it_is_read(audit):
    url, state = audit
    big = b'{"prompt": "' + b"a " * (2_600_000) + b'"}'  # 5.2 MB > the 4 MiB default
    r = httpx.post(url + COMPLETIONS, content=big, headers={"content-type": "application/json"}, timeout=60)
    assert "--max-body-bytes" in _error(r, 413, None)

    def chunked():  # no Content-Length: the limit is counted as the body streams in
        yield b'{"prompt": "'
        for _ in range(100):
            yield b"a " * 25_000
        yield b'"}'

    r = httpx.post(url + COMPLETIONS, content=chunked(), headers={"content-type": "application/json"}, timeout=60)
    _error(r, 413, None)
    _benign(url)


@pytest.mark.parametrize("prompt", [
    "a " * 1_000_000,  # 2 MB of text: under the body limit, far over what 512 positions hold
    ["x" * 1000] * 2,
], ids=["2MB-text", "two-long"])
def test_a_prompt_longer_than_the_model_is_refused_by_its_characters(audit, prompt):
    url, _ = audit
    if isinstance(prompt, list):
        prompt = [p * 9 for p in prompt]  # 9,000 characters each: > 512 x 16
    message = _error(httpx.post(url + COMPLETIONS, json={"prompt": prompt}, timeout=60), 400, "prompt")
    assert "characters" in message
    _benign(url)


@pytest.mark.parametrize("body, param", [
    ({"prompt": ["a b"] * 10_000}, "prompt"),
    ({"prompt": ["ab"] * 1_000_000}, None),  # 6 MB: the body limit comes first
    ({"prompt": ["hello"] * 5, "n": 2}, "prompt"),
    ({"messages": _msg(), "n": 8, "seed": 0}, None),  # 8 samples: exactly this server's share
])
def test_prompts_times_n_is_bounded_before_tokenizing(audit, body, param):
    url, _ = audit
    r = httpx.post(url + (CHAT if "messages" in body else COMPLETIONS), json=body, timeout=60)
    if "messages" in body:
        assert r.status_code == 200 and len(r.json()["choices"]) == 8
    elif param is None:
        _error(r, 413, None)
    else:
        assert "samples" in _error(r, 400, param)
    _benign(url)


# ---------------------------------------------------------------------------------- high


def test_an_engine_fault_answers_every_request_and_the_loop_restarts(audit, monkeypatch):
    """Fault injection: the scheduler's eviction raises once (a fault no request can be blamed
    for): every running request gets an answer (500), the loop restarts, /health says ok."""
    url, state = audit
    scheduler = state.llm.engine.scheduler
    real = scheduler.evict_finished
    calls = []

    def broken():
        calls.append(1)
        monkeypatch.setattr(scheduler, "evict_finished", real)
        raise RuntimeError("scheduler bug")

    results = []

    def call():
        results.append(httpx.post(url + CHAT, json={**BENIGN, "max_tokens": 64, "steps": 64}, timeout=60))

    threads = [threading.Thread(target=call) for _ in range(3)]
    restarts = state.loop.restarts
    for t in threads:
        t.start()
    assert wait_until(lambda: state.llm.engine.num_running == 3)
    monkeypatch.setattr(scheduler, "evict_finished", broken)
    for t in threads:
        t.join(60)
    assert calls and len(results) == 3
    assert [r.status_code for r in results] == [500] * 3
    assert all("engine step failed" in r.json()["error"]["message"] for r in results)
    assert state.loop.restarts == restarts + 1 and state.loop.is_alive
    assert wait_until(lambda: state.loop.num_pending == 0 and state.llm.engine.num_running == 0)
    health = httpx.get(url + "/health").json()
    assert health == {"status": "ok", "engine_restarts": restarts + 1}
    _benign(url)


def test_a_dead_engine_answers_queued_requests_and_health_says_so(tiny64, monkeypatch):
    """The loop cannot recover (its reset fails too): every request it holds, running or still
    queued, is answered 503, later ones get 503, /health is 503 "engine stopped"."""
    with running_server(tiny64, batch=1) as (url, state):
        engine = state.llm.engine
        results = []

        def call():
            results.append(httpx.post(url + CHAT, json={**BENIGN, "max_tokens": 64, "steps": 64}, timeout=60))

        threads = [threading.Thread(target=call) for _ in range(3)]
        for t in threads:
            t.start()
        assert wait_until(lambda: state.loop.num_pending == 3)  # one running, two queued

        def broken(*args, **kwargs):
            raise RuntimeError("corrupt state")

        monkeypatch.setattr(engine, "reset", broken)
        monkeypatch.setattr(engine.scheduler, "evict_finished", broken)
        for t in threads:
            t.join(60)
        assert len(results) == 3 and all(r.status_code in (500, 503) for r in results), [r.text for r in results]
        assert all(set(r.json()["error"]) == {"message", "type", "param", "code"} for r in results)
        assert wait_until(lambda: not state.loop.is_alive)
        health = httpx.get(url + "/health")
        assert health.status_code == 503 and health.json()["status"] == "engine stopped"
        assert "corrupt state" in health.json()["error"]
        r = httpx.post(url + CHAT, json=BENIGN, timeout=10)
        assert r.status_code == 503 and r.json()["error"]["type"] == "service_unavailable"


def test_a_sequence_whose_step_raises_fails_alone(tiny64):
    """Fault injection: the model raises on rows holding a marker token; the batched step is
    retried per sequence, so only the marked request fails (500) and its batch-mate answers."""
    model, tokenizer, _ = tiny64
    marker = tokenizer.convert_tokens_to_ids("canada")

    def explode(module, args, output):
        if (args[0] == marker).any():
            raise RuntimeError("kernel fault")
        return output

    handle = model.get_input_embeddings().register_forward_hook(explode)
    try:
        with running_server(tiny64, batch=4) as (url, state):
            body = {"seed": 0, "logit_bias": {str(marker): -100}}  # the marker is never generated
            results = chat_concurrently(url, {"bad": {**body, "messages": _msg("canada")},
                                              "ok": {**body, "messages": _msg("hello there")}})
            assert results["bad"].status_code == 500
            assert "kernel fault" in results["bad"].json()["error"]["message"]
            assert results["ok"].status_code == 200
            assert state.loop.restarts == 0 and httpx.get(url + "/health").json()["status"] == "ok"
    finally:
        handle.remove()


def _connect(url: str) -> socket.socket:
    host, port = url.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)), timeout=10)


def _closed_by_server(sock: socket.socket, within: float) -> bytes:
    """Everything the server sends until it closes the socket (fails if it stays open)."""
    sock.settimeout(within)
    data = b""
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            return data
        data += chunk


@pytest.mark.slow
def test_idle_and_half_sent_connections_are_closed(tiny64):
    with running_server(tiny64, batch=2, timeout_header=0.5, timeout_body=0.5) as (url, _):
        idle = _connect(url)
        half_headers = _connect(url)
        half_headers.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-")
        half_body = _connect(url)
        half_body.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                          b"Content-Length: 100\r\n\r\n{\"prompt\"")
        for sock in (idle, half_headers, half_body):
            data = _closed_by_server(sock, within=10)
            assert data == b"" or data.startswith(b"HTTP/1.1 408"), data
            sock.close()
        _benign(url)


def test_connections_past_the_limit_are_refused_and_the_rest_served(tiny64):
    with running_server(tiny64, batch=2, max_connections=4) as (url, _):
        held = [_connect(url) for _ in range(4)]
        time.sleep(0.2)  # the server has accepted them
        extra = _connect(url)
        assert _closed_by_server(extra, within=10).startswith(b"HTTP/1.1 503")
        extra.close()
        for sock in held:
            sock.close()
        assert wait_until(lambda: _answers(url))


def _answers(url: str) -> bool:
    try:
        return httpx.post(url + CHAT, json=BENIGN, timeout=60).status_code == 200
    except httpx.HTTPError:
        return False


# ---------------------------------------------------------------------------------- medium and low


def _refuses_mid_way(model, spec, marker: int, prompt_length: int):
    """A model that refuses a marked request once two answer tokens are visible and one more is
    committed right of the leftmost mask (the monitor's refusal condition, DESIGN §6), so the
    monitor fires after a stream has shown text. Fault injection on the real model: requests
    are sent one at a time, so every row of a marked forward is the marked request's."""
    seen = {}

    def record(module, args, output):
        ids = args[0][:, prompt_length:]  # [B, gen_length] the answer area
        masked = ids == spec.mask_id
        j = masked.to(torch.int8).argmax(dim=1)  # leftmost mask
        after = (~masked & (torch.arange(ids.shape[1])[None, :] > j[:, None])).any(dim=1)
        marked = (args[0] == marker).any(dim=1)
        seen["refuse"] = bool((marked & masked.any(dim=1) & (j >= 2) & after).any())
        return output

    def refuse(module, args, output):
        if seen.get("refuse"):
            output[..., spec.eos_id] = 50.0
        return output

    handles = [model.get_input_embeddings().register_forward_hook(record),
               model.get_output_embeddings().register_forward_hook(refuse)]

    class Handles:
        def remove(self):
            for h in handles:
                h.remove()

    return Handles()


def test_a_stream_rejected_mid_way_never_glues_the_refusal_onto_its_text(tiny64):
    from a2d_guard.engine.llm import LLM

    model, tokenizer, spec = tiny64
    marker = tokenizer.convert_tokens_to_ids("canada")
    processor = LLM.from_loaded(*tiny64, max_num_seqs=1).processor
    prompt_length = len(processor.encode_messages(_msg("tell me about canada")))
    handle = _refuses_mid_way(model, spec, marker, prompt_length)
    body = {"messages": _msg("tell me about canada"), "seed": 0, "refusal_text": "[REFUSED]",
            "logit_bias": {str(marker): -100}}
    try:
        with running_server(tiny64, batch=2) as (url, _):
            plain = httpx.post(url + CHAT, json=body, timeout=60).json()["choices"][0]
            assert plain["finish_reason"] == "content_filter" and plain["message"]["content"] == "[REFUSED]"
            assert plain["a2d"]["reject_step"] > 0
            chunks = []
            with httpx.stream("POST", url + CHAT, json={**body, "stream": True}, timeout=60) as r:
                for line in r.iter_lines():
                    if line.startswith("data: {"):
                        chunks.append(json.loads(line[6:])["choices"][0])
            shown = "".join(c["delta"].get("content") or "" for c in chunks)
            final = chunks[-1]
            assert shown and "[REFUSED]" not in shown  # text was visible before the monitor fired
            assert final["finish_reason"] == "content_filter" and not final["delta"].get("content")
            assert final["a2d"]["refusal_text"] == "[REFUSED]"
            # rejected before anything was visible: the chunks add up to the plain answer
            early = {**body, "logit_bias": {str(marker): -100, str(spec.eos_id): 100}}
            plain = httpx.post(url + CHAT, json=early, timeout=60).json()["choices"][0]
            with httpx.stream("POST", url + CHAT, json={**early, "stream": True}, timeout=60) as r:
                parts = [json.loads(line[6:])["choices"][0] for line in r.iter_lines() if line.startswith("data: {")]
            assert "".join(c["delta"].get("content") or "" for c in parts) == plain["message"]["content"] == \
                "[REFUSED]"
            assert "refusal_text" not in parts[-1]["a2d"]
            _benign(url)
    finally:
        handle.remove()


def test_one_rejected_request_gives_one_text_in_the_library_the_server_its_stream_and_guard(tiny64):
    """The output processor's promise (DESIGN §13): a request the monitor rejects after text
    was committed answers that text (no refusal_text) or the refusal text, the same in
    ``LLM.generate``, the server's plain answer, the concatenated stream and ``Guard.generate``."""
    from a2d_guard.config import SamplingParams
    from a2d_guard.engine.llm import LLM
    from a2d_guard.guard import Guard

    model, tokenizer, spec = tiny64
    marker = tokenizer.convert_tokens_to_ids("canada")
    llm = LLM.from_loaded(*tiny64, max_num_seqs=1)
    prompt_length = len(llm.processor.encode_messages(_msg("tell me about canada")))
    handle = _refuses_mid_way(model, spec, marker, prompt_length)
    try:
        library = {}
        for refusal in (None, "[REFUSED]"):
            out = llm.generate(["tell me about canada"], SamplingParams(seed=0, logit_bias={marker: -100},
                                                                     refusal_text=refusal))[0].outputs[0]
            assert out.finish_reason == "content_filter" and out.reject_step > 0
            library[refusal] = out.text
        assert library[None] and library[None] != "[REFUSED]" and library["[REFUSED]"] == "[REFUSED]"
        guard = Guard.from_llm(llm, threshold=1.0)  # its own probes never flag; the engine's monitor at 0.9
        guarded = guard.generate("tell me about canada", refusal_text="[REFUSED]", seed=0, eos_threshold=0.9,
                                 logit_bias={marker: -100})
        assert (guarded.reason, guarded.text) == ("content_filter", library["[REFUSED]"])
        with running_server(tiny64, batch=2) as (url, _):
            for refusal, text in library.items():
                body = {"messages": _msg("tell me about canada"), "seed": 0, "logit_bias": {str(marker): -100},
                        **({"refusal_text": refusal} if refusal else {})}
                plain = httpx.post(url + CHAT, json=body, timeout=60).json()["choices"][0]
                assert (plain["finish_reason"], plain["message"]["content"]) == ("content_filter", text)
                with httpx.stream("POST", url + CHAT, json={**body, "stream": True}, timeout=60) as r:
                    parts = [json.loads(line[6:])["choices"][0] for line in r.iter_lines()
                             if line.startswith("data: {")]
                streamed = "".join(c["delta"].get("content") or "" for c in parts)
                assert parts[-1]["finish_reason"] == "content_filter"
                assert parts[-1]["a2d"].get("refusal_text", streamed) == text
    finally:
        handle.remove()


def _exchange(sock: socket.socket, path: str, body: bytes) -> tuple[int, dict, bytes]:
    """One HTTP/1.1 request on an open socket; (status, headers, body) read by Content-Length."""
    sock.sendall(f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, "the server closed the connection"
        data += chunk
    head, rest = data.split(b"\r\n\r\n", 1)
    lines = head.decode().split("\r\n")
    headers = {k.lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:])}
    while len(rest) < int(headers["content-length"]):
        chunk = sock.recv(65536)
        assert chunk, "the server closed the connection"
        rest += chunk
    return int(lines[0].split()[1]), headers, rest


def test_keep_alive_survives_a_500(audit, monkeypatch):
    """Fault injection: a route raises (our bug); the answer is a JSON 500 and the same
    connection serves the next request."""
    url, state = audit
    real = state.processor.check

    def buggy(ids, params, param="prompt"):
        if params.gen_length == 24:
            raise KeyError("bug")
        return real(ids, params, param)

    monkeypatch.setattr(state.processor, "check", buggy)
    sock = _connect(url)
    try:
        for _ in range(3):
            status, headers, body = _exchange(sock, CHAT, json.dumps({**BENIGN, "max_tokens": 24}).encode())
            assert status == 500 and headers.get("connection") != "close"
            assert json.loads(body)["error"]["type"] == "internal_server_error"
            status, _, body = _exchange(sock, CHAT, json.dumps(BENIGN).encode())
            assert status == 200, body
    finally:
        sock.close()


@pytest.mark.parametrize("path, body, param", [
    (COMPLETIONS, {"prompt": "hi \ud800 there"}, "prompt"),
    (COMPLETIONS, {"prompt": ["fine", "\udfff"]}, "prompt"),
    (CHAT, {"messages": [{"role": "user", "content": "\ud800"}]}, "messages.0.content"),
    (CHAT, {"messages": [{"role": "user", "content": [{"type": "text", "text": "\ud800"}]}]}, "messages"),
    (CHAT, {"messages": _msg(), "refusal_text": "no \ud800"}, "refusal_text"),
    (CHAT, {"messages": _msg(), "stop": ["\ud800"]}, "stop"),
    (MODERATIONS, {"input": "\ud800"}, "input"),
    (MODERATIONS, {"input": ["ok", "\ud800"]}, "input"),
])
def test_a_lone_surrogate_is_a_400_naming_the_field(audit, path, body, param):
    url, _ = audit
    message = _error(_post_raw(url, path, body), 400, param)
    assert "lone surrogate" in message
    _benign(url)


def test_a_stop_string_cut_keeps_its_a2d_fields_and_counts_as_stop(audit):
    url, state = audit
    full = httpx.post(url + CHAT, json={**BENIGN, "max_tokens": 32, "steps": 32}, timeout=60).json()
    words = full["choices"][0]["message"]["content"].split()
    assert len(words) > 3
    before = _stop_count(url)
    choice = httpx.post(url + CHAT, json={**BENIGN, "max_tokens": 32, "steps": 32, "stop": [words[1]]},
                        timeout=60).json()["choices"][0]
    assert choice["finish_reason"] == "stop"
    assert set(choice["a2d"]) == {"p_eos", "reject_step", "steps"} and choice["a2d"]["steps"] > 0
    assert wait_until(lambda: _stop_count(url) == before + 1)


def _stop_count(url: str) -> float:
    text = httpx.get(url + "/metrics").text
    m = re.search(r'a2d_guard:request_success_total\{finished_reason="stop"\} ([0-9.]+)', text)
    return float(m.group(1)) if m else 0.0


@pytest.mark.parametrize("body, param", [
    ({"prompt": "hi", "max_tokens": "16"}, "max_tokens"),
    ({"prompt": [True, False]}, "prompt"),
    ({"prompt": [[1, True]]}, "prompt"),
    ({"prompt": "hi", "n": "2"}, "n"),
    ({"prompt": "hi", "stream": "yes"}, "stream"),
    ({"prompt": "hi", "seed": 1.5}, "seed"),
    ({"prompt": "hi", "temperature": "0.5"}, "temperature"),
    ({"prompt": 12}, "prompt"),
])
def test_loose_types_are_a_400(audit, body, param):
    url, _ = audit
    _error(httpx.post(url + COMPLETIONS, json=body, timeout=60), 400, param)


def test_the_schema_documents_400_not_422(audit):
    url, _ = audit
    schema = httpx.get(url + "/openapi.json").json()
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            assert "422" not in operation["responses"], (method, path)
            if method == "post":
                ref = operation["responses"]["400"]["content"]["application/json"]["schema"]["$ref"]
                assert ref == "#/components/schemas/ErrorResponse"


@pytest.mark.slow
def test_docs_sit_behind_the_key_and_a_utf8_key_matches(tiny64, tmp_path):
    key = "clé-ü-🔑"
    key_file = tmp_path / "key"
    key_file.write_text(key + "\n", encoding="utf-8")
    with running_server(tiny64, batch=2, api_key_file=str(key_file)) as (url, _):
        good = {"Authorization": b"Bearer " + key.encode("utf-8")}
        for path in ("/docs", "/redoc", "/openapi.json"):
            assert httpx.get(url + path).status_code == 401, path
            assert httpx.get(url + path, headers=good).status_code == 200, path
        assert httpx.post(url + CHAT, json=BENIGN, headers=good, timeout=60).status_code == 200
        latin1 = {"Authorization": b"Bearer " + key.encode("utf-8").decode("latin-1").encode("utf-8")}
        assert httpx.post(url + CHAT, json=BENIGN, headers=latin1).status_code == 401
    with running_server(tiny64, batch=2, docs=False) as (url, _):
        for path in ("/docs", "/redoc", "/openapi.json"):
            assert httpx.get(url + path).status_code == 404, path


# ---------------------------------------------------------------------------------- SIGTERM


def _start_cli(*flags: str, env: dict | None = None) -> tuple[subprocess.Popen, str, list[str]]:
    proc = subprocess.Popen([sys.executable, "-m", "a2d_guard.cli.main", "serve", "--port", "0", "--batch", "2",
                             "--gen-length", "16", "--block-length", "8", *flags],
                            stderr=subprocess.PIPE, text=True, env={**os.environ, **(env or {})})
    lines = []
    line = proc.stderr.readline()
    while line and "serving" not in line:
        lines.append(line)
        line = proc.stderr.readline()
    lines.append(line)
    match = re.search(r"http://\S+:\d+", line)
    assert match, "".join(lines)
    return proc, match.group(0), lines


def _long_body():
    return {**BENIGN, "max_tokens": 256, "steps": 256, "block_length": 32, "eos_threshold": 1.0,
            "logit_bias": {"2": -100, "3": -100}}


@pytest.mark.slow
def test_sigterm_answers_new_requests_503_and_cut_off_ones_with_json(tiny64):
    """The first SIGTERM (uvicorn's handler, called as the signal would): still listening, new
    requests 503, /health "draining"; a request cut off by --shutdown-timeout gets a JSON 503,
    a cut-off stream an error chunk and [DONE]."""
    from a2d_guard.engine.llm import LLM
    from a2d_guard.server.run import BackgroundServer
    from a2d_guard.server.settings import ServerConfig

    config = ServerConfig(port=0, batch=2, gen_length=16, block_length=8, shutdown_timeout=1.0)
    with slow_forwards(tiny64[0]):
        bg = BackgroundServer(LLM.from_loaded(*tiny64, max_num_seqs=2), config)
        url = bg.start()
        try:
            result = {}

            def plain():
                result["plain"] = httpx.post(url + CHAT, json=_long_body(), timeout=120)

            def stream():
                with httpx.stream("POST", url + CHAT, json={**_long_body(), "stream": True}, timeout=120) as r:
                    result["stream"] = [line for line in r.iter_lines() if line.startswith("data:")]

            threads = [threading.Thread(target=plain), threading.Thread(target=stream)]
            for t in threads:
                t.start()
            assert wait_until(lambda: bg.state.llm.engine.num_running == 2)
            bg.server.handle_exit(signal.SIGTERM, None)
            assert wait_until(lambda: httpx.get(url + "/health").status_code == 503, timeout=10)
            assert httpx.get(url + "/health").json()["status"] == "draining"
            r = httpx.post(url + CHAT, json=BENIGN, timeout=10)  # still listening: a 503, not refused
            assert r.status_code == 503 and r.json()["error"]["type"] == "service_unavailable"
            for t in threads:
                t.join(60)
            cut = result["plain"]
            assert cut.status_code == 503 and cut.headers["content-type"] == "application/json", cut.text
            assert "shut down before this request finished" in cut.json()["error"]["message"]
            lines = result["stream"]
            assert lines[-1] == "data: [DONE]"
            assert json.loads(lines[-2][6:])["error"]["type"] == "service_unavailable"
            bg._thread.join(30)
            assert not bg._thread.is_alive() and not bg.server.force_exit
        finally:
            bg.stop()


def test_a_second_sigterm_exits_at_once(tiny64):
    from a2d_guard.engine.llm import LLM
    from a2d_guard.server.run import BackgroundServer
    from a2d_guard.server.settings import ServerConfig

    config = ServerConfig(port=0, batch=2, gen_length=16, block_length=8, shutdown_timeout=600.0)
    with slow_forwards(tiny64[0]):
        bg = BackgroundServer(LLM.from_loaded(*tiny64, max_num_seqs=2), config)
        url = bg.start()
        try:
            t = threading.Thread(target=lambda: _quiet_post(url + CHAT, _long_body()))
            t.start()
            assert wait_until(lambda: bg.state.llm.engine.num_running == 1)
            bg.server.handle_exit(signal.SIGTERM, None)
            assert wait_until(lambda: httpx.get(url + "/health").status_code == 503, timeout=10)
            bg.server.handle_exit(signal.SIGTERM, None)
            bg._thread.join(10)  # the request would run for seconds more; the drain would wait 600 s
            assert not bg._thread.is_alive()
            assert bg.server.force_exit and bg.server.forced_with == 1
            t.join(30)
        finally:
            bg.stop()


@pytest.mark.slow
def test_the_cli_warns_when_the_key_is_a_flag_and_exits_0_on_sigterm():
    proc, url, lines = _start_cli("--api-key", "flag-key")
    try:
        assert any("--api-key puts the key on the command line" in line for line in lines)
        assert not any("flag-key" in line for line in lines)
        assert httpx.get(url + "/v1/models", headers={"Authorization": "Bearer flag-key"}).status_code == 200
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _quiet_post(url: str, body: dict) -> None:
    try:
        httpx.post(url, json=body, timeout=60)
    except httpx.HTTPError:
        pass
