"""Request and response shapes of the OpenAI API, as vLLM serves them (DESIGN §9).

Why strict: a field OpenAI does not have and we do not define is a 400 naming it (a typo
like ``max_token`` must not be ignored silently), while the OpenAI fields we do not
implement (``top_p``, penalties, ``logprobs``, ``tools``, ...) are accepted at their
neutral values, so LangChain-style clients that always send them keep working, and are a
400 naming the field otherwise. The diffusion parameters sit at the top level of the body,
as vLLM's ``extra_body`` puts them.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from a2d_guard.errors import A2DGuardError

MAX_N = 8

# OpenAI fields we accept but do not implement -> is this value neutral (changes nothing)?
_NEUTRAL: dict[str, Any] = {
    "top_p": lambda v: v is None or v == 1,
    "frequency_penalty": lambda v: v is None or v == 0,
    "presence_penalty": lambda v: v is None or v == 0,
    "logprobs": lambda v: v in (None, False, 0),
    "top_logprobs": lambda v: v in (None, 0),
    "best_of": lambda v: v in (None, 1),
    "echo": lambda v: v in (None, False),
    "suffix": lambda v: v in (None, ""),
    "tools": lambda v: not v,
    "tool_choice": lambda v: v in (None, "none", "auto"),
    "functions": lambda v: not v,
    "function_call": lambda v: v in (None, "none", "auto"),
    "parallel_tool_calls": lambda v: True,  # meaningless without tools
    "response_format": lambda v: v is None or (isinstance(v, dict) and v.get("type") == "text"),
    "modalities": lambda v: v is None or list(v) == ["text"],
    "audio": lambda v: v is None,
    "prediction": lambda v: v is None,
    "reasoning_effort": lambda v: v is None,
    "web_search_options": lambda v: v is None,
    "service_tier": lambda v: True,  # a billing hint: nothing to change here
    "store": lambda v: v in (None, False),
    "metadata": lambda v: True,  # only stored with ``store``
}


class _Request(BaseModel):
    """Fields common to both routes. Unknown fields are rejected (``extra="forbid"``)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    model: str | None = None
    max_tokens: int | None = Field(default=None, description="The diffusion canvas length (gen_length).")
    temperature: float | None = Field(default=None, ge=0)
    seed: int | None = Field(default=None, ge=0)
    logit_bias: dict[str, float] | None = None
    stop: str | list[str] | None = Field(default=None, validate_default=True)  # -> list[str]
    n: int = 1
    stream: bool = False
    stream_options: dict[str, Any] | None = None
    user: str | None = None
    # diffusion parameters (vLLM's extra_body places them at the top level)
    steps: int | None = None
    block_length: int | None = None
    remasking: str | None = None
    eos_threshold: float | None = None
    parallel_threshold: float | None = None  # Fast-dLLM threshold decoding (SamplingParams.parallel_threshold)
    refusal_text: str | None = None
    # accepted at neutral values only
    top_p: float | None = None
    frequency_penalty: float | None = None
    presence_penalty: float | None = None
    logprobs: bool | int | None = None
    top_logprobs: int | None = None
    best_of: int | None = None
    echo: bool | None = None
    suffix: str | None = None
    tools: list[Any] | None = None
    tool_choice: Any = None
    functions: list[Any] | None = None
    function_call: Any = None
    parallel_tool_calls: bool | None = None
    response_format: dict[str, Any] | None = None
    modalities: list[str] | None = None
    audio: Any = None
    prediction: Any = None
    reasoning_effort: str | None = None
    web_search_options: Any = None
    service_tier: str | None = None
    store: bool | None = None
    metadata: dict[str, Any] | None = None

    @field_validator("stop")
    @classmethod
    def _stop_strings(cls, v):
        stops = [v] if isinstance(v, str) else list(v or [])
        if len(stops) > 4 or any(not s for s in stops):
            raise ValueError("stop takes at most 4 non-empty strings")
        return stops

    def check_unsupported(self) -> None:
        """400 naming the first OpenAI field set to a value we would have to ignore."""
        for name, is_neutral in _NEUTRAL.items():
            value = getattr(self, name)
            if not is_neutral(value):
                raise RequestError(f"{name}={value!r} is not supported by this server (diffusion decoding); "
                                   f"leave it unset or at its neutral value", param=name)
        if not 1 <= self.n <= MAX_N:
            raise RequestError(f"n must be between 1 and {MAX_N}, got {self.n}", param="n")
        if self.stream_options is not None:
            if not self.stream:
                raise RequestError("stream_options is only allowed with stream=true", param="stream_options")
            unknown = set(self.stream_options) - {"include_usage", "continuous_usage_stats"}
            if unknown:
                raise RequestError(f"unknown stream_options field(s): {', '.join(sorted(unknown))}",
                                   param="stream_options")

    @property
    def include_usage(self) -> bool:
        return bool((self.stream_options or {}).get("include_usage"))

    def token_bias(self) -> dict[int, float]:
        """OpenAI sends token ids as JSON object keys (strings)."""
        out: dict[int, float] = {}
        for key, bias in (self.logit_bias or {}).items():
            try:
                out[int(key)] = float(bias)
            except ValueError:
                raise RequestError(f"logit_bias key {key!r} is not a token id; keys are integer token ids",
                                   param="logit_bias") from None
        return out


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[dict[str, Any]]
    name: str | None = None

    def text(self) -> str:
        """String content, or the text parts joined (images and audio are not for a text model)."""
        if isinstance(self.content, str):
            return self.content
        parts = []
        for part in self.content:
            if part.get("type") != "text" or not isinstance(part.get("text"), str):
                raise RequestError(f"message content part of type {part.get('type')!r} is not supported; "
                                   f"send text parts only", param="messages")
            parts.append(part["text"])
        return "".join(parts)


class ChatCompletionRequest(_Request):
    messages: list[ChatMessage]
    max_completion_tokens: int | None = None  # OpenAI's newer name for max_tokens

    def turns(self) -> list[dict[str, str]]:
        return chat_turns(self.messages)


def chat_turns(messages: list[ChatMessage]) -> list[dict[str, str]]:
    """Messages as chat-template turns (``developer`` is OpenAI's newer name for ``system``);
    a chat needs at least one user or system turn."""
    if not messages:
        raise RequestError("messages is empty; send at least one user message", param="messages")
    turns = [{"role": "system" if m.role == "developer" else m.role, "content": m.text()} for m in messages]
    if all(t["role"] == "assistant" for t in turns):
        raise RequestError("messages holds no user or system turn; add the user's message", param="messages")
    return turns


class CompletionRequest(_Request):
    prompt: str | list[str] | list[int] | list[list[int]]

    def prompts(self) -> list[str | list[int]]:
        """One entry per prompt: text, or token ids used as they are."""
        p = self.prompt
        if isinstance(p, str):
            prompts: list = [p]
        elif p and all(isinstance(x, int) for x in p):
            prompts = [list(p)]
        else:
            prompts = list(p)
        if not prompts or any(not x or (isinstance(x, str) and not x.strip()) for x in prompts):
            raise RequestError("prompt is empty; send some text (or token ids)", param="prompt")
        return prompts


class RequestError(A2DGuardError):
    """A user mistake in a request: becomes a 4xx with OpenAI's error body naming ``param``."""

    def __init__(self, message: str, param: str | None = None, status: int = 400, code: str | None = None,
                 type: str = "invalid_request_error"):
        super().__init__(message)
        self.param, self.status, self.code, self.type = param, status, code, type

    def body(self) -> dict:
        return error_body(str(self), self.type, self.param, self.code)


def error_body(message: str, type: str, param: str | None = None, code: str | int | None = None) -> dict:
    """OpenAI's error shape: ``{"error": {"message", "type", "param", "code"}}``."""
    return {"error": {"message": message, "type": type, "param": param, "code": code}}
