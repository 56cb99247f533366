"""``POST /classify`` and ``POST /v1/moderations`` on a vLLM server, answered by the guard model
(and, through ``decode_routes.py``, ``/v1/completions`` and ``/v1/chat/completions``).

A ``vllm.endpoint_plugins`` entry point (loaded only when ``VLLM_PLUGINS`` names
``a2d_guard``). vLLM's own ``/classify`` tokenizes the raw text, but the guard scores probe C
(templated prompt + masks, ``probe_inputs.py``), so this plugin replaces that route: it builds
the canvas, sends its token ids through ``EngineClient.encode`` (the path vLLM's handler
uses; no new engine access) and answers in the shapes ``a2d-guard serve`` answers
(``gateway_shapes``): NeMo Guardrails' ``hf_classifier`` rail reads ``/classify``, OpenAI
clients ``/v1/moderations``. Bodies are checked by the same pydantic models as
``a2d-guard serve``; a bad one is a 400 in OpenAI's error shape naming the field, and it
never reaches the engine.

vLLM's raw ``POST /pooling`` is answered with a 404 that points to these routes (it would
score untemplated tokens).

A moderation ``messages`` chat that ends with an assistant turn is a response check (probe
B): its ``stride`` canvases go through the ``token_classify`` task, which returns p(EOS) at
every position, and the verdict is ``Guard``'s (``a2d_guard.probes``).
"""

from __future__ import annotations

import asyncio
import time
import uuid

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from a2d_guard.errors import A2DGuardError
from a2d_guard.gateway_shapes import classify_item, moderation_result
from a2d_guard.probes import Verdict
from a2d_guard.server.gateways import ClassifyRequest
from a2d_guard.server.moderations import MAX_INPUTS, ModerationRequest
from a2d_guard.server.protocol import RequestError
from a2d_guard.vllm.decode_routes import DecodeRoutes
from a2d_guard.vllm.http import error_response, parse_body
from a2d_guard.vllm.monitored_decode import P_EOS


class A2DGuardEndpoints:
    """The endpoint plugin (vLLM's ``EndpointPlugin`` protocol)."""

    name = "a2d_guard"
    required_tasks = ("classify",)

    def __init__(self):
        self.engine = None
        self.inputs = None
        self.names: list[str] = []

    # ------------------------------------------------------------------ vLLM's hooks

    def attach_router(self, app: FastAPI) -> None:
        app.add_api_route("/classify", self.classify, methods=["POST"])
        app.add_api_route("/v1/moderations", self.moderations, methods=["POST"])
        app.add_api_route("/pooling", self.pooling, methods=["POST"])
        decode = DecodeRoutes(self)
        app.add_api_route("/v1/completions", decode.completions, methods=["POST"])
        app.add_api_route("/v1/chat/completions", decode.chat_completions, methods=["POST"])

    async def init_state(self, engine_client, state, args) -> None:
        from a2d_guard.vllm.probe_inputs import ProbeInputs

        if engine_client is None:
            return  # vLLM's render-only server: the routes answer 503
        config = engine_client.model_config
        self.engine = engine_client
        self.inputs = await asyncio.to_thread(ProbeInputs, config.model, config.hf_config, config.max_model_len)
        served = config.served_model_name
        self.names = [served] if isinstance(served, str) else list(served or [config.model])

    # ------------------------------------------------------------------ routes

    async def classify(self, request: Request) -> JSONResponse:
        try:
            body = await self._body(request, ClassifyRequest)
            texts = [body.input] if isinstance(body.input, str) else body.input
            if not texts or any(not t.strip() for t in texts):
                raise RequestError("input holds an empty text; send the text to classify", param="input")
            verdicts = await self._verdicts([(t, None) for t in texts], "input")
        except RequestError as exc:
            return error_response(exc)
        return JSONResponse({"id": f"classify-{uuid.uuid4().hex}", "object": "list", "created": int(time.time()),
                             "model": self.names[0], "data": [classify_item(i, v) for i, v in enumerate(verdicts)],
                             "usage": {"prompt_tokens": 0, "total_tokens": 0}})

    async def moderations(self, request: Request) -> JSONResponse:
        try:
            body = await self._body(request, ModerationRequest)
            items, field = body.items()
            verdicts = await self._verdicts(items, field)
        except RequestError as exc:
            return error_response(exc)
        return JSONResponse({"id": f"modr-{uuid.uuid4().hex}", "model": self.names[0],
                             "results": [moderation_result(v) for v in verdicts]})

    async def pooling(self, request: Request) -> JSONResponse:
        """vLLM's raw ``/pooling`` would score untemplated tokens at a position that means nothing."""
        return error_response(RequestError("this server's model is the A2D guard: POST text to /classify or "
                                   "/v1/moderations, which template it and add the probe's masks", param="input",
                                   status=404, code="not_found", type="not_found_error"))

    # ------------------------------------------------------------------ helpers

    async def _body(self, request: Request, model):
        return await parse_body(request, model, self.engine, self.names)

    async def _verdicts(self, items: list[tuple], field: str) -> list[Verdict]:
        """``Guard.check_batch``'s verdicts for ``(prompt, response)`` items: the same probe
        canvases (``a2d_guard.probes``), every forward of every item in flight at once."""
        if len(items) > MAX_INPUTS:
            raise RequestError(f"{field} holds {len(items)} texts; send at most {MAX_INPUTS} per request",
                               param=field)
        try:
            plans = [self.inputs.plan(item, i, field) for i, item in enumerate(items)]
        except A2DGuardError as exc:
            raise RequestError(str(exc), param=exc.param or field) from None
        flat = await asyncio.gather(*(self._eos_at(c, r, p.where) for p in plans
                                      for c, r in zip(p.canvases, p.reads, strict=True)))  # one list per canvas
        values = iter(flat)
        return [self.inputs.probes.verdict(p, [next(values) for _ in p.canvases]) for p in plans]

    async def _eos_at(self, canvas: list[int], reads: list[int], where: str) -> list[float]:
        """p(EOS) at ``reads``: probe C through the ``classify`` task (one row through the LM
        head), probe B through ``token_classify`` (every row; the reads are spread out)."""
        from vllm import PoolingParams

        task = "classify" if where == "prompt" else "token_classify"
        final = None
        async for out in self.engine.encode({"prompt_token_ids": canvas}, PoolingParams(task=task),
                                            request_id=f"a2d-{uuid.uuid4().hex}"):
            final = out
        data = final.outputs.data
        if where == "prompt":
            return [float(data[1])]  # [1 - p, p] at the first response position (== reads[0])
        return [float(data[r, P_EOS]) for r in reads]
