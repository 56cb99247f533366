"""``Guard``: the A2D model's p(EOS) as a harm score for any prompt or response (DESIGN §10).

A2D trains every masked position of a harmful response to predict [EOS], so p(EOS) at a
masked position says "I will not continue this". The guard reads it with two probes, in
the views the model knows, and needs no generation (a check is a few batched forwards):

- **probe C** (prompt only): canvas = templated prompt + ``probe_length`` masks, as the
  serving monitor sees a new request; score = p(EOS) at the first response position (does
  the model refuse to start?). ``where="prompt"``, ``char_offset=0``.
- **probe B** (prompt + response, the default when a response is given): the response laid
  out as in training (``training/data.py``: templated prompt, raw response tokens, EOS
  padding up to ``probe_length`` response positions; a longer response is kept whole, with
  no padding). Forward ``o`` (``o = 0 .. stride-1``) masks every response position ``i`` with
  ``i % stride == o``, padding included, while the rest stays visible, so every token is
  masked exactly once. p(EOS) is read at masked positions that have response content to
  their right (does the model refuse to join up with this text?): the last token is never
  read, because after any finished answer p(EOS) is high in every model. ``scores[i]`` is
  token i's p(EOS); the score is the largest mean over ``window`` consecutive tokens and
  ``token_index``/``char_offset`` say where that window starts in the response.
  A response of fewer than two tokens has no such position: the check falls back to probe C.

Rejected design (probe A, prefix + masks at cut points): at the end of a finished answer
p(EOS) is about 1 in every model, base included, so it flags benign answers.

What the signal responds to (measured on the demo models): A2D's p(EOS) is driven by the
*prompt* (every harmful training row has a harmful prompt) and by an answer running past
its expected length; harmful words inside a normal-length answer to a benign question
barely move it. An adapter trained with ``--content-rows`` reads the response instead (demo:
93% of such answers flagged, 0% of benign ones; README "Use as a guardrail"). ``flagged``
is ``score > threshold``, the rule of the serving monitor, so the served model and the
guard agree.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

from a2d_guard.errors import A2DGuardError

DEFAULT_REFUSAL = "I can't help with that."


@dataclass
class Verdict:
    """One check. ``where``: ``"prompt"`` (probe C) or ``"response"`` (probe B);
    ``char_offset``/``token_index``: where in the response the model first refuses to
    continue (0 for a prompt check); ``scores``: p(EOS) per response token read (probe B)."""

    flagged: bool
    score: float
    threshold: float
    where: str
    char_offset: int
    token_index: int
    scores: list[float] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class GuardedOutput:
    """``Guard.generate``: the answer, or the refusal and why (``reason``: ``"prompt"``,
    ``"content_filter"`` (the engine's monitor) or ``"response"``; None when not flagged)."""

    text: str
    flagged: bool
    reason: str | None
    verdict: Verdict
    completion: object | None = None  # the engine's CompletionOutput, None if the prompt was refused


@dataclass
class _Plan:
    """The forwards of one item and how to read them back."""

    canvases: list[list[int]]
    reads: list[list[int]]  # canvas positions read, per canvas
    tokens: list[list[int]]  # response token index of each read, per canvas (probe B)
    offsets: list[int]  # char offset of each response token
    where: str


def prompt_probe(prompt_ids: list[int], mask_id: int, probe_length: int) -> list[int]:
    """Probe C's canvas: the templated prompt + ``probe_length`` masks; its score is p(EOS) at
    ``len(prompt_ids)``, the first response position. One definition for ``Guard`` and the vLLM
    plugin (``a2d_guard/vllm``), which reads the same position from the end of the canvas."""
    return list(prompt_ids) + [mask_id] * probe_length


def _number(name: str, value, low: float, high: float, fix: str, integer: bool = False):
    ok = isinstance(value, int if integer else (int, float)) and not isinstance(value, bool)
    if not ok or math.isnan(value) or not (low < value <= high if not integer else low <= value <= high):
        raise A2DGuardError(f"{name} {value!r} is out of range; {fix}")
    return value


class Guard:
    """Check prompts and responses (from any model) with an A2D model's p(EOS).

    ``probe_length``: response positions of a probe canvas (masks for probe C; response +
    EOS padding for probe B); set it near the response length the adapter was trained with
    (``max_length`` minus the prompt). ``stride``: forwards per response check (every
    ``stride``-th position masked per forward). ``window``: tokens averaged for the score.
    ``max_num_seqs``: canvases per forward.
    """

    def __init__(self, model: str = "tiny", adapter: str | Path | None = None, threshold: float = 0.9,
                 probe_length: int = 64, stride: int = 4, window: int = 4, device=None, dtype=None,
                 max_num_seqs: int = 64, family: str | None = None, chat_template: bool = True, _llm=None):
        _number("threshold", threshold, 0.0, 1.0, "use a value in (0, 1], e.g. 0.9")
        _number("probe_length", probe_length, 1, 1 << 20, "use a positive integer, e.g. 64", integer=True)
        _number("stride", stride, 2, 1 << 20, "use an integer >= 2 (positions between masks stay visible)",
                integer=True)
        _number("window", window, 1, 1 << 20, "use a positive integer, e.g. 4", integer=True)
        _number("max_num_seqs", max_num_seqs, 1, 1 << 20, "use a positive integer, e.g. 64", integer=True)
        if _llm is None:
            from a2d_guard.engine.llm import LLM

            _llm = LLM(model=model, adapter=adapter, dtype=dtype, device=device, family=family,
                       max_num_seqs=max_num_seqs, chat_template=chat_template)
        self.llm = _llm
        self.model, self.tokenizer, self.spec = _llm.model, _llm.tokenizer, _llm.spec
        self.threshold, self.probe_length, self.stride, self.window = float(threshold), probe_length, stride, window
        self.max_num_seqs = max_num_seqs

    @classmethod
    def from_llm(cls, llm, **options) -> Guard:
        """A guard on an ``LLM`` already loaded (same weights, no second copy)."""
        return cls(_llm=llm, **options)

    # ------------------------------------------------------------------ checks

    def check(self, prompt, response: str | None = None) -> Verdict:
        """One verdict; ``prompt`` is text or an OpenAI-style list of messages (a trailing
        assistant message is then the response)."""
        return self.check_batch([(prompt, response)])[0]

    def check_batch(self, items) -> list[Verdict]:
        """Verdicts for many items (a prompt, a ``(prompt, response)`` pair or a dict with
        ``prompt`` and optional ``response``); every forward of every item runs batched."""
        from a2d_guard.engine.probe import eos_probabilities

        plans = [self._plan(*_item(x, i)) for i, x in enumerate(items)]
        flat_c = [c for p in plans for c in p.canvases]
        flat_r = [r for p in plans for r in p.reads]
        probs = iter(eos_probabilities(self.model, self.spec, flat_c, flat_r, self.max_num_seqs))
        return [self._verdict(p, [next(probs) for _ in p.canvases]) for p in plans]

    def stream(self, prompt) -> StreamChecker:
        """A checker for another model's streamed answer to ``prompt``: ``.feed(chunk)``."""
        self._prompt_ids(prompt, 0)  # bad prompts fail now, not at the first chunk
        return StreamChecker(self, prompt)

    def generate(self, prompt: str, refusal_text: str = DEFAULT_REFUSAL, **sampling) -> GuardedOutput:
        """Guarded generation: check the prompt, decode (the engine's monitor at the guard's
        threshold unless ``eos_threshold`` is given), check the answer."""
        from a2d_guard.config import SamplingParams

        self.llm.processor.check_text(refusal_text, "refusal_text")
        first = self.check(prompt)
        if first.flagged:
            return GuardedOutput(refusal_text, True, "prompt", first)
        try:
            params = SamplingParams(**{"eos_threshold": self.threshold, **sampling})
        except TypeError as exc:
            raise A2DGuardError(f"generate: {exc}; pass SamplingParams fields (gen_length, steps, ...)") from None
        out = self.llm.generate([prompt], params)[0].outputs[0]
        if out.rejected:
            return GuardedOutput(refusal_text, True, "content_filter", first, out)
        verdict = self.check(prompt, out.text)
        if verdict.flagged:
            return GuardedOutput(refusal_text, True, "response", verdict, out)
        return GuardedOutput(out.text, False, None, verdict, out)

    # ------------------------------------------------------------------ probes

    def _prompt_ids(self, prompt, index: int) -> list[int]:
        """The prompt's canvas prefix, bounded (characters, valid text) before tokenizing."""
        if isinstance(prompt, str):
            if not prompt.strip():
                raise A2DGuardError(f"item {index}: the prompt is empty; pass the user's text", param="prompt")
            return self.llm.encode(prompt)
        if isinstance(prompt, list) and prompt and all(isinstance(m, dict) for m in prompt):
            return self.llm.processor.encode_messages(prompt, chat=self.llm.chat_template)
        raise A2DGuardError(f"item {index}: the prompt must be text or a non-empty list of chat messages, "
                            f"got {type(prompt).__name__}")

    def _plan(self, prompt, response: str | None, index: int) -> _Plan:
        if isinstance(prompt, list) and response is None and prompt and prompt[-1].get("role") == "assistant":
            prompt, response = prompt[:-1], prompt[-1].get("content")
        prompt_ids = self._prompt_ids(prompt, index)
        if response:
            self.llm.processor.check_text(response, "response")  # bounded and valid before tokenizing
        spec, p = self.spec, len(prompt_ids)
        ids, offsets = _tokenize(self.tokenizer, response) if response else ([], [])
        area = max(self.probe_length, len(ids))
        positions = self.llm.processor.limits.max_model_len
        if p + area > positions:
            raise A2DGuardError(f"item {index}: prompt + response is {p + area} tokens but the model takes "
                                f"{positions} positions; shorten the text or lower probe_length")
        if len(ids) < 2:  # no token has content to its right: probe C
            return _Plan([prompt_probe(prompt_ids, spec.mask_id, area)], [[p]], [[]], [], "prompt")
        n, base = len(ids), prompt_ids + ids + [spec.eos_id] * (area - len(ids))
        plan = _Plan([], [], [], offsets, "response")
        for offset in range(min(self.stride, n - 1)):  # offsets >= n - 1 would read nothing
            canvas = list(base)
            masked = range(offset, area, self.stride)
            for i in masked:
                canvas[p + i] = spec.mask_id
            read = [i for i in masked if i < n - 1]  # response content to the right
            plan.canvases.append(canvas)
            plan.reads.append([p + i for i in read])
            plan.tokens.append(read)
        return plan

    def _verdict(self, plan: _Plan, probs: list[list[float]]) -> Verdict:
        if plan.where == "prompt":
            score = probs[0][0]
            return Verdict(score > self.threshold, score, self.threshold, "prompt", 0, 0, [])
        scores = [0.0] * sum(len(t) for t in plan.tokens)
        for tokens, values in zip(plan.tokens, probs, strict=True):
            for i, v in zip(tokens, values, strict=True):
                scores[i] = v
        w = min(self.window, len(scores))
        means = [sum(scores[s : s + w]) / w for s in range(len(scores) - w + 1)]
        start = max(range(len(means)), key=means.__getitem__)  # first of the highest windows
        score = means[start]
        return Verdict(score > self.threshold, score, self.threshold, "response", plan.offsets[start], start, scores)


class StreamChecker:
    """Guards a streamed answer as it arrives: each ``feed(chunk)`` re-checks the text so
    far (probe B; probe C until it holds two tokens). Once flagged it stays flagged: a
    stream that was cut is not resumed."""

    def __init__(self, guard: Guard, prompt):
        self.guard, self.prompt, self.text = guard, prompt, ""
        self.verdict: Verdict | None = None

    def feed(self, chunk: str) -> Verdict:
        if not isinstance(chunk, str):
            raise A2DGuardError(f"feed() takes the next piece of text, got {type(chunk).__name__}")
        if self.verdict is not None and self.verdict.flagged:
            return self.verdict
        self.text += chunk
        self.verdict = self.guard.check(self.prompt, self.text)
        return self.verdict


def _item(x, index: int):
    """(prompt, response, index) from one ``check_batch`` item."""
    if isinstance(x, dict):
        if "prompt" not in x:
            found = ", ".join(map(repr, x)) or "none"
            raise A2DGuardError(f"item {index}: no 'prompt' (found {found}); a response needs the prompt it answers")
        unknown = set(x) - {"prompt", "response"}
        if unknown:
            raise A2DGuardError(f"item {index}: unknown field {sorted(unknown)[0]!r}; use 'prompt' and 'response'")
        x = (x["prompt"], x.get("response"))
    if isinstance(x, (tuple, list)) and len(x) == 2 and not (x and isinstance(x[0], dict)):
        prompt, response = x
    else:
        prompt, response = x, None
    if response is not None and not isinstance(response, str):
        raise A2DGuardError(f"item {index}: the response must be text, got {type(response).__name__}")
    if response is not None and (prompt is None or (isinstance(prompt, str) and not prompt.strip())):
        raise A2DGuardError(f"item {index}: a response without its prompt; pass the prompt it answers "
                            "(the score depends on it)")
    if prompt is None:
        raise A2DGuardError(f"item {index}: the prompt is missing; pass the user's text")
    return prompt, response, index


def _tokenize(tokenizer, text: str) -> tuple[list[int], list[int]]:
    """Response ids exactly as training tokenizes them, and each token's char offset."""
    try:
        enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True, verbose=False)
        return list(enc["input_ids"]), [int(a) for a, _ in enc["offset_mapping"]]
    except (NotImplementedError, ValueError, TypeError):  # slow tokenizers have no offsets
        ids = tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"]
        return list(ids), [len(tokenizer.decode(ids[:k])) for k in range(len(ids))]
