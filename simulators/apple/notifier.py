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
- ``drop-before-ack``: the request is written in full, the connection is aborted as soon as the
  receiver starts answering, so the receiver got it but the notifier saw no answer and retries;
- ``delay`` (``seconds``, simulated): the attempt starts late;
- ``stall``: headers and half the body are sent, then nothing until the attempt times out (real
  time: it is the receiver that waits).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

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
from simulators.faults import Fault, FaultKind, FaultPlan
from simulators.http_sender import Exchange, HttpSender, RawFault

__all__ = ["AttemptLog", "LoggedAttempt", "Notifier", "Receiver"]

ACTOR = "apple-notifier"
# Told of each attempt's outcome: the notification and its delivery so far.
Attempted = Callable[[Notification, Delivery], None]
PEER = "sut"
# The notifier's faults that the sender writes on the wire.
RAW_FAULTS: dict[FaultKind, RawFault] = {
    FaultKind.DROP_BEFORE_ACK: "drop",
    FaultKind.STALL: "stall",
}
EXCERPT_BYTES = 600  # of a request's body, in its evidence


@dataclass(frozen=True)
class Receiver:
    """Where notifications go: the ``notificationUrl`` and ``notificationAuthToken``."""

    url: str
    token: str
    cafiles: tuple[str, ...] = ()  # CAs trusted besides the system's (files or PEM text)


@dataclass(frozen=True, slots=True)
class LoggedAttempt:
    """One attempt and what it carried (``label``: type and notificationId)."""

    label: str
    attempt: Exchange


class AttemptLog:
    """Every attempt a run's notifiers made, thread-safe. Answer times are kept for all of them;
    the attempts themselves up to ``limit`` (the rest are counted)."""

    def __init__(self, limit: int = 20_000) -> None:
        self._lock = threading.Condition()  # notified at every attempt added
        self._limit = limit
        self._entries: list[LoggedAttempt] = []
        self._pending: list[tuple[str, Exchange]] = []  # made LoggedAttempts when next read
        self.answer_times_real_s: list[float] = []
        self.total = 0

    def add(self, label: str, attempt: Exchange) -> None:
        with self._lock:
            self.total += 1
            if attempt.status is not None:
                self.answer_times_real_s.append(attempt.elapsed_real_s)
            if len(self._entries) + len(self._pending) < self._limit:
                self._pending.append((label, attempt))
            self._lock.notify_all()

    def entries(self) -> list[LoggedAttempt]:
        with self._lock:
            self._entries += [LoggedAttempt(label, attempt) for label, attempt in self._pending]
            self._pending.clear()
            return list(self._entries)

    def wait_for(self, done: Callable[[list[LoggedAttempt]], bool], timeout: float) -> bool:
        """Wait (at most ``timeout`` real seconds, from any thread but the simulators' loop)
        until ``done(entries)`` holds; whether it does."""
        with self._lock:
            return self._lock.wait_for(lambda: done(self.entries()), timeout)


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
    _headers: dict[str, str] = field(init=False)  # the vendor's, made once (never mutated)
    _authorization: str | None = field(init=False)  # as evidence shows it
    _idle: asyncio.Event | None = None

    def __post_init__(self) -> None:
        self.sender = HttpSender(
            self.clock, timeout_s=self.timeout_s, cafiles=self.receiver.cafiles, limit=32
        )
        self._headers = self.headers()
        self._authorization = _redact(self._headers["Authorization"])

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

    async def deliver_event(
        self, notification: Notification, *, attempted: Attempted | None = None
    ) -> list[Delivery]:
        """Split at 100 elements, then deliver every part (SIM-APL-SPLIT)."""
        parts = split_notification(notification)
        return list(
            await asyncio.gather(*(self.deliver(part, attempted=attempted) for part in parts))
        )

    async def deliver(
        self,
        notification: Notification,
        schedule: RetrySchedule | None = None,
        *,
        attempted: Attempted | None = None,
    ) -> Delivery:
        """Deliver one notification with up to 3 attempts over 1–5 minutes (SIM-APL-RETRY);
        ``schedule`` overrides the notifier's for this one (TEST_NOTIFICATION: one attempt).
        ``attempted`` is called with the delivery after each attempt (a front door that
        answers once the first attempts are made, while retries wait for simulated time)."""
        self.in_flight += 1
        try:
            body = notification.to_bytes()
            notification_id = notification.notificationId
            now = self.clock.now()
            delivery = Delivery(notification_id, now, schedule or self.schedule)
            label = f"{notification.notificationType} {notification_id}"
            self.recorder.remember_cause(notification_id)
            while (deadline := delivery.next_deadline()) is not None:
                if deadline > now:
                    self.recorder.record(
                        ACTOR,
                        "--",
                        PEER,
                        "retry-wait",
                        f"retry of {label} due in {deadline - now:.0f} s (simulated)",
                        notificationId=notification_id,
                        due_sim_s=round(deadline, 3),
                    )
                    await self.clock.sleep_until(deadline)
                    now = self.clock.now()
                number = delivery.start_attempt(now)
                fault = self.faults.take("deliver")
                if fault is None:  # the usual attempt, awaited here: no coroutine in between
                    self._requested(number, body, label, self._authorization)
                    attempt = await self.sender.send("POST", self.receiver.url, body, self._headers)
                    self._answered(number, label, attempt)
                else:
                    attempt = await self._faulty_attempt(
                        fault, number, body, label, self._headers, self._authorization, None
                    )
                delivery.finish_attempt(attempt)
                if attempted is not None:
                    attempted(notification, delivery)
                now = self.clock.now()
            if delivery.state is DeliveryState.DELIVERED and len(delivery.attempts) == 1:
                return delivery  # the request and its 2xx answer are already on record
            outcome = "delivered" if delivery.state is DeliveryState.DELIVERED else "gave up"
            self.recorder.record(
                ACTOR,
                "--",
                PEER,
                outcome,
                f"{label}: {outcome} after {len(delivery.attempts)} attempt(s)",
                notificationId=notification_id,
                attempts=len(delivery.attempts),
            )
            return delivery
        finally:
            self.in_flight -= 1
            if not self.in_flight and self._idle is not None:
                self._idle.set()

    async def post(
        self,
        body: bytes,
        *,
        headers: Mapping[str, str] | None = None,
        label: str = "raw body",
        timeout_s: float | None = None,
    ) -> Exchange:
        """One attempt with exactly these bytes and headers (no retry): for negative checks."""
        sent = self._headers if headers is None else dict(headers)
        authorization = (
            self._authorization if headers is None else _redact(sent.get("Authorization"))
        )
        fault = self.faults.take("deliver")
        if fault is not None:
            return await self._faulty_attempt(fault, 1, body, label, sent, authorization, timeout_s)
        return await self._send(1, body, label, sent, authorization, timeout_s)

    # One attempt.

    async def _faulty_attempt(
        self,
        fault: Fault,
        number: int,
        body: bytes,
        label: str,
        headers: Mapping[str, str],
        authorization: str | None,
        timeout_s: float | None,
    ) -> Exchange:
        """An attempt with ``fault`` applied: held (``delay``), sent twice (``duplicate``) or
        misbehaving on the wire (``drop-before-ack``, ``stall``)."""
        if fault.kind == FaultKind.DELAY:
            seconds = float(fault.get("seconds", 30.0))
            self._note_fault(fault, label, f"delayed by {seconds:.0f} s (simulated)")
            await self.clock.sleep(seconds)
            return await self._send(number, body, label, headers, authorization, timeout_s)
        if fault.kind == FaultKind.DUPLICATE:
            await self._send(number, body, label, headers, authorization, timeout_s, fault)
            self._note_fault(fault, label, "sending a duplicate copy")
        return await self._send(number, body, label, headers, authorization, timeout_s, fault)

    async def _send(
        self,
        number: int,
        body: bytes,
        label: str,
        headers: Mapping[str, str],
        authorization: str | None,
        timeout_s: float | None,
        fault: Fault | None = None,
    ) -> Exchange:
        self._requested(number, body, label, authorization)
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
        self._answered(number, label, attempt)
        return attempt

    # Evidence: one event as a request leaves, one for its outcome (made into text when read).

    def _requested(self, number: int, body: bytes, label: str, authorization: str | None) -> None:
        self.recorder.record_later(
            ACTOR,
            "->",
            PEER,
            "request",
            _request_event,
            self.receiver.url,
            label,
            number,
            len(body),
            body[:EXCERPT_BYTES],  # the whole body when it is short (no copy)
            authorization,
        )

    def _answered(self, number: int, label: str, attempt: Exchange) -> None:
        self.log.add(label, attempt)
        if attempt.status is not None:
            self.recorder.record_later(
                PEER, "->", ACTOR, "response", _answer_event, label, number, attempt
            )
        else:
            self.recorder.record_later(
                ACTOR, "--", PEER, "attempt-failed", _answer_event, label, number, attempt
            )

    def _note_fault(self, fault: Fault, label: str, what: str) -> None:
        self.recorder.record(ACTOR, "--", PEER, "fault", f"fault {fault.kind}: {label} {what}")


def _request_event(
    url: str, label: str, number: int, size: int, head: bytes, authorization: str | None
) -> tuple[str, dict[str, Any]]:
    summary = f"POST {label} (attempt {number}, {size} B)"
    text = head.decode("utf-8", "replace")
    if size > len(head):
        text += f"… ({size} B in all)"
    return summary, {"url": url, "attempt": number, "authorization": authorization, "body": text}


def _answer_event(label: str, number: int, attempt: Exchange) -> tuple[str, dict[str, Any]]:
    elapsed_ms = attempt.elapsed_real_s * 1000
    if attempt.status is not None:
        summary = f"{attempt.status} for {label} in {elapsed_ms:.1f} ms"
        return summary, {
            "status": attempt.status,
            "elapsed_ms": round(elapsed_ms, 2),
            "attempt": number,
        }
    summary = f"attempt {number} of {label} failed: {attempt.error}"
    return summary, {"error": attempt.error, "elapsed_ms": round(elapsed_ms, 2), "attempt": number}


def _redact(value: str | None) -> str | None:
    """Evidence shows the scheme and the token's length, never the token."""
    if value is None:
        return None
    scheme, _, token = value.partition(" ")
    return f"{scheme} <{len(token)} chars>" if token else f"<{len(value)} chars>"
