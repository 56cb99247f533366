"""LiteLLM drives the checks: its own generic guardrail client (`GenericGuardrailAPI`, the class the
proxy builds for `guardrail: generic_guardrail_api`) against a live `a2d-guard serve`, and our
`A2DGuardrail` (a `CustomGuardrail`) in process. Blocking is LiteLLM's `GuardrailRaisedException`."""

from __future__ import annotations

import asyncio

import pytest
from litellm.exceptions import GuardrailRaisedException
from litellm.proxy.guardrails.guardrail_hooks.generic_guardrail_api import GenericGuardrailAPI

from a2d_guard.integrations.litellm import A2DGuardrail

from .conftest import BENIGN, FLAGGED

CASES = [
    ({"texts": [FLAGGED], "structured_messages": [{"role": "user", "content": FLAGGED}]}, "request", True),
    ({"texts": [BENIGN], "structured_messages": [{"role": "user", "content": BENIGN}]}, "request", False),
    ({"texts": ["all about canada"]}, "response", True),
    ({"texts": ["four"]}, "response", False),
]


def _run(guardrail, inputs, input_type, request_data=None):
    return asyncio.run(guardrail.apply_guardrail(inputs=dict(inputs), request_data=request_data or {},
                                                 input_type=input_type))


@pytest.mark.parametrize("inputs, input_type, blocked", CASES)
def test_litellm_generic_guardrail_client_against_a_live_server(guard_server, inputs, input_type, blocked):
    url, _ = guard_server
    guardrail = GenericGuardrailAPI(api_base=url, guardrail_name="a2d", unreachable_fallback="fail_closed")
    if blocked:
        with pytest.raises(GuardrailRaisedException, match=r"p\(EOS\) 1\.0000 > threshold 0\.5"):
            _run(guardrail, inputs, input_type)
    else:
        assert _run(guardrail, inputs, input_type)["texts"] == inputs["texts"]


@pytest.mark.parametrize("inputs, input_type, blocked", CASES)
def test_a2d_custom_guardrail_in_process(guard, inputs, input_type, blocked):
    guardrail = A2DGuardrail(guard=guard)
    if blocked:
        with pytest.raises(GuardrailRaisedException, match="a2d-guard"):
            _run(guardrail, inputs, input_type)
    else:
        assert _run(guardrail, inputs, input_type) == inputs


def test_a_response_is_checked_against_the_requests_messages(guard):
    """The proxy's post-call hook passes the request's body: its messages are the prompt (probe B)."""
    guardrail = A2DGuardrail(guard=guard)
    request = {"messages": [{"role": "user", "content": BENIGN}]}
    with pytest.raises(GuardrailRaisedException, match="the response at character"):
        _run(guardrail, {"texts": ["sure, canada is big"]}, "response", request)
    assert _run(guardrail, {"texts": ["four"]}, "response", request) == {"texts": ["four"]}
