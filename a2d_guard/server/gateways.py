"""Routes in the shapes guardrail gateways already call, so a gateway adds A2D by configuration:

- ``POST /classify`` (and ``/v1/classify``): vLLM's classification API, which NeMo Guardrails'
  ``hf_classifier`` rail (engine ``vllm``) posts to. ``input`` (a string or a list) is checked
  as prompts (probe C); labels ``safe``/``unsafe`` with probabilities whose argmax equals the
  guard's ``flagged`` (``gateway_shapes.label_probs``).
- ``POST /beta/litellm_basic_guardrail_api``: LiteLLM's generic guardrail API. A call with
  ``structured_messages`` checks the conversation: a trailing assistant message as a response
  to the turns before it (probe B), else the last turns as a prompt (probe C). Without them
  (LiteLLM's response hook sends only the answer's ``texts``) each text is checked as a prompt.
  The answer is ``{"action": "BLOCKED", "blocked_reason"}`` or ``{"action": "NONE"}``.

Both sit behind the server's API key (LiteLLM sends it as ``x-api-key``), draining check and
error bodies, and share the server's one ``Guard`` (``moderations.GuardChecks``).
"""

from __future__ import annotations

import time
import uuid
from typing import TYPE_CHECKING, Any, Literal

from fastapi import Depends, FastAPI
from pydantic import BaseModel, ConfigDict

from a2d_guard.errors import A2DGuardError
from a2d_guard.gateway_shapes import classify_item, guardrail_items, litellm_answer
from a2d_guard.server.moderations import MAX_INPUTS, GuardChecks, check_model
from a2d_guard.server.protocol import STRICT, RequestError, Text

if TYPE_CHECKING:  # pragma: no cover
    from a2d_guard.server.app import ServerState


class ClassifyRequest(BaseModel):
    """vLLM's ``/classify`` body (the fields a text classifier uses)."""

    model_config = STRICT

    input: Text | list[Text]
    model: Text | None = None
    user: Text | None = None
    truncate_prompt_tokens: int | None = None
    priority: int = 0
    add_special_tokens: bool = True


class LiteLLMGuardrailRequest(BaseModel):
    """LiteLLM's generic guardrail request. Fields LiteLLM adds in later versions are ignored
    (``extra="ignore"``): the gateway, not its user, writes this body, and a proxy upgrade must
    not turn every check into a 400."""

    model_config = ConfigDict(extra="ignore", strict=True)

    input_type: Literal["request", "response"]
    texts: list[Text] | None = None
    structured_messages: list[dict[str, Any]] | None = None
    model: Text | None = None


def add_gateway_routes(app: FastAPI, state: ServerState, check_request, checks: GuardChecks) -> None:
    """Register the gateway routes on ``app``."""

    async def classify(body: ClassifyRequest) -> dict:
        check_model(state, body.model)
        inputs = [body.input] if isinstance(body.input, str) else body.input
        if not inputs or any(not text.strip() for text in inputs):
            raise RequestError("input holds an empty text; send the text to classify", param="input")
        if len(inputs) > MAX_INPUTS:
            raise RequestError(f"input holds {len(inputs)} texts; send at most {MAX_INPUTS} per request", param="input")
        verdicts = await checks.check([(text, None) for text in inputs], "input")
        return {"id": f"classify-{uuid.uuid4().hex}", "object": "list", "created": int(time.time()),
                "model": state.config.model_name, "data": [classify_item(i, v) for i, v in enumerate(verdicts)],
                "usage": {"prompt_tokens": 0, "total_tokens": 0}}

    app.post("/classify", dependencies=[Depends(check_request)])(classify)
    app.post("/v1/classify", dependencies=[Depends(check_request)], include_in_schema=False)(classify)

    @app.post("/beta/litellm_basic_guardrail_api", dependencies=[Depends(check_request)])
    async def litellm_guardrail(body: LiteLLMGuardrailRequest) -> dict:
        try:
            items, field = guardrail_items(body.input_type, body.texts, body.structured_messages)
        except A2DGuardError as exc:
            raise RequestError(str(exc), param=exc.param) from None
        if not items:
            return {"action": "NONE"}  # nothing to check (e.g. a tool-call-only answer)
        if len(items) > MAX_INPUTS:
            raise RequestError(f"{field} holds {len(items)} texts; send at most {MAX_INPUTS} per call", param=field)
        return litellm_answer(await checks.check(items, field))
