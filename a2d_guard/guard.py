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
from dataclasses import dataclass
from pathlib import Path

from a2d_guard.errors import A2DGuardError
from a2d_guard.probes import Probes, Verdict, parse_item

DEFAULT_REFUSAL = "I can't help with that."


@dataclass
class GuardedOutput:
    """``Guard.generate``: the answer, or the refusal and why (``reason``: ``"prompt"``,
    ``"content_filter"`` (the engine's monitor) or ``"response"``; None when not flagged)."""

    text: str
    flagged: bool
    reason: str | None
    verdict: Verdict
    completion: object | None = None  # the engine's CompletionOutput, None if the prompt was refused


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
        self.probes = Probes(self.tokenizer, self.spec, _llm.processor, threshold, probe_length, stride, window,
                             chat_template=_llm.chat_template)
        self.max_num_seqs = max_num_seqs

    # the probes' settings, read where they live (one copy)
    threshold = property(lambda self: self.probes.threshold)
    probe_length = property(lambda self: self.probes.probe_length)
    stride = property(lambda self: self.probes.stride)
    window = property(lambda self: self.probes.window)

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

        plans = [self.probes.plan(*parse_item(x, i)) for i, x in enumerate(items)]
        flat_c = [c for p in plans for c in p.canvases]
        flat_r = [r for p in plans for r in p.reads]
        probs = iter(eos_probabilities(self.model, self.spec, flat_c, flat_r, self.max_num_seqs))
        return [self.probes.verdict(p, [next(probs) for _ in p.canvases]) for p in plans]

    def stream(self, prompt) -> StreamChecker:
        """A checker for another model's streamed answer to ``prompt``: ``.feed(chunk)``."""
        self.probes.prompt_ids(prompt, 0)  # bad prompts fail now, not at the first chunk
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
            params = SamplingParams(**{"eos_threshold": self.threshold, **sampling, "refusal_text": refusal_text})
        except TypeError as exc:
            raise A2DGuardError(f"generate: {exc}; pass SamplingParams fields (gen_length, steps, ...)") from None
        out = self.llm.generate([prompt], params)[0].outputs[0]
        if out.rejected:  # the output processor's text: the refusal text, as LLM.generate answers
            return GuardedOutput(out.text, True, "content_filter", first, out)
        verdict = self.check(prompt, out.text)
        if verdict.flagged:
            return GuardedOutput(refusal_text, True, "response", verdict, out)
        return GuardedOutput(out.text, False, None, verdict, out)

    # ------------------------------------------------------------------ probes

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


