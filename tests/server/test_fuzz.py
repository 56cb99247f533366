"""schemathesis over the app's own OpenAPI schema: generated requests (valid and not) to every
route of a real server, bounded in count; no input may produce a 5xx.

The operations are driven through hypothesis directly (``as_strategy``) rather than the
schemathesis pytest plugin, which does not run under pytest 9.
"""

from __future__ import annotations

import schemathesis
from hypothesis import HealthCheck, given, settings

EXAMPLES_PER_ROUTE = 25


def test_no_input_gives_a_5xx(server):
    url, state = server
    schema = schemathesis.openapi.from_url(url + "/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {op.path for op in operations} >= {"/v1/chat/completions", "/v1/completions", "/v1/models", "/health"}
    seen = []
    for op in operations:

        @given(case=op.as_strategy())
        @settings(max_examples=EXAMPLES_PER_ROUTE, deadline=None, suppress_health_check=list(HealthCheck),
                  derandomize=True, database=None)
        def fuzz(case):
            response = case.call(base_url=url, timeout=120)
            seen.append(response.status_code)
            assert response.status_code < 500, f"{case.method} {case.path} {case.body!r} -> {response.text[:300]}"
            if response.status_code >= 400 and case.path.startswith("/v1"):
                assert set(response.json()["error"]) == {"message", "type", "param", "code"}

        fuzz()
    assert 200 in seen and 400 in seen  # both valid and rejected requests were really sent
    assert state.loop.is_alive
