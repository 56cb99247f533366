"""Run the app under uvicorn: bind, announce, drain on SIGTERM/SIGINT.

Draining: on the first SIGTERM/SIGINT the server stops admitting (new requests get 503,
``/health`` turns 503), uvicorn closes the listening socket and waits up to
``shutdown_timeout`` seconds for running requests to finish; then the engine loop stops and
the process exits 0. A second signal exits at once (uvicorn's behaviour).
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable

from a2d_guard.errors import A2DGuardError
from a2d_guard.server.settings import ServerConfig


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
               seed=config.seed, cache=config.cache)


def make_server(llm, config: ServerConfig, on_ready: Callable | None = None):
    """A uvicorn ``Server`` for the app whose first exit signal turns the app to draining."""
    import uvicorn

    from a2d_guard.server.app import build_app

    app = build_app(llm, config, on_ready=on_ready)
    state = app.state.server

    class DrainingServer(uvicorn.Server):
        def handle_exit(self, sig, frame) -> None:
            state.draining = True
            super().handle_exit(sig, frame)

    uv_config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on",
                               timeout_graceful_shutdown=config.shutdown_timeout)
    return DrainingServer(uv_config)


def serve(llm, config: ServerConfig, sock: socket.socket, on_ready: Callable | None = None) -> None:
    """Serve until a signal; blocks. ``sock`` is bound already (see ``bind_socket``)."""
    make_server(llm, config, on_ready).run(sockets=[sock])


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
