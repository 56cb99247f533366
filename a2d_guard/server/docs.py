"""``/openapi.json``, ``/docs`` and ``/redoc``, behind the API key when one is set.

Why our own routes: FastAPI's are always open, so a server with a key still told anyone
its routes and schema. And the schema tells the truth about errors: a body that fails
validation is a 400 with OpenAI's error body (``ErrorResponse``), never FastAPI's 422.
"""

from __future__ import annotations

from fastapi import Depends, FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.openapi.utils import get_openapi
from fastapi.responses import HTMLResponse, JSONResponse

from a2d_guard.server.protocol import ErrorResponse

_ERRORS = {
    "400": "Invalid request: the error names the field (param)",
    "401": "Missing or wrong API key",
    "413": "Request body larger than --max-body-bytes",
    "429": "The server is at capacity; retry later",
    "500": "Internal error (this request only)",
    "503": "Draining, or the engine stopped",
}


def openapi_schema(app: FastAPI) -> dict:
    """FastAPI's schema with every 422 replaced by the 4xx/5xx this server really answers."""
    if app.openapi_schema is not None:
        return app.openapi_schema
    schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    for model in (ErrorResponse,):
        definition = model.model_json_schema(ref_template="#/components/schemas/{model}")
        components.update(definition.pop("$defs", {}))
        components[model.__name__] = definition
    for name in ("HTTPValidationError", "ValidationError"):
        components.pop(name, None)
    ref = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorResponse"}}}}
    for path, operations in schema.get("paths", {}).items():
        for method, operation in operations.items():
            responses = operation.setdefault("responses", {})
            responses.pop("422", None)
            codes = ["400", "500"] if method == "post" else []
            if path.startswith("/v1/") or path in ("/openapi.json", "/docs", "/redoc"):
                codes += ["401"]
            if method == "post":
                codes += ["413", "429", "503"]
            if path == "/health":
                codes += ["503"]
            for code in codes:
                responses.setdefault(code, {"description": _ERRORS[code], **ref})
    app.openapi_schema = schema
    return schema


def add_docs(app: FastAPI, check_key) -> None:
    """Register the three docs routes; each needs the API key when the server has one."""
    guard = [Depends(check_key)]

    @app.get("/openapi.json", include_in_schema=False, dependencies=guard)
    async def openapi() -> JSONResponse:
        return JSONResponse(openapi_schema(app))

    @app.get("/docs", include_in_schema=False, dependencies=guard)
    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url="/openapi.json", title=f"{app.title} - docs")

    @app.get("/redoc", include_in_schema=False, dependencies=guard)
    async def redoc() -> HTMLResponse:
        return get_redoc_html(openapi_url="/openapi.json", title=f"{app.title} - ReDoc")
