"""What the Apple simulators can be asked to do, as typed operations (docs/architecture.md,
"Operations"), aimed through :class:`AppleTarget` at the SUT's receiver and API client.

Events: :class:`Deliver` (one notification, with the vendor's retries on the simulated clock),
:class:`DeliverEvent` (split at 100 elements first), :class:`Post` (exactly these bytes, once).
Faults: :class:`FailDeliveries` (the next attempts misbehave), :class:`FailApiCalls` (the next
Apps and Books API calls are answered with an error). Queries: :class:`Attempts`. Simulated
time:
:class:`simulators.operations.AdvanceClock`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pydantic import Field

from simulators.apple.api import AppsAndBooksServer
from simulators.apple.delivery import Delivery
from simulators.apple.models import Notification
from simulators.apple.notifier import AttemptLog, LoggedAttempt, Notifier
from simulators.clock import Clock
from simulators.faults import FaultKind
from simulators.http_sender import Exchange
from simulators.operations import AdvanceClock, Operation

__all__ = [
    "AppleOperation",
    "AppleTarget",
    "Attempts",
    "Deliver",
    "DeliverEvent",
    "FailApiCalls",
    "FailDeliveries",
    "Post",
]


@dataclass(frozen=True)
class AppleTarget:
    """What Apple operations act on: the notifier aimed at the SUT's receiver (None when no
    receiver is declared), the Apps and Books API, and every notification attempt of the run."""

    notifier: Notifier | None
    api: AppsAndBooksServer
    attempts: AttemptLog
    clock: Clock

    def receiver(self) -> Notifier:
        if self.notifier is None:
            raise ValueError("no receiver is declared: there is nowhere to send notifications")
        return self.notifier


class Deliver(Operation):
    """Deliver one notification as the vendor does: up to 3 attempts over 1–5 minutes of
    simulated time until one is answered 2xx."""

    op: Literal["deliver"] = "deliver"
    notification: Notification

    def describe(self) -> str:
        n = self.notification
        return f"deliver {n.notificationType} {n.notificationId}"

    async def apply(self, target: AppleTarget) -> Delivery:
        return await target.receiver().deliver(self.notification)


class DeliverEvent(Operation):
    """Deliver an event as the vendor does: split into notifications of at most 100
    elements, each delivered with its retries."""

    op: Literal["deliver-event"] = "deliver-event"
    notification: Notification

    def describe(self) -> str:
        n = self.notification
        return f"deliver the event {n.notificationType} ({len(n.elements())} elements)"

    async def apply(self, target: AppleTarget) -> list[Delivery]:
        return await target.receiver().deliver_event(self.notification)


class Post(Operation):
    """One POST of exactly these bytes and headers (the vendor's when None), never retried:
    for negative checks."""

    op: Literal["post"] = "post"
    body: bytes
    headers: dict[str, str] | None = None
    label: str = "raw body"
    timeout_s: float | None = Field(default=None, gt=0, le=600)

    def describe(self) -> str:
        return f"post {self.label} ({len(self.body)} B)"

    async def apply(self, target: AppleTarget) -> Exchange:
        return await target.receiver().post(
            self.body, headers=self.headers, label=self.label, timeout_s=self.timeout_s
        )


class FailDeliveries(Operation):
    """The next ``times`` notification attempts misbehave: sent twice (``duplicate``), sent
    and then the connection dropped before the answer is read (``drop-before-ack``), half sent
    and stalled (``stall``), or held ``seconds`` before they are sent (``delay``)."""

    op: Literal["fail-deliveries"] = "fail-deliveries"
    kind: Literal[FaultKind.DUPLICATE, FaultKind.DROP_BEFORE_ACK, FaultKind.STALL, FaultKind.DELAY]
    times: int = Field(default=1, ge=1, le=10_000)
    seconds: float = Field(default=0.0, ge=0, le=600)

    def describe(self) -> str:
        what = {
            FaultKind.DUPLICATE: "send twice",
            FaultKind.DROP_BEFORE_ACK: "drop the answer (after the request was sent) of",
            FaultKind.STALL: "stall halfway",
            FaultKind.DELAY: f"hold for {self.seconds:g} s (simulated)",
        }[self.kind]
        return f"{what} the next {self.times} notification attempt(s)"

    async def apply(self, target: AppleTarget) -> None:
        params = {"seconds": self.seconds} if self.kind is FaultKind.DELAY else {}
        target.receiver().faults.add("deliver", self.kind, times=self.times, **params)


class FailApiCalls(Operation):
    """The SUT's next ``times`` Apps and Books API calls (``endpoint`` only, e.g. ``"GET
    /assets"``, or any) are answered ``status`` with the vendor's error number, with a
    ``Retry-After`` when given."""

    op: Literal["fail-api-calls"] = "fail-api-calls"
    status: int = Field(default=503, ge=400, le=599)
    error: int = 9729
    retry_after_s: int | None = Field(default=None, ge=0, le=3600)
    endpoint: str | None = None
    times: int = Field(default=1, ge=1, le=10_000)

    def describe(self) -> str:
        return f"answer the next {self.times} API call(s) {self.status}/{self.error}"

    async def apply(self, target: AppleTarget) -> None:
        target.api.faults.add(
            f"api:{self.endpoint}" if self.endpoint else "api",
            FaultKind.STATUS,
            times=self.times,
            status=self.status,
            error=self.error,
            retry_after=self.retry_after_s,
        )


class Attempts(Operation):
    """Query: every notification attempt of the run so far, from every notifier (what was
    sent, and how it was answered)."""

    op: Literal["attempts"] = "attempts"

    async def apply(self, target: AppleTarget) -> list[LoggedAttempt]:
        return target.attempts.entries()


AppleOperation = (
    Deliver | DeliverEvent | Post | FailDeliveries | FailApiCalls | Attempts | AdvanceClock
)
"""Every Apple operation (``op`` tells them apart on the wire)."""
