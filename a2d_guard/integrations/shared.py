"""One ``Guard`` per adapter, built on first use and checked one batch at a time."""

from __future__ import annotations

import asyncio
import threading


class GuardHandle:
    """Holds a ``Guard`` (given, or built from ``Guard(**options)`` on the first check, so that
    constructing an adapter in a gateway's config loader loads no weights)."""

    def __init__(self, guard=None, **options):
        self._guard, self._options, self._lock = guard, options, threading.Lock()

    @property
    def guard(self):
        with self._lock:
            if self._guard is None:
                from a2d_guard.guard import Guard

                self._guard = Guard(**self._options)
            return self._guard

    def check(self, items: list) -> list:
        """Verdicts for Guard items (a prompt, or a ``(prompt, response)`` pair)."""
        guard = self.guard
        with self._lock:  # the model's forwards are not re-entrant across threads of one guard
            return guard.check_batch(items)

    async def acheck(self, items: list) -> list:
        """``check`` on a worker thread: a gateway's event loop keeps serving while it runs."""
        return await asyncio.to_thread(self.check, items)
