"""The callback side of the notification channel: HTTPS PUTs to the application's callback URL,
the way Device Management Connect sends them (vendor doc, "Callback interface" and
"Notification sending logic"; docs/vendors/pelion.md §3).

A thin aiohttp client adapter; the rules (batches, back-off, 24 h removal) live in
:class:`simulators.pelion.delivery.CallbackDelivery`.

- Verification: "Device Management Connect verifies the callback URL by calling PUT with the
  given headers" (SPEC20+: the body is the empty JSON ``{}``); the application "responds with
  200 OK" (SPEC: 200 or 204) → :meth:`CallbackClient.verify`. Any 2xx accepts.
- Delivery: each batch is one NotificationMessage PUT to the URL "with the given headers" and
  ``Content-Type: application/json`` → :meth:`CallbackClient.put_batch`. Any 2xx
  acknowledges the batch; "a delivery fails on connection timeout or a 4xx/5xx answer".
- Timeout: 20 s (SPEC20/21 "The request timeout is 20 seconds"), real time (the receiver
  answers at its own pace), covering the whole exchange: connecting, sending, the answer's
  headers and at most :data:`ANSWER_READ_LIMIT` bytes of its body. Redirects are not followed.

Faults (target ``"callback"``, one per batch attempt, armed through a
:class:`~simulators.faults.FaultPlan`):

- ``status`` (``status``, default 500): the batch is sent, whatever the receiver answers the
  attempt counts as that status (the real answer is kept as ``answered``);
- ``timeout``: the batch is sent, the answer is ignored and the attempt counts as timed out
  (no real 20 s wait);
- ``unsent`` (``status`` or none): the batch is not sent at all; the attempt fails at once;
- ``drop``: the request is written in full, then the connection is aborted before the answer
  is read (the receiver got the batch, the sender saw no answer);
- ``stall``: the headers and half the body are sent, then nothing until the request timeout
  (real time: it is the receiver that waits).
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

import aiohttp
from yarl import URL

from simulators.clock import Clock
from simulators.faults import Fault, FaultKind

__all__ = [
    "ANSWER_READ_LIMIT",
    "USER_AGENT",
    "CallbackClient",
    "Exchange",
]

ANSWER_READ_LIMIT = 64 * 1024  # bytes of a receiver's answer body read, at most
USER_AGENT = "conformance-simulator/pelion (Device Management notification channel)"
Outcome = Literal["answered", "timeout", "error", "unsent"]


@dataclass(frozen=True, slots=True)
class Exchange:
    """One PUT to the callback URL as it happened.

    ``status`` is what the sender concludes (after a ``status`` fault, the injected one);
    ``answered`` the status the receiver really sent (None without an answer). ``elapsed_real_s``
    runs from the start of the request to the answer (or the error)."""

    outcome: Outcome
    status: int | None
    answered: int | None
    error: str | None
    elapsed_real_s: float
    answer_excerpt: str = ""
    fault: str | None = None

    @property
    def succeeded(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


class CallbackClient:
    """PUTs to callback URLs over one aiohttp session (any URL; one TLS context)."""

    def __init__(
        self,
        clock: Clock,
        *,
        cafiles: tuple[str, ...] = (),
        timeout_s: float = 20.0,
    ) -> None:
        self.clock = clock
        self.cafiles = cafiles
        self.timeout_s = timeout_s
        self._session: aiohttp.ClientSession | None = None
        self._context: ssl.SSLContext | None = None

    def ssl_context(self) -> ssl.SSLContext:
        """The system's CAs plus ``cafiles`` (the run's CA, the SUT's declared CA)."""
        if self._context is None:
            context = ssl.create_default_context()
            for cafile in self.cafiles:
                context.load_verify_locations(cafile=cafile)
            self._context = context
        return self._context

    async def start(self) -> None:
        if self._session is None:
            connector = aiohttp.TCPConnector(ssl=self.ssl_context(), limit=64)
            self._session = aiohttp.ClientSession(
                connector=connector,
                timeout=aiohttp.ClientTimeout(total=self.timeout_s),
                skip_auto_headers=("User-Agent",),
            )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    @staticmethod
    def headers(registered: Mapping[str, str] | None) -> dict[str, str]:
        """The headers of a PUT: the registered ones (which may override these), JSON content."""
        headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT}
        for name, value in (registered or {}).items():
            for existing in [k for k in headers if k.lower() == name.lower()]:
                del headers[existing]
            headers[name] = value
        return headers

    async def verify(self, url: str, registered: Mapping[str, str] | None) -> Exchange:
        """The verification PUT ``{}`` with the registered headers (no fault applies)."""
        return await self.put(url, b"{}", self.headers(registered))

    async def put_batch(
        self, url: str, body: bytes, registered: Mapping[str, str] | None, fault: Fault | None
    ) -> Exchange:
        """One batch attempt with ``fault`` (or none) applied."""
        return await self.put(url, body, self.headers(registered), fault)

    async def put(
        self,
        url: str,
        body: bytes,
        headers: Mapping[str, str],
        fault: Fault | None = None,
        timeout_s: float | None = None,
    ) -> Exchange:
        """One PUT with exactly these bytes and headers (no retry); never raises for what the
        receiver does."""
        timeout = self.timeout_s if timeout_s is None else timeout_s
        started = self.clock.real()
        kind = fault.kind if fault is not None else None
        if kind == FaultKind.UNSENT:
            status = fault.get("status") if fault is not None else None
            return Exchange(
                "unsent",
                int(status) if status is not None else None,
                None,
                None if status is not None else "not sent (fault)",
                0.0,
                fault="unsent",
            )
        answered: int | None = None
        excerpt = ""
        error: str | None = None
        outcome: Outcome = "answered"
        try:
            if kind in (FaultKind.DROP_BEFORE_ACK, FaultKind.STALL):
                assert fault is not None
                error = await self._put_raw(url, body, headers, timeout, fault)
                outcome = "timeout" if kind == FaultKind.STALL else "error"
            else:
                # aiohttp's total timeout covers connecting, sending and reading the answer.
                answered, excerpt = await self._put_aiohttp(url, body, headers, timeout)
        except TimeoutError:
            error, outcome = f"no answer within {timeout:g} s", "timeout"
        except (aiohttp.ClientError, OSError, ssl.SSLError, ValueError) as exc:
            error, outcome = f"{type(exc).__name__}: {exc}"[:300], "error"
        elapsed = self.clock.real() - started
        status = answered
        if kind == FaultKind.STATUS and fault is not None:
            status = int(fault.get("status", 500))
        elif kind == FaultKind.TIMEOUT:
            status, outcome, error = None, "timeout", "answer ignored: counted as a timeout (fault)"
        return Exchange(outcome, status, answered, error, elapsed, excerpt, kind)

    async def _put_aiohttp(
        self, url: str, body: bytes, headers: Mapping[str, str], timeout: float
    ) -> tuple[int, str]:
        if self._session is None:
            await self.start()
        assert self._session is not None
        async with self._session.put(
            url,
            data=body,
            headers=dict(headers),
            allow_redirects=False,
            timeout=aiohttp.ClientTimeout(total=timeout),
        ) as response:
            # A bounded read: a receiver answering a huge body cannot exhaust the simulator.
            data = await response.content.read(ANSWER_READ_LIMIT)
            if not response.content.at_eof():
                response.close()  # drop the connection rather than drain the rest
            return response.status, data[:200].decode("utf-8", "replace")

    async def _put_raw(
        self, url: str, body: bytes, headers: Mapping[str, str], timeout: float, fault: Fault
    ) -> str:
        """Write the request by hand over a fresh connection, then misbehave."""
        target = URL(url)
        context = self.ssl_context() if target.scheme == "https" else None
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(
                target.host,
                target.port,
                ssl=context,
                server_hostname=target.host if context else None,
            ),
            timeout,
        )
        head = [f"PUT {target.raw_path_qs} HTTP/1.1", f"Host: {target.host}:{target.port}"]
        head += [f"{k}: {v}" for k, v in headers.items()]
        head += [f"Content-Length: {len(body)}", "Connection: close", "", ""]
        try:
            writer.write("\r\n".join(head).encode("latin-1"))
            if fault.kind == FaultKind.STALL:
                writer.write(body[: len(body) // 2])
                await asyncio.wait_for(writer.drain(), timeout)
                await self.clock.sleep_real(timeout)
                return f"stalled mid-body (fault); no answer within {timeout:g} s"
            writer.write(body)
            await asyncio.wait_for(writer.drain(), timeout)
            await asyncio.wait_for(reader.read(1), timeout)
            return "connection dropped after the request was sent (fault)"
        finally:
            writer.transport.abort()
