"""What the Apple simulators can be asked to do, as typed operations (docs/architecture.md,
"Operations"), aimed through :class:`AppleTarget` at the SUT's receiver and API client.

Events: :class:`Deliver` (one notification, with the vendor's retries on the simulated clock),
:class:`DeliverEvent` (split at 100 elements first), :class:`Post` (exactly these bytes, once),
:class:`Notify` (a realistic notification of any type, answered once each part had its first
attempt). Receivers: :class:`RegisterReceiver` (a receiver-only SUT, standalone). Faults:
:class:`FailDeliveries` (the next attempts misbehave), :class:`FailApiCalls` (the next Apps and
Books API calls are answered with an error), :class:`ArmFault` (the shared fault vocabulary).
Subscriptions (SIM-APL-SUBS): :class:`SeatSubscription` (a seat assigned before the run),
:class:`ManageSubscriptions` (a call made as another MDM or the content manager would),
:class:`EndBillingPeriod` (deferred disassociations are released and notified). Queries:
:class:`Attempts`. :class:`Reset`. Simulated time:
:class:`simulators.operations.AdvanceClock`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from simulators.apple.api import AppsAndBooksServer
from simulators.apple.delivery import Delivery, split_notification
from simulators.apple.errors import ApiError
from simulators.apple.models import NOTIFICATION_TYPES, Notification, sample
from simulators.apple.notifier import AttemptLog, LoggedAttempt, Notifier, Receiver
from simulators.clock import Clock
from simulators.faults import FaultKind
from simulators.http_sender import Exchange
from simulators.operations import AdvanceClock, Operation, offered_fault

__all__ = [
    "MAX_NOTIFY_ELEMENTS",
    "AppleOperation",
    "AppleTarget",
    "ArmFault",
    "Attempts",
    "Deliver",
    "DeliverEvent",
    "EndBillingPeriod",
    "FailApiCalls",
    "FailDeliveries",
    "ManageSubscriptions",
    "Notify",
    "NotifySent",
    "Post",
    "RegisterReceiver",
    "Released",
    "Reset",
    "SeatSubscription",
]

# One notify makes at most 100 notifications of 100 elements: a bound on what one request costs.
MAX_NOTIFY_ELEMENTS = 10_000
# Aims the notifier at a receiver (None: at none); answers the receiver it replaced.
Aim = Callable[[Receiver | None], Awaitable[Receiver | None]]
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
    aim: Aim | None = None  # None: the receiver is the run's declared one, fixed

    def receiver(self) -> Notifier:
        if self.notifier is None:
            raise ValueError(
                "no receiver is registered: there is nowhere to send notifications "
                "(register one first: `conformance-sim ctl apple receiver URL --token TOKEN`)"
            )
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
        try:
            answer = target.api.service.mutate(
                f"subscriptions/{self.action}", body, target.clock.now()
            )
        except ApiError as exc:  # the call cannot be made: say why, as the API would
            raise ValueError(str(exc)) from None
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


class RegisterReceiver(Operation):
    """Aim the notifier at a receiver-only SUT, as its client config would: ``url`` gets
    every notification with ``Authorization: Bearer <token>``; ``ca_pem`` is the CA of its
    certificate when no public one signed it. Standalone only (a run's receiver is declared)."""

    op: Literal["register-receiver"] = "register-receiver"
    url: str = Field(min_length=8, max_length=2048)
    token: str = Field(min_length=1, max_length=4096)
    ca_pem: str | None = Field(default=None, max_length=65_536)

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("https://", "http://")):
            raise ValueError(f"{value!r} is not an http(s) URL: give the receiver's https://… URL")
        return value

    @field_validator("ca_pem")
    @classmethod
    def _pem(cls, value: str | None) -> str | None:
        if value is not None and "-----BEGIN CERTIFICATE-----" not in value:
            raise ValueError("not a PEM certificate: give the file of the receiver's CA")
        return value

    def describe(self) -> str:
        return f"register the receiver {self.url}"

    async def apply(self, target: AppleTarget) -> dict[str, Any]:
        if target.aim is None:
            raise ValueError("this run's receiver is the SUT's declared one; it cannot be changed")
        cafiles = (self.ca_pem,) if self.ca_pem else ()
        replaced = await target.aim(Receiver(self.url, self.token, cafiles))
        return {"receiver": self.url, "replaced": replaced.url if replaced else None}


@dataclass(frozen=True)
class NotifySent:
    """One notification a :class:`Notify` sent (one part of a split event) and its delivery so
    far: ``state`` is ``delivered``, ``due`` (a retry waits for simulated time) or ``gave-up``."""

    notificationId: str
    notificationType: str
    elements: int
    state: str
    attempts: list[dict[str, Any]]
    next_attempt_sim_s: float | None

    @classmethod
    def of(cls, part: Notification, delivery: Delivery | None) -> NotifySent:
        attempts = [] if delivery is None else delivery.attempts
        return cls(
            part.notificationId,
            part.notificationType,
            len(part.elements()),
            "due" if delivery is None else delivery.state.value,
            [
                {"number": i, "status": a.status, "error": a.error, "fault": a.fault}
                for i, a in enumerate(attempts, 1)
            ],
            None if delivery is None else delivery.next_deadline(),
        )


class Notify(Operation):
    """Send a realistic notification of ``notification_type`` with ``elements`` items (split
    into notifications of at most 100, each with its retries) and ``fields`` overriding its
    body's own; answered once every part had its first attempt, while retries wait for
    simulated time."""

    op: Literal["notify"] = "notify"
    notification_type: str
    elements: int = Field(default=1, ge=1, le=MAX_NOTIFY_ELEMENTS)
    fields: dict[str, Any] = Field(default={}, max_length=100)

    @field_validator("notification_type")
    @classmethod
    def _documented(cls, value: str) -> str:
        if value not in NOTIFICATION_TYPES:
            raise ValueError(
                f"unknown notificationType {value!r} (known: {', '.join(NOTIFICATION_TYPES)})"
            )
        return value

    @model_validator(mode="after")
    def _elements_fit(self) -> Notify:
        sample(self.notification_type, 1 if self.elements == 1 else 2)  # ValueError if no list
        return self

    def describe(self) -> str:
        return f"notify {self.notification_type} with {self.elements} element(s)"

    async def apply(self, target: AppleTarget) -> list[NotifySent]:
        notifier = target.receiver()
        made = sample(self.notification_type, self.elements)
        if self.fields:
            made = made.model_copy(update={"notification": {**made.notification, **self.fields}})
        parts = split_notification(made)
        deliveries: dict[str, Delivery] = {}
        all_attempted = asyncio.Event()

        def attempted(part: Notification, delivery: Delivery) -> None:
            deliveries[part.notificationId] = delivery
            if len(deliveries) == len(parts):
                all_attempted.set()

        async def deliver_all() -> list[Delivery]:
            return list(
                await asyncio.gather(*(notifier.deliver(p, attempted=attempted) for p in parts))
            )

        sending = target.api.tasks.spawn(deliver_all(), "notify")
        waiting = asyncio.ensure_future(all_attempted.wait())
        try:
            await asyncio.wait({sending, waiting}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            waiting.cancel()
        if sending.done() and sending.exception() is not None:
            raise sending.exception()  # type: ignore[misc]
        return [NotifySent.of(part, deliveries.get(part.notificationId)) for part in parts]


# The shared fault vocabulary, as the Apple simulators show it.
DELIVERY_FAULTS = (FaultKind.DUPLICATE, FaultKind.DROP_BEFORE_ACK, FaultKind.STALL, FaultKind.DELAY)
APPLE_FAULTS = (*DELIVERY_FAULTS, FaultKind.STATUS)


class ArmFault(Operation):
    """Arm one fault of the shared vocabulary for the next ``times`` occasions: a delivery
    fault (``duplicate``, ``drop-before-ack``, ``stall``, ``delay`` by ``seconds``) on the next
    notification attempts, or ``status`` on the SUT's next Apps and Books API calls (answered
    ``status`` with the vendor's error, e.g. 503)."""

    op: Literal["fault"] = "fault"
    kind: FaultKind
    times: int = Field(default=1, ge=1, le=10_000)
    seconds: float = Field(default=30.0, ge=0, le=600)
    status: int = Field(default=503, ge=400, le=599)

    @field_validator("kind")
    @classmethod
    def _offered(cls, value: FaultKind) -> FaultKind:
        return offered_fault(value, APPLE_FAULTS, "the Apple simulators")

    def describe(self) -> str:
        return f"arm {self.kind.value} for the next {self.times} occasion(s)"

    async def apply(self, target: AppleTarget) -> str:
        if self.kind is FaultKind.STATUS:
            error = 9646 if self.status == 429 else 9729
            await FailApiCalls(status=self.status, error=error, times=self.times).apply(target)
            return f"the next {self.times} API call(s) are answered {self.status}/{error}"
        kind: Any = self.kind
        await FailDeliveries(kind=kind, times=self.times, seconds=self.seconds).apply(target)
        return f"the next {self.times} notification attempt(s): {self.kind.value}"


class Reset(Operation):
    """Forget what earlier operations armed or aimed: every armed fault, and (standalone) the
    registered receiver. Deliveries under way end on their own."""

    op: Literal["reset"] = "reset"

    async def apply(self, target: AppleTarget) -> dict[str, Any]:
        target.api.faults.clear()
        if target.notifier is not None:
            target.notifier.faults.clear()
        replaced = await target.aim(None) if target.aim is not None else None
        return {"faults": "cleared", "receiver_forgotten": replaced.url if replaced else None}


AppleOperation = (
    Deliver
    | DeliverEvent
    | Post
    | Notify
    | RegisterReceiver
    | FailDeliveries
    | FailApiCalls
    | ArmFault
    | SeatSubscription
    | ManageSubscriptions
    | EndBillingPeriod
    | Attempts
    | Reset
    | AdvanceClock
)
"""Every Apple operation (``op`` tells them apart on the wire)."""
