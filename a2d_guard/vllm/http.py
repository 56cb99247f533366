"""Body parsing and error answers shared by the plugin's routes (``endpoints.py``,
``decode_routes.py``): OpenAI's error shape, the field named, the same pydantic models and
messages as ``a2d-guard serve``."""

from __future__ import annotations

import json

from fastapi import Request
from fastapi.responses import JSONResponse
from pydantic import ValidationError

from a2d_guard.server.guards import validation_message
from a2d_guard.server.protocol import RequestError, error_body


async def parse_body(request: Request, model, engine, names: list[str]):
    """``model`` validated from the request's JSON; ``RequestError`` (a 4xx) naming the field."""
    if engine is None:
        raise RequestError("the A2D guard has no engine on this server", status=503, type="server_error")
    try:
        raw = json.loads(await request.body())
    except (ValueError, UnicodeDecodeError):
        raise RequestError("the body is not valid JSON; send a JSON object", param="body") from None
    try:
        body = model.model_validate(raw)
    except ValidationError as exc:
        message, param = validation_message(exc.errors())
        raise RequestError(message, param=param) from None
    if body.model is not None and body.model not in names:
        raise RequestError(f"the model {body.model!r} does not exist; this server serves {names[0]!r}",
                           param="model", status=404, code="model_not_found")
    return body


def error_response(exc: RequestError) -> JSONResponse:
    return JSONResponse(error_body(str(exc), exc.type, exc.param, exc.code), status_code=exc.status)
