"""The observer endpoint (sut-contract.md §4): the SUT reports what it has processed.

``POST {base}/apple|ivanti|pelion`` with one JSON record or an array of records; answers 204.
Checks wait on it with a bounded timeout (:meth:`Observer.wait_for`).
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from simulators.clock import Clock
from simulators.evidence import Recorder

__all__ = ["Observation", "Observer"]

VENDORS = ("apple", "ivanti", "pelion")


@dataclass(frozen=True)
class Observation:
    vendor: str
    record: Any
    real_s: float


@dataclass
class Observer:
    clock: Clock
    recorder: Recorder
    port: int = 0
    observations: list[Observation] = field(default_factory=list)
    rejected: int = 0
    changed: threading.Condition = field(default_factory=threading.Condition)
    _runner: web.AppRunner | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/{vendor}", self._receive)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port)
        await site.start()
        server = site._server
        assert isinstance(server, asyncio.base_events.Server)
        self.port = server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _receive(self, request: web.Request) -> web.Response:
        vendor = request.match_info["vendor"]
        if vendor not in VENDORS:
            return web.json_response({"error": f"unknown vendor {vendor!r}"}, status=404)
        try:
            body = json.loads(await request.read())
        except ValueError:
            self.rejected += 1
            return web.json_response({"error": "body is not JSON"}, status=400)
        records = body if isinstance(body, list) else [body]
        now = self.clock.real()
        with self.changed:
            self.observations.extend(Observation(vendor, r, now) for r in records)
            self.changed.notify_all()
        self.recorder.record(
            "sut",
            "->",
            "observer",
            "observed",
            f"reported {len(records)} processed {vendor} record(s)",
            records=[_short(r) for r in records[:5]],
        )
        return web.Response(status=204)

    def records(self, vendor: str) -> list[Any]:
        with self.changed:
            return self._records(vendor)

    def wait_for(
        self, vendor: str, predicate: Callable[[list[Any]], bool], timeout: float
    ) -> list[Any]:
        """Block until ``predicate(records)`` holds or ``timeout`` passes; return the records."""
        with self.changed:
            self.changed.wait_for(lambda: predicate(self._records(vendor)), timeout)
            return self._records(vendor)

    def _records(self, vendor: str) -> list[Any]:
        return [o.record for o in self.observations if o.vendor == vendor]


def _label(vendor: str, record: Any) -> str:
    """A short name for a record: the notification type and id for Apple."""
    if vendor == "apple" and isinstance(record, dict):
        n = record.get("notification")
        if isinstance(n, dict):
            return f"{n.get('notificationType', '?')} {n.get('notificationId', '?')}"
    return "record"


def _short(record: Any) -> Any:
    text = json.dumps(record)
    return record if len(text) <= 300 else text[:300] + "…"
