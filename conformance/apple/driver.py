"""The Apple driver: what the Apple checks do to the SUT, over the run's Apple simulators and
the observer."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

from conformance.apple.running import RunningApple
from conformance.driver import MarkerRefused, VendorDriver, curl_command
from conformance.reference import fixtures_dir
from conformance.verdicts import Check
from simulators.apple.delivery import Delivery
from simulators.apple.models import Notification, association, new_notification_id
from simulators.apple.notifier import LoggedAttempt, Notifier
from simulators.apple.operations import (
    AppleTarget,
    Attempts,
    Deliver,
    DeliverEvent,
    FailDeliveries,
    Post,
)
from simulators.faults import FaultKind
from simulators.http_sender import Exchange
from simulators.operations import Applies
from simulators.problem import Problem

EXAMPLES = fixtures_dir() / "apple" / "examples"
R = TypeVar("R")
# A receiver that answers late is judged by APL-LAT-01; the status checks wait this long.
STATUS_WAIT_S = 20.0
ATTEMPT_SLACK_S = 10.0  # beyond the notifier's answer timeout, for an attempt to be logged


def example(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((EXAMPLES / f"{name}.json").read_text())
    return data


def fresh(wire: dict[str, Any]) -> Notification:
    """A vendor-doc example as a new notification (its own notificationId)."""
    n = Notification.model_validate(wire)
    return n.model_copy(update={"notificationId": new_notification_id()})


@dataclass(repr=False)
class AppleDriver(VendorDriver):
    """What the Apple checks do to the SUT: notifications with the vendor's headers and
    retries, raw POSTs for negative checks, reproducers, and the observer."""

    vendor_name: ClassVar[str] = "apple"
    record_shape: ClassVar[str] = '{"notification": <the notification as received>}'

    sim: RunningApple

    def __repr__(self) -> str:
        return f"<AppleDriver {self.url}>"

    @property
    def notifier(self) -> Notifier:
        """The notifier aimed at the SUT's declared receiver."""
        assert self.sim.notifier is not None
        return self.sim.notifier

    @property
    def token(self) -> str:
        return self.sim.receiver.token

    @property
    def url(self) -> str:
        return self.sim.receiver.url

    def post(
        self,
        body: bytes | dict[str, Any],
        headers: dict[str, str] | None = None,
        timeout: float = STATUS_WAIT_S,
    ) -> Exchange:
        """One POST with exactly this body and these headers (default: the vendor's)."""
        self.harness.require_sut()
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        attempt = self.harness.run(
            self.sim.perform(
                Post(body=data, headers=headers, label=_label(body), timeout_s=timeout)
            ),
            timeout=timeout + 30,
        )
        self._watch([attempt])
        return attempt

    def deliver(self, notification: Notification) -> Delivery:
        """Deliver as the vendor does: retries on the simulated clock (jumped to, not waited)."""
        self.harness.require_sut()
        delivery = self.harness.run(
            self.sim.perform(Deliver(notification=notification)), autojump=True
        )
        self._watch(delivery.attempts)
        return delivery

    def deliver_event(self, notification: Notification) -> list[Delivery]:
        self.harness.require_sut()
        deliveries = self.harness.run(
            self.sim.perform(DeliverEvent(notification=notification)), autojump=True
        )
        self._watch([a for d in deliveries for a in d.attempts])
        return deliveries

    def deliver_later(self, notification: Notification) -> Future[Delivery]:
        """Start delivering as the vendor does, without waiting: the first attempt goes at
        once, the retries when the simulated clock reaches them (:meth:`finish_deliveries`)."""
        return self.harness.submit(self.sim.perform(Deliver(notification=notification)))

    def attempts_made(self, entries: list[LoggedAttempt], notification_id: str) -> int:
        return sum(1 for e in entries if e.label.endswith(f" {notification_id}"))

    @staticmethod
    def _acknowledged_in(entries: list[LoggedAttempt], notification_id: str) -> bool:
        return any(e.label.endswith(f" {notification_id}") and e.attempt.succeeded for e in entries)

    def wait_attempts(self, wanted: Mapping[str, int], timeout: float) -> bool:
        """Wait (bounded) until each notificationId had at least its number of attempts."""
        return self.sim.attempts.wait_for(
            lambda entries: all(self.attempts_made(entries, n) >= k for n, k in wanted.items()),
            timeout,
        )

    def finish_deliveries(self, pending: Mapping[str, Future[Delivery]]) -> dict[str, Delivery]:
        """Carry deliveries started with :meth:`deliver_later` through the vendor's retry
        schedule: the simulated clock jumps to each next attempt, and each is awaited (bounded
        by the notifier's answer timeout) before the next jump. Every delivery ends delivered
        or given up; a harness fault raises."""
        offsets = self.notifier.schedule.offsets
        bound = self.notifier.timeout_s + ATTEMPT_SLACK_S
        for gap in (b - a for a, b in itertools.pairwise(offsets)):
            entries = self.sim.attempts.entries()
            undone = [n for n in pending if not self._acknowledged_in(entries, n)]
            if not undone:
                break
            made = {n: self.attempts_made(entries, n) for n in undone}
            self.harness.clock.advance(gap)
            self.wait_attempts({n: k + 1 for n, k in made.items()}, bound)
        return {n: future.result(bound) for n, future in pending.items()}

    def perform(self, operation: Applies[AppleTarget, R], timeout: float = 120.0) -> R:
        """Carry out one operation (:mod:`simulators.apple.operations`), in the simulators'
        loop."""
        return self.harness.run(self.sim.perform(operation), timeout=timeout)

    def require_api_client(self, check: Check) -> None:
        """API-mode checks: not-verified unless the SUT declares ``api_client``; the report
        then carries the API's history."""
        section = self.sim.section
        if section is None or not section.api_client:
            raise check.not_verified("profile not declared: the SUT's [apple] api_client is false")
        check.include_history("apple-api")
        check.no_reproducer(
            "the SUT's own calls to the Apps and Books API and their timing are judged: no request "
            "to the SUT replays them (`conformance-sim serve apple` logs them as the SUT makes them)"
        )

    def _watch(self, attempts: list[Exchange]) -> None:
        """When the SUT did not answer (and not because of a fault we injected), find out at
        once whether it is still there."""
        silent = [a for a in attempts if a.status is None and a.fault is None]
        if silent and len(silent) == len(attempts):
            self.harness.confirm_unresponsive(f"no answer to a notification: {silent[-1].error}")

    def acknowledged(self, notification_id: str) -> bool:
        """Whether any copy or attempt of this notification was answered 2xx."""
        return any(
            entry.label.endswith(f" {notification_id}") and entry.attempt.acknowledged
            for entry in self.perform(Attempts())
        )

    def unacknowledged(self, deliveries: list[Delivery]) -> Problem:
        """Why processing cannot be judged when the SUT acknowledged no copy of a notification
        (the vendor would keep retrying it): the refusal itself is judged by APL-AUTH-01 and
        APL-TYPE-*. One 2xx to any copy or attempt is enough to judge what the SUT processed."""
        refused = [d for d in deliveries if not self.acknowledged(d.notification_id)]
        if not refused:
            return None
        last = refused[0].attempts[-1] if refused[0].attempts else None
        outcome = (last.status or last.error) if last is not None else "no attempt"
        return (
            f"the SUT acknowledged no copy of {len(refused)} of {len(deliveries)} "
            f"notification(s) (last answer: {outcome}), so whether it processed them cannot be "
            "observed"
        )

    def fail_next(self, kind: FaultKind) -> None:
        """The next notification attempt misbehaves (:class:`FailDeliveries`)."""
        self.harness.run(self.sim.perform(FailDeliveries(kind=kind)))

    def reproduce(
        self, check: Check, body: bytes | dict[str, Any], headers: dict[str, str] | None = None
    ) -> None:
        """Offer ``check`` a command that sends the same request again."""
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        check.reproducer(self.curl(data, headers), size=len(data))

    def curl(self, body: bytes | dict[str, Any], headers: dict[str, str] | None = None) -> str:
        """A command that sends the same request again (run from the report's folder: a large
        or binary body is written to ``bodies/`` beside the report)."""
        headers = self.notifier.headers() if headers is None else headers
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        ca = self.sim.receiver.cafiles
        return curl_command(self.harness, "POST", self.url, headers, data, ca[0] if ca else None)

    # The observer.

    def count_reports(
        self, ids: Iterable[str], timeout: float, *, more_than: int = 0
    ) -> dict[str, int]:
        """Reports per notificationId, waiting (at most ``timeout``) until each was reported
        more than ``more_than`` times (in any order: a SUT may process concurrently)."""
        return self.count_keyed({nid: nid for nid in ids}, timeout, more_than=more_than)

    def fence(self, awaiting: Iterable[str] = ()) -> Problem:
        """Wait for the reports of the notificationIds ``awaiting``, then for a marker's
        (:meth:`VendorDriver.fence_with`)."""

        def marker() -> dict[str, str]:
            notification = association(1)  # the most common type; per-type checks judge others
            if self.deliver(notification).state.value != "delivered":
                raise MarkerRefused(
                    "the SUT did not acknowledge a marker notification, so reports cannot be "
                    "awaited"
                )
            return {notification.notificationId: notification.notificationId}

        return self.fence_with({nid: nid for nid in awaiting}, marker)

    def notifications(self) -> list[dict[str, Any]]:
        """The notifications the SUT reported as processed, in order."""
        return [n for r in self.records() if (n := _notification(r))]

    def reports_of(self, ids: Iterable[str]) -> list[dict[str, Any]]:
        wanted = set(ids)
        return [n for n in self.notifications() if n.get("notificationId") in wanted]


def answer(attempt: Exchange) -> str:
    """An attempt's outcome as prose, for the report."""
    if attempt.status is not None:
        took = attempt.elapsed_real_s
        return f"{attempt.status}" + (f" in {took * 1000:.0f} ms" if took is not None else "")
    return attempt.error or "no answer"


def _notification(record: Any) -> dict[str, Any]:
    """The notification inside an observer record (``{"notification": …}``), or {}."""
    inner = record.get("notification") if isinstance(record, dict) else None
    return inner if isinstance(inner, dict) else {}


def _label(body: bytes | dict[str, Any]) -> str:
    if isinstance(body, dict):
        return f"{body.get('notificationType', '?')} {body.get('notificationId', '')}".strip()
    return f"raw body ({len(body)} B)"
