"""``LLMEngine``: add_request -> waiting queue -> step() -> outputs (continuous batching).

``step()`` is the unit of work (and of tests and benchmarks): admit waiting requests into
free slots, run one denoising step for every running sequence, turn outcomes into statuses,
evict whatever finished (stopped, full, rejected, failed) so its slot is free next step.

One request never takes the others down with it: a request whose admission raises fails
alone; when the batched step raises, every running sequence is stepped again on its own, so
the sequence that raises fails alone (``finish_reason="error"``) and the others go on, having
lost nothing (a step writes its canvases only after all its tensor work succeeded).
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Sequence as Seq

from a2d_guard.config import SamplingParams
from a2d_guard.diffusion.canvas import response_tokens
from a2d_guard.engine.input_processor import InputProcessor, RequestLimits
from a2d_guard.engine.output_processor import answer_text
from a2d_guard.engine.outputs import CompletionOutput, RequestMetrics, RequestOutput
from a2d_guard.engine.runner import ModelRunner
from a2d_guard.engine.scheduler import Scheduler
from a2d_guard.engine.sequence import Sequence, SequenceStatus
from a2d_guard.errors import A2DGuardError
from a2d_guard.models.spec import ModelSpec

log = logging.getLogger("a2d_guard.engine")


def describe(exc: BaseException) -> str:
    """An exception as one line for an error body: its type and the start of its message."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text[:200]}" if text else type(exc).__name__


class LLMEngine:
    def __init__(self, model, tokenizer, spec: ModelSpec, max_num_seqs: int = 64, cache: str = "none",
                 limits: RequestLimits | None = None):
        """``cache``: "none" (exact mode), "prefix" or "dual" (fast mode's block K/V cache, DESIGN §12).
        ``limits``: what one request may ask (``max_model_len``, prompt characters)."""
        if isinstance(max_num_seqs, bool) or not isinstance(max_num_seqs, int) or max_num_seqs < 1:
            raise A2DGuardError(f"max_num_seqs must be a positive integer, got {max_num_seqs!r}")
        self.model, self.tokenizer, self.spec = model, tokenizer, spec
        self.processor = InputProcessor(tokenizer, spec, limits)
        self.cache = cache
        self.runner = ModelRunner(model, spec, cache=cache, max_num_seqs=max_num_seqs)
        self.scheduler = Scheduler(max_num_seqs, self.runner.device, kv_pool=self.runner.kv_pool)
        self._ids = itertools.count()
        self._known: dict[str, Sequence] = {}  # unfinished requests by id
        self._aborted: list[Sequence] = []  # reported by the next step()

    # -- requests ---------------------------------------------------------------------
    def add_request(self, request_id: str | None, prompt_ids: Seq[int], params: SamplingParams,
                    prompt: str | None = None) -> str:
        """Validate and queue a request; a bad request raises here and touches nothing else."""
        if request_id is None:
            request_id = f"req-{next(self._ids)}"
        if request_id in self._known:
            raise A2DGuardError(f"request_id {request_id!r} is already in use; pass a unique id")
        prompt_ids = self.processor.token_ids(prompt_ids)  # ints in the vocabulary; no silent int() of 2.5
        self.processor.check(prompt_ids, params)
        seq = Sequence(request_id, prompt, prompt_ids, params.policy.decode_params(params), self.spec.mask_id)
        self.scheduler.add(seq)
        self._known[request_id] = seq
        return request_id

    def abort(self, request_id: str) -> bool:
        """Drop a waiting or running request; False when the id is unknown or finished."""
        seq = self.scheduler.abort(request_id)
        if seq is None:
            return False
        self._aborted.append(seq)
        return True

    def visible_token_ids(self, request_id: str) -> list[int] | None:
        """The part of a running request's answer that can no longer change.

        A diffusion model commits tokens anywhere, but committed tokens are never re-masked, so
        the response left of its leftmost mask is final (cut at the first EOS/EoT, as the
        finished text is). This is what a stream may show a reader. [] while the request
        waits; None when the id is unknown or finished. One host copy of the response.
        """
        seq = self._known.get(request_id)
        if seq is None:
            return None
        if seq.canvas is None:
            return []
        out: list[int] = []
        for tok in seq.canvas[seq.prompt_length:].tolist():
            if tok == self.spec.mask_id or tok in self.spec.end_ids:
                break
            out.append(tok)
        return out

    @property
    def token_forwards(self) -> int:
        """Token positions run through the model body so far (the hardware-independent cost)."""
        return self.runner.token_forwards

    @property
    def num_running(self) -> int:
        return len(self.scheduler.running)

    @property
    def num_waiting(self) -> int:
        return len(self.scheduler.waiting)

    def has_unfinished_requests(self) -> bool:
        return self.scheduler.num_unfinished > 0 or bool(self._aborted)

    # -- the step ---------------------------------------------------------------------
    def step(self) -> list[RequestOutput]:
        """One denoising step for the running batch; returns requests that finished in it."""
        finished: list[Sequence] = list(self._aborted)
        self._aborted = []
        running = self.scheduler.schedule()  # a request whose admission raises is finished with an error
        batch, ks = [], []
        for seq in running:
            if seq.status.is_finished:
                continue
            try:
                k = seq.next_commit_count()
            except Exception as exc:  # one request's bug fails that request only
                self._fail(seq, exc)
                continue
            if k == 0:  # defensive: no block left (cannot happen: the last block fills the canvas)
                seq.finish(SequenceStatus.FINISHED_LENGTH)
            else:
                batch.append(seq)
                ks.append(k)
        if batch:
            self._execute(batch, ks)
        finished.extend(self.scheduler.evict_finished())
        for seq in finished:
            self._known.pop(seq.request_id, None)
        return [self._output_or_error(seq) for seq in finished]

    def _execute(self, batch: list[Sequence], ks: list[int]) -> None:
        """The batched step; if it raises, each sequence again on its own, so only the one that
        raises fails (the runner writes canvases only once its tensor work succeeded)."""
        try:
            outcomes = self.runner.execute(batch, ks)
        except Exception as exc:
            if len(batch) == 1:
                self._fail(batch[0], exc)
                return
            log.warning("a batched step raised %s; stepping its %d sequences one by one", describe(exc), len(batch))
            for seq, k in zip(batch, ks, strict=True):
                self._execute([seq], [k])
            return
        for seq, outcome in zip(batch, outcomes, strict=True):
            self._apply(seq, outcome)

    def _fail(self, seq: Sequence, exc: BaseException) -> None:
        log.error("request %s failed in its step", seq.request_id, exc_info=exc)
        seq.error = f"internal error: {describe(exc)}"
        seq.finish(SequenceStatus.FINISHED_ERROR)

    def _output_or_error(self, seq: Sequence) -> RequestOutput:
        try:
            return self._output(seq)
        except Exception as exc:  # e.g. a detokenizer that raises on this request's ids
            log.error("request %s: building its output failed", seq.request_id, exc_info=exc)
            return self._error_output(seq, f"internal error: {describe(exc)}")

    @staticmethod
    def _error_output(seq: Sequence, message: str) -> RequestOutput:
        seq.error, seq.status = message, SequenceStatus.FINISHED_ERROR
        completion = CompletionOutput(index=0, text="", token_ids=[], finish_reason="error", steps=seq.num_steps,
                                      error=message)
        metrics = RequestMetrics(seq.arrival_time, seq.first_scheduled_time, seq.finished_time, seq.num_steps)
        return RequestOutput(seq.request_id, seq.prompt, seq.prompt_ids, [completion], True, metrics)

    def reset(self, reason: str) -> list[RequestOutput]:
        """Fail every waiting and running request (a fault no request can be blamed for) and
        free their slots; returns their outputs (``finish_reason="error"``). The engine is then
        empty and ready for new requests."""
        seqs = list(self._known.values())
        for seq in seqs:
            self.scheduler.abort(seq.request_id)  # frees the batch and K/V slots
        self._known.clear()
        self._aborted = []
        return [self._error_output(seq, reason) for seq in seqs]

    def _apply(self, seq: Sequence, outcome) -> None:
        step = seq.num_steps
        seq.num_steps += 1
        seq.step_in_block += 1
        seq.p_eos = outcome.p_eos
        seq.masks_left = outcome.masks_left
        if outcome.canvas is not None:
            seq.canvas = outcome.canvas
        if outcome.error is not None:
            seq.error = outcome.error
            seq.finish(SequenceStatus.FINISHED_ERROR)
        elif outcome.rejected:
            seq.reject_step, seq.reject_position = step, outcome.reject_position
            seq.finish(SequenceStatus.FINISHED_REJECTED)
        elif outcome.stop_position >= 0 and seq.stops_at_visible_eos:
            seq.stop_position = outcome.stop_position
            seq.finish(SequenceStatus.FINISHED_STOPPED)
        elif outcome.is_full or seq.is_exhausted:  # llada's last budget spent: its slot is free now
            seq.finish(SequenceStatus.FINISHED_LENGTH)

    def _output(self, seq: Sequence) -> RequestOutput:
        status = seq.status
        canvas = seq.canvas
        token_ids: list[int] = []
        infill: list[int] = []
        if canvas is not None:
            stop_at = {SequenceStatus.FINISHED_REJECTED: seq.reject_position,
                       SequenceStatus.FINISHED_STOPPED: seq.stop_position}.get(status, seq.length)
            token_ids = response_tokens(canvas, seq.prompt_length, self.spec.end_ids, stop_at)
            infill = canvas[: seq.prompt_length][seq.generated[: seq.prompt_length]].tolist()
        text = answer_text(self.tokenizer, token_ids, status.value, seq.params.refusal_text)
        completion = CompletionOutput(
            index=0, text=text, token_ids=token_ids, finish_reason=status.value, steps=seq.num_steps,
            p_eos=seq.p_eos, reject_step=seq.reject_step,
            infill_text=self.tokenizer.decode(infill, skip_special_tokens=False) if infill and self.tokenizer else None,
            infill_token_ids=infill, error=seq.error,
        )
        metrics = RequestMetrics(seq.arrival_time, seq.first_scheduled_time, seq.finished_time, seq.num_steps)
        return RequestOutput(seq.request_id, seq.prompt, seq.prompt_ids, [completion], True, metrics)
