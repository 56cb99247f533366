"""What stands between a client's bytes and the routes: the body-size limit, the last-resort
500, and the one message a schema error becomes.

Why ASGI middleware and not FastAPI handlers: a body must be refused *before* it is read
into memory (FastAPI reads it whole to parse it), and Starlette's own error middleware
re-raises after it answers a 500, so uvicorn closes the connection and the client's next
request on that keep-alive connection is reset. ``CatchAll`` answers and does not re-raise.
"""

from __future__ import annotations

import json
import logging

log = logging.getLogger("a2d_guard.server")


def _json(status: int, message: str, type: str, param: str | None = None, close: bool = False):
    body = json.dumps({"error": {"message": message, "type": type, "param": param, "code": None}}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if close:
        headers.append((b"connection", b"close"))
    return ({"type": "http.response.start", "status": status, "headers": headers},
            {"type": "http.response.body", "body": body, "more_body": False})


class BodyLimit:
    """413 for a body over ``max_bytes``: at once from ``Content-Length``, or as soon as a
    chunked body grows past it. The body is read here (at most ``max_bytes``) and replayed to
    the app, whose later ``receive()`` calls still see the client's disconnect."""

    def __init__(self, app, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            return await self.app(scope, receive, send)
        length = next((v for k, v in scope["headers"] if k == b"content-length"), None)
        if length is not None and (not length.isdigit() or int(length) > self.max_bytes):
            return await self._too_large(send)
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None  # the client left before its body arrived: nobody to answer
            size += len(message.get("body", b""))
            if size > self.max_bytes:
                return await self._too_large(send)
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body, replayed = b"".join(chunks), False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        return await self.app(scope, replay, send)

    async def _too_large(self, send) -> None:
        start, body = _json(413, f"the request body is larger than {self.max_bytes:,} bytes (--max-body-bytes); "
                                 "send a smaller request", "invalid_request_error", close=True)
        await send(start)
        await send(body)


class CatchAll:
    """An exception a route did not turn into an answer: 500 with OpenAI's error body, logged,
    not re-raised (so uvicorn keeps the connection). After a response started, the stream is
    ended cleanly instead of torn."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = complete = False

        async def tracked(message) -> None:
            nonlocal started, complete
            if message["type"] == "http.response.start":
                started = True
            elif message["type"] == "http.response.body" and not message.get("more_body", False):
                complete = True
            await send(message)

        try:
            await self.app(scope, receive, tracked)
        except Exception as exc:
            log.exception("internal error in %s %s", scope.get("method"), scope.get("path"))
            if not started:
                start, body = _json(500, f"internal error: {type(exc).__name__}", "internal_server_error")
                await send(start)
                await send(body)
            elif not complete:
                await send({"type": "http.response.body", "body": b"", "more_body": False})


# union members pydantic names in an error's loc ("prompt", "list[int]", 3): not request fields
def _is_field(part) -> bool:
    return isinstance(part, int) or (part != "body" and "[" not in str(part) and str(part) not in _TYPE_TAGS)


_TYPE_TAGS = {"str", "int", "float", "bool", "list", "dict", "none", "json-or-python"}
_SHAPES = {
    "prompt": "a string, a list of strings, a list of token ids (ints) or a list of lists of token ids",
    "stop": "a string or a list of at most 4 strings",
    "input": "a string or a list of strings",
    "content": "a string or a list of text parts",
}


def _union_prefix(err: dict) -> tuple | None:
    """The loc up to (not including) the first union-member tag, if the error has one."""
    loc = [p for p in err.get("loc", ()) if p != "body"]
    for i, part in enumerate(loc):
        if not _is_field(part):
            return tuple(loc[:i])
    return None


def _starts(err: dict, prefix: tuple) -> bool:
    loc = tuple(p for p in err.get("loc", ()) if p != "body")
    return loc[:len(prefix)] == prefix


def validation_message(errors: list[dict]) -> tuple[str, str | None]:
    """(message, param) for a request body that fails the schema: the first error's field, said
    as a user would (``prompt``, ``messages.0.content``), with the value's accepted shapes when
    it matched none of a union's."""
    err = errors[0]
    path = [p for p in err.get("loc", ()) if _is_field(p)]
    param = ".".join(str(p) for p in path) or None
    kind = err.get("type")
    if kind == "json_invalid":
        return f"the request body is not valid JSON: {err.get('ctx', {}).get('error', err['msg'])}", None
    if not path and kind in ("model_attributes_type", "dict_type", "model_type"):
        return "the request body must be a JSON object (with Content-Type: application/json)", None
    if kind == "extra_forbidden":
        return f"unknown field {param!r}: it is neither an OpenAI nor an a2d-guard request field", param
    if kind == "missing":
        return (f"{param} is required" if param else "the request body is required"), param
    prefix = _union_prefix(err)
    if prefix is not None:  # the value matched none of a union's shapes
        fields = [p for p in prefix if _is_field(p)]
        name = ".".join(str(p) for p in fields)
        ours = next((e for e in errors if e.get("type") == "value_error" and _starts(e, prefix)), None)
        if ours is not None:  # our own check (a lone surrogate) says the most
            where = ".".join(str(p) for p in ours["loc"] if _is_field(p))
            return f"{where} {str(ours['msg']).removeprefix('Value error, ')}", name
        shape = _SHAPES.get(str(fields[-1]) if fields else "")
        if shape is not None:
            return f"{name} must be {shape}", name
    if kind == "value_error":
        return f"{param} {str(err['msg']).removeprefix('Value error, ')}", param
    return (f"{param}: {err['msg']}" if param else err["msg"]), param
