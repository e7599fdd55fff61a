"""Shared pieces of the Pelion simulator tests: a running simulator, an HTTPS client for its API
and a recording callback receiver, all on 127.0.0.1 with the test PKI."""

from __future__ import annotations

import asyncio
import inspect
import json
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web

from simulators.clock import Clock
from simulators.evidence import Recorder
from simulators.pelion.operations import PelionTarget
from simulators.pelion.simulator import PelionConfig, PelionSimulator
from simulators.pki import PKI

KEY = "ak_1MDE2MTk1NzFmNmU4MDI0MmFjMTIwMDA2MDAwMDAwMDA01619571f7020242ac12000600000000"
AUTH = {"Authorization": f"Bearer {KEY}"}
EP = "0172b9ba5409000000000001001117f5"


def target(sim: PelionSimulator) -> PelionTarget:
    """What an operation acts on: ``sim`` and its run's key."""
    return PelionTarget(sim, sim.api_key)


@asynccontextmanager
async def running(pki: PKI, **config: Any) -> AsyncIterator[PelionSimulator]:
    """A started simulator for :data:`KEY`; fails the test if it logged a harness error."""
    clock = Clock()
    config.setdefault("cafiles", (str(pki.ca),))
    sim = PelionSimulator(
        clock, Recorder(clock), pki.server_context(), PelionConfig(api_key=KEY, **config)
    )
    await sim.start()
    try:
        yield sim
    finally:
        await sim.stop()
    assert sim.errors() == []


@asynccontextmanager
async def client(pki: PKI) -> AsyncIterator[aiohttp.ClientSession]:
    context = ssl.create_default_context(cafile=str(pki.ca))
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context)) as session:
        yield session


async def call(
    session: aiohttp.ClientSession,
    sim: PelionSimulator,
    method: str,
    path: str,
    *,
    headers: dict[str, str] | None = None,
    **kwargs: Any,
) -> tuple[int, str, Any]:
    """One call to the simulated API: (status, text, JSON or None)."""
    async with session.request(
        method, sim.base_url + path, headers=AUTH if headers is None else headers, **kwargs
    ) as response:
        text = await response.text()
        try:
            data = json.loads(text) if text else None
        except ValueError:
            data = None
        return response.status, text, data


@dataclass
class Put:
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body)

    def items(self) -> list[tuple[str, Any]]:
        """(kind, item) for every item of a NotificationMessage body."""
        return [(kind, item) for kind, items in self.json.items() for item in items]


Answer = Callable[[int, Put], int | Awaitable[int]]


@dataclass
class Receiver:
    """A callback receiver: records every PUT, answers ``answer(n, put)`` (n from 1)."""

    answer: Answer
    url: str = ""
    puts: list[Put] = field(default_factory=list)
    in_flight: int = 0
    max_in_flight: int = 0
    _arrived: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def batches(self) -> list[Put]:
        """The PUTs other than verifications (``{}``)."""
        return [p for p in self.puts if p.body != b"{}"]

    def items(self) -> list[tuple[str, Any]]:
        return [pair for put in self.batches for pair in put.items()]

    async def wait(self, predicate: Callable[[], bool], timeout: float = 10.0) -> None:
        """Until ``predicate()`` holds after some PUT (bounded)."""
        async with asyncio.timeout(timeout):
            while not predicate():
                self._arrived.clear()
                await self._arrived.wait()


@asynccontextmanager
async def receiver(pki: PKI, answer: Answer = lambda n, put: 204) -> AsyncIterator[Receiver]:
    rec = Receiver(answer)

    async def handle(request: web.Request) -> web.Response:
        put = Put(dict(request.headers), await request.read())
        rec.puts.append(put)
        rec.in_flight += 1
        rec.max_in_flight = max(rec.max_in_flight, rec.in_flight)
        try:
            status = rec.answer(len(rec.puts), put)
            if inspect.isawaitable(status):
                status = await status
        finally:
            rec.in_flight -= 1
            rec._arrived.set()
        return web.Response(status=status)

    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_put("/cb", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=pki.server_context(pki.sut_server))
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    rec.url = f"https://127.0.0.1:{port}/cb"
    try:
        yield rec
    finally:
        await runner.cleanup()


def notification(n: int, ep: str = EP) -> dict[str, Any]:
    """A raw ``notifications`` item body (payload: the number as text)."""
    import base64

    payload = base64.b64encode(str(n).encode()).decode()
    return {"ep": ep, "path": "/3200/0/5501", "ct": "text/plain", "payload": payload, "max-age": 0}
