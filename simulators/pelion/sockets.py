"""The notification WebSockets the SUT opened (vendor doc, "WebSocket": one bound socket per
key's channel, pings every 30 s with a 5 s pong deadline, close codes both ways), and the bounded
log of every connect."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, replace

from simulators.clock import Clock
from simulators.pelion.config import PelionConfig
from simulators.pelion.delivery import REASON_BAD_KEY, REASON_REPLACED, CloseCode
from simulators.pelion.schedule import Schedule
from simulators.pelion.websocket import Connection, ConnectionInfo, PingRecord

__all__ = ["CONNECTIONS_KEPT", "ForgottenConnections", "Sockets"]

CONNECTIONS_KEPT = 2_000


@dataclass
class ForgottenConnections:
    """The run-wide facts of the connects no longer kept (the oldest, past
    :data:`CONNECTIONS_KEPT`), tallied as each is forgotten: checks over the whole run add them
    to what the kept ones show, so a storm of connects cannot hide an early violation."""

    count: int = 0
    replaced: int = 0  # closed because a second socket of the key replaced them
    first_replaced: int | None = None  # its connection number
    without_the_key: int = 0  # no key, or a key that is not the run's and not valid
    first_without_the_key: int | None = None
    pings: int = 0
    pings_timed_out: int = 0

    def add(self, info: ConnectionInfo, run_key: str) -> None:
        self.count += 1
        if info.close_sent is not None and info.close_sent[1] == REASON_REPLACED:
            self.replaced += 1
            self.first_replaced = self.first_replaced or info.number
        judged = info.key is None or info.key == run_key or not info.key_valid
        if judged and (info.auth is None or info.key != run_key):
            self.without_the_key += 1
            self.first_without_the_key = self.first_without_the_key or info.number
        self.pings += len(info.pings)
        self.pings_timed_out += sum(1 for p in info.pings if p.timed_out)


class Sockets:
    """Every connect kept (one owner of the connection log) and the live sockets."""

    def __init__(
        self, schedule: Schedule, config: PelionConfig, *, kept: int = CONNECTIONS_KEPT
    ) -> None:
        self.schedule = schedule
        self.clock: Clock = schedule.clock
        self.config = config
        self._kept: deque[Connection | ConnectionInfo] = deque(maxlen=kept)
        self.forgotten = ForgottenConnections()
        self.connections_total = 0
        self._pings_enabled = True

    @property
    def pings_enabled(self) -> bool:
        """Whether the server pings its sockets (False: no pings, no pong expected)."""
        return self._pings_enabled

    @pings_enabled.setter
    def pings_enabled(self, enabled: bool) -> None:
        self._pings_enabled = enabled
        for conn in self.live():
            conn.pings_enabled = enabled

    def connections(self) -> list[ConnectionInfo]:
        """Every WebSocket connect attempt kept so far, live ones as of now (any thread)."""
        with self.schedule.changed:
            entries = list(self._kept)
        return [c.snapshot() if isinstance(c, Connection) else c for c in entries]

    def close_all_of(self, key: str) -> list[ConnectionInfo]:
        """Close ``key``'s open sockets with 1008 (its key was revoked, SPEC20/21: "the API key
        was lost or invalidated after a successful handshake"); returns them."""
        closed = []
        for conn in self.live(key):
            conn.close(CloseCode.POLICY_VIOLATION, REASON_BAD_KEY)
            self._socket_ended(key, conn, by_client=False)
            closed.append(conn.snapshot())
        return closed

    def new_connection_number(self) -> int:
        self.connections_total += 1
        return self.connections_total

    def keep_connection(self, conn: Connection | ConnectionInfo) -> None:
        with self.schedule.changed:
            if len(self._kept) == self._kept.maxlen:
                oldest = self._kept[0]
                info = oldest.snapshot() if isinstance(oldest, Connection) else oldest
                self.forgotten.add(info, self.config.api_key)
            self._kept.append(conn)
            self.schedule.changed.notify_all()

    def forgotten_connections(self) -> ForgottenConnections:
        """A copy of the tally of the connects no longer kept (any thread)."""
        with self.schedule.changed:
            return replace(self.forgotten)

    def live(self, key: str | None = None) -> list[Connection]:
        """The sockets not ended yet (``key``'s only, when given)."""
        return [
            c
            for c in self._kept
            if isinstance(c, Connection)
            and c.info.end is None
            and (key is None or c.info.key == key)
        ]

    def socket_bound(self, key: str, conn: Connection) -> None:
        """An authenticated socket was accepted: bind it (1011 without a channel; an older
        socket is closed with 1001)."""
        self.schedule.carry_out(
            self.schedule.registry.connect_websocket(key, conn, self.clock.now())
        )
        self.schedule.handle_timeout(self.clock.now())

    def _socket_ended(self, key: str, conn: Connection, *, by_client: bool) -> None:
        self.schedule.carry_out(
            self.schedule.registry.socket_closed(key, conn, self.clock.now(), by_client=by_client)
        )
        self.schedule.poke()

    def socket_ended(self, key: str, conn: Connection, *, by_client: bool) -> None:
        self._socket_ended(key, conn, by_client=by_client)
        with self.schedule.changed:
            self.schedule.changed.notify_all()

    def bound_connection(self, key: str | None = None) -> Connection | None:
        core = self.schedule.registry.websocket(key or self.config.api_key)
        socket = core.socket if core is not None else None
        return socket if isinstance(socket, Connection) else None

    async def close_socket(self, code: int, reason: str = "", key: str | None = None) -> bool:
        """Close the key's bound WebSocket with ``code`` (fault); False when none is bound."""
        key = key or self.config.api_key
        conn = self.bound_connection(key)
        if conn is None:
            return False
        conn.close(code, reason or f"closed by the simulator with {code}")
        self._socket_ended(key, conn, by_client=False)
        return True

    async def drop_socket(self, key: str | None = None) -> bool:
        """End the key's bound WebSocket without a close frame (the client sees 1006)."""
        key = key or self.config.api_key
        conn = self.bound_connection(key)
        if conn is None:
            return False
        conn.drop()
        self._socket_ended(key, conn, by_client=False)
        return True

    async def ping(self, key: str | None = None) -> PingRecord | None:
        """Ping the key's bound socket now and wait (real time, at most the pong timeout) for
        the pong; a missing pong closes the socket with 1001 as the vendor does."""
        conn = self.bound_connection(key)
        return None if conn is None else await conn.ping()
