"""The Apple notifier: POSTs notifications to a receiver the way Apple's server does.

A thin adapter between :mod:`simulators.apple.delivery` (the rules) and
:class:`simulators.http_sender.HttpSender` (the bytes; each attempt's outcome is its
:class:`~simulators.http_sender.Exchange`): each POST carries
``Authorization: Bearer <notificationAuthToken>`` and ``Content-Type: application/json``; any
2xx is success; a non-2xx status, a timeout (default 5 s of real time: the receiver answers in
real time, and the timeout covers the whole exchange) or a connection error is retried on the
simulated clock (default +60 s, +300 s), reusing the ``notificationId``. Events over 100
elements are split first. At most :data:`~simulators.http_sender.ANSWER_READ_LIMIT` bytes of an
answer are read.

Every attempt is written to an :class:`AttemptLog` (shared by every notifier of a run), so
answer times are judged over all of them.

Faults (target ``"deliver"``, one per attempt, armed through :attr:`Notifier.faults`):

- ``duplicate``: the attempt is sent twice in a row (the vendor "happens to send" copies);
- ``drop_after_send``: the request is written in full, the connection is aborted as soon as the
  receiver starts answering, so the receiver got it but the notifier saw no answer and retries;
- ``delay`` (``seconds``, simulated): the attempt starts late;
- ``stall``: headers and half the body are sent, then nothing until the attempt times out (real
  time: it is the receiver that waits).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field

from simulators.apple.delivery import (
    DEFAULT_TIMEOUT_S,
    Delivery,
    DeliveryState,
    RetrySchedule,
    split_notification,
)
from simulators.apple.models import Notification
from simulators.clock import Clock
from simulators.evidence import Recorder
from simulators.faults import Fault, FaultPlan
from simulators.http_sender import Exchange, HttpSender, RawFault

__all__ = ["AttemptLog", "LoggedAttempt", "Notifier", "Receiver"]

ACTOR = "apple-notifier"
PEER = "sut"
# The notifier's faults that the sender writes on the wire.
RAW_FAULTS: dict[str, RawFault] = {"drop_after_send": "drop", "stall": "stall"}


@dataclass(frozen=True)
class Receiver:
    """Where notifications go: the ``notificationUrl`` and ``notificationAuthToken``."""

    url: str
    token: str
    cafiles: tuple[str, ...] = ()  # CAs trusted besides the system's, for the receiver's cert


@dataclass(frozen=True, slots=True)
class LoggedAttempt:
    """One attempt and what it carried (``label``: type and notificationId)."""

    label: str
    attempt: Exchange


class AttemptLog:
    """Every attempt a run's notifiers made, thread-safe. Answer times are kept for all of them;
    the attempts themselves up to ``limit`` (the rest are counted)."""

    def __init__(self, limit: int = 20_000) -> None:
        self._lock = threading.Lock()
        self._limit = limit
        self._entries: list[LoggedAttempt] = []
        self.answer_times_real_s: list[float] = []
        self.total = 0

    def add(self, label: str, attempt: Exchange) -> None:
        with self._lock:
            self.total += 1
            if attempt.status is not None:
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
    sender: HttpSender = field(init=False)
    _idle: asyncio.Event | None = None

    def __post_init__(self) -> None:
        self.sender = HttpSender(
            self.clock, timeout_s=self.timeout_s, cafiles=self.receiver.cafiles, limit=32
        )

    async def start(self) -> None:
        await self.sender.start()

    async def close(self) -> None:
        await self.sender.close()

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
    ) -> Exchange:
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
    ) -> Exchange:
        fault = self.faults.take("deliver")
        if fault is not None and fault.kind == "delay":
            seconds = float(fault.get("seconds", 30.0))
            self._note_fault(fault, label, f"delayed by {seconds:.0f} s (simulated)")
            await self.clock.sleep(seconds)
            fault = None  # held, then sent as usual
        if fault is not None and fault.kind == "duplicate":
            await self._send(number, body, label, headers, timeout_s, fault)
            self._note_fault(fault, label, "sending a duplicate copy")
        return await self._send(number, body, label, headers, timeout_s, fault)

    async def _send(
        self,
        number: int,
        body: bytes,
        label: str,
        headers: dict[str, str],
        timeout_s: float | None,
        fault: Fault | None,
    ) -> Exchange:
        self.recorder.record(
            ACTOR,
            "->",
            PEER,
            "request",
            f"POST {label} (attempt {number}, {len(body)} B)",
            url=self.receiver.url,
            attempt=number,
            authorization=_redact(headers.get("Authorization")),
            body=_excerpt(body),
        )
        if fault is None:
            attempt = await self.sender.send(
                "POST", self.receiver.url, body, headers, timeout_s=timeout_s
            )
        else:
            attempt = await self.sender.send(
                "POST",
                self.receiver.url,
                body,
                headers,
                timeout_s=timeout_s,
                raw=RAW_FAULTS.get(fault.kind),
                fault=fault.kind,
                on_fault=lambda what: self._note_fault(fault, label, what),
            )
        self.log.add(label, attempt)
        elapsed_ms = attempt.elapsed_real_s * 1000
        if attempt.status is not None:
            self.recorder.record(
                PEER,
                "->",
                ACTOR,
                "response",
                f"{attempt.status} for {label} in {elapsed_ms:.1f} ms",
                status=attempt.status,
                elapsed_ms=round(elapsed_ms, 2),
                attempt=number,
            )
        else:
            self.recorder.record(
                ACTOR,
                "--",
                PEER,
                "attempt-failed",
                f"attempt {number} of {label} failed: {attempt.error}",
                error=attempt.error,
                elapsed_ms=round(elapsed_ms, 2),
                attempt=number,
            )
        return attempt

    def _note_fault(self, fault: Fault, label: str, what: str) -> None:
        self.recorder.record(ACTOR, "--", PEER, "fault", f"fault {fault.kind}: {label} {what}")


def _redact(value: str | None) -> str | None:
    """Evidence shows the scheme and the token's length, never the token."""
    if value is None:
        return None
    scheme, _, token = value.partition(" ")
    return f"{scheme} <{len(token)} chars>" if token else f"<{len(value)} chars>"


def _excerpt(body: bytes, limit: int = 600) -> str:
    text = body[:limit].decode("utf-8", "replace")
    return text + (f"… ({len(body)} B in all)" if len(body) > limit else "")
