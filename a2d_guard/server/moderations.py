"""``POST /v1/moderations`` in OpenAI's shape, answered by the A2D ``Guard`` (DESIGN §10).

``input`` (a string or a list of strings) is checked as prompts (probe C). One documented
extension: ``messages`` (a chat) instead of ``input`` checks the last assistant message as a
response to the conversation before it (probe B); a chat that does not end with an
assistant message is checked as a prompt. Each result is OpenAI's ``{flagged, categories,
category_scores}`` with the one category ``"a2d"`` (score = the guard's p(EOS)), plus an
``a2d`` object saying where the model refuses (``where``, ``char_offset``, ``token_index``).
The guard uses the served model and the server's ``eos_threshold``, so the moderation
answer and the serving monitor agree.

Threads: the engine loop thread owns the engine and runs its forwards; the guard's forwards
run in a worker thread (``asyncio.to_thread``), never on the event loop, one check at a time
(a lock of this route's own). The model object is then used by two threads at once. That is
safe for what both do: inference under ``torch.no_grad`` on an ``eval()`` model, whose
forward reads the weights and writes only its own fresh activations (no KV cache or other
state is kept on the module; the engine's per-request state lives in its scheduler and
sequences, which the guard never touches).
"""

from __future__ import annotations

import asyncio
import threading
import uuid
from typing import TYPE_CHECKING

from fastapi import Depends, FastAPI
from pydantic import BaseModel

from a2d_guard.errors import A2DGuardError
from a2d_guard.gateway_shapes import moderation_result
from a2d_guard.server.protocol import STRICT, ChatMessage, RequestError, Text, chat_turns

if TYPE_CHECKING:  # pragma: no cover
    from a2d_guard.server.app import ServerState

MAX_INPUTS = 128  # strings per request: each is a forward row; more should be split by the client


class ModerationRequest(BaseModel):
    model_config = STRICT

    input: Text | list[Text] | None = None
    messages: list[ChatMessage] | None = None  # a2d-guard extension: check the last assistant turn
    model: Text | None = None

    def items(self) -> tuple[list, str]:
        """Guard items and the request field they came from (for error bodies)."""
        if (self.input is None) == (self.messages is None):
            raise RequestError("send either input (a string or a list of strings) or messages (a chat)",
                               param="input")
        if self.messages is not None:
            turns = chat_turns(self.messages)
            if turns[-1]["role"] == "assistant":
                return [(turns[:-1], turns[-1]["content"])], "messages"
            return [(turns, None)], "messages"
        inputs = [self.input] if isinstance(self.input, str) else self.input
        if not inputs:
            raise RequestError("input is an empty list; send at least one string", param="input")
        if len(inputs) > MAX_INPUTS:
            raise RequestError(f"input holds {len(inputs)} strings; send at most {MAX_INPUTS} per request",
                               param="input")
        return [(text, None) for text in inputs], "input"


class GuardChecks:
    """The server's one ``Guard`` on the served model, built on first use, one check at a time
    (a lock of its own: the engine loop is never blocked by it). Every guard route shares it:
    moderations, ``/classify``, LiteLLM's guardrail API."""

    def __init__(self, state: ServerState):
        self.state, self._lock, self._guard = state, threading.Lock(), None

    def _run(self, items: list) -> list:
        from a2d_guard.guard import Guard

        with self._lock:
            if self._guard is None:
                config = self.state.config
                threshold = min(max(config.eos_threshold, 1e-12), 1.0)  # 0 = flag everything
                self._guard = Guard.from_llm(self.state.llm, threshold=threshold, probe_length=config.gen_length,
                                             max_num_seqs=config.batch)
            return self._guard.check_batch(items)

    async def check(self, items: list, field: str) -> list:
        """Verdicts for ``items`` on a worker thread; a bad item is a 400 naming ``field``."""
        try:
            return await asyncio.to_thread(self._run, items)
        except RequestError:
            raise
        except A2DGuardError as exc:  # e.g. an input longer than the model takes
            raise RequestError(str(exc), param=field) from None


def check_model(state: ServerState, model: str | None) -> None:
    """404 naming ``model`` when a request names a model this server does not serve."""
    if model is not None and model != state.config.model_name:
        raise RequestError(f"the model {model!r} does not exist; this server serves {state.config.model_name!r}",
                           param="model", status=404, code="model_not_found")


def add_moderations(app: FastAPI, state: ServerState, check_request, checks: GuardChecks) -> None:
    """Register ``POST /v1/moderations`` on ``app`` (behind the server's auth and draining check)."""

    @app.post("/v1/moderations", dependencies=[Depends(check_request)])
    async def moderations(body: ModerationRequest) -> dict:
        check_model(state, body.model)
        items, field = body.items()
        verdicts = await checks.check(items, field)
        return {"id": f"modr-{uuid.uuid4().hex}", "model": state.config.model_name,
                "results": [moderation_result(v) for v in verdicts]}
