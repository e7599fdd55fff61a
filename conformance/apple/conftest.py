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
from simulators.apple.delivery import Attempt, Delivery
from simulators.apple.models import Notification, association, new_notification_id
from simulators.apple.notifier import Notifier

EXAMPLES = fixtures_dir() / "apple" / "examples"
# How long a check waits for the SUT's observer report of something it answered 2xx to.
OBSERVER_WAIT_S = 10.0
# A receiver that answers late is judged by APL-LAT-01; the status checks wait this long.
STATUS_WAIT_S = 20.0


def example(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((EXAMPLES / f"{name}.json").read_text())
    return data


def fresh(wire: dict[str, Any]) -> Notification:
    """A vendor-doc example as a new notification (its own notificationId)."""
    n = Notification.model_validate(wire)
    return n.model_copy(update={"notificationId": new_notification_id()})


@dataclass
class AppleDriver:
    harness: Harness
    sim: AppleSim
    observer_silent: bool = False

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
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        label = _label(body)
        return self.harness.run(
            self.notifier.post(data, headers=headers, label=label, timeout_s=timeout)
        )

    def deliver(self, notification: Notification) -> Delivery:
        """Deliver as the vendor does: retries on the simulated clock (jumped to, not waited)."""
        return self.harness.run(self.notifier.deliver(notification), autojump=True)

    def deliver_event(self, notification: Notification) -> list[Delivery]:
        return self.harness.run(self.notifier.deliver_event(notification), autojump=True)

    def arm(self, kind: str, **params: Any) -> None:
        self.notifier.faults.add("deliver", kind, **params)

    def curl(self, body: bytes | dict[str, Any], headers: dict[str, str] | None = None) -> str:
        """A command that sends the same request again."""
        headers = self.notifier.headers() if headers is None else headers
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        parts = ["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}\\n", "-X", "POST"]
        ca = self.sim.receiver.cafiles
        if ca:
            parts += ["--cacert", ca[0]]
        for key, value in headers.items():
            parts += ["-H", f"{key}: {value}"]
        try:
            parts += ["--data-binary", data.decode("utf-8")]
        except UnicodeDecodeError:
            parts = ["printf", "%b", _escape_bytes(data), "|", *parts, "--data-binary", "@-"]
            return (
                " ".join(p if p == "|" else shlex.quote(p) for p in parts)
                + " "
                + shlex.quote(self.url)
            )
        return shlex.join([*parts, self.url])

    # The observer.

    def records(self) -> list[dict[str, Any]]:
        """The notifications the SUT reported as processed, in order."""
        return [n for r in self.harness.observer.records("apple") if (n := _notification(r))]

    def fence(self) -> str | None:
        """Deliver a marker notification and wait for its report, so that everything the SUT
        processed before it has been reported. None when fenced; else why the observer cannot
        be relied on in this run (the check is then not-verified)."""
        marker = association(1)  # the most common type; per-type checks judge the others
        if self.deliver(marker).state.value != "delivered":
            return "the SUT did not acknowledge a marker notification, so reports cannot be awaited"
        wait = 2.0 if self.observer_silent else OBSERVER_WAIT_S

        def reported(records: list[Any]) -> bool:
            return any(
                _notification(r).get("notificationId") == marker.notificationId for r in records
            )

        if reported(self.harness.observer.wait_for("apple", reported, wait)):
            return None
        self.observer_silent = not self.records()
        if self.observer_silent:
            return "the SUT reported nothing to the observer"
        return f"the SUT did not report a marker notification within {wait:g} s"

    def reports_of(self, ids: Iterable[str]) -> list[dict[str, Any]]:
        wanted = set(ids)
        return [n for n in self.records() if n.get("notificationId") in wanted]


def _notification(record: Any) -> dict[str, Any]:
    """The notification inside an observer record (``{"notification": …}``), or {}."""
    inner = record.get("notification") if isinstance(record, dict) else None
    return inner if isinstance(inner, dict) else {}


def _label(body: bytes | dict[str, Any]) -> str:
    if isinstance(body, dict):
        return f"{body.get('notificationType', '?')} {body.get('notificationId', '')}".strip()
    return f"raw body ({len(body)} B)"


def _escape_bytes(data: bytes) -> str:
    return "".join(f"\\x{b:02x}" for b in data[:4096])


@pytest.fixture(scope="session")
def apple(harness: Harness) -> AppleDriver:
    sim = harness.running.get("apple")
    if not isinstance(sim, AppleSim):
        pytest.skip("the SUT does not declare the Apple profile")
    return AppleDriver(harness, sim)
