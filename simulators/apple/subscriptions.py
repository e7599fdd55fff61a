"""Subscription seats of the Apps and Books API, as state without I/O (SIM-APL-SUBS;
docs/vendors/apple.md §2.1).

:class:`SubscriptionLedger` holds the organization's subscriptions and the seats assigned to
users. It validates ``subscriptions/associate`` and ``subscriptions/disassociate`` requests
(synchronous errors raise :class:`~simulators.apple.errors.ApiError`), applies them, and returns
the notifications each produces: SUBSCRIPTION_MANAGEMENT (integer ``adamId``, ``renewing``) and
SUBSCRIPTION_COUNT (absolute ``available``/``total`` counts split ``renewing``/``expiring``, no
``assigned``). A ``deferred`` disassociation keeps its seats until the end of the current billing
period on the simulated clock, when its notification is handed out (:meth:`due`) under the
request's ``eventId``.

Project assumptions (the vendor documents none of these): a billing period lasts
:data:`BILLING_PERIOD_S` (30 days; ``--apple-billing-period``) and periods start at simulated
time 0; a renewing seat comes from the ``renewing`` pool, a non-renewing one from ``expiring``;
an association to an unregistered user fails with 9609 and one beyond the available seats with
9709, as asset associations do; a deferred disassociation's event completes as soon as the
deferral is recorded; subscription management starts enabled.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from simulators.apple.errors import LIMITS, ApiError, error_body, valid_text
from simulators.apple.models import (
    Notification,
    NotificationError,
    SubscriptionAssignment,
    SubscriptionCount,
    SubscriptionCounts,
    SubscriptionCountsBlock,
    SubscriptionManagement,
    new_notification_id,
)

__all__ = [
    "BILLING_PERIOD_S",
    "CallOutcome",
    "DeferredRelease",
    "Subscription",
    "SubscriptionLedger",
]

BILLING_PERIOD_S = 30 * 24 * 3600.0  # project assumption: a monthly subscription
RELEASED_KEPT = 1000
Seat = tuple[int, str]  # (adamId, clientUserId)


def _pool(renewing: bool) -> str:
    return "renewing" if renewing else "expiring"


@dataclass
class Subscription:
    """One subscription and its seat counts (``assigned`` is only ever in ``GET``)."""

    parent_adam_id: int
    adam_id: int
    total: dict[str, int]
    assigned: dict[str, int] = field(default_factory=lambda: {"renewing": 0, "expiring": 0})

    def available(self) -> dict[str, int]:
        return {k: self.total[k] - self.assigned[k] for k in ("renewing", "expiring")}

    def listing(self) -> dict[str, Any]:
        """As ``GET /subscriptions`` lists it."""
        return {
            "parentAdamId": self.parent_adam_id,
            "adamId": self.adam_id,
            "counts": {
                "available": self.available(),
                "assigned": dict(self.assigned),
                "total": dict(self.total),
            },
        }

    def count_notification(self, uid: str) -> Notification:
        """SUBSCRIPTION_COUNT: absolute ``available`` and ``total`` counts, no ``assigned``."""
        counts = SubscriptionCountsBlock(
            available=SubscriptionCounts(**self.available()),
            total=SubscriptionCounts(**self.total),
        )
        body = SubscriptionCount(
            parentAdamId=self.parent_adam_id, adamId=self.adam_id, counts=counts
        )
        return Notification.of(body, uid=uid)


@dataclass(frozen=True)
class CallOutcome:
    """What a mutating call did: notifications to send when its event completes, tasks
    requested, the event's failures, how many tasks failed, and whether it was deferred."""

    notifications: list[Notification]
    requested: int
    failures: list[dict[str, Any]]
    failed: int
    deferred: bool = False
    seats: tuple[Seat, ...] = ()  # the (adamId, clientUserId) pairs a subscription call named


@dataclass(frozen=True)
class DeferredRelease:
    """A deferred disassociation: its seats are released at ``due_at`` (simulated), and its
    SUBSCRIPTION_MANAGEMENT notification (``notification_id``) is sent then."""

    event_id: str
    seats: tuple[Seat, ...]
    requested_at: float
    due_at: float
    notification_id: str = field(default_factory=new_notification_id)


@dataclass
class SubscriptionLedger:
    """The subscriptions of one organization unit (``uId``) and their seats."""

    uid: str
    billing_period_s: float = BILLING_PERIOD_S
    enabled: bool = True
    subscriptions: dict[int, Subscription] = field(default_factory=dict)
    seats: dict[Seat, bool] = field(default_factory=dict)  # -> renewing
    deferred: list[DeferredRelease] = field(default_factory=list)
    # The SUBSCRIPTION_MANAGEMENT notifications of released deferrals, by notificationId (the
    # latest RELEASED_KEPT), whether or not the receiver subscribed to them.
    released: dict[str, Notification] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.billing_period_s > 0:
            raise ValueError("the billing period must be positive")
        if not self.subscriptions:  # the vendor doc's example subscription, and a small one
            for adam, total in ((12345, {"renewing": 100, "expiring": 20}),
                                (12346, {"renewing": 10, "expiring": 0})):  # fmt: skip
                self.subscriptions[adam] = Subscription(54321, adam, total)

    # Time.

    def period_end(self, now: float) -> float:
        """The end of the billing period that ``now`` falls in (periods start at 0)."""
        return (math.floor(now / self.billing_period_s) + 1) * self.billing_period_s

    def next_deadline(self) -> float | None:
        return min((d.due_at for d in self.deferred), default=None)

    def due(self, now: float) -> list[Notification]:
        """Release the seats of every deferred disassociation due by ``now``: each event's
        SUBSCRIPTION_MANAGEMENT DISASSOCIATE (its own ``eventId``), then the new counts."""
        out: list[Notification] = []
        for release in [d for d in self.deferred if d.due_at <= now]:
            self.deferred.remove(release)
            notifications = self._release(
                list(release.seats), release.event_id, release.notification_id
            )
            self.released[release.notification_id] = notifications[0]
            while len(self.released) > RELEASED_KEPT:
                del self.released[next(iter(self.released))]
            out += notifications
        return out

    def releases_due(self, until: float) -> list[DeferredRelease]:
        """The deferred disassociations that fall due by ``until``, in order."""
        return sorted((d for d in self.deferred if d.due_at <= until), key=lambda d: d.due_at)

    # Reads.

    def listing(self, query: dict[str, str]) -> list[dict[str, Any]]:
        """``GET /subscriptions`` (``adamId``, ``parentAdamId`` filters)."""
        adam, parent = _int_query(query, "adamId"), _int_query(query, "parentAdamId")
        return [
            s.listing()
            for s in self.subscriptions.values()
            if adam in (None, s.adam_id) and parent in (None, s.parent_adam_id)
        ]

    def assignments(self, query: dict[str, str]) -> list[dict[str, Any]]:
        """``GET /subscriptions/assignments`` (``adamId``, ``parentAdamId``, ``clientUserId``)."""
        adam, parent = _int_query(query, "adamId"), _int_query(query, "parentAdamId")
        user = query.get("clientUserId")
        return [
            {"adamId": a, "clientUserId": u, "renewing": renewing}
            for (a, u), renewing in self.seats.items()
            if adam in (None, a)
            and parent in (None, self.subscriptions[a].parent_adam_id)
            and user in (None, u)
        ]

    # Calls.

    def set_enabled(self, enabled: bool) -> dict[str, Any]:
        """``POST subscriptions/enable|disable``; disabling with seats assigned is 9818."""
        if not enabled and self.seats:
            raise ApiError(9818)
        self.enabled = enabled
        return {"subscriptionManagement": self.enabled}

    def associate(
        self, request: dict[str, Any], event_id: str, registered: Callable[[str], bool]
    ) -> CallOutcome:
        """Assign a seat of each subscription to each user (renewing or not). A user who is
        not registered fails with 9609; more new seats than available with 9709."""
        adam_ids, users = self._targets(request)
        renewing = request.get("renewing", True)
        if not isinstance(renewing, bool):
            raise ApiError(9602, "renewing is a Boolean.")
        pool = _pool(renewing)
        failed: dict[int, list[Seat]] = {9609: [], 9709: []}
        granted: list[Seat] = []
        for adam in adam_ids:
            new = []
            for user in users:
                if not registered(user):
                    failed[9609].append((adam, user))
                elif (adam, user) not in self.seats:
                    new.append((adam, user))
            if len(new) > self.subscriptions[adam].available()[pool]:
                failed[9709].extend(new)
            else:
                granted.extend(new)
        for adam, user in granted:
            self.seats[(adam, user)] = renewing
            self.subscriptions[adam].assigned[pool] += 1
        notifications = []
        if granted or not any(failed.values()):
            notifications.append(self._management(granted, event_id, "ASSOCIATE", renewing))
        failures = []
        for number, seats in failed.items():
            if seats:
                notifications.append(
                    self._management(seats, event_id, "ASSOCIATE", renewing, error=number)
                )
                users_failed = list(dict.fromkeys(u for _, u in seats))
                failures.append(
                    {**error_body(number), "errorInfo": {"clientUserIds": users_failed}}
                )
        notifications += self._counts({a for a, _ in granted})
        named = tuple((a, u) for a in adam_ids for u in users)
        failed_count = sum(map(len, failed.values()))
        return CallOutcome(notifications, len(named), failures, failed_count, seats=named)

    def disassociate(self, request: dict[str, Any], event_id: str, now: float) -> CallOutcome:
        """Release seats now, or with ``deferred`` at the end of the current billing period
        (their notification is sent then, :meth:`due`)."""
        adam_ids, users = self._targets(request)
        deferred = request.get("deferred", False)
        if not isinstance(deferred, bool):
            raise ApiError(9602, "deferred is a Boolean.")
        named = tuple((a, u) for a in adam_ids for u in users)
        seats = [seat for seat in named if seat in self.seats]
        if deferred:
            self.deferred.append(DeferredRelease(event_id, tuple(seats), now, self.period_end(now)))
            return CallOutcome([], len(named), [], 0, deferred=True, seats=named)
        notifications = self._release(seats, event_id, new_notification_id())
        return CallOutcome(notifications, len(named), [], 0, seats=named)

    def seat(self, adam_id: int, client_user_id: str, renewing: bool = True) -> None:
        """Assign a seat without a call or a notification (one assigned before the run)."""
        subscription = self.subscriptions.get(adam_id)
        if subscription is None:
            raise ValueError(f"no subscription {adam_id}; known: {sorted(self.subscriptions)}")
        if (adam_id, client_user_id) in self.seats:
            return
        if subscription.available()[_pool(renewing)] < 1:
            raise ValueError(f"subscription {adam_id} has no {_pool(renewing)} seat left")
        self.seats[(adam_id, client_user_id)] = renewing
        subscription.assigned[_pool(renewing)] += 1

    # Helpers.

    def _targets(self, request: dict[str, Any]) -> tuple[list[int], list[str]]:
        """The request's ``adamIds`` (1–25 known integers, 9816 beyond maxSubscriptions) and
        ``clientUserIds`` (1–1000 identifiers)."""
        if not self.enabled:
            raise ApiError(9602, "Subscription management is disabled (POST subscriptions/enable).")
        adam_ids = request.get("adamIds")
        if (
            not isinstance(adam_ids, list)
            or not adam_ids
            or not all(isinstance(a, int) and not isinstance(a, bool) for a in adam_ids)
        ):
            raise ApiError(9602, "adamIds must list subscription adamIds (integers).")
        if len(adam_ids) > LIMITS["maxSubscriptions"]:
            raise ApiError(9816)
        unknown = [a for a in adam_ids if a not in self.subscriptions]
        if unknown:
            raise ApiError(9602, f"Unknown subscription adamId {unknown[0]}.")
        users = request.get("clientUserIds")
        limit = LIMITS["maxSubscriptionClientUserIds"]
        if not isinstance(users, list) or not users or not all(valid_text(u) for u in users):
            raise ApiError(9602, "clientUserIds must list identifiers (non-empty UTF-8 strings).")
        if len(users) > limit:
            raise ApiError(9602, f"clientUserIds: at most {limit} (maxSubscriptionClientUserIds).")
        return list(dict.fromkeys(adam_ids)), list(dict.fromkeys(users))

    def _release(
        self, seats: list[Seat], event_id: str, notification_id: str
    ) -> list[Notification]:
        """Free the seats still assigned; the DISASSOCIATE notification lists them (with their
        renewal state), then each changed subscription's counts."""
        released = []
        for seat in seats:
            renewing = self.seats.pop(seat, None)
            if renewing is not None:
                self.subscriptions[seat[0]].assigned[_pool(renewing)] -= 1
                released.append((seat, renewing))
        body = SubscriptionManagement(
            assignments=[
                SubscriptionAssignment(adamId=a, clientUserId=u, renewing=r)
                for (a, u), r in released
            ],
            eventId=event_id,
            result="SUCCESS",
            type="DISASSOCIATE",
        )
        management = Notification.of(body, uid=self.uid, notificationId=notification_id)
        return [management, *self._counts({a for (a, _), _ in released})]

    def _management(
        self, seats: list[Seat], event_id: str, kind: str, renewing: bool, error: int | None = None
    ) -> Notification:
        body = SubscriptionManagement(
            assignments=[
                SubscriptionAssignment(adamId=a, clientUserId=u, renewing=renewing)
                for a, u in seats
            ],
            eventId=event_id,
            result="FAILURE" if error else "SUCCESS",
            type=kind,
            error=NotificationError(**error_body(error)) if error else None,
        )
        return Notification.of(body, uid=self.uid)

    def _counts(self, adam_ids: set[int]) -> list[Notification]:
        return [self.subscriptions[a].count_notification(self.uid) for a in sorted(adam_ids)]


def _int_query(query: dict[str, str], key: str) -> int | None:
    value = query.get(key)
    if value is None:
        return None
    if not value.isascii() or not value.isdigit() or len(value) > 18:
        raise ApiError(9602, f"{key} is an integer.")
    return int(value)
