"""The ``ivanti_sim`` fixture's handle (conformance.sim_fixtures): the Ivanti simulators' powers
as Python calls, each one typed operation (:mod:`simulators.ivanti.operations`)."""

from __future__ import annotations

from typing import Any

from conformance.sim_fixtures import WAIT_S, SimHandle
from simulators.ivanti.broker import Published
from simulators.ivanti.operations import Connections, Publish
from simulators.mqtt.packetlog import ConnectionView

__all__ = ["IvantiSim"]


class IvantiSim(SimHandle):
    """``publish(event_type)`` sends an event to the SUT's tenant; ``wait_connected()`` and
    ``wait_acknowledged(n)`` wait for what the broker saw."""

    def publish(
        self, event_type: str | None = None, *, payload: bytes | dict[str, Any] | None = None,
        qos: int = 1, **fields: Any,
    ) -> Published:  # fmt: skip
        """A realistic event of ``event_type`` with ``fields`` overriding its own, or exactly
        ``payload``; answers who received it and who it is kept for."""
        operation = Publish.model_validate(
            {"event_type": event_type, "payload": payload, "qos": qos, "fields": fields}
        )
        published: Published = self.perform(operation)
        return published

    def connections(self, *, open_only: bool = False) -> list[ConnectionView]:
        found: list[ConnectionView] = self.perform(Connections(open_only=open_only))
        return found

    def wait_connected(self, timeout: float = WAIT_S) -> list[ConnectionView]:
        """The open, accepted connections, once there is one with a subscription."""
        return self.wait_for(
            lambda: [c for c in self.connections(open_only=True) if c.accepted and c.subscriptions],
            timeout,
        )

    def wait_acknowledged(self, count: int = 1, timeout: float = WAIT_S) -> int:
        """How many PUBACKs the clients sent, once there are ``count``."""

        def acks() -> int:
            total = sum(len(c.received("PUBACK")) for c in self.connections())
            return total if total >= count else 0

        return self.wait_for(acks, timeout)
