"""A recording HTTPS webhook receiver on 127.0.0.1, for the simulator tests of senders (the
Apple notifier and API); imported by the tests that use it (the fixtures are in conftest.py)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from simulators.pki import PKI

__all__ = ["Received", "RecordingReceiver", "ca", "receiver"]


@dataclass
class Received:
    headers: dict[str, str]
    body: Any


@dataclass
class RecordingReceiver:
    """A webhook receiver that records every request and answers with ``answer(n)``."""

    url: str = ""
    requests: list[Received] = field(default_factory=list)
    answer: Callable[[int], int] = lambda n: 200
    arrived: asyncio.Event = field(default_factory=asyncio.Event)


@asynccontextmanager
async def receiver(
    pki: PKI, answer: Callable[[int], int] = lambda n: 200
) -> AsyncIterator[RecordingReceiver]:
    rec = RecordingReceiver(answer=answer)

    async def handle(request: web.Request) -> web.Response:
        rec.requests.append(Received(dict(request.headers), json.loads(await request.read())))
        rec.arrived.set()
        return web.Response(status=rec.answer(len(rec.requests)))

    app = web.Application(client_max_size=16 * 1024 * 1024)
    app.router.add_post("/notify", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=pki.server_context(pki.sut_server))
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    rec.url = f"https://127.0.0.1:{port}/notify"
    try:
        yield rec
    finally:
        await runner.cleanup()


def ca(pki: PKI) -> tuple[str, ...]:
    return (str(pki.ca),)
