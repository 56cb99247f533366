"""Run the app under uvicorn: bind, announce, drain on SIGTERM/SIGINT.

Draining: on the first SIGTERM/SIGINT the server stops admitting: it keeps listening, so a
new request is answered 503 (not refused at the socket) and ``/health`` turns 503
"draining", while running requests get up to ``shutdown_timeout`` seconds to finish. Those
still running then are answered too (503 with OpenAI's error body; a stream gets an error
chunk and ``[DONE]``), and only then does uvicorn close the socket and the connections; the
engine loop stops and the process exits 0. A second SIGTERM or SIGINT exits at once
(``ForcedExit``: the CLI exits 1 and says how many requests were cut off).
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
import time
from collections.abc import Callable

from a2d_guard.errors import A2DGuardError
from a2d_guard.server.settings import ServerConfig

log = logging.getLogger("a2d_guard.server")
FLUSH_S = 5.0  # after the timeout: time for the 503 answers to reach their clients


class ForcedExit(A2DGuardError):
    """A second exit signal: the server stopped without draining."""


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening socket (port 0 = an ephemeral port); a port in use is a user error."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise A2DGuardError(f"cannot listen on {host}:{port} ({exc.strerror}); pick another --port or --host") from None
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def url_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def load_llm(config: ServerConfig):
    from a2d_guard.engine.llm import LLM

    return LLM(config.model, adapter=config.adapter, max_num_seqs=config.batch, dtype=config.dtype,
               device=config.device, family=config.family, trust_remote_code=config.trust_remote_code,
               seed=config.seed, cache=config.cache, max_model_len=config.max_model_len)


def make_server(llm, config: ServerConfig, on_ready: Callable | None = None):
    """A uvicorn ``Server`` for the app whose first exit signal turns the app to draining."""
    import uvicorn

    from a2d_guard.server.app import build_app

    app = build_app(llm, config, on_ready=on_ready)
    state = app.state.server

    from a2d_guard.server.connections import guarded_protocol

    class DrainingServer(uvicorn.Server):
        forced_with = 0  # requests still open when a second signal forced the exit

        def handle_exit(self, sig, frame) -> None:
            state.draining = True
            if self.should_exit:  # the second signal (uvicorn forces only on a second SIGINT)
                self.forced_with = state.loop.num_pending
                self.force_exit = True
            self.should_exit = True

        async def shutdown(self, sockets=None) -> None:
            """Drain while still listening (new requests: 503), answer what is left, then close."""
            state.draining = True
            deadline = time.monotonic() + config.shutdown_timeout
            while state.loop.num_pending and time.monotonic() < deadline and not self.force_exit:
                await asyncio.sleep(0.05)
            if state.loop.num_pending and not self.force_exit:
                log.warning("shutdown timeout: answering %d unfinished requests with 503", state.loop.num_pending)
                state.loop.fail_all(f"the server shut down before this request finished (--shutdown-timeout "
                                    f"{config.shutdown_timeout:g} s); retry on another replica")
            flush = time.monotonic() + FLUSH_S
            while (state.loop.num_pending or state.open_responses) and time.monotonic() < flush \
                    and not self.force_exit:
                await asyncio.sleep(0.02)
            await super().shutdown(sockets)

    uv_config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on",
                               timeout_graceful_shutdown=FLUSH_S, timeout_keep_alive=config.timeout_keep_alive,
                               http=guarded_protocol(config.timeout_header, config.timeout_body,
                                                     config.max_connections))
    return DrainingServer(uv_config)


def serve(llm, config: ServerConfig, sock: socket.socket, on_ready: Callable | None = None) -> None:
    """Serve until a signal; blocks. ``sock`` is bound already (see ``bind_socket``).
    Raises ``ForcedExit`` when a second signal cut the drain short."""
    server = make_server(llm, config, on_ready)
    server.run(sockets=[sock])
    if server.force_exit:
        raise ForcedExit(f"forced exit by a second signal: {server.forced_with} request(s) were cut off "
                         "without an answer")


class BackgroundServer:
    """The server on a thread of this process (tests, notebooks): ``with BackgroundServer(llm, cfg) as url:``.

    Signals are not installed off the main thread; ``stop()`` drains like SIGTERM does.
    """

    def __init__(self, llm, config: ServerConfig):
        self.sock = bind_socket(config.host, config.port)
        self.url = url_of(self.sock)
        self._ready = threading.Event()
        self.server = make_server(llm, config, on_ready=lambda state: self._ready.set())
        self.state = self.server.config.app.state.server
        self._thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    def start(self, timeout: float = 60.0) -> str:
        self._thread.start()
        if not self._ready.wait(timeout):
            raise RuntimeError("the server did not start in time")
        return self.url

    def stop(self, timeout: float = 60.0) -> None:
        self.state.draining = True
        self.server.should_exit = True
        self._thread.join(timeout)
        self.sock.close()

    def __enter__(self) -> str:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
