"""The ``apple_sim`` fixture's handle (conformance.sim_fixtures): the Apple simulators' powers
as Python calls, each one typed operation (:mod:`simulators.apple.operations`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from conformance.sim_fixtures import WAIT_S, SimHandle
from simulators.apple.notifier import LoggedAttempt
from simulators.apple.operations import Attempts, Notify, NotifySent, RegisterReceiver

__all__ = ["AppleSim"]


class AppleSim(SimHandle):
    """``receiver(url, token)`` aims notifications at the code under test; ``notify(type)``
    sends one; ``wait_delivered(n)`` waits until ``n`` attempts were answered 2xx."""

    def receiver(self, url: str, token: str, *, ca: str | Path | None = None) -> dict[str, Any]:
        """Aim notifications at ``url`` (Bearer ``token``); ``ca``: its CA (a PEM file)."""
        ca_pem = Path(ca).read_text() if ca is not None else None
        result: dict[str, Any] = self.perform(RegisterReceiver(url=url, token=token, ca_pem=ca_pem))
        return result

    def notify(self, notification_type: str, elements: int = 1, **fields: Any) -> list[NotifySent]:
        """A realistic notification (split at 100 elements); answered after first attempts."""
        sent: list[NotifySent] = self.perform(
            Notify(notification_type=notification_type, elements=elements, fields=fields)
        )
        return sent

    def attempts(self) -> list[LoggedAttempt]:
        """Every notification attempt so far."""
        found: list[LoggedAttempt] = self.perform(Attempts())
        return found

    def wait_delivered(self, count: int = 1, timeout: float = WAIT_S) -> list[LoggedAttempt]:
        """The attempts answered 2xx, once there are ``count`` (bounded by ``timeout``)."""

        def delivered() -> list[LoggedAttempt]:
            done = [a for a in self.attempts() if a.attempt.succeeded]
            return done if len(done) >= count else []

        return self.wait_for(delivered, timeout)
