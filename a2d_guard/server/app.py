"""The OpenAI-compatible FastAPI app (DESIGN §9): routes, auth, backpressure, error bodies.

Every user mistake is a 4xx with OpenAI's error body naming the field; a 5xx means our
bug (or a request whose decode failed inside a step, which fails alone). An A2D rejection
is not an error: 200 with ``finish_reason: "content_filter"``.

One request never hurts another. Before a request is tokenized or queued it is bounded:
its body (``max_body_bytes``, 413), its text (characters per ``max_model_len``), its
samples (prompts x ``n`` <= ``samples_per_request``), its types (strict) and every sampling
value. Tokenization runs on a small worker pool, never on the event loop, so ``/health``
and running streams never wait on another request's prompt. An exception anywhere in a
route is a 500 with OpenAI's error body on a connection that stays open.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from a2d_guard import __version__
from a2d_guard.engine.input_processor import InputProcessor, RequestLimits
from a2d_guard.errors import A2DGuardError
from a2d_guard.server.docs import add_docs, openapi_schema
from a2d_guard.server.engine_loop import EngineLoop, EngineUnavailable
from a2d_guard.server.gateways import add_gateway_routes
from a2d_guard.server.generation import Generation
from a2d_guard.server.guards import BodyLimit, CatchAll, validation_message
from a2d_guard.server.metrics import ServerMetrics
from a2d_guard.server.moderations import GuardChecks, add_moderations
from a2d_guard.server.params import request_field, sampling_params
from a2d_guard.server.protocol import ChatCompletionRequest, CompletionRequest, RequestError, _Request, error_body
from a2d_guard.server.settings import ServerConfig

TOKENIZER_THREADS = 2  # tokenization workers: enough to overlap, few enough to leave the engine its cores

log = logging.getLogger("a2d_guard.server")


class ServerState:
    """What the routes share: the model, the engine loop, the metrics and the draining flag."""

    def __init__(self, llm, config: ServerConfig):
        self.llm, self.config = llm, config
        if config.max_model_len is not None:  # the server's bound on what one request may take
            llm.engine.processor = InputProcessor(llm.tokenizer, llm.spec,
                                                  RequestLimits.for_model(llm.spec, config.max_model_len))
        self.processor: InputProcessor = llm.engine.processor
        self.metrics = ServerMetrics()
        self.loop = EngineLoop(llm.engine, self.metrics)
        self.defaults = config.default_params()
        self.draining = False
        self.created = int(time.time())
        self.api_key = config.read_api_key()
        self.replica: str | None = None  # the Ray Serve replica this app runs on (serve --replicas)
        # serve --replicas: async (this replica's exposition) -> every replica's, labelled (ray_app)
        self.cluster_metrics = None
        self.open_responses = 0  # generations whose answer is not fully sent yet (drain waits on them)
        self.tokenizers = ThreadPoolExecutor(TOKENIZER_THREADS, thread_name_prefix="a2d-tokenize")

    def render_metrics(self) -> bytes:
        """This server's Prometheus exposition, the gauges read now."""
        running = self.llm.engine.num_running
        return self.metrics.render(running, max(0, self.loop.num_pending - running))

    async def off_loop(self, fn, *args):
        """``fn(*args)`` on the tokenizer pool (tokenizing a long prompt must not stall the event loop)."""
        return await asyncio.get_running_loop().run_in_executor(self.tokenizers, fn, *args)

    @property
    def capacity(self) -> int:
        """Requests the server holds at once: running slots plus the waiting queue."""
        return self.config.batch + self.config.max_waiting


def build_app(llm, config: ServerConfig, on_ready=None) -> FastAPI:
    """The app for one loaded ``LLM``; the engine loop runs while the app's lifespan does."""
    state = ServerState(llm, config)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        state.loop.start()
        if on_ready is not None:
            on_ready(state)
        try:
            yield
        finally:
            state.draining = True
            await asyncio.to_thread(state.loop.stop, 10.0)
            state.tokenizers.shutdown(wait=False, cancel_futures=True)

    app = FastAPI(title="a2d-guard", version=__version__, lifespan=lifespan, openapi_url=None, docs_url=None,
                  redoc_url=None, description="OpenAI-compatible server for diffusion LMs with the A2D safety "
                                              "monitor.")
    app.state.server = state
    _install_error_handlers(app)
    app.add_middleware(BodyLimit, max_bytes=config.max_body_bytes)
    app.add_middleware(CatchAll)  # outermost of ours: a 500 body, and the connection stays open

    key = state.api_key.encode("utf-8") if state.api_key is not None else None

    async def check_key(request: Request) -> None:  # async: no thread-pool hop per request
        """The API key (``Authorization: Bearer KEY`` or ``x-api-key: KEY``), compared as the
        UTF-8 bytes clients send (never decoded as Latin-1)."""
        if key is None:
            return
        headers = dict(request.scope["headers"])
        scheme, _, token = headers.get(b"authorization", b"").partition(b" ")
        if scheme.lower() != b"bearer":  # LiteLLM's guardrail client sends the key as x-api-key
            token = headers.get(b"x-api-key", b"")
        if not hmac.compare_digest(token.strip(), key):
            raise RequestError("missing or wrong API key; send 'Authorization: Bearer <key>'", status=401,
                               type="invalid_request_error", code="invalid_api_key")

    async def check_request(request: Request) -> None:
        await check_key(request)
        if state.draining or not state.loop.is_alive:
            raise RequestError("the server is shutting down or its engine stopped; retry on another replica",
                               status=503, type="service_unavailable", code="unavailable")

    @app.get("/health")
    async def health() -> Response:
        ok = state.loop.is_alive and not state.draining
        status = "ok" if ok else ("draining" if state.draining else "engine stopped")
        body = {"status": status, "engine_restarts": state.loop.restarts}
        if state.loop.error:
            body["error"] = state.loop.error
        if state.replica is not None:
            body["replica"] = state.replica
        return JSONResponse(body, status_code=200 if ok else 503)

    @app.get("/metrics")
    async def metrics() -> Response:
        body = state.render_metrics()
        if state.cluster_metrics is not None:
            body = await state.cluster_metrics(body)
        return Response(body, media_type=state.metrics.content_type)

    @app.get("/v1/models", dependencies=[Depends(check_request)])
    async def models() -> dict:
        return {"object": "list", "data": [{
            "id": config.model_name, "object": "model", "created": state.created, "owned_by": "a2d-guard",
            "root": config.model, "max_model_len": state.processor.limits.max_model_len}]}

    @app.post("/v1/chat/completions", dependencies=[Depends(check_request)])
    async def chat_completions(body: ChatCompletionRequest, request: Request) -> Response:
        _check_model(body, config)
        max_tokens = body.max_completion_tokens if body.max_completion_tokens is not None else body.max_tokens
        if body.max_completion_tokens is not None and body.max_tokens not in (None, body.max_completion_tokens):
            raise RequestError("max_tokens and max_completion_tokens differ; send one of them",
                               param="max_completion_tokens")
        turns = body.turns()
        _check_samples(state, 1, body.n)
        with _named("messages"):
            ids = await state.off_loop(lambda: state.processor.encode_messages(turns, chat=llm.chat_template))
        return await _serve(state, request, body, [ids], max_tokens, chat=True)

    @app.post("/v1/completions", dependencies=[Depends(check_request)])
    async def completions(body: CompletionRequest, request: Request) -> Response:
        _check_model(body, config)
        prompts = body.prompts()
        _check_samples(state, len(prompts), body.n)
        with _named("prompt"):
            ids = await state.off_loop(_encode_prompts, state.processor, prompts)
        return await _serve(state, request, body, ids, body.max_tokens, chat=False)

    checks = GuardChecks(state)
    add_moderations(app, state, check_request, checks)  # the Guard's route (DESIGN §10)
    add_gateway_routes(app, state, check_request, checks)  # /classify, LiteLLM's guardrail API
    app.openapi = lambda: openapi_schema(app)  # 400s (OpenAI's error body), never FastAPI's 422
    if config.docs:
        add_docs(app, check_key)
    return app


def _encode_prompts(processor: InputProcessor, prompts: list) -> list[list[int]]:
    """Each completion prompt as canvas ids: text (no chat template) or token ids checked."""
    return [processor.encode_prompt(p, chat=False) if isinstance(p, str) else processor.token_ids(p)
            for p in prompts]


class _named:
    """``with _named("prompt"):`` turns an ``A2DGuardError`` into a 400 naming its field."""

    def __init__(self, default: str):
        self.default = default

    def __enter__(self):
        return self

    def __exit__(self, kind, exc, tb) -> bool:
        if exc is None or isinstance(exc, RequestError) or not isinstance(exc, A2DGuardError):
            return False
        param = request_field(exc.param) or self.default
        if param == "prompt" and self.default == "messages":
            param = "messages"
        raise RequestError(str(exc), param=param) from None


def _check_samples(state: ServerState, num_prompts: int, n: int) -> None:
    """Prompts x n within this request's share of the server, before anything is tokenized."""
    limit = state.config.samples_per_request
    if num_prompts * n > limit:
        raise RequestError(f"this request asks for {num_prompts} prompt(s) x n={n} = {num_prompts * n} samples; "
                           f"one request may take at most {limit} (--max-samples-per-request); split it",
                           param="prompt" if num_prompts > 1 else "n")


def _check_model(body: _Request, config: ServerConfig) -> None:
    body.check_unsupported()
    if body.model is not None and body.model != config.model_name:
        raise RequestError(f"the model {body.model!r} does not exist; this server serves {config.model_name!r}",
                           param="model", status=404, code="model_not_found")


async def _serve(state: ServerState, request: Request, body: _Request, prompts: list[list[int]],
                 max_tokens: int | None, chat: bool) -> Response:
    params = sampling_params(body, state.defaults, max_tokens, state.processor.limits.max_model_len)
    with _named("messages" if chat else "prompt"):
        for ids in prompts:
            state.processor.check(ids, params[0])
    count = len(prompts) * len(params)
    if count > state.capacity:
        raise RequestError(f"this request asks for {count} samples but the server holds at most "
                           f"{state.capacity} at once; send fewer prompts or a smaller n", param="prompt")
    if state.loop.num_pending + count > state.capacity:
        state.metrics.overloaded.inc()
        raise RequestError("the server is at capacity (all slots busy and the waiting queue full); retry later",
                           status=429, type="requests", code="rate_limit_exceeded")
    http_id = f"{'chatcmpl' if chat else 'cmpl'}-{uuid.uuid4().hex}"
    gen = Generation(state.loop, state.llm.tokenizer, http_id, prompts, params, body.stop, body.stream)
    try:
        gen.submit()
    except EngineUnavailable:
        raise RequestError("the engine stopped; retry on another replica", status=503,
                           type="service_unavailable", code="unavailable") from None
    shape = _Shape(http_id, state.config.model_name, chat, sum(len(p) for p in prompts))
    state.open_responses += 1
    if body.stream:
        return StreamingResponse(_stream(state, gen, shape, body.include_usage), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
    try:
        if not await _finish_or_disconnect(gen, request):
            return Response(status_code=499)  # the client is gone: nobody reads this
    finally:
        state.open_responses -= 1
    failed = [c for c in gen.choices if c.error]
    if failed:
        return JSONResponse(_failure_body(failed[0]), status_code=failed[0].error_status)
    return JSONResponse(shape.response(gen.choices))


def _failure_body(c) -> dict:
    if c.error_status == 503:
        return error_body(c.error, "service_unavailable", code="unavailable")
    return error_body(f"decoding failed: {c.error}", "internal_server_error", code="decode_failed")


async def _finish_or_disconnect(gen: Generation, request: Request) -> bool:
    """Wait for every sample; False (and abort them) if the client disconnects first."""

    async def consume():
        async for _ in gen.updates():
            pass

    async def disconnected():
        while (await request.receive())["type"] != "http.disconnect":
            pass

    work, watch = asyncio.create_task(consume()), asyncio.create_task(disconnected())
    try:
        done, _ = await asyncio.wait({work, watch}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watch.cancel()
    if work in done:
        work.result()
        return True
    work.cancel()
    gen.abort_unfinished()
    return False


async def _stream(state: ServerState, gen: Generation, shape: _Shape, include_usage: bool):
    """SSE: a first chunk (chat: the role), visible-text deltas, a final chunk per sample, [DONE]."""
    try:
        if shape.chat:
            for c in gen.choices:
                yield shape.sse(shape.chunk(c.index, {"role": "assistant", "content": ""}))
        async for c, delta in gen.updates():
            if c.error:
                yield shape.sse(_failure_body(c))
                continue
            if delta:
                yield shape.sse(shape.chunk(c.index, {"content": delta} if shape.chat else delta))
            if c.finish_reason is not None:
                yield shape.sse(shape.chunk(c.index, {} if shape.chat else "", c.finish_reason, c.a2d))
        if include_usage:
            yield shape.sse({**shape.head(), "choices": [], "usage": shape.usage(gen.choices)})
        yield "data: [DONE]\n\n"
    finally:  # the client went away (or we are done): free every slot still held
        gen.abort_unfinished()
        state.open_responses -= 1


class _Shape:
    """OpenAI's response and chunk objects for one request."""

    def __init__(self, http_id: str, model: str, chat: bool, prompt_tokens: int):
        self.id, self.model, self.chat, self.prompt_tokens = http_id, model, chat, prompt_tokens
        self.created = int(time.time())

    def head(self, chunk: bool = True) -> dict:
        obj = ("chat.completion.chunk" if chunk else "chat.completion") if self.chat else "text_completion"
        return {"id": self.id, "object": obj, "created": self.created, "model": self.model}

    def usage(self, choices) -> dict:
        completion = sum(c.num_tokens for c in choices)
        return {"prompt_tokens": self.prompt_tokens, "completion_tokens": completion,
                "total_tokens": self.prompt_tokens + completion}

    def chunk(self, index: int, delta, finish_reason: str | None = None, a2d: dict | None = None) -> dict:
        choice = {"index": index, "logprobs": None, "finish_reason": finish_reason}
        choice.update({"delta": delta} if self.chat else {"text": delta})
        if a2d is not None:
            choice["a2d"] = a2d
        return {**self.head(), "choices": [choice]}

    def response(self, choices) -> dict:
        out = []
        for c in choices:
            body = {"message": {"role": "assistant", "content": c.text}} if self.chat else {"text": c.text}
            out.append({"index": c.index, **body, "logprobs": None, "finish_reason": c.finish_reason, "a2d": c.a2d})
        return {**self.head(chunk=False), "choices": out, "usage": self.usage(choices)}

    @staticmethod
    def sse(obj: dict) -> str:
        return f"data: {json.dumps(obj, separators=(',', ':'))}\n\n"


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestError)
    async def request_error(_: Request, exc: RequestError) -> JSONResponse:
        headers = {"Retry-After": "1"} if exc.status == 429 else None
        return JSONResponse(exc.body(), status_code=exc.status, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        message, param = validation_message(exc.errors())
        return JSONResponse(error_body(message, "invalid_request_error", param), status_code=400)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        kind = "not_found_error" if exc.status_code == 404 else "invalid_request_error"
        return JSONResponse(error_body(str(exc.detail), kind), status_code=exc.status_code,
                            headers=getattr(exc, "headers", None))
