"""The server side of one notification WebSocket, over aiohttp (vendor doc, "WebSocket
interface"; docs/vendors/pelion.md §4.2).

The channel rules (status, binding, replacement, close codes, 24 h) live in
:class:`simulators.pelion.delivery.WebSocketDelivery`; this adapter carries frames and keeps
the record of one connection (:class:`ConnectionInfo`).

- "Device Management pushes notification events to the socket": one text frame per
  NotificationMessage (:meth:`Connection.send_message`); "the next patch [is sent] when the
  transport level has succeeded", i.e. when the frame is written. A client that stops reading
  holds a frame at most ``send_timeout_s`` (real) before the socket is dropped.
- "Device Management will ping your web service to keep the connection open. [...] If the ping
  frame is not responded within a few seconds, the connection is considered lost and the server
  will attempt closing the WebSocket with code 1001 (Going away), including a message about the
  ping timeout. The ping frame from the server consists of four bytes which the server expects
  the client to echo in the response frame ('pong')." → every ``ping_interval_s`` (real time;
  the interval is not documented) a 4-byte ping; a pong echoing it must come within
  ``pong_timeout_s`` (5 s, real), else close 1001 "ping timeout". A pong with other bytes does
  not count. Pings can be switched off (:attr:`Connection.pings_enabled`) for negative checks.
- The client's own pings are answered with a pong echoing their payload (RFC 6455 §5.5.2).
"""

from __future__ import annotations

import asyncio
import secrets
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import Literal

from aiohttp import WSMessage, WSMsgType, web

from simulators.clock import Clock
from simulators.pelion.delivery import PING_PAYLOAD_BYTES, REASON_PING_TIMEOUT, CloseCode
from simulators.problem import Problem

__all__ = ["Connection", "ConnectionInfo", "End", "PingRecord"]

End = Literal["client-close", "server-close", "lost", "dropped", "error"]
PINGS_KEPT = 200  # per connection; older ones are counted only
FRAMES_IN = 64 * 1024  # the largest message a client may send us


@dataclass(frozen=True, slots=True)
class PingRecord:
    """One server ping: ``latency_real_s`` is None when no matching pong came in time."""

    sent_real_s: float
    payload_hex: str
    latency_real_s: float | None = None
    timed_out: bool = False


@dataclass(frozen=True)
class ConnectionInfo:
    """What one connect attempt did: the handshake, pings and pongs, frames and the close.

    ``status`` is 101 for an accepted socket, else the HTTP status of the refused handshake.
    ``auth`` says how the key came (``bearer`` or ``subprotocol``; None when none did);
    ``key_valid`` whether it was accepted. Times are real seconds on the run's clock
    (``*_real_s``) or simulated (``*_sim_s``).
    """

    number: int
    status: int
    connected_real_s: float
    connected_sim_s: float
    key: str | None = None
    auth: Literal["bearer", "subprotocol"] | None = None
    key_valid: bool = False
    offered_subprotocols: tuple[str, ...] = ()
    subprotocol: str | None = None
    refusal: str | None = None  # why a handshake was refused
    pings: tuple[PingRecord, ...] = ()
    pings_sent: int = 0
    pongs_matched: int = 0
    pongs_unmatched: int = 0
    client_pings: int = 0
    frames_sent: int = 0
    items_sent: int = 0
    frames_received: int = 0
    close_sent: tuple[int, str] | None = None  # (code, reason) the server sent
    close_sent_real_s: float | None = None
    close_received: int | None = None  # the code of the client's close frame
    ended_real_s: float | None = None
    end: End | None = None

    @property
    def open(self) -> bool:
        return self.status == 101 and self.end is None


@dataclass(eq=False)
class Connection:
    """One accepted WebSocket. Hashable by identity: it is the ``socket`` handle the channel
    core binds."""

    ws: web.WebSocketResponse
    transport: asyncio.BaseTransport | None
    clock: Clock
    info: ConnectionInfo
    on_event: Callable[[Connection, str, str], None]  # (connection, kind, summary): evidence
    ping_interval_s: float | None = 30.0
    pong_timeout_s: float = 5.0
    send_timeout_s: float = 20.0
    pings_enabled: bool = True
    _pings: deque[PingRecord] = field(default_factory=lambda: deque(maxlen=PINGS_KEPT))
    _waiting_pong: tuple[bytes, asyncio.Future[float]] | None = None
    _closing: bool = False
    _pinger: asyncio.Task[None] | None = None
    _close_task: asyncio.Task[bool] | None = None
    _reading: asyncio.Task[WSMessage] | None = None  # run()'s pending read, if any

    def snapshot(self) -> ConnectionInfo:
        return replace(self.info, pings=tuple(self._pings))

    @property
    def closing(self) -> bool:
        return self._closing or self.info.end is not None or self.ws.closed

    def _update(self, **changes: object) -> None:
        self.info = replace(self.info, **changes)  # type: ignore[arg-type]

    # --- the read side -------------------------------------------------------------------

    async def run(self) -> End:
        """Read until the socket ends; answer client pings; match pongs. Returns how it ended."""
        if self.ping_interval_s is not None and self._pinger is None:
            self._pinger = asyncio.ensure_future(self._ping_loop())
        end: End = "lost"
        try:
            while True:
                reading = self._reading = asyncio.ensure_future(self.ws.receive())
                await asyncio.wait((reading,))
                if reading.cancelled():  # our close took the read over (see _close)
                    end = "server-close"
                    break
                msg = reading.result()
                kind = msg.type
                if kind in (WSMsgType.TEXT, WSMsgType.BINARY):
                    self._update(frames_received=self.info.frames_received + 1)
                    size = len(msg.data) if isinstance(msg.data, str | bytes) else 0
                    self.on_event(self, "frame-in", f"client sent a {kind.name} frame ({size} B)")
                elif kind is WSMsgType.PING:
                    self._update(client_pings=self.info.client_pings + 1)
                    await self.ws.pong(msg.data)
                elif kind is WSMsgType.PONG:
                    self._receive_pong(bytes(msg.data))
                elif kind is WSMsgType.CLOSE:
                    code = int(msg.data) if isinstance(msg.data, int) else None
                    self._update(close_received=code)
                    end = "server-close" if self._closing else "client-close"
                    break
                elif kind is WSMsgType.CLOSING:
                    end = "server-close"
                    break
                elif kind is WSMsgType.ERROR:
                    end = "server-close" if self._closing else "error"
                    break
                else:  # CLOSED: the connection ended without a close frame from the client
                    end = "server-close" if self._closing else "lost"
                    break
        finally:
            if self._reading is not None and not self._reading.done():
                self._reading.cancel()  # run() itself was cancelled
            if self._close_task is not None:
                await asyncio.gather(self._close_task, return_exceptions=True)
                code = self.ws.close_code
                if self.info.close_received is None and code not in (None, 1006):
                    self._update(close_received=code)  # the client's answer to our close
            if self._pinger is not None:
                self._pinger.cancel()
            if self.info.end is not None:
                end = self.info.end  # already decided (dropped)
            self._update(end=end, ended_real_s=self.clock.real())
        return end

    def _receive_pong(self, payload: bytes) -> None:
        waiting = self._waiting_pong
        if waiting is not None and waiting[0] == payload and not waiting[1].done():
            waiting[1].set_result(self.clock.real())
            self._update(pongs_matched=self.info.pongs_matched + 1)
        else:
            self._update(pongs_unmatched=self.info.pongs_unmatched + 1)

    # --- pings ---------------------------------------------------------------------------

    async def _ping_loop(self) -> None:
        assert self.ping_interval_s is not None
        while not self.closing:
            await self.clock.sleep_real(self.ping_interval_s)
            if self.pings_enabled and not self.closing:
                await self.ping()

    async def ping(self) -> PingRecord | None:
        """Send one 4-byte ping and wait (real time) for the pong that echoes it; close 1001
        "ping timeout" when none comes within ``pong_timeout_s``. None when the socket is
        closing or a ping is already waiting."""
        if self.closing or self._waiting_pong is not None:
            return None
        payload = secrets.token_bytes(PING_PAYLOAD_BYTES)
        waiter: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        self._waiting_pong = (payload, waiter)
        sent = self.clock.real()
        try:
            await self.ws.ping(payload)
        except (ConnectionError, RuntimeError):
            self._waiting_pong = None
            return None
        self._update(pings_sent=self.info.pings_sent + 1)
        try:
            pong = await asyncio.wait_for(waiter, self.pong_timeout_s)
        except TimeoutError:
            record = PingRecord(sent, payload.hex(), None, timed_out=True)
            self._pings.append(record)
            self._waiting_pong = None
            self.on_event(self, "ping-timeout", f"no pong to ping {payload.hex()} within "
                          f"{self.pong_timeout_s:g} s: closing 1001")  # fmt: skip
            self.close(CloseCode.GOING_AWAY, REASON_PING_TIMEOUT)
            return record
        finally:
            if self._waiting_pong is not None and self._waiting_pong[1] is waiter:
                self._waiting_pong = None
        record = PingRecord(sent, payload.hex(), pong - sent)
        self._pings.append(record)
        self.on_event(
            self, "pong", f"pong to ping {payload.hex()} in {(pong - sent) * 1000:.1f} ms"
        )
        return record

    # --- the write side ------------------------------------------------------------------

    async def send_message(self, data: bytes, items: int) -> Problem:
        """One NotificationMessage as one text frame; None when the transport took it, else
        why not (the socket is then dropped)."""
        if self.closing:
            return "the socket is closing"
        try:
            await asyncio.wait_for(
                self.ws.send_frame(data, WSMsgType.TEXT), timeout=self.send_timeout_s
            )
        except TimeoutError:
            self.drop()
            return f"the client did not take the frame within {self.send_timeout_s:g} s"
        except (ConnectionError, RuntimeError) as exc:
            return f"{type(exc).__name__}: {exc}"
        self._update(frames_sent=self.info.frames_sent + 1, items_sent=self.info.items_sent + items)
        return None

    async def send_raw(self, text: str) -> Problem:
        """Exactly this text as one frame (negative checks); None when it was written."""
        return await self.send_message(text.encode("utf-8", "surrogatepass"), 0)

    def close(self, code: int, reason: str) -> Awaitable[object]:
        """Start the close handshake with ``code`` and ``reason`` (at most once)."""
        if self._close_task is None and not self.ws.closed and self.info.end is None:
            self._closing = True
            self._update(close_sent=(code, reason), close_sent_real_s=self.clock.real())
            self.on_event(self, "close", f"server closes with {code} ({reason})")
            self._close_task = asyncio.ensure_future(self._close(code, reason))
        return self._close_task if self._close_task is not None else _done()

    async def _close(self, code: int, reason: str) -> bool:
        """Send the close frame, then read until the client's (RFC 6455 §7.1.1: the server
        closes TCP after the handshake). run()'s pending read is cancelled first: aiohttp's
        close() with a concurrent reader closes the transport right after its frame, and the
        client, writing its answer to a closing transport, sees 1006 instead of ``code``."""
        reading = self._reading
        if reading is not None and not reading.done():
            reading.cancel()
            await asyncio.wait((reading,))
        return await self.ws.close(code=code, message=reason.encode()[:123])

    def refused(self) -> End:
        """A socket closed by the server before it was used (a bad key): its end, recorded."""
        code = self.ws.close_code
        if code not in (None, 1006):
            self._update(close_received=code)
        self._update(end="server-close", ended_real_s=self.clock.real())
        return "server-close"

    def mark_lost(self) -> None:
        """The handler ended without a decided end (cancelled): the connection was lost."""
        if self.info.end is None:
            self._update(end="lost", ended_real_s=self.clock.real())

    def drop(self) -> None:
        """End the TCP connection without a close frame (the client sees 1006)."""
        if self.info.end is not None:
            return
        self._closing = True
        self._update(end="dropped", ended_real_s=self.clock.real())
        self.on_event(self, "drop", "server drops the connection without a close frame")
        if isinstance(self.transport, asyncio.WriteTransport):
            self.transport.abort()


async def _done() -> None:
    return None
