"""``POST /v1/completions`` and ``POST /v1/chat/completions`` on a vLLM server: LLaDA / Dream
decoding with the A2D monitor, each denoising step one ``token_classify`` forward of vLLM's
engine (``monitored_decode.py`` says why), answered in ``a2d-guard serve``'s shapes: a
rejected sample has ``finish_reason="content_filter"``, the request's ``refusal_text`` as
text (without one: what was committed left of the rejection, as ``LLM.generate`` answers),
and ``a2d: {p_eos, reject_step, steps}``.

Bodies are the server's pydantic models and ``server.params.sampling_params`` (the same
defaults fitted to ``max_tokens``, the same 400s naming the field); what the step
statistics cannot decode (``temperature > 0``, other remasking modes, ``logit_bias``) and
what this route does not do (``stream``, ``stop``) are 400s naming the field, before the
engine sees anything. The per-request threshold is the body's ``eos_threshold`` (default:
the model's ``a2d_eos_threshold``).
"""

from __future__ import annotations

import asyncio
import time
import uuid

from fastapi import Request
from fastapi.responses import JSONResponse

from a2d_guard.config import SamplingParams
from a2d_guard.diffusion.canvas import check_request
from a2d_guard.engine.output_processor import answer_text
from a2d_guard.errors import A2DGuardError
from a2d_guard.server.params import request_field, sampling_params
from a2d_guard.server.protocol import ChatCompletionRequest, CompletionRequest, RequestError
from a2d_guard.vllm.http import error_response, parse_body
from a2d_guard.vllm.monitored_decode import check_params, monitored_decode

MAX_SAMPLES = 64  # prompts x n per request


class DecodeRoutes:
    """The two routes; ``plugin`` (``endpoints.A2DGuardEndpoints``) holds the engine and inputs."""

    def __init__(self, plugin):
        self.plugin = plugin

    async def completions(self, request: Request) -> JSONResponse:
        try:
            body = await self._body(request, CompletionRequest)
            prompts = [(p, False) for p in body.prompts()]
            return await self._serve(request, body, prompts, body.max_tokens, "prompt", chat=False)
        except RequestError as exc:
            return error_response(exc)

    async def chat_completions(self, request: Request) -> JSONResponse:
        try:
            body = await self._body(request, ChatCompletionRequest)
            max_tokens = body.max_completion_tokens if body.max_completion_tokens is not None else body.max_tokens
            if body.max_completion_tokens is not None and body.max_tokens not in (None, body.max_completion_tokens):
                raise RequestError("max_tokens and max_completion_tokens differ; send one of them",
                                   param="max_completion_tokens")
            return await self._serve(request, body, [(body.turns(), True)], max_tokens, "messages", chat=True)
        except RequestError as exc:
            return error_response(exc)

    # ------------------------------------------------------------------ helpers

    async def _body(self, request: Request, model):
        body = await parse_body(request, model, self.plugin.engine, self.plugin.names)
        body.check_unsupported()
        if body.stream:
            raise RequestError("stream=true is not available on the vLLM guard; send stream=false (or use "
                               "a2d-guard serve, which streams)", param="stream")
        if body.stop:
            raise RequestError("stop is not available on the vLLM guard; leave it unset (or use a2d-guard serve)",
                               param="stop")
        return body

    async def _serve(self, request: Request, body, prompts: list, max_tokens, field: str, chat: bool) -> JSONResponse:
        inputs = self.plugin.inputs
        if len(prompts) * body.n > MAX_SAMPLES:
            raise RequestError(f"{len(prompts)} prompts x n={body.n} is more than {MAX_SAMPLES} samples; send "
                               "fewer prompts or a smaller n", param="n" if body.n > 1 else field)
        defaults = SamplingParams(eos_threshold=inputs.settings.threshold)
        samples = sampling_params(body, defaults, max_tokens, max_model_len=inputs.max_model_len)
        try:
            ids = [await asyncio.to_thread(inputs.prompt_ids, p, field, c) for p, c in prompts]
            for params in samples:
                check_params(params)
                for prompt_ids in ids:
                    check_request(inputs.spec, prompt_ids, params, inputs.max_model_len, param=field)
        except A2DGuardError as exc:
            raise RequestError(str(exc), param=request_field(exc.param) or field) from None
        async with asyncio.TaskGroup() as group:  # one failure cancels the request's other samples
            tasks = [group.create_task(self._decode(request, prompt_ids, params))
                     for prompt_ids in ids for params in samples]
        outcomes = [t.result() for t in tasks]
        return JSONResponse(self._response(outcomes, samples, sum(len(p) for p in ids), chat))

    async def _decode(self, request: Request, prompt_ids: list[int], params: SamplingParams) -> dict:
        spec = self.plugin.inputs.spec
        steps = monitored_decode(prompt_ids, params, spec.mask_id, spec.end_ids)
        canvas = next(steps)
        while True:
            if await request.is_disconnected():  # nobody to answer: stop sending steps
                raise asyncio.CancelledError
            try:
                canvas = steps.send(await self._step(canvas))
            except StopIteration as done:
                return done.value

    async def _step(self, canvas: list[int]):
        from vllm import PoolingParams

        final = None
        async for out in self.plugin.engine.encode({"prompt_token_ids": canvas}, PoolingParams(task="token_classify"),
                                                   request_id=f"a2d-step-{uuid.uuid4().hex}"):
            final = out
        return final.outputs.data  # [L, STATS]

    def _response(self, outcomes: list[dict], samples: list[SamplingParams], prompt_tokens: int, chat: bool) -> dict:
        tokenizer = self.plugin.inputs.tokenizer
        choices = []
        for index, out in enumerate(outcomes):
            params = samples[index % len(samples)]
            text = answer_text(tokenizer, out["token_ids"], out["finish_reason"], params.refusal_text)
            content = {"message": {"role": "assistant", "content": text}} if chat else {"text": text}
            choices.append({"index": index, **content, "logprobs": None, "finish_reason": out["finish_reason"],
                            "a2d": {"p_eos": out["p_eos"], "reject_step": out["reject_step"], "steps": out["steps"]}})
        completion = sum(len(o["token_ids"]) for o in outcomes)
        return {"id": f"{'chatcmpl' if chat else 'cmpl'}-{uuid.uuid4().hex}",
                "object": "chat.completion" if chat else "text_completion", "created": int(time.time()),
                "model": self.plugin.names[0], "choices": choices,
                "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion,
                          "total_tokens": prompt_tokens + completion}}
