"""simulators.faultlog: a simulator's own exceptions are answered, kept, and never lost."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from simulators.faultlog import FaultLog


def test_handler_exception_is_kept_and_answered_500_over_a_real_socket() -> None:
    log = FaultLog("sim")

    async def broken(request: web.Request) -> web.Response:
        raise KeyError("eventId")

    async def fine(request: web.Request) -> web.Response:
        raise web.HTTPNotFound()  # an HTTP answer, not a fault

    async def scenario() -> tuple[int, Any, int]:
        app = web.Application(middlewares=[log.middleware()])
        app.router.add_get("/broken", broken)
        app.router.add_get("/fine", fine)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        try:
            async with aiohttp.ClientSession() as session:
                async with session.get(f"http://127.0.0.1:{port}/broken") as answer:
                    body = await answer.json()
                    status = answer.status
                async with session.get(f"http://127.0.0.1:{port}/fine") as answer:
                    other = answer.status
        finally:
            await runner.cleanup()
        return status, body, other

    status, body, other = asyncio.run(scenario())
    assert status == 500 and "simulator fault" in body["error"]
    assert other == 404
    assert len(log.errors()) == 1
    assert "sim: GET /broken: KeyError" in log.errors()[0]


def test_background_task_exception_is_kept() -> None:
    log = FaultLog("sim")

    async def fails() -> None:
        raise RuntimeError("lost otherwise")

    async def scenario() -> None:
        task = asyncio.ensure_future(fails())
        log.watch(task, "delivery loop")
        with pytest.raises(RuntimeError):
            await task
        await asyncio.sleep(0)

    asyncio.run(scenario())
    assert log.errors() and "delivery loop: RuntimeError: lost otherwise" in log.errors()[0]
