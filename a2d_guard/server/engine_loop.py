"""The one loop that owns the ``LLMEngine`` (DESIGN §9).

Why a dedicated thread: ``LLMEngine`` is single-threaded by design and a model step blocks
for as long as the forward takes; running it on the HTTP event loop would stall every
connection for every step. So the HTTP side never touches the engine: it puts new requests
and aborts into a thread-safe inbox and reads its results from an asyncio queue (a
``Sink``) that this thread fills with ``loop.call_soon_threadsafe``. Between two steps the
loop drains the inbox, so every running request shares each model step (up to
``max_num_seqs``), and sleeps on an event when there is nothing to do.

Events delivered to a sink: ``Visible(request_id, token_ids)`` when the committed prefix of
a watched request grew, ``Finished(request_id, output)`` once, and ``Failed(request_id,
message)`` if the loop itself died.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from dataclasses import dataclass, field

from a2d_guard.config import SamplingParams
from a2d_guard.engine.llm_engine import LLMEngine
from a2d_guard.engine.outputs import RequestOutput
from a2d_guard.errors import A2DGuardError

log = logging.getLogger("a2d_guard.server")


@dataclass
class Visible:
    request_id: str
    token_ids: list[int]


@dataclass
class Finished:
    request_id: str
    output: RequestOutput


@dataclass
class Failed:
    request_id: str
    message: str


class Sink:
    """Where one HTTP request waits for its events (all of its ``n`` samples share one)."""

    def __init__(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.queue: asyncio.Queue = asyncio.Queue()


def _deliver(batch: list[tuple[Sink, object]]) -> None:  # runs on the HTTP event loop
    for sink, event in batch:
        sink.queue.put_nowait(event)


@dataclass
class Submission:
    request_id: str
    prompt_ids: list[int]
    params: SamplingParams
    sink: Sink
    watch: bool = False  # deliver ``Visible`` events (streams, stop strings)
    arrival: float = field(default_factory=time.monotonic)
    num_visible: int = -1  # length of the last delivered visible prefix
    first_token_time: float | None = None


class EngineLoop:
    def __init__(self, engine: LLMEngine, metrics=None, idle_wait_s: float = 0.05):
        self.engine = engine
        self.metrics = metrics
        self.idle_wait_s = idle_wait_s
        self._inbox: queue.SimpleQueue = queue.SimpleQueue()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._live: dict[str, Submission] = {}  # only touched by the loop thread
        self._pending = 0  # submitted and not finished, across threads
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="a2d-engine-loop", daemon=True)
        self._outbox: list[tuple[Sink, object]] = []  # events of the current step, sent together
        self.error: str | None = None

    # -- HTTP side --------------------------------------------------------------------
    @property
    def is_alive(self) -> bool:
        return self._thread.is_alive() and self.error is None

    @property
    def num_pending(self) -> int:
        """Requests submitted and not finished yet (running, waiting, or still in the inbox)."""
        return self._pending

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float | None = None) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def submit(self, sub: Submission) -> None:
        if not self.is_alive:
            raise RuntimeError("the engine loop is not running")
        with self._lock:
            self._pending += 1
        self._inbox.put(("add", sub))
        self._wake.set()

    def abort(self, request_id: str) -> None:
        self._inbox.put(("abort", request_id))
        self._wake.set()

    # -- the loop ---------------------------------------------------------------------
    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                self._wake.clear()
                self._drain_inbox()
                if not self.engine.has_unfinished_requests():
                    self._flush()
                    self._wake.wait(self.idle_wait_s)
                    continue
                self._step()
                self._flush()
        except BaseException as exc:  # a bug: fail every waiting request, report unhealthy
            self.error = f"{type(exc).__name__}: {exc}"
            log.exception("engine loop died")
            for sub in list(self._live.values()):
                self._finish(sub, Failed(sub.request_id, f"the engine failed: {self.error}"))
            self._flush()

    def _send(self, sub: Submission, event) -> None:
        self._outbox.append((sub.sink, event))

    def _flush(self) -> None:
        """Hand a step's events to the HTTP side: one wake-up per event loop, not one per event."""
        if not self._outbox:
            return
        by_loop: dict[asyncio.AbstractEventLoop, list] = {}
        for sink, event in self._outbox:
            by_loop.setdefault(sink.loop, []).append((sink, event))
        self._outbox = []
        for loop, batch in by_loop.items():
            if not loop.is_closed():
                loop.call_soon_threadsafe(_deliver, batch)

    def _drain_inbox(self) -> None:
        while True:
            try:
                kind, item = self._inbox.get_nowait()
            except queue.Empty:
                return
            if kind == "add":
                try:
                    self.engine.add_request(item.request_id, item.prompt_ids, item.params)
                except A2DGuardError as exc:  # validated on the HTTP side; defensive
                    self._finish(item, Failed(item.request_id, str(exc)))
                    continue
                self._live[item.request_id] = item
            elif kind == "abort":
                self.engine.abort(item)

    def _step(self) -> None:
        t0 = time.perf_counter()
        running = self.engine.num_running + min(self.engine.num_waiting,
                                                self.engine.scheduler.max_num_seqs - self.engine.num_running)
        outputs = self.engine.step()
        if self.metrics is not None:
            self.metrics.observe_step(time.perf_counter() - t0, running, self.engine.scheduler.max_num_seqs)
        for out in outputs:
            sub = self._live.get(out.request_id)
            if sub is not None:
                self._note_visible(sub, out.outputs[0].token_ids)
                self._finish(sub, Finished(out.request_id, out))
        for sub in self._live.values():
            if sub.watch or sub.first_token_time is None:
                visible = self.engine.visible_token_ids(sub.request_id)
                if visible is not None and len(visible) != sub.num_visible:
                    self._note_visible(sub, visible)
                    if sub.watch:
                        self._send(sub, Visible(sub.request_id, visible))

    def _note_visible(self, sub: Submission, visible: list[int]) -> None:
        sub.num_visible = len(visible)
        if visible and sub.first_token_time is None:
            sub.first_token_time = time.monotonic()
            if self.metrics is not None:
                self.metrics.time_to_first_token.observe(sub.first_token_time - sub.arrival)

    def _finish(self, sub: Submission, event) -> None:
        self._live.pop(sub.request_id, None)
        with self._lock:
            self._pending -= 1
        if self.metrics is not None and isinstance(event, Finished):
            self.metrics.observe_finished(event.output, time.monotonic() - sub.arrival)
        self._send(sub, event)
