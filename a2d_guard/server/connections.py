"""Connection limits uvicorn does not have: a client that holds a socket must keep sending.

uvicorn (httptools) closes an idle keep-alive connection after ``timeout_keep_alive``, but
it waits for ever for the first byte of a fresh connection, for the rest of a request's
headers and for its body, and it takes any number of connections. So 400 idle or
half-sent sockets (slowloris) exhaust the process's file descriptors and every other
client fails. This protocol, a subclass of uvicorn's own, adds:

- ``timeout_header``: from the connection (or the first byte of a request) to its last
  header; then 408 and close;
- ``timeout_body``: from the last header to the last body byte; then 408 and close (the
  app sees a disconnect);
- ``max_connections``: a connection beyond it is answered 503 at once and closed, so the
  descriptors the server holds stay bounded.
"""

from __future__ import annotations

import asyncio
import json
import logging

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

log = logging.getLogger("a2d_guard.server")


def _raw_response(status: str, message: str, type: str) -> bytes:
    body = json.dumps({"error": {"message": message, "type": type, "param": None, "code": None}}).encode()
    return (f"HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\n"
            "connection: close\r\n\r\n").encode("ascii") + body


def guarded_protocol(timeout_header: float, timeout_body: float, max_connections: int) -> type:
    """An ``HttpToolsProtocol`` class with these limits (uvicorn's ``Config(http=...)``)."""

    class GuardedHttpProtocol(HttpToolsProtocol):
        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._deadline: asyncio.TimerHandle | None = None
            if len(self.connections) > max_connections:
                log.warning("refused a connection: %d open, --max-connections is %d", len(self.connections) - 1,
                            max_connections)
                transport.write(_raw_response("503 Service Unavailable", "too many open connections; retry later",
                                              "service_unavailable"))
                transport.close()
                return
            self._arm(timeout_header, "the request headers did not arrive in time")

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def on_message_begin(self) -> None:
            super().on_message_begin()
            if self._deadline is None:  # a keep-alive connection's next request
                self._arm(timeout_header, "the request headers did not arrive in time")

        def on_headers_complete(self) -> None:
            self._disarm()
            super().on_headers_complete()
            self._arm(timeout_body, "the request body did not arrive in time")

        def on_message_complete(self) -> None:
            self._disarm()
            super().on_message_complete()

        def _arm(self, seconds: float, why: str) -> None:
            self._disarm()
            self._deadline = self.loop.call_later(seconds, self._expire, why)

        def _disarm(self) -> None:
            deadline = getattr(self, "_deadline", None)
            if deadline is not None:
                deadline.cancel()
                self._deadline = None

        def _expire(self, why: str) -> None:
            self._deadline = None
            if self.transport.is_closing():
                return
            if self.cycle is None or not self.cycle.response_started:
                self.transport.write(_raw_response("408 Request Timeout", f"{why}; send the whole request at once",
                                                   "invalid_request_error"))
            self.transport.close()

    return GuardedHttpProtocol
