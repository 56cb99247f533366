"""Queue logic only: who waits, who runs, who leaves (continuous batching).

At every step boundary finished, rejected and aborted sequences leave and waiting ones take
their slots, so a request rejected by the A2D monitor at step 1 frees its slot for the next
request at step 2 instead of idling until the batch's slowest member finishes. In fast mode
the K/V pool's slot (DESIGN §12) follows the batch slot: taken on admission, given back on
eviction or abort.
"""

from __future__ import annotations

import logging
from collections import deque

import torch

from a2d_guard.engine.kv_cache import KVPool
from a2d_guard.engine.sequence import Sequence, SequenceStatus

log = logging.getLogger("a2d_guard.engine")


class Scheduler:
    def __init__(self, max_num_seqs: int, device: torch.device, kv_pool: KVPool | None = None):
        if max_num_seqs < 1:
            raise ValueError(f"max_num_seqs must be >= 1, got {max_num_seqs}")
        self.max_num_seqs = max_num_seqs
        self.device = device
        self.kv_pool = kv_pool
        self.waiting: deque[Sequence] = deque()
        self.running: list[Sequence] = []

    @property
    def num_unfinished(self) -> int:
        return len(self.waiting) + len(self.running)

    def add(self, seq: Sequence) -> None:
        self.waiting.append(seq)

    def schedule(self) -> list[Sequence]:
        """Admit waiting requests into free slots (FIFO); return the running batch.

        A request whose admission raises (its canvas or K/V slot cannot be allocated) joins
        the batch already finished with an error, so the next eviction reports it and it
        fails alone; the requests behind it are still admitted."""
        while self.waiting and len(self.running) < self.max_num_seqs:
            seq = self.waiting.popleft()
            try:
                seq.admit(self.device)
                if self.kv_pool is not None:
                    seq.kv_slot = self.kv_pool.allocate(seq.length)
            except Exception as exc:
                log.error("request %s could not be admitted", seq.request_id, exc_info=exc)
                self._release(seq)
                seq.error = f"internal error: could not admit the request ({type(exc).__name__}: {exc})"[:300]
                seq.finish(SequenceStatus.FINISHED_ERROR)
            self.running.append(seq)
        return self.running

    def evict_finished(self) -> list[Sequence]:
        done = [s for s in self.running if s.status.is_finished]
        if done:
            self.running = [s for s in self.running if not s.status.is_finished]
            for seq in done:
                self._release(seq)
        return done

    def abort(self, request_id: str) -> Sequence | None:
        for queue in (self.waiting, self.running):
            for seq in queue:
                if seq.request_id == request_id:
                    queue.remove(seq)
                    seq.finish(SequenceStatus.FINISHED_ABORTED)
                    self._release(seq)
                    return seq
        return None

    def _release(self, seq: Sequence) -> None:
        if self.kv_pool is not None and seq.kv_slot is not None:
            self.kv_pool.free(seq.kv_slot)
            seq.kv_slot = None
