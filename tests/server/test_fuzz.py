"""Fuzzing a real server: schemathesis over the app's own OpenAPI schema (valid and negative
data, every operation reached even after a failure), and a hypothesis property test that throws
random, malformed and oversized bodies at the live server and then requires a benign answer.
Bounded in count; no input may produce a 5xx or hurt the next request.

The operations are driven through hypothesis directly (``as_strategy``) rather than the
schemathesis pytest plugin, which does not run under pytest 9.
"""

from __future__ import annotations

import json

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode

EXAMPLES_PER_ROUTE = 20
ROUTES = ("/v1/chat/completions", "/v1/completions", "/v1/moderations")
BENIGN = {"messages": [{"role": "user", "content": "hello there"}], "seed": 0}


def _fuzz_operation(op, mode, url: str, seen: list) -> list[str]:
    """Run one operation's examples; the failures as text (never raised: every operation runs)."""
    failures: list[str] = []

    @given(case=op.as_strategy(generation_mode=mode))
    @settings(max_examples=EXAMPLES_PER_ROUTE, deadline=None, suppress_health_check=list(HealthCheck),
              derandomize=True, database=None)
    def fuzz(case):
        response = case.call(base_url=url, timeout=120)
        seen.append(response.status_code)
        if response.status_code >= 500:
            failures.append(f"{mode.value} {case.method} {case.path} {case.body!r:.200} -> {response.text[:300]}")
        elif response.status_code >= 400 and case.path.startswith("/v1"):
            if set(response.json().get("error", {})) != {"message", "type", "param", "code"}:
                failures.append(f"{case.method} {case.path}: not OpenAI's error body: {response.text[:200]}")

    try:
        fuzz()
    except Exception as exc:  # a crash of the generator itself is a failure of this operation only
        failures.append(f"{mode.value} {op.method} {op.path}: {type(exc).__name__}: {exc}")
    return failures


@pytest.mark.slow
def test_no_generated_request_gives_a_5xx(server):
    url, state = server
    schema = schemathesis.openapi.from_url(url + "/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {op.path for op in operations} >= {*ROUTES, "/v1/models", "/health"}
    seen: list[int] = []
    failures = []
    for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
        for op in operations:
            if mode is GenerationMode.NEGATIVE and op.method.upper() != "POST":
                continue  # no parameters or body: there is nothing negative to generate
            failures += _fuzz_operation(op, mode, url, seen)
    assert not failures, "\n".join(failures)
    assert 200 in seen and 400 in seen  # both valid and rejected requests were really sent
    assert state.loop.is_alive
    assert httpx.post(url + ROUTES[0], json=BENIGN, timeout=60).status_code == 200


_big = st.sampled_from([2**31, 2**53 + 1, 2**63 - 1, 2**63, 2**64, 10**12, 10**30])
_json_values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70) | _big | st.floats()
    | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=6) | st.dictionaries(st.text(max_size=12), inner, max_size=6),
    max_leaves=20,
)
_fields = st.sampled_from(["prompt", "messages", "input", "max_tokens", "steps", "block_length", "seed", "n",
                           "temperature", "logit_bias", "stop", "stream", "eos_threshold", "refusal_text",
                           "remasking", "model", "stream_options", "max_completion_tokens"])
_BASES = {"/v1/chat/completions": BENIGN, "/v1/completions": {"prompt": "hello there", "max_tokens": 16},
          "/v1/moderations": {"input": "hello there"}}
_bodies = st.one_of(
    st.dictionaries(_fields, _json_values, max_size=6).map(lambda d: json.dumps(d).encode()),
    st.dictionaries(_fields, _json_values, min_size=1, max_size=3),  # a valid request with a few fields changed
    st.binary(max_size=200),
    st.integers(min_value=1, max_value=8).map(lambda k: b'{"prompt": "' + b"ab " * (k * 400_000) + b'"}'),
    st.integers(min_value=1, max_value=4).map(lambda k: json.dumps({"prompt": ["x y"] * (k * 3000)}).encode()),
)


@pytest.mark.slow
def test_random_and_oversized_bodies_never_hurt_the_next_request(server):
    url, state = server

    @given(route=st.sampled_from(ROUTES), body=_bodies)
    @settings(max_examples=120, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True,
              database=None)
    def throw(route, body):
        if isinstance(body, dict):
            body = json.dumps({**_BASES[route], **body}).encode()
        r = httpx.post(url + route, content=body, headers={"content-type": "application/json"}, timeout=120)
        assert r.status_code < 500, f"{route} {body[:200]!r} -> {r.status_code} {r.text[:300]}"
        if r.status_code >= 400:
            assert set(r.json()["error"]) == {"message", "type", "param", "code"}

    throw()
    assert state.loop.is_alive
    r = httpx.post(url + ROUTES[0], json=BENIGN, timeout=60)
    assert r.status_code == 200, r.text


NUMERIC_FIELDS = ["max_tokens", "steps", "block_length", "seed", "n", "temperature", "eos_threshold",
                  "parallel_threshold", "max_completion_tokens"]
EDGE_VALUES = [-(2**63) - 1, -1, 0, 1, 2**31, 2**53 + 1, 2**63 - 1, 2**63, 2**64, 10**30, 1e308, -0.0, 0.5, True,
               "16", None]


@pytest.mark.slow
def test_edge_numbers_in_every_numeric_field_are_answered_without_a_5xx(server):
    """Every numeric field at every edge of the ranges a JSON number can take (int64, float,
    strings, booleans): each answer is a 200 or a 4xx, and the engine keeps serving."""
    url, state = server
    failures = []
    for field in NUMERIC_FIELDS:
        for value in EDGE_VALUES:
            body = {**BENIGN, field: value}
            r = httpx.post(url + ROUTES[0], content=json.dumps(body), headers={"content-type": "application/json"},
                           timeout=120)
            if r.status_code >= 500:
                failures.append(f"{field}={value!r} -> {r.status_code} {r.text[:200]}")
    assert not failures, "\n".join(failures)
    assert state.loop.is_alive
    assert httpx.post(url + ROUTES[0], json=BENIGN, timeout=60).status_code == 200
