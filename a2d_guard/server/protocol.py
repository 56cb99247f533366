"""Request and response shapes of the OpenAI API, as vLLM serves them (DESIGN §9).

Why strict: a field OpenAI does not have and we do not define is a 400 naming it (a typo
like ``max_token`` must not be ignored silently), while the OpenAI fields we do not
implement (``top_p``, penalties, ``logprobs``, ``tools``, ...) are accepted at their
neutral values, so LangChain-style clients that always send them keep working, and are a
400 naming the field otherwise. The diffusion parameters sit at the top level of the body,
as vLLM's ``extra_body`` puts them.

Types are strict (``"16"`` is not an int, ``true`` is not a token id) and every string is
well-formed Unicode (``Text``): JSON can carry a lone surrogate (``"\\ud800"``) that no
tokenizer or encoder takes, so it is a 400 naming the field, never a 500 deep inside.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator

from a2d_guard.config import MAX_LOGIT_BIAS, MAX_SEED
from a2d_guard.errors import A2DGuardError

MAX_N = 8


def _well_formed(value: str) -> str:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(f"is not valid Unicode text (a lone surrogate {value[exc.start]!r} at character "
                         f"{exc.start}); send well-formed UTF-8") from None
    return value


Text = Annotated[str, AfterValidator(_well_formed)]  # a str that any encoder takes
STRICT = ConfigDict(extra="forbid", populate_by_name=True, strict=True)

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

    model_config = STRICT

    model: Text | None = None
    max_tokens: int | None = Field(default=None, description="The diffusion canvas length (gen_length).")
    temperature: float | None = Field(default=None, ge=0)
    seed: int | None = Field(default=None, ge=0, le=MAX_SEED, description="Sample i of n uses seed + i.")
    logit_bias: dict[Text, float] | None = None
    stop: Text | list[Text] | None = Field(default=None, validate_default=True)  # -> list[str]
    n: int = 1
    stream: bool = False
    stream_options: dict[str, Any] | None = None
    user: Text | None = None
    # diffusion parameters (vLLM's extra_body places them at the top level)
    steps: int | None = None
    block_length: int | None = None
    remasking: Text | None = None
    eos_threshold: float | None = None
    parallel_threshold: float | None = None  # Fast-dLLM threshold decoding (SamplingParams.parallel_threshold)
    refusal_text: Text | None = None
    # accepted at neutral values only
    top_p: float | None = None
    frequency_penalty: float | None = None
    presence_penalty: float | None = None
    logprobs: bool | int | None = None
    top_logprobs: int | None = None
    best_of: int | None = None
    echo: bool | None = None
    suffix: Text | None = None
    tools: list[Any] | None = None
    tool_choice: Any = None
    functions: list[Any] | None = None
    function_call: Any = None
    parallel_tool_calls: bool | None = None
    response_format: dict[str, Any] | None = None
    modalities: list[str] | None = None
    audio: Any = None
    prediction: Any = None
    reasoning_effort: Text | None = None
    web_search_options: Any = None
    service_tier: Text | None = None
    store: bool | None = None
    metadata: dict[str, Any] | None = None

    @field_validator("stop")
    @classmethod
    def _stop_strings(cls, v):
        stops = [v] if isinstance(v, str) else list(v or [])
        if len(stops) > 4 or any(not s for s in stops):
            raise ValueError("takes at most 4 non-empty strings")
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
        if self.seed is not None and self.seed + self.n - 1 > MAX_SEED:
            raise RequestError(f"seed {self.seed} + n - 1 exceeds {MAX_SEED} (2**63 - 1), the largest seed the "
                               f"RNG takes (sample i uses seed + i); use a seed <= {MAX_SEED - self.n + 1}",
                               param="seed")
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
        if len(self.logit_bias or {}) > MAX_LOGIT_BIAS:
            raise RequestError(f"logit_bias holds {len(self.logit_bias)} entries; send at most {MAX_LOGIT_BIAS}",
                               param="logit_bias")
        out: dict[int, float] = {}
        for key, bias in (self.logit_bias or {}).items():
            try:
                out[int(key)] = float(bias)
            except ValueError:
                raise RequestError(f"logit_bias key {key!r} is not a token id; keys are integer token ids",
                                   param="logit_bias") from None
        return out


class ChatMessage(BaseModel):
    model_config = STRICT

    role: Literal["system", "developer", "user", "assistant"]
    content: Text | list[dict[str, Any]]
    name: Text | None = None

    def text(self) -> str:
        """String content, or the text parts joined (images and audio are not for a text model)."""
        if isinstance(self.content, str):
            return self.content
        parts = []
        for part in self.content:
            if part.get("type") != "text" or not isinstance(part.get("text"), str):
                raise RequestError(f"message content part of type {part.get('type')!r:.40} is not supported; "
                                   f"send text parts only", param="messages")
            try:
                parts.append(_well_formed(part["text"]))
            except ValueError as exc:
                raise RequestError(f"a message's text part {exc}", param="messages") from None
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
    prompt: Text | list[Text] | list[int] | list[list[int]]

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
        super().__init__(message, param=param)
        self.status, self.code, self.type = status, code, type

    def body(self) -> dict:
        return error_body(str(self), self.type, self.param, self.code)


class ErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | int | None = None


class ErrorResponse(BaseModel):
    """OpenAI's error body, as the OpenAPI schema documents every 4xx/5xx."""

    error: ErrorDetail


def error_body(message: str, type: str, param: str | None = None, code: str | int | None = None) -> dict:
    """OpenAI's error shape: ``{"error": {"message", "type", "param", "code"}}``."""
    return {"error": {"message": message, "type": type, "param": param, "code": code}}
