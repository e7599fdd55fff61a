"""Fixtures of the Apple suite: a driver over the harness's Apple simulator and observer."""

from __future__ import annotations

import json
import shlex
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import pytest

from conformance.apple.sim import AppleSim
from conformance.harness import Harness
from conformance.reference import fixtures_dir
from conformance.verdicts import Check
from simulators.apple.delivery import Attempt, Delivery
from simulators.apple.models import Notification, association, new_notification_id
from simulators.apple.notifier import Notifier

EXAMPLES = fixtures_dir() / "apple" / "examples"
# How long a check waits for the SUT's observer report of something it answered 2xx to.
OBSERVER_WAIT_S = 10.0
# Judging "once": after every judged notification and the marker were reported, a second
# report of one is still awaited this long (a SUT processing concurrently may report late).
DUPLICATE_SETTLE_S = 1.0
# A receiver that answers late is judged by APL-LAT-01; the status checks wait this long.
STATUS_WAIT_S = 20.0


def example(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((EXAMPLES / f"{name}.json").read_text())
    return data


def fresh(wire: dict[str, Any]) -> Notification:
    """A vendor-doc example as a new notification (its own notificationId)."""
    n = Notification.model_validate(wire)
    return n.model_copy(update={"notificationId": new_notification_id()})


@dataclass(repr=False)
class AppleDriver:
    """What the Apple checks do to the SUT: notifications with the vendor's headers and
    retries, raw POSTs for negative checks, reproducers, and the observer."""

    harness: Harness
    sim: AppleSim
    observer_silent: bool = False

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
    ) -> Attempt:
        """One POST with exactly this body and these headers (default: the vendor's)."""
        self.harness.require_sut()
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        attempt = self.harness.run(
            self.notifier.post(data, headers=headers, label=_label(body), timeout_s=timeout),
            timeout=timeout + 30,
        )
        self._watch([attempt])
        return attempt

    def deliver(self, notification: Notification) -> Delivery:
        """Deliver as the vendor does: retries on the simulated clock (jumped to, not waited)."""
        self.harness.require_sut()
        delivery = self.harness.run(self.notifier.deliver(notification), autojump=True)
        self._watch(delivery.attempts)
        return delivery

    def deliver_event(self, notification: Notification) -> list[Delivery]:
        self.harness.require_sut()
        deliveries = self.harness.run(self.notifier.deliver_event(notification), autojump=True)
        self._watch([a for d in deliveries for a in d.attempts])
        return deliveries

    def _watch(self, attempts: list[Attempt]) -> None:
        """When the SUT did not answer (and not because of a fault we injected), find out at
        once whether it is still there."""
        silent = [a for a in attempts if a.status is None and a.fault is None]
        if silent and len(silent) == len(attempts):
            self.harness.confirm_unresponsive(f"no answer to a notification: {silent[-1].error}")

    def acknowledged(self, notification_id: str) -> bool:
        """Whether any copy or attempt of this notification was answered 2xx."""
        return any(
            entry.label.endswith(f" {notification_id}") and entry.attempt.acknowledged
            for entry in self.sim.attempts.entries()
        )

    def arm(self, kind: str, **params: Any) -> None:
        self.notifier.faults.add("deliver", kind, **params)

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
        parts = ["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}\\n", "-X", "POST"]
        ca = self.sim.receiver.cafiles
        if ca:
            parts += ["--cacert", ca[0]]
        for key, value in headers.items():
            parts += ["-H", f"{key}: {value}"]
        parts += ["--data-binary", _inline_or_file(self.harness, data)]
        return shlex.join([*parts, self.url])

    # The observer.

    def records(self) -> list[dict[str, Any]]:
        """The notifications the SUT reported as processed, in order."""
        return [n for r in self.harness.observer.records("apple") if (n := _notification(r))]

    def count_reports(
        self, ids: Iterable[str], timeout: float, *, more_than: int = 0
    ) -> dict[str, int]:
        """Reports per notificationId, waiting (at most ``timeout``) until each was reported
        more than ``more_than`` times (in any order: a SUT may process concurrently)."""
        return self.harness.observer.count_reports(
            "apple",
            {nid: nid for nid in ids},
            lambda record: [str(_notification(record).get("notificationId"))],
            timeout,
            more_than=more_than,
        )

    def fence(self, awaiting: Iterable[str] = ()) -> str | None:
        """Wait for the reports of the notificationIds ``awaiting`` (in any order, bounded),
        then deliver a marker notification and wait for its report, so that everything the SUT
        processed before it has been reported. None when fenced; else why the observer cannot
        be relied on in this run (the check is then not-verified). A SUT whose reports the
        observer refused fails here: it reports, in a shape nobody can read."""
        wait = 2.0 if self.observer_silent else OBSERVER_WAIT_S
        self.count_reports(awaiting, wait)
        marker = association(1)  # the most common type; per-type checks judge the others
        if self.deliver(marker).state.value != "delivered":
            return "the SUT did not acknowledge a marker notification, so reports cannot be awaited"
        if self.count_reports([marker.notificationId], wait)[marker.notificationId]:
            return None
        refused = self.harness.observer.refusals("apple")
        if refused.total():
            reason, first = next(iter(refused.first.items()))
            raise AssertionError(
                f"the observer refused {refused.total()} report(s) from the SUT ({reason}: "
                f'{first}); a record is {{"notification": <the notification as received>}}'
            )
        self.observer_silent = not self.records()
        if self.observer_silent:
            return "the SUT reported nothing to the observer"
        return f"the SUT did not report a marker notification within {wait:g} s"

    def reports_of(self, ids: Iterable[str]) -> list[dict[str, Any]]:
        wanted = set(ids)
        return [n for n in self.records() if n.get("notificationId") in wanted]


INLINE_BODY_LIMIT = 1_024  # bytes of a reproducer's body written in the command itself


def _inline_or_file(harness: Harness, data: bytes) -> str:
    """The ``--data-binary`` argument: the body itself when short, printable UTF-8; else
    ``@bodies/<hash>.bin``, written beside the report."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    if text is not None and len(data) <= INLINE_BODY_LIMIT and text.isprintable():
        return text
    return "@" + harness.body_file(data)


def answer(attempt: Attempt) -> str:
    """An attempt's outcome as prose, for the report."""
    if attempt.status is not None:
        took = attempt.elapsed_real_s
        return f"{attempt.status}" + (f" in {took * 1000:.0f} ms" if took is not None else "")
    return attempt.error or "no answer"


def prose(items: Iterable[object]) -> str:
    """``a, b and c``."""
    words = [str(i) for i in items]
    return (
        ", ".join(words[:-1]) + (" and " if len(words) > 1 else "") + (words[-1] if words else "")
    )


def _notification(record: Any) -> dict[str, Any]:
    """The notification inside an observer record (``{"notification": …}``), or {}."""
    inner = record.get("notification") if isinstance(record, dict) else None
    return inner if isinstance(inner, dict) else {}


def _label(body: bytes | dict[str, Any]) -> str:
    if isinstance(body, dict):
        return f"{body.get('notificationType', '?')} {body.get('notificationId', '')}".strip()
    return f"raw body ({len(body)} B)"


@pytest.fixture(scope="session")
def apple(harness: Harness) -> AppleDriver:
    sim = harness.running.get("apple")
    if not isinstance(sim, AppleSim):
        pytest.skip("the SUT does not declare the Apple profile")
    return AppleDriver(harness, sim)
