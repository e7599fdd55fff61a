"""The state a broker core keeps: connections, sessions, messages in flight or queued, and the
table of sessions by (tenant, client id). Mutable records for the core's modules
(:mod:`~simulators.mqtt.core`, :mod:`~simulators.mqtt.admission`,
:mod:`~simulators.mqtt.delivery`); others read sessions through :class:`SessionView`."""

from __future__ import annotations

import enum
import math
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

from simulators.mqtt.actions import ConnectionId, Notice, NoticeKind
from simulators.mqtt.codec import Decoder
from simulators.mqtt.packets import Publish, Will
from simulators.mqtt.policy import Identity

__all__ = [
    "CoreConnection",
    "Inflight",
    "Message",
    "Phase",
    "Session",
    "SessionTable",
    "SessionView",
    "notice_for",
    "view_of",
]


class Phase(enum.Enum):
    """Where a connection is: AWAITING_CONNECT → CONNECTED → CLOSED (see the core's docstring)."""

    AWAITING_CONNECT = "awaiting-connect"
    CONNECTED = "connected"
    CLOSED = "closed"


@dataclass(eq=False, slots=True)
class Message:
    """One published message, while a session still queues it or has it in flight."""

    message_id: int
    tenant: str | None  # None: published to every tenant
    topic: str
    payload: bytes
    qos: int
    published_at: float
    expires_at: float
    queued_in: set[Session] = field(default_factory=set)
    consumed: bool = False  # a PUBACK arrived for it


@dataclass(eq=False, slots=True)
class Inflight:
    """A QoS >= 1 PUBLISH sent and not yet acknowledged (its packet id is in use, MQTT-2.3.1-4)."""

    message: Message
    publish: Publish  # as first sent (DUP = 0)
    resend_at: float | None


@dataclass(eq=False, slots=True)
class Session:
    """One session (MQTT-3.1.2-4): subscriptions, in-flight PUBLISHes and the queue."""

    tenant: str
    client_id: str
    clean_session: bool
    subscriptions: dict[str, int] = field(default_factory=dict)  # filter → granted QoS
    inflight: dict[int, Inflight] = field(default_factory=dict)  # in original send order
    queue: OrderedDict[int, tuple[Message, int]] = field(default_factory=OrderedDict)
    awaiting_pubrel: set[int] = field(default_factory=set)  # inbound QoS 2 (MQTT-4.3.3-2)
    connection: CoreConnection | None = None
    next_packet_id: int = 1
    disconnected_at: float = -math.inf
    dropped: int = 0


@dataclass(eq=False, slots=True)
class CoreConnection:
    """The core's record of one connection: protocol state, identity, decoder, session (the
    socket is the adapter's)."""

    conn_id: ConnectionId
    identity: Identity | None
    decoder: Decoder
    state: Phase = Phase.AWAITING_CONNECT
    session: Session | None = None
    keepalive_s: int | None = None
    will: Will | None = None


@dataclass(frozen=True, slots=True)
class SessionView:
    """A read-only snapshot of one session."""

    tenant: str
    client_id: str
    clean_session: bool
    conn_id: ConnectionId | None
    subscriptions: tuple[tuple[str, int], ...]
    inflight_packet_ids: tuple[int, ...]
    queued: int
    dropped: int

    @property
    def connected(self) -> bool:
        return self.conn_id is not None


def view_of(session: Session) -> SessionView:
    """A snapshot of ``session``."""
    return SessionView(
        tenant=session.tenant,
        client_id=session.client_id,
        clean_session=session.clean_session,
        conn_id=session.connection.conn_id if session.connection is not None else None,
        subscriptions=tuple(session.subscriptions.items()),
        inflight_packet_ids=tuple(session.inflight),
        queued=len(session.queue),
        dropped=session.dropped,
    )


def notice_for(
    kind: NoticeKind, conn: CoreConnection, *, client_id: str | None = None, **detail: object
) -> Notice:
    """A notice about ``conn``: its tenant, and its session's client id unless given."""
    session = conn.session
    if client_id is None and session is not None:
        client_id = session.client_id
    tenant = conn.identity.tenant if conn.identity is not None else None
    return Notice(kind, conn.conn_id, tenant, client_id, detail)


class SessionTable:
    """Every session of one broker, keyed by (tenant, client id), so one tenant can neither
    take over nor resume another's; and how many connections of each tenant are connected."""

    def __init__(self) -> None:
        self._by_tenant: dict[str, dict[str, Session]] = {}  # tenant → client id → session
        self._live: dict[str, int] = {}  # tenant → connections in CONNECTED
        self._assigned_client_ids = 0

    def __iter__(self) -> Iterator[Session]:
        """Every session, tenant by tenant, oldest first."""
        for sessions in self._by_tenant.values():
            yield from sessions.values()

    def get(self, tenant: str, client_id: str) -> Session | None:
        return self._by_tenant.get(tenant, {}).get(client_id)

    def of_tenant(self, tenant: str) -> Mapping[str, Session]:
        """``tenant``'s sessions by client id, oldest first."""
        return self._by_tenant.get(tenant, {})

    def find(self, client_id: str, tenant: str | None) -> list[Session]:
        """The session of ``client_id`` in ``tenant``; in every tenant if None."""
        if tenant is not None:
            session = self.get(tenant, client_id)
            return [session] if session is not None else []
        return [s for s in self if s.client_id == client_id]

    def add(self, session: Session) -> None:
        self._by_tenant.setdefault(session.tenant, {})[session.client_id] = session

    def remove(self, session: Session) -> None:
        """Forget ``session`` (not a newer one under the same client id)."""
        tenant_sessions = self._by_tenant[session.tenant]
        if tenant_sessions.get(session.client_id) is session:
            del tenant_sessions[session.client_id]
            if not tenant_sessions:
                del self._by_tenant[session.tenant]

    def attach(self, session: Session, conn: CoreConnection) -> None:
        """``conn`` is now ``session``'s connection, and counts as one of its tenant's."""
        conn.session, session.connection = session, conn
        self._live[session.tenant] = self._live.get(session.tenant, 0) + 1

    def detach(self, session: Session, now: float) -> None:
        """``session`` has no connection from ``now`` on."""
        session.connection = None
        session.disconnected_at = now
        self._live[session.tenant] -= 1
        if not self._live[session.tenant]:
            del self._live[session.tenant]

    def live(self, tenant: str) -> int:
        """Connections of ``tenant`` that are past CONNACK 0 and not closed."""
        return self._live.get(tenant, 0)

    def assign_client_id(self, tenant: str) -> str:
        """A client id no session of ``tenant`` has, for an empty one (MQTT-3.1.3-6)."""
        taken = self.of_tenant(tenant)
        while True:
            self._assigned_client_ids += 1
            client_id = f"auto-{self._assigned_client_ids}"
            if client_id not in taken:
                return client_id
