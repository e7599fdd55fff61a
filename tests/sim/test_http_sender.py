"""simulators.http_sender over real HTTPS on 127.0.0.1: the bytes sent, the bounded answer, the
timeout, connection errors and the two transport faults (drop, stall), each as an Exchange."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import pytest
from aiohttp import web

from simulators.clock import Clock
from simulators.http_sender import ANSWER_READ_LIMIT, Exchange, HttpSender
from simulators.pki import PKI

HEADERS = {"Authorization": "Bearer t", "Content-Type": "application/json"}
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@asynccontextmanager
async def serving(pki: PKI, handler: Handler) -> AsyncIterator[str]:
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=pki.server_context(pki.sut_server))
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"https://127.0.0.1:{port}/hook?x=1"
    finally:
        await runner.cleanup()


def _sender(pki: PKI, timeout_s: float = 2.0) -> HttpSender:
    return HttpSender(Clock(), timeout_s=timeout_s, cafiles=(str(pki.ca),))


def test_sends_exactly_these_bytes_and_reads_a_bounded_answer(pki: PKI) -> None:
    seen: list[tuple[str, str, bytes, str | None]] = []

    async def handler(request: web.Request) -> web.StreamResponse:
        seen.append(
            (
                request.method,
                request.path_qs,
                await request.read(),
                request.headers.get("Authorization"),
            )
        )
        if request.method == "PUT":
            return web.Response(status=302, headers={"Location": "/elsewhere"})
        return web.Response(status=202, body=b"x" * (ANSWER_READ_LIMIT * 4))

    async def scenario() -> tuple[Exchange, Exchange]:
        async with serving(pki, handler) as url:
            sender = _sender(pki)
            posted = await sender.send("POST", url, b'{"a": 1}', HEADERS)
            put = await sender.send("PUT", url, b"{}", HEADERS)  # a redirect is an answer
            await sender.close()
            return posted, put

    posted, put = asyncio.run(scenario())
    assert seen == [
        ("POST", "/hook?x=1", b'{"a": 1}', "Bearer t"),
        ("PUT", "/hook?x=1", b"{}", "Bearer t"),
    ]
    assert (posted.status, posted.answered, posted.error, posted.sent_bytes) == (202, 202, None, 8)
    assert posted.outcome == "answered" and posted.succeeded and posted.acknowledged
    assert 0 < posted.elapsed_real_s < 2 and posted.fault is None
    assert (put.status, put.succeeded) == (302, False)


def test_no_answer_in_time_and_no_connection_are_errors_not_exceptions(pki: PKI) -> None:
    answer = asyncio.Event()  # the receiver answers only once the sender has given up

    async def slow(request: web.Request) -> web.StreamResponse:
        await answer.wait()
        return web.Response(status=200)

    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        closed_port = unused.getsockname()[1]

    async def scenario() -> tuple[Exchange, Exchange]:
        async with serving(pki, slow) as url:
            sender = _sender(pki)
            late = await sender.send("POST", url, b"{}", HEADERS, timeout_s=0.2)
            answer.set()
            refused = await sender.send("POST", f"https://127.0.0.1:{closed_port}/", b"{}", {})
            await sender.close()
            return late, refused

    late, refused = asyncio.run(scenario())
    assert (late.status, late.timed_out, late.outcome) == (None, True, "timeout")
    assert late.error == "no answer within 0.2 s" and 0.2 <= late.elapsed_real_s < 1.0
    assert (refused.status, refused.timed_out, refused.outcome) == (None, False, "error")
    assert refused.error is not None and len(refused.error) <= 300


def test_drop_delivers_the_request_and_keeps_the_status_the_receiver_began(pki: PKI) -> None:
    bodies: list[bytes] = []

    async def handler(request: web.Request) -> web.StreamResponse:
        bodies.append(await request.read())
        return web.Response(status=204)

    async def scenario() -> tuple[Exchange, list[str]]:
        notes: list[str] = []
        async with serving(pki, handler) as url:
            sender = _sender(pki)
            dropped = await sender.send(
                "POST", url, b'{"n": 1}', HEADERS, raw="drop", fault="drop_after_send",
                on_fault=notes.append,
            )  # fmt: skip
            await sender.close()
        return dropped, notes

    dropped, notes = asyncio.run(scenario())
    assert bodies == [b'{"n": 1}']
    assert (dropped.status, dropped.answered, dropped.dropped_status) == (None, None, 204)
    assert dropped.fault == "drop_after_send" and dropped.acknowledged and not dropped.succeeded
    assert dropped.error == "connection dropped after the request was sent (fault)"
    assert len(notes) == 1 and notes[0].startswith("connection aborted after the request was sent")


def test_stall_sends_half_a_request_and_keeps_the_receiver_waiting(pki: PKI) -> None:
    bodies: list[bytes] = []

    async def handler(request: web.Request) -> web.StreamResponse:
        bodies.append(await request.read())
        return web.Response(status=200)

    async def scenario() -> tuple[Exchange, list[str]]:
        notes: list[str] = []
        async with serving(pki, handler) as url:
            sender = _sender(pki, timeout_s=0.3)
            stalled = await sender.send(
                "PUT", url, b"0123456789", HEADERS, raw="stall", on_fault=notes.append
            )
            await sender.close()
        return stalled, notes

    stalled, notes = asyncio.run(scenario())
    assert bodies == []  # never a whole request
    assert (stalled.status, stalled.timed_out, stalled.outcome, stalled.fault) == (
        None, True, "timeout", "stall"
    )  # fmt: skip
    assert stalled.elapsed_real_s >= 0.3
    assert notes == ["stalled mid-body for 0.3 s (real)"]


@pytest.mark.parametrize(
    "exchange, outcome, acknowledged",
    [
        (Exchange(200, 200), "answered", True),
        (Exchange(500, 204, fault="status"), "answered", True),  # counted otherwise
        (Exchange(None, 204, "ignored", timed_out=True, fault="timeout"), "timeout", True),
        (Exchange(None, None, "reset"), "error", False),
        (Exchange(None, None, "dropped", dropped_status=200), "error", True),
        (Exchange(500, None, sent=False, fault="unsent"), "unsent", False),
    ],
)
def test_outcome_and_acknowledged(exchange: Exchange, outcome: str, acknowledged: bool) -> None:
    assert exchange.outcome == outcome and exchange.acknowledged is acknowledged
