"""OpenAI error bodies for what Ray Serve's HTTP proxy answers itself (``serve --replicas``).

Why: a replica's own answers are the single server's (its app sends OpenAI's error body for
every 4xx/5xx), but some answers never reach a replica. When every replica is full and the
router's queue too, Ray answers 503 "Request dropped due to backpressure" as text/plain;
when the replica holding a request dies, the proxy sends nothing at all (uvicorn then
writes a bare 500), and a stream it was sending just stops. OpenAI clients read neither.
This ASGI middleware wraps the proxy and rewrites exactly those cases (Ray 2.60 removed
``HTTPOptions.middlewares``; middlewares on the ingress app cannot see these answers; the
proxy still loads middlewares from the import path in ``RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH``,
read from the proxy's environment, so ``install()`` sets it before a local cluster starts,
and the nodes of an existing cluster need it in theirs):

- back-pressure: 429 ``rate_limit_exceeded``, the single server's answer when it is full;
- a request whose replica died before it answered: 503 ``service_unavailable`` (OpenAI
  clients retry a 503; the request was not decoded to the end anywhere, so a retry is not
  a duplicate);
- a stream cut by a dead replica: an error chunk, then ``data: [DONE]``, as the single
  server ends a stream it cannot finish;
- Ray's other text/plain errors (timeout 408, deployment unavailable 503): the same status
  with OpenAI's body.

A JSON answer (every answer from our app) passes through untouched.
"""

from __future__ import annotations

import asyncio
import json

PROXY_CALLBACK_ENV = "RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH"
PROXY_CALLBACK = "a2d_guard.server.ray_proxy.proxy_middlewares"
BACKPRESSURE = "Request dropped due to backpressure"
DIED = ("the replica serving this request stopped before it answered; retry (Ray Serve starts a new replica, "
        "the others keep serving)")


def install() -> None:
    """Have Ray Serve proxies started from this process's environment load ``proxy_middlewares``
    (before ``ray.init`` starts a local cluster: its processes inherit this environment)."""
    import os

    os.environ[PROXY_CALLBACK_ENV] = PROXY_CALLBACK


def proxy_middlewares() -> list:
    """The proxy's callback: the middlewares it wraps its ASGI app in."""
    from starlette.middleware import Middleware

    return [Middleware(OpenAIErrorBodies)]


def _error(message: str, type: str, code: str | None) -> bytes:
    from a2d_guard.server.protocol import error_body

    return json.dumps(error_body(message, type, None, code)).encode()


def rewrite(status: int, text: str) -> tuple[int, bytes]:
    """Ray's own text/plain error (status, text) as (status, OpenAI error body)."""
    if BACKPRESSURE in text:
        return 429, _error("every replica is at capacity (all slots busy and the waiting queues full); retry later",
                           "requests", "rate_limit_exceeded")
    if status == 408:
        return 408, _error(f"the request timed out in Ray Serve: {text}", "timeout", "timeout")
    if status >= 500:
        return 503, _error(f"{DIED} ({text.strip() or 'no answer'})" if status == 500 else text,
                           "service_unavailable", "unavailable")
    return status, _error(text, "invalid_request_error", None)


class OpenAIErrorBodies:
    """ASGI middleware for the Ray Serve proxy; see the module docstring."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        state = {"started": False, "done": False, "sse": False, "held": None, "body": b""}

        async def forward(message):
            kind = message["type"]
            if kind == "http.response.start":
                ctype = dict(message.get("headers") or []).get(b"content-type", b"")
                if message["status"] >= 400 and not ctype.startswith(b"application/json"):
                    state["held"] = message["status"]  # Ray's own text: rewritten once whole
                    return
                state["started"], state["sse"] = True, ctype.startswith(b"text/event-stream")
                return await send(message)
            if kind == "http.response.body" and state["held"] is not None:
                state["body"] += message.get("body", b"")
                if not message.get("more_body", False):
                    status, body = rewrite(state["held"], state["body"].decode("utf-8", "replace"))
                    await _send_json(send, status, body)
                    state["started"] = state["done"] = True
                return
            if kind == "http.response.body" and not message.get("more_body", False):
                state["done"] = True
            return await send(message)

        try:
            await self.app(scope, receive, forward)
        except asyncio.CancelledError:  # the client went away: nobody to answer
            raise
        except Exception:
            await _answer_unfinished(send, state)
            raise
        await _answer_unfinished(send, state)


async def _answer_unfinished(send, state: dict) -> None:
    """No answer yet: 503; a stream cut short: an error chunk and [DONE]; otherwise nothing."""
    if not state["started"]:
        status, body = rewrite(500, "")
        await _send_json(send, status, body)
    elif state["sse"] and not state["done"]:
        chunk = b"data: " + _error(DIED, "service_unavailable", "unavailable") + b"\n\n"
        await send({"type": "http.response.body", "body": chunk + b"data: [DONE]\n\n", "more_body": False})


async def _send_json(send, status: int, body: bytes) -> None:
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if status in (429, 503):
        headers.append((b"retry-after", b"1"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})
