"""The ``pelion_sim`` fixture's handle (conformance.sim_fixtures): the Pelion simulator's powers
as Python calls, each one typed operation (:mod:`simulators.pelion.operations`)."""

from __future__ import annotations

from typing import Any

from conformance.sim_fixtures import WAIT_S, SimHandle
from simulators.pelion.operations import Attempts, ChannelStatus, Connections, Notify
from simulators.pelion.records import ChannelSnapshot, DeliveryAttempt
from simulators.pelion.websocket import ConnectionInfo

__all__ = ["PelionSim"]


class PelionSim(SimHandle):
    """``notify(...)`` makes a device report a value; ``wait_connected()`` waits for a bound
    WebSocket, ``wait_delivered(n)`` for ``n`` items acknowledged."""

    def notify(self, **values: Any) -> dict[str, Any]:
        """``device``, ``path``, ``value`` (text), ``count`` (a burst): see :class:`Notify`."""
        result: dict[str, Any] = self.perform(Notify(**values))
        return result

    def channel(self) -> ChannelSnapshot | None:
        status: ChannelSnapshot | None = self.perform(ChannelStatus())
        return status

    def attempts(self) -> list[DeliveryAttempt]:
        found: list[DeliveryAttempt] = self.perform(Attempts())
        return found

    def connections(self) -> list[ConnectionInfo]:
        found: list[ConnectionInfo] = self.perform(Connections())
        return found

    def wait_connected(self, timeout: float = WAIT_S) -> ChannelSnapshot:
        """The channel once a WebSocket is bound to it."""

        def bound() -> ChannelSnapshot | None:
            channel = self.channel()
            return channel if channel is not None and channel.status == "connected" else None

        found = self.wait_for(bound, timeout)
        assert found is not None
        return found

    def wait_delivered(self, count: int = 1, timeout: float = WAIT_S) -> list[DeliveryAttempt]:
        """The acknowledged batches, once they carried ``count`` items."""

        def delivered() -> list[DeliveryAttempt]:
            done = [a for a in self.attempts() if a.succeeded]
            return done if sum(a.items for a in done) >= count else []

        return self.wait_for(delivered, timeout)
