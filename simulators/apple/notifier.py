"""The Apple notifier: POSTs notifications to a receiver the way Apple's server does.

A thin aiohttp adapter over :mod:`simulators.apple.delivery`: each POST carries
``Authorization: Bearer <notificationAuthToken>`` and ``Content-Type: application/json``; any
2xx is success; a non-2xx status, a timeout (default 5 s of real time: the receiver answers in
real time, and the timeout covers the whole exchange) or a connection error is retried on the
simulated clock (default +60 s, +300 s), reusing the ``notificationId``. Events over 100
elements are split first. At most :data:`ANSWER_READ_LIMIT` bytes of an answer are read.

Every attempt is written to an :class:`AttemptLog` (shared by every notifier of a run), so
answer times are judged over all of them.

Faults (target ``"deliver"``, one per attempt, armed through :attr:`Notifier.faults`):

- ``duplicate``: the attempt is sent twice in a row (the vendor "happens to send" copies);
- ``drop-before-ack``: the request is written in full, the connection is aborted as soon as the
  receiver starts answering, so the receiver got it but the notifier saw no answer and retries;
- ``delay`` (``seconds``, simulated): the attempt starts late;
- ``stall``: headers and half the body are sent, then nothing until the attempt times out (real
  time: it is the receiver that waits).
"""

from __future__ import annotations

import asyncio
import ssl
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from yarl import URL

from simulators.apple.delivery import (
    DEFAULT_TIMEOUT_S,
    Attempt,
    Delivery,
    DeliveryState,
    RetrySchedule,
    split_notification,
)
from simulators.apple.models import Notification
from simulators.clock import Clock
from simulators.evidence import Recorder
from simulators.faults import Fault, FaultKind, FaultPlan

__all__ = ["ANSWER_READ_LIMIT", "AttemptLog", "LoggedAttempt", "Notifier", "Receiver"]

ACTOR = "apple-notifier"
PEER = "sut"
ANSWER_READ_LIMIT = 64 * 1024  # bytes of a receiver's answer body read, at most


@dataclass(frozen=True)
class Receiver:
    """Where notifications go: the ``notificationUrl`` and ``notificationAuthToken``."""

    url: str
    token: str
    cafiles: tuple[str, ...] = ()  # CAs trusted besides the system's, for the receiver's cert

    def ssl_context(self) -> ssl.SSLContext | None:
        if URL(self.url).scheme != "https":
            return None
        context = ssl.create_default_context()
        for cafile in self.cafiles:
            context.load_verify_locations(cafile=cafile)
        return context


@dataclass(frozen=True, slots=True)
class LoggedAttempt:
    """One attempt and what it carried (``label``: type and notificationId)."""

    label: str
    attempt: Attempt


class AttemptLog:
    """Every attempt a run's notifiers made, thread-safe. Answer times are kept for all of them;
    the attempts themselves up to ``limit`` (the rest are counted)."""

    def __init__(self, limit: int = 20_000) -> None:
        self._lock = threading.Lock()
        self._limit = limit
        self._entries: list[LoggedAttempt] = []
        self.answer_times_real_s: list[float] = []
        self.total = 0

    def add(self, label: str, attempt: Attempt) -> None:
        with self._lock:
            self.total += 1
            if attempt.status is not None and attempt.elapsed_real_s is not None:
                self.answer_times_real_s.append(attempt.elapsed_real_s)
            if len(self._entries) < self._limit:
                self._entries.append(LoggedAttempt(label, attempt))

    def entries(self) -> list[LoggedAttempt]:
        with self._lock:
            return list(self._entries)


@dataclass(eq=False)
class Notifier:
    """Delivers notifications to one receiver, with the vendor's retries, split and faults."""

    receiver: Receiver
    clock: Clock
    recorder: Recorder
    schedule: RetrySchedule = field(default_factory=RetrySchedule)
    timeout_s: float = DEFAULT_TIMEOUT_S
    faults: FaultPlan = field(default_factory=FaultPlan)
    log: AttemptLog = field(default_factory=AttemptLog)
    in_flight: int = 0  # deliveries under way
    _session: aiohttp.ClientSession | None = None
    _idle: asyncio.Event | None = None

    async def start(self) -> None:
        if self._session is None:
            connector = aiohttp.TCPConnector(ssl=self.receiver.ssl_context() or False, limit=32)
            self._session = aiohttp.ClientSession(
                connector=connector, timeout=aiohttp.ClientTimeout(total=self.timeout_s)
            )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def close_when_idle(self) -> None:
        """Close once the deliveries under way have ended (a replaced receiver's notifier)."""
        while self.in_flight:
            self._idle = asyncio.Event()
            await self._idle.wait()
        await self.close()

    def headers(self) -> dict[str, str]:
        """The headers of a notification POST (SIM-APL-AUTH)."""
        return {
            "Authorization": f"Bearer {self.receiver.token}",
            "Content-Type": "application/json",
        }

    # Delivering notifications.

    async def deliver_event(self, notification: Notification) -> list[Delivery]:
        """Split at 100 elements, then deliver every part (SIM-APL-SPLIT)."""
        parts = split_notification(notification)
        return list(await asyncio.gather(*(self.deliver(part) for part in parts)))

    async def deliver(
        self, notification: Notification, schedule: RetrySchedule | None = None
    ) -> Delivery:
        """Deliver one notification with up to 3 attempts over 1–5 minutes (SIM-APL-RETRY);
        ``schedule`` overrides the notifier's for this one (TEST_NOTIFICATION: one attempt)."""
        self.in_flight += 1
        try:
            return await self._deliver(notification, schedule or self.schedule)
        finally:
            self.in_flight -= 1
            if not self.in_flight and self._idle is not None:
                self._idle.set()

    async def _deliver(self, notification: Notification, schedule: RetrySchedule) -> Delivery:
        body = notification.to_bytes()
        delivery = Delivery(notification.notificationId, self.clock.now(), schedule)
        label = f"{notification.notificationType} {notification.notificationId}"
        self.recorder.remember_cause(notification.notificationId)
        while (deadline := delivery.next_deadline()) is not None:
            wait = deadline - self.clock.now()
            if wait > 0:
                self.recorder.record(
                    ACTOR,
                    "--",
                    PEER,
                    "retry-wait",
                    f"retry of {label} due in {wait:.0f} s (simulated)",
                    notificationId=notification.notificationId,
                    due_sim_s=round(deadline, 3),
                )
                await self.clock.sleep_until(deadline)
            number = delivery.start_attempt(self.clock.now())
            attempt = await self._attempt(number, body, label, self.headers())
            delivery.finish_attempt(attempt)
        outcome = "delivered" if delivery.state is DeliveryState.DELIVERED else "gave up"
        if outcome == "delivered" and len(delivery.attempts) == 1:
            return delivery  # the request and its 2xx answer are already on record
        self.recorder.record(
            ACTOR,
            "--",
            PEER,
            outcome,
            f"{label}: {outcome} after {len(delivery.attempts)} attempt(s)",
            notificationId=notification.notificationId,
            attempts=len(delivery.attempts),
        )
        return delivery

    async def post(
        self,
        body: bytes,
        *,
        headers: Mapping[str, str] | None = None,
        label: str = "raw body",
        timeout_s: float | None = None,
    ) -> Attempt:
        """One attempt with exactly these bytes and headers (no retry): for negative checks."""
        return await self._attempt(
            1, body, label, dict(self.headers() if headers is None else headers), timeout_s
        )

    # One attempt, with the fault armed for it.

    async def _attempt(
        self,
        number: int,
        body: bytes,
        label: str,
        headers: dict[str, str],
        timeout_s: float | None = None,
    ) -> Attempt:
        fault = self.faults.take("deliver")
        timeout = self.timeout_s if timeout_s is None else timeout_s
        if fault is not None and fault.kind == FaultKind.DELAY:
            seconds = float(fault.get("seconds", 30.0))
            self._note_fault(fault, label, f"delayed by {seconds:.0f} s (simulated)")
            await self.clock.sleep(seconds)
        copies = 2 if fault is not None and fault.kind == FaultKind.DUPLICATE else 1
        attempt = Attempt(number, self.clock.now(), error="not sent")
        for copy in range(copies):
            if copy:
                self._note_fault(fault, label, "sending a duplicate copy")
            attempt = await self._send(number, body, label, headers, timeout, fault)
        return attempt

    async def _send(
        self,
        number: int,
        body: bytes,
        label: str,
        headers: dict[str, str],
        timeout: float,
        fault: Fault | None,
    ) -> Attempt:
        started_real, started_sim = self.clock.readings()
        auth = headers.get("Authorization")
        self.recorder.record(
            ACTOR,
            "->",
            PEER,
            "request",
            f"POST {label} (attempt {number}, {len(body)} B)",
            url=self.receiver.url,
            attempt=number,
            authorization=_redact(auth),
            body=_excerpt(body),
        )
        status: int | None = None
        error: str | None = None
        dropped: int | None = None
        timed_out = False
        injected = fault.kind if fault is not None and fault.kind != FaultKind.DELAY else None
        try:
            if fault is not None and fault.kind in (FaultKind.DROP_BEFORE_ACK, FaultKind.STALL):
                error, dropped = await self._send_raw(body, headers, timeout, fault, label)
            else:
                status = await self._send_aiohttp(body, headers, timeout)
        except TimeoutError:
            error, timed_out = f"no answer within {timeout:g} s", True
        except (aiohttp.ClientError, OSError, ssl.SSLError, ValueError) as exc:
            error = f"{type(exc).__name__}: {exc}"
        elapsed = self.clock.real() - started_real
        attempt = Attempt(
            number,
            started_sim,
            status=status,
            error=error,
            elapsed_real_s=elapsed,
            timed_out=timed_out,
            fault=injected,
            dropped_status=dropped,
        )
        self.log.add(label, attempt)
        if status is not None:
            self.recorder.record(
                PEER,
                "->",
                ACTOR,
                "response",
                f"{status} for {label} in {elapsed * 1000:.1f} ms",
                status=status,
                elapsed_ms=round(elapsed * 1000, 2),
                attempt=number,
            )
        else:
            self.recorder.record(
                ACTOR,
                "--",
                PEER,
                "attempt-failed",
                f"attempt {number} of {label} failed: {error}",
                error=error,
                elapsed_ms=round(elapsed * 1000, 2),
                attempt=number,
            )
        return attempt

    async def _send_aiohttp(self, body: bytes, headers: dict[str, str], timeout: float) -> int:
        if self._session is None:
            await self.start()
        assert self._session is not None
        # The session carries the usual timeout; only a different one costs a new object.
        options: dict[str, Any] = {"allow_redirects": False}
        if timeout != self.timeout_s:
            options["timeout"] = aiohttp.ClientTimeout(total=timeout)
        async with self._session.post(
            self.receiver.url, data=body, headers=headers, **options
        ) as response:
            # A bounded read: a receiver answering a huge body cannot exhaust the harness.
            await response.content.read(ANSWER_READ_LIMIT)
            if not response.content.at_eof():
                response.close()  # drop the connection rather than drain the rest
            return response.status

    async def _send_raw(
        self, body: bytes, headers: dict[str, str], timeout: float, fault: Fault, label: str
    ) -> tuple[str, int | None]:
        """Write the request by hand over a fresh (TLS) connection, then misbehave."""
        url = URL(self.receiver.url)
        context = self.receiver.ssl_context()
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(
                url.host, url.port, ssl=context, server_hostname=url.host if context else None
            ),
            timeout,
        )
        head = [f"POST {url.raw_path_qs} HTTP/1.1", f"Host: {url.host}:{url.port}"]
        head += [f"{k}: {v}" for k, v in headers.items()]
        head += [f"Content-Length: {len(body)}", "Connection: close", "", ""]
        try:
            writer.write("\r\n".join(head).encode("latin-1"))
            if fault.kind == FaultKind.STALL:
                writer.write(body[: len(body) // 2])
                await writer.drain()
                self._note_fault(fault, label, f"stalled mid-body for {timeout:g} s (real)")
                await self.clock.sleep_real(timeout)
                return f"stalled mid-body; no answer within {timeout:g} s", None
            writer.write(body)
            await writer.drain()
            first = await asyncio.wait_for(reader.read(12), timeout)
            self._note_fault(
                fault,
                label,
                f"connection aborted after the request was sent (receiver began {first[:12]!r})",
            )
            began = first.split(b" ")
            status = int(began[1]) if len(began) > 1 and began[1][:3].isdigit() else None
            return "connection dropped after the request was sent", status
        finally:
            writer.transport.abort()

    def _note_fault(self, fault: Fault | None, label: str, what: str) -> None:
        kind = fault.kind if fault is not None else "?"
        self.recorder.record(ACTOR, "--", PEER, "fault", f"fault {kind}: {label} {what}")


def _redact(value: str | None) -> str | None:
    """Evidence shows the scheme and the token's length, never the token."""
    if value is None:
        return None
    scheme, _, token = value.partition(" ")
    return f"{scheme} <{len(token)} chars>" if token else f"<{len(value)} chars>"


def _excerpt(body: bytes, limit: int = 600) -> str:
    text = body[:limit].decode("utf-8", "replace")
    return text + (f"… ({len(body)} B in all)" if len(body) > limit else "")
