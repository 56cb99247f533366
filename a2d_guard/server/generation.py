"""One HTTP request's samples on their way through the engine loop.

A request has ``n`` samples per prompt (and a completion request may carry several
prompts); each is one engine request, all share one ``Sink``. What a client reads comes from the output
processor (``a2d_guard.engine.output_processor``), as for the library and the CLI:
- streams show only *visible* text (the committed prefix left of the leftmost mask, cut at
  the first end token), detokenized incrementally, with the last token held back;
- ``stop`` strings cut the text and finish the sample with ``stop``; when a stop string is
  already visible, the engine request is aborted at once (the text left of it is final and
  is streamed at once; the sample closes when the engine reports the abort, so its ``a2d``
  fields and the ``stop`` metric are the engine's);
- an A2D rejection (``content_filter``) answers the request's refusal text when it sets one,
  else the text committed left of the rejection (the engine's text, often empty). A stream
  cannot take back what it showed: when the monitor fires before any text was streamed,
  the chunks add up to the plain answer; when visible text was streamed first and a refusal
  text replaces it, the final chunk carries no more text, its ``finish_reason`` is
  ``content_filter`` and ``a2d.refusal_text`` holds the answer a client should show instead.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from a2d_guard.config import SamplingParams
from a2d_guard.engine.output_processor import TextStream, find_stop
from a2d_guard.server.engine_loop import EngineLoop, Failed, Finished, Sink, Submission, Visible

log = logging.getLogger("a2d_guard.server")


@dataclass
class Choice:
    index: int
    request_id: str
    prompt_ids: list[int]
    params: SamplingParams
    stream: TextStream
    text: str = ""
    finish_reason: str | None = None
    num_tokens: int = 0
    a2d: dict = field(default_factory=dict)
    error: str | None = None
    error_status: int = 500  # 503: the server shut down (or its engine stopped) before the sample finished
    stop_text: str | None = None  # the final text, once a visible stop string cut it (closed at the abort)

    @property
    def done(self) -> bool:
        return self.finish_reason is not None or self.error is not None


class Generation:
    def __init__(self, loop: EngineLoop, tokenizer, http_id: str, prompts: list[list[int]],
                 params: list[SamplingParams], stops: list[str], stream: bool):
        self.loop, self.tokenizer, self.stops, self.stream = loop, tokenizer, stops, stream
        n = len(params)
        self.choices = [Choice(p * n + j, f"{http_id}-{p * n + j}", ids, params[j], TextStream(tokenizer, stops))
                        for p, ids in enumerate(prompts) for j in range(n)]
        self._by_id = {c.request_id: c for c in self.choices}
        self._watch = stream or bool(stops)
        self.sink: Sink | None = None

    @property
    def done(self) -> bool:
        return all(c.done for c in self.choices)

    def submit(self) -> None:
        """Queue every sample; if the loop refuses one (``EngineUnavailable``), abort the rest."""
        self.sink = Sink()
        try:
            for c in self.choices:
                self.loop.submit(Submission(c.request_id, c.prompt_ids, c.params, self.sink, watch=self._watch))
        except Exception:
            for c in self.choices:
                self.loop.abort(c.request_id)
                c.error = "not submitted"
            raise

    def abort_unfinished(self) -> None:
        for c in self.choices:
            if not c.done:
                self.loop.abort(c.request_id)
                c.error = "aborted"

    async def updates(self):
        """Yield (choice, new text) until every sample is done; the final update has a finish_reason."""
        while not self.done:
            event = await self.sink.queue.get()
            c = self._by_id.get(event.request_id)
            if c is None or c.done:  # e.g. the abort of a sample already cut at a stop string
                continue
            delta = self._apply(c, event)
            if delta or c.done:
                yield c, delta

    def _apply(self, c: Choice, event) -> str:
        if isinstance(event, Visible):
            return self._on_visible(c, event.token_ids)
        if isinstance(event, Failed):
            c.error, c.error_status = event.message, event.status
            return ""
        assert isinstance(event, Finished)
        return self._on_finished(c, event)

    def _on_visible(self, c: Choice, ids: list[int]) -> str:
        if c.stop_text is not None:  # cut already; waiting for the engine to report the abort
            return ""
        delta, stop_text = c.stream.visible(ids)
        if stop_text is not None:  # the text left of a visible stop string is final
            self.loop.abort(c.request_id, stop_cut=True)
            c.num_tokens, c.stop_text = len(ids), stop_text
        return delta

    def _on_finished(self, c: Choice, event: Finished) -> str:
        out = event.output.outputs[0]
        c.a2d = {"p_eos": out.p_eos, "reject_step": out.reject_step, "steps": out.steps}
        if out.finish_reason == "error":
            c.error = out.error or "decoding failed"
            return ""
        if c.stop_text is not None:  # the engine's answer to our abort at a visible stop string
            return self._close(c, c.stop_text, "stop")
        c.num_tokens = len(out.token_ids)
        if out.finish_reason == "abort":  # only we abort
            c.error = "aborted"
            return ""
        if out.rejected and c.params.refusal_text is not None and self.stream and c.stream.sent:
            # what was streamed cannot be taken back: say what to show instead
            c.text, c.finish_reason = out.text, out.finish_reason
            c.a2d["refusal_text"] = c.text
            return ""
        text, reason = out.text, out.finish_reason  # the output processor's text (refusal text included)
        cut = find_stop(text, self.stops) if self.stops and not out.rejected else -1
        if cut >= 0:
            text, reason = text[:cut], "stop"
        return self._close(c, text, reason)

    @staticmethod
    def _close(c: Choice, text: str, reason: str) -> str:
        c.text, c.finish_reason = text, reason
        return c.stream.advance(text)
