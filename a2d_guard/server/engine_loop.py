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
message, status)`` when the request could not be decoded through no fault of its own.

No request takes the loop down: the engine fails a request whose own step raises alone
(``finish_reason="error"``); a fault it cannot pin on one request (the scheduler, a bug
here) fails every queued and running request with an answer, resets the engine and runs
on. Only ``MAX_RESTARTS`` such faults within ``RESTART_WINDOW_S`` stop the loop for good,
and then ``/health`` says so and every request still waiting is answered.
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

MAX_RESTARTS = 5  # faults no request can be blamed for, within RESTART_WINDOW_S, before the loop gives up
RESTART_WINDOW_S = 60.0


class EngineUnavailable(RuntimeError):
    """The loop has stopped (shut down, or it gave up after repeated faults)."""


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
    status: int = 500  # 503: the server shut down or the engine stopped before the request finished


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
    stop_cut: bool = False  # aborted because a stop string is visible: it finished with "stop"


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
        self._closed = False  # set (under the lock) once the loop will take no more submissions
        self._faults: list[float] = []  # times of recent faults no request could be blamed for
        self.restarts = 0
        self.error: str | None = None

    # -- HTTP side --------------------------------------------------------------------
    @property
    def is_alive(self) -> bool:
        return self._thread.is_alive() and self.error is None

    @property
    def has_started(self) -> bool:
        """``start()`` was called (a loop not started yet is not a dead one)."""
        return self._thread.ident is not None

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
        """Queue a request; ``EngineUnavailable`` once the loop has stopped (never a silent drop:
        a submission accepted here is answered, even if the loop dies before it runs)."""
        with self._lock:
            if self._closed or not self._thread.is_alive():
                raise EngineUnavailable(self.error or "the engine loop is not running")
            self._pending += 1
            self._inbox.put(("add", sub))
        self._wake.set()

    def abort(self, request_id: str, stop_cut: bool = False) -> None:
        """Stop decoding a request; ``stop_cut``: it ended at a visible stop string (``stop``)."""
        self._inbox.put(("stop" if stop_cut else "abort", request_id))
        self._wake.set()

    def fail_all(self, message: str, status: int = 503) -> None:
        """Answer every queued and running request with ``Failed(message, status)`` (the
        server's shutdown timeout ran out) and free their slots."""
        self._inbox.put(("fail_all", (message, status)))
        self._wake.set()

    # -- the loop ---------------------------------------------------------------------
    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                try:
                    self._iterate()
                except Exception as exc:  # a fault no request can be blamed for
                    if not self._recover(exc):
                        break
        except BaseException as exc:  # KeyboardInterrupt, SystemExit, a failed recovery
            self.error = self.error or f"{type(exc).__name__}: {exc}"
            log.exception("engine loop died")
        finally:
            self._close()

    def _iterate(self) -> None:
        self._wake.clear()
        self._drain_inbox()
        if not self.engine.has_unfinished_requests():
            self._flush()
            self._wake.wait(self.idle_wait_s)
            return
        self._step()
        self._flush()

    def _recover(self, exc: Exception) -> bool:
        """Fail every live request (each gets an answer), reset the engine; False = give up."""
        from a2d_guard.engine.llm_engine import describe

        now = time.monotonic()
        self._faults = [t for t in self._faults if now - t < RESTART_WINDOW_S] + [now]
        log.error("engine step failed; failing its %d requests and restarting", len(self._live), exc_info=exc)
        message = f"internal error: the engine step failed ({describe(exc)}); the request was not decoded"
        for sub in list(self._live.values()):
            self._finish(sub, Failed(sub.request_id, message))
        self.engine.reset(message)  # frees every batch and K/V slot (its outputs: already answered above)
        self._flush()
        if len(self._faults) > MAX_RESTARTS:
            self.error = (f"{len(self._faults)} engine faults in {RESTART_WINDOW_S:.0f} s, the last: "
                          f"{describe(exc)}; restart the server")
            return False
        self.restarts += 1
        return True

    def _close(self) -> None:
        """No more submissions; answer every request still live or in the inbox."""
        with self._lock:
            self._closed = True
        message = f"the engine stopped: {self.error}" if self.error else "the server is shutting down"
        for sub in list(self._live.values()):
            self._finish(sub, Failed(sub.request_id, message, status=503))
        while True:
            try:
                kind, item = self._inbox.get_nowait()
            except queue.Empty:
                break
            if kind == "add":
                self._finish(item, Failed(item.request_id, message, status=503))
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
                    self._finish(item, Failed(item.request_id, str(exc), status=400))
                    continue
                except Exception as exc:  # a bug in adding this one request: it fails alone
                    log.error("request %s could not be added", item.request_id, exc_info=exc)
                    self._finish(item, Failed(item.request_id, f"internal error: {type(exc).__name__}"))
                    continue
                self._live[item.request_id] = item
            elif kind in ("abort", "stop"):
                if kind == "stop" and item in self._live:
                    self._live[item].stop_cut = True
                self.engine.abort(item)
            elif kind == "fail_all":
                message, status = item
                for sub in list(self._live.values()):
                    self._finish(sub, Failed(sub.request_id, message, status=status))
                self.engine.reset(message)

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
            reason = "stop" if sub.stop_cut else None
            self.metrics.observe_finished(event.output, time.monotonic() - sub.arrival, reason=reason)
        self._send(sub, event)
