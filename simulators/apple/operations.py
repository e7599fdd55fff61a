"""What the Apple simulators can be asked to do, as typed operations (docs/architecture.md,
"Operations"), aimed through :class:`AppleTarget` at the SUT's receiver and API client.

Events: :class:`Deliver` (one notification, with the vendor's retries on the simulated clock),
:class:`DeliverEvent` (split at 100 elements first), :class:`Post` (exactly these bytes, once).
Faults: :class:`FailDeliveries` (the next attempts misbehave), :class:`FailApiCalls` (the next
Apps and Books API calls are answered with an error). Subscriptions (SIM-APL-SUBS):
:class:`SeatSubscription` (a seat assigned before the run), :class:`ManageSubscriptions` (a call
made as another MDM or the content manager would), :class:`EndBillingPeriod` (deferred
disassociations are released and notified). Queries: :class:`Attempts`. Simulated time:
:class:`simulators.operations.AdvanceClock`.
"""

from __future__ import annotations

import asyncio
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
    "EndBillingPeriod",
    "FailApiCalls",
    "FailDeliveries",
    "ManageSubscriptions",
    "Post",
    "Released",
    "SeatSubscription",
]

# EndBillingPeriod: how often (real seconds) the wait for deliveries moves the simulated clock
# on by RETRY_STEP_S, so that the vendor's retries (+60 s, +300 s) fall due.
RETRY_STEP_REAL_S = 1.0
RETRY_STEP_S = 60.0


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
        return f"{self.kind} the next {self.times} notification attempt(s)"

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


class SeatSubscription(Operation):
    """A seat of subscription ``adam_id`` assigned to ``client_user_id`` before the run (the
    user registered if unknown): state only, no call and no notification."""

    op: Literal["seat-subscription"] = "seat-subscription"
    adam_id: int = 12345
    client_user_id: str = Field(min_length=1, max_length=256)
    renewing: bool = True

    def describe(self) -> str:
        return f"seat {self.client_user_id} on subscription {self.adam_id}"

    async def apply(self, target: AppleTarget) -> None:
        service = target.api.service
        if not service.registered(self.client_user_id):
            service.users[self.client_user_id] = {
                "clientUserId": self.client_user_id,
                "status": "Registered",
            }
        service.subscriptions.seat(self.adam_id, self.client_user_id, self.renewing)


class ManageSubscriptions(Operation):
    """``POST subscriptions/associate`` or ``/disassociate`` made inside the simulated service
    (as another MDM or the content manager would): its notifications go to the configured
    receiver when its event completes, a ``deferred`` one's at the end of the billing period.
    Returns the ``eventId``."""

    op: Literal["manage-subscriptions"] = "manage-subscriptions"
    action: Literal["associate", "disassociate"]
    adam_ids: list[int] = Field(default_factory=lambda: [12345], min_length=1, max_length=25)
    client_user_ids: list[str] = Field(min_length=1, max_length=1000)
    renewing: bool = True
    deferred: bool = False

    def describe(self) -> str:
        deferred = " (deferred)" if self.deferred else ""
        return f"{self.action} subscriptions {self.adam_ids}{deferred}"

    async def apply(self, target: AppleTarget) -> str:
        body: dict[str, object] = {"adamIds": self.adam_ids, "clientUserIds": self.client_user_ids}
        body.update({"renewing": self.renewing} if self.action == "associate" else {})
        body.update({"deferred": self.deferred} if self.action == "disassociate" else {})
        answer = target.api.service.mutate(f"subscriptions/{self.action}", body, target.clock.now())
        target.api.timers.wake()
        return str(answer["eventId"])


@dataclass(frozen=True)
class Released:
    """A deferred disassociation released at the end of a billing period: its
    SUBSCRIPTION_MANAGEMENT notification and, when the API sent it (a notification URL is
    configured and subscribes to the type), its deliveries."""

    event_id: str
    requested_sim_s: float
    released_sim_s: float
    notification: Notification
    deliveries: list[Delivery]


class EndBillingPeriod(Operation):
    """Jump the simulated clock to the end of the current billing period: deferred
    disassociations are released and their notifications sent to the configured receiver.
    Returns each one, with its deliveries once they have ended (retries included: the clock is
    moved on while they wait), waiting at most ``timeout_s`` real seconds."""

    op: Literal["end-billing-period"] = "end-billing-period"
    timeout_s: float = Field(default=60.0, gt=0, le=600)

    def describe(self) -> str:
        return "end the billing period (deferred disassociations are released)"

    async def apply(self, target: AppleTarget) -> list[Released]:
        api, clock = target.api, target.clock
        ledger = api.service.subscriptions
        end = ledger.period_end(clock.now())
        releases = ledger.releases_due(end)
        clock.advance(max(0.0, end - clock.now()))
        sent = {n.notificationId for n in api.hand_out()}
        waiting = asyncio.ensure_future(
            asyncio.gather(
                *(
                    api.delivery_of(r.notification_id, self.timeout_s)
                    for r in releases
                    if r.notification_id in sent
                )
            )
        )
        while True:
            done, _ = await asyncio.wait({waiting}, timeout=RETRY_STEP_REAL_S)
            if done:
                break
            clock.advance(RETRY_STEP_S)  # a retry may be waiting on the simulated clock
        deliveries = iter(waiting.result())
        return [
            Released(
                r.event_id,
                r.requested_at,
                end,
                ledger.released[r.notification_id],
                next(deliveries) if r.notification_id in sent else [],
            )
            for r in releases
        ]


class Attempts(Operation):
    """Query: every notification attempt of the run so far, from every notifier (what was
    sent, and how it was answered)."""

    op: Literal["attempts"] = "attempts"

    async def apply(self, target: AppleTarget) -> list[LoggedAttempt]:
        return target.attempts.entries()


AppleOperation = (
    Deliver
    | DeliverEvent
    | Post
    | FailDeliveries
    | FailApiCalls
    | SeatSubscription
    | ManageSubscriptions
    | EndBillingPeriod
    | Attempts
    | AdvanceClock
)
"""Every Apple operation (``op`` tells them apart on the wire)."""
