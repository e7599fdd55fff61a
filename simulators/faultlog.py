"""Errors the simulators raise in the background, kept for the harness (never lost, never blamed
on the SUT).

An exception in a request handler or a background task is the simulator's own fault. It is
answered (500, for a handler) or ended (a task), and written here; the harness turns any error
that appears while a check runs into that check's ``error`` verdict.
"""

from __future__ import annotations

import asyncio
import threading
import traceback
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Middleware

__all__ = ["FaultLog"]

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class FaultLog:
    """A thread-safe list of a simulator's own errors, bounded (the rest are counted)."""

    def __init__(self, actor: str, limit: int = 50) -> None:
        self.actor = actor
        self._lock = threading.Lock()
        self._errors: list[str] = []
        self._limit = limit
        self.count = 0

    def add(self, where: str, exc: BaseException) -> None:
        frame = traceback.extract_tb(exc.__traceback__)[-1:] if exc.__traceback__ else []
        at = f" at {frame[0].filename.rsplit('/', 1)[-1]}:{frame[0].lineno}" if frame else ""
        with self._lock:
            self.count += 1
            if len(self._errors) < self._limit:
                self._errors.append(f"{self.actor}: {where}: {type(exc).__name__}: {exc}{at}")

    def errors(self) -> list[str]:
        with self._lock:
            return list(self._errors)

    def watch(self, task: asyncio.Task[Any], where: str) -> None:
        """Write the task's exception here when it ends with one."""

        def done(t: asyncio.Task[Any]) -> None:
            if not t.cancelled() and (exc := t.exception()) is not None:
                self.add(where, exc)

        task.add_done_callback(done)

    def middleware(self) -> Middleware:
        """An aiohttp middleware: an unexpected exception in a handler is written here and
        answered 500 with a JSON body saying it is the simulator's fault."""

        @web.middleware
        async def capture(request: web.Request, handler: Handler) -> web.StreamResponse:
            try:
                return await handler(request)
            except (web.HTTPException, asyncio.CancelledError):
                raise
            except Exception as exc:
                self.add(f"{request.method} {request.path}", exc)
                return web.json_response(
                    {"error": f"simulator fault ({type(exc).__name__}); see the report"},
                    status=500,
                )

        return capture
