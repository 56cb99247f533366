"""``LLMEngine``: add_request -> waiting queue -> step() -> outputs (continuous batching).

``step()`` is the unit of work (and of tests and benchmarks): admit waiting requests into
free slots, run one denoising step for every running sequence, turn outcomes into statuses,
evict whatever finished (stopped, full, rejected, failed) so its slot is free next step.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence as Seq

from a2d_guard.config import SamplingParams
from a2d_guard.diffusion.canvas import protocol_params
from a2d_guard.diffusion.reference import check_token_ids, response_tokens, validate_request
from a2d_guard.engine.outputs import CompletionOutput, RequestMetrics, RequestOutput
from a2d_guard.engine.runner import ModelRunner
from a2d_guard.engine.scheduler import Scheduler
from a2d_guard.engine.sequence import Sequence, SequenceStatus
from a2d_guard.errors import A2DGuardError
from a2d_guard.models.spec import ModelSpec


class LLMEngine:
    def __init__(self, model, tokenizer, spec: ModelSpec, max_num_seqs: int = 64, cache: str = "none"):
        """``cache``: "none" (exact mode), "prefix" or "dual" (fast mode's block K/V cache, DESIGN §12)."""
        if not isinstance(max_num_seqs, int) or max_num_seqs < 1:
            raise A2DGuardError(f"max_num_seqs must be a positive integer, got {max_num_seqs!r}")
        self.model, self.tokenizer, self.spec = model, tokenizer, spec
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
        prompt_ids = check_token_ids(self.spec, prompt_ids)  # ints in the vocabulary; no silent int() of 2.5
        validate_request(self.spec, prompt_ids, params)
        seq = Sequence(request_id, prompt, prompt_ids, protocol_params(params), self.spec.mask_id)
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
        running = self.scheduler.schedule()
        batch, ks = [], []
        for seq in running:
            k = seq.next_commit_count()
            if k == 0:  # defensive: no block left (cannot happen: the last block fills the canvas)
                seq.finish(SequenceStatus.FINISHED_LENGTH)
            else:
                batch.append(seq)
                ks.append(k)
        if batch:
            outcomes = self.runner.execute(batch, ks)
            for seq, outcome in zip(batch, outcomes, strict=True):
                self._apply(seq, outcome)
        finished.extend(self.scheduler.evict_finished())
        for seq in finished:
            self._known.pop(seq.request_id, None)
        return [self._output(seq) for seq in finished]

    def _apply(self, seq: Sequence, outcome) -> None:
        step = seq.num_steps
        seq.num_steps += 1
        seq.step_in_block += 1
        seq.p_eos = outcome.p_eos
        seq.masks_left = outcome.masks_left
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
        text = self.tokenizer.decode(token_ids, skip_special_tokens=True) if self.tokenizer else ""
        if status is SequenceStatus.FINISHED_REJECTED and seq.params.refusal_text is not None:
            text = seq.params.refusal_text
        completion = CompletionOutput(
            index=0, text=text, token_ids=token_ids, finish_reason=status.value, steps=seq.num_steps,
            p_eos=seq.p_eos, reject_step=seq.reject_step,
            infill_text=self.tokenizer.decode(infill, skip_special_tokens=False) if infill and self.tokenizer else None,
            infill_token_ids=infill, error=seq.error,
        )
        metrics = RequestMetrics(seq.arrival_time, seq.first_scheduled_time, seq.finished_time, seq.num_steps)
        return RequestOutput(seq.request_id, seq.prompt, seq.prompt_ids, [completion], True, metrics)
