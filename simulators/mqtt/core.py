"""An MQTT 3.1.1 broker without I/O: sessions, delivery, retention and faults.

Theory of operation
===================

One :class:`BrokerCore` holds every connection and session of one simulated broker. It never
reads a clock and never touches a socket (h11's rule): the adapter calls in with bytes and
``now`` (simulated seconds) and carries out the returned actions, in order:

- :class:`Received` - a packet decoded from the client (record it as evidence);
- :class:`Send` - encode the packet, write it, record it;
- :class:`Close` - flush what was sent, then close the connection;
- :class:`Notice` - a decision worth recording that is not a packet (refusal, take-over,
  expiry, purge, drop, malformed input).

The adapter also calls :meth:`BrokerCore.handle_timeout` when :meth:`BrokerCore.next_deadline`
is reached, or sooner (message expiry, optional in-session redelivery: only what is due is
done), and :meth:`BrokerCore.connection_lost` when a socket closes, whoever closed it.
Keep-alive (MQTT-3.1.2-24: silent for 1.5 × keep-alive → disconnect) is the adapter's, in real
time: the core records ``keepalive_s`` and nothing more, because a jump of simulated time must
never disconnect a client that is keeping up.

Connections::

    AWAITING_CONNECT --CONNECT accepted (CONNACK 0)--> CONNECTED --DISCONNECT, error, take-over,
           |                                                       fault, lost--> CLOSED
           +--any other packet (MQTT-3.1.0-1), CONNACK refusal, malformed bytes--> CLOSED

A refused CONNECT leaves nothing behind: no session, no connection count (MQTT-3.1.4-5: nothing
after it is processed). Sessions are keyed by (tenant, client id), so one tenant can neither
take over nor resume another tenant's session. Clean session = 1 discards the session when the
connection ends (MQTT-3.1.2-6); clean session = 0 keeps subscriptions, unacknowledged PUBLISHes
and the queue, and on reconnect CONNACK says session present (MQTT-3.2.2-2) and every
unacknowledged PUBLISH is resent first, with DUP = 1 and its packet id, in the original order
(MQTT-4.4.0-1, MQTT-3.3.1-1, MQTT-4.6.0-1), then the queue.

Messages follow the vendor rules (:class:`BrokerPolicy` quotes them):

- "All MQTT clients maintaining an active subscription when MQTT sends the message receive the
  message." A message with at least one connected matching session goes to the connected ones.
- "If no active consumers are available at the instant message is published to the messaging
  server, the message would be retained in the system for a maximum duration of 3 hours before
  it either gets consumed by a re-connecting durable subscriber or gets evacuated out of the
  system". With no connected match it is queued for every matching durable session (clean
  session = 0, granted QoS >= 1) until ``published_at + retention_s``, then dropped with a
  notice.
- "The system purges the message after delivery, even if the message is consumed by only one
  active client that acknowledges receipt with a PUBACK command." The first PUBACK for a message
  removes it from every queue. Copies already sent stay in flight until acknowledged: their
  packet ids cannot be reused before that (MQTT-2.3.1-4), and MQTT-4.4.0-1 still applies.

``purge_after_first_puback=False`` gives standard MQTT instead: every matching session gets its
own copy, connected or not (MQTT-3.1.2-5). In both, a message is delivered at
min(published QoS, granted QoS) (MQTT-3.8.4-6) and never with RETAIN = 1 (MQTT-3.3.1-9): the
vendor's "retained in the system" is this queue, not the MQTT retained-message store, which
this broker does not keep. Memory is bounded by the policy whatever clients do: connections
and sessions per tenant, subscriptions per session, filter and client id lengths, in-flight
window, queue length, packet size.
"""

from __future__ import annotations

import enum
import math
from collections import OrderedDict
from collections.abc import Callable, Container, Hashable, Iterator
from dataclasses import dataclass, field, replace
from typing import Literal, TypeAlias

from simulators.mqtt.codec import (
    DEFAULT_MAX_PACKET_SIZE,
    SUPPORTED_PROTOCOLS,
    Decoder,
    MalformedPacket,
)
from simulators.mqtt.packets import (
    CONNACK_ACCEPTED,
    CONNACK_BAD_USER_NAME_OR_PASSWORD,
    CONNACK_IDENTIFIER_REJECTED,
    CONNACK_NOT_AUTHORIZED,
    CONNACK_SERVER_UNAVAILABLE,
    CONNACK_UNACCEPTABLE_PROTOCOL_VERSION,
    SUBACK_FAILURE,
    Connack,
    Connect,
    Disconnect,
    Packet,
    Pingreq,
    Pingresp,
    Puback,
    Pubcomp,
    Publish,
    Pubrec,
    Pubrel,
    Suback,
    Subscribe,
    Unsuback,
    Unsubscribe,
    Will,
)
from simulators.mqtt.topics import topic_filter_problem, topic_matches, topic_name_problem

__all__ = [
    "Action",
    "BrokerCore",
    "BrokerPolicy",
    "Close",
    "ConnectionId",
    "Identity",
    "Notice",
    "NoticeKind",
    "Received",
    "Send",
    "SessionView",
    "allow_all",
    "allow_none",
    "next_free_packet_id",
]

ConnectionId: TypeAlias = Hashable
MAX_PACKET_ID = 0xFFFF


@dataclass(frozen=True, slots=True)
class Identity:
    """Who a connection is, as the TLS adapter read it from the client certificate."""

    tenant: str
    email: str


TopicCheck: TypeAlias = Callable[[Identity, str], bool]


def allow_all(identity: Identity, topic: str) -> bool:
    """A topic check that allows everything."""
    return True


def allow_none(identity: Identity, topic: str) -> bool:
    """A topic check that allows nothing."""
    return False


@dataclass(frozen=True)
class BrokerPolicy:
    """The rules a simulated broker follows. The defaults are the vendor's (Ivanti Event
    Notification Service, "Using the Event Notification Service"):

    - "Ivanti recommends a maximum of fifteen connections per tenant." → the 16th concurrent
      connection of a tenant gets CONNACK 3 (server unavailable);
    - "Every connection should have a unique MQTT client ID." → a duplicate takes over
      (MQTT-3.1.4-2) or, with ``duplicate_client_id="refuse"``, gets CONNACK 2;
    - "retained in the system for a maximum duration of 3 hours" → ``retention_s``;
    - "The system purges the message after delivery, even if the message is consumed by only
      one active client that acknowledges receipt with a PUBACK command." →
      ``purge_after_first_puback``;
    - "MQTT delivers messages with QoS level 1" → ``max_qos``: a QoS 2 subscription is granted 1;
    - "Partner connection and communication with a message broker as a subscriber" → clients
      may subscribe; publishing is refused (``may_publish``), though still acknowledged.

    The other limits keep memory bounded whatever a client does.
    """

    max_connections_per_tenant: int = 15
    duplicate_client_id: Literal["takeover", "refuse"] = "takeover"
    retention_s: float = 10_800.0
    purge_after_first_puback: bool = True
    max_qos: int = 1
    redelivery_timeout_s: float | None = None
    max_inflight: int = 64
    max_queued_per_session: int = 100_000
    max_sessions_per_tenant: int = 1_000
    max_subscriptions_per_session: int = 100
    max_topic_filter_length: int = 1_024
    max_client_id_length: int = 256
    max_packet_size: int = DEFAULT_MAX_PACKET_SIZE
    may_subscribe: TopicCheck = allow_all
    may_publish: TopicCheck = allow_none

    def __post_init__(self) -> None:
        if self.duplicate_client_id not in ("takeover", "refuse"):
            raise ValueError(
                f"duplicate_client_id is 'takeover' or 'refuse', not {self.duplicate_client_id!r}"
            )
        if self.max_qos not in (0, 1):
            raise ValueError("max_qos is 0 or 1 (this broker does not send QoS 2)")
        if not 1 <= self.max_inflight <= MAX_PACKET_ID:
            raise ValueError(f"max_inflight must be in 1..{MAX_PACKET_ID} (one packet id each)")
        if self.redelivery_timeout_s is not None and self.redelivery_timeout_s <= 0:
            raise ValueError("redelivery_timeout_s must be positive (or None)")
        if self.retention_s < 0:
            raise ValueError("retention_s must not be negative")
        for name in (
            "max_connections_per_tenant",
            "max_queued_per_session",
            "max_sessions_per_tenant",
            "max_subscriptions_per_session",
            "max_topic_filter_length",
            "max_client_id_length",
        ):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative")


def next_free_packet_id(candidate: int, in_use: Container[int]) -> int:
    """The first packet id from ``candidate`` on, wrapping 65535 → 1, that is not in use
    (MQTT-2.3.1-2, -4). The caller keeps fewer than 65535 in use."""
    while candidate in in_use:
        candidate = candidate % MAX_PACKET_ID + 1
    return candidate


# --- actions ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Received:
    """A packet decoded from the client on ``conn_id``."""

    conn_id: ConnectionId
    packet: Packet


@dataclass(frozen=True, slots=True)
class Send:
    """Send ``packet`` to the client on ``conn_id``."""

    conn_id: ConnectionId
    packet: Packet


@dataclass(frozen=True, slots=True)
class Close:
    """Close ``conn_id`` after sending what came before; ``reason`` is for the evidence."""

    conn_id: ConnectionId
    reason: str


class NoticeKind(enum.StrEnum):
    CONNECTION_REFUSED = "connection-refused"  # CONNACK return code != 0, and why
    TAKEOVER = "takeover"  # an older connection closed for a newer one (MQTT-3.1.4-2)
    MALFORMED_PACKET = "malformed-packet"
    PROTOCOL_VIOLATION = "protocol-violation"
    PUBLISH_REFUSED = "publish-refused"  # not forwarded, still acknowledged (MQTT-3.3.5-2)
    SUBSCRIBE_REFUSED = "subscribe-refused"  # SUBACK 0x80
    MESSAGE_KEPT = "message-kept"  # queued for offline durable sessions
    MESSAGE_DROPPED = "message-dropped"  # no subscriber took it
    MESSAGE_EXPIRED = "message-expired"  # retention elapsed while queued
    MESSAGE_PURGED = "message-purged"  # the first PUBACK removed the queued copies
    QUEUE_FULL = "queue-full"  # a session's queue was full: the message was not queued
    SESSION_EVICTED = "session-evicted"  # the tenant's oldest disconnected session made room
    UNKNOWN_PACKET_ID = "unknown-packet-id"  # an acknowledgement for nothing in flight
    WILL_PUBLISHED = "will-published"
    FAULT = "fault"  # an injected fault acted


@dataclass(frozen=True, slots=True)
class Notice:
    """Something worth recording as evidence that is not a packet."""

    kind: NoticeKind
    conn_id: ConnectionId | None = None
    tenant: str | None = None
    client_id: str | None = None
    detail: dict[str, object] = field(default_factory=dict)


Action: TypeAlias = Received | Send | Close | Notice


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


# --- internal state ---------------------------------------------------------------------------


class _State(enum.Enum):
    AWAITING_CONNECT = "awaiting-connect"
    CONNECTED = "connected"
    CLOSED = "closed"


@dataclass(eq=False, slots=True)
class _Message:
    message_id: int
    tenant: str | None  # None: published to every tenant
    topic: str
    payload: bytes
    qos: int
    published_at: float
    expires_at: float
    queued_in: set[_Session] = field(default_factory=set)
    consumed: bool = False  # a PUBACK arrived for it


@dataclass(eq=False, slots=True)
class _Inflight:
    message: _Message
    publish: Publish  # as first sent (DUP = 0)
    resend_at: float | None


@dataclass(eq=False, slots=True)
class _Session:
    tenant: str
    client_id: str
    clean_session: bool
    subscriptions: dict[str, int] = field(default_factory=dict)  # filter → granted QoS
    inflight: dict[int, _Inflight] = field(default_factory=dict)  # in original send order
    queue: OrderedDict[int, tuple[_Message, int]] = field(default_factory=OrderedDict)
    awaiting_pubrel: set[int] = field(default_factory=set)  # inbound QoS 2 (MQTT-4.3.3-2)
    connection: _CoreConnection | None = None
    next_packet_id: int = 1
    disconnected_at: float = -math.inf
    dropped: int = 0


@dataclass(eq=False, slots=True)
class _CoreConnection:
    """The core's record of one connection: protocol state, identity, decoder, session (the
    socket is the adapter's)."""

    conn_id: ConnectionId
    identity: Identity | None
    decoder: Decoder
    state: _State = _State.AWAITING_CONNECT
    session: _Session | None = None
    keepalive_s: int | None = None
    will: Will | None = None


class _Refused(Exception):
    def __init__(self, return_code: int, reason: str) -> None:
        super().__init__(reason)
        self.return_code = return_code
        self.reason = reason


# --- the core ---------------------------------------------------------------------------------


class BrokerCore:
    """The broker's state and rules; see the module docstring."""

    def __init__(self, policy: BrokerPolicy | None = None) -> None:
        self.policy = policy if policy is not None else BrokerPolicy()
        self._connections: dict[ConnectionId, _CoreConnection] = {}
        self._sessions: dict[str, dict[str, _Session]] = {}  # tenant → client id → session
        self._live: dict[str, int] = {}  # tenant → connections in CONNECTED
        self._queued_messages: OrderedDict[int, _Message] = OrderedDict()  # oldest first
        self._next_message_id = 1
        self._assigned_client_ids = 0
        self._now = -math.inf
        # Faults, keyed by (tenant or None for any tenant, client id).
        self._refusals: list[tuple[str | None, int]] = []
        self._outages: dict[str | None, int] = {}  # tenant (None: every tenant) → return code
        self._held: dict[tuple[str | None, str], tuple[float, int]] = {}
        self._duplicates: dict[tuple[str | None, str], int] = {}

    # --- adapter entry points -----------------------------------------------------------------

    def connection_made(self, conn_id: ConnectionId, identity: Identity | None, now: float) -> None:
        """A client connected (TLS done); ``identity`` is None without a usable certificate."""
        self._observe(now)
        if conn_id in self._connections:
            raise ValueError(f"connection {conn_id!r} already exists")
        decoder = Decoder("server", max_packet_size=self.policy.max_packet_size)
        self._connections[conn_id] = _CoreConnection(conn_id, identity, decoder)

    def data_received(self, conn_id: ConnectionId, data: bytes, now: float) -> list[Action]:
        """Bytes from the client; nothing after a decision to close is processed (MQTT-3.1.4-5)."""
        conn = self._connection(conn_id)
        now = self._observe(now)
        actions = self._run_timers(now)
        if conn.state is _State.CLOSED:
            return actions
        conn.decoder.receive_data(data)
        while self._is_open(conn):
            try:
                packet = conn.decoder.next_packet()
            except MalformedPacket as exc:
                actions.append(self._notice(NoticeKind.MALFORMED_PACKET, conn, reason=exc.reason))
                actions += self._close(conn, now, f"malformed packet: {exc.reason}")
                break
            if packet is None:
                break
            actions.append(Received(conn_id, packet))
            actions += self._handle(conn, packet, now)
        return actions

    def connection_lost(self, conn_id: ConnectionId, now: float) -> list[Action]:
        """The socket closed (either side); forget the connection. The Will is published unless
        DISCONNECT came first (MQTT-3.1.2-8, MQTT-3.14.4-3)."""
        conn = self._connection(conn_id)
        now = self._observe(now)
        actions = self._run_timers(now)
        del self._connections[conn_id]
        if conn.state is not _State.CLOSED:
            actions += self._detach(conn, now)
        return actions

    def handle_timeout(self, now: float) -> list[Action]:
        """Run what is due: message expiry and in-session redelivery."""
        return self._run_timers(self._observe(now))

    def next_deadline(self) -> float | None:
        """When :meth:`handle_timeout` next has work, in simulated seconds (keep-alive is not
        included)."""
        deadlines = []
        if self._queued_messages:
            deadlines.append(next(iter(self._queued_messages.values())).expires_at)
        if self.policy.redelivery_timeout_s is None:  # no in-flight timers: O(1) for adapters
            return min(deadlines, default=None)
        deadlines += (
            entry.resend_at
            for session in self._connected_sessions()
            for entry in session.inflight.values()
            if entry.resend_at is not None
        )
        return min(deadlines, default=None)

    def publish(
        self, topic: str, payload: bytes, now: float, qos: int = 1, *, tenant: str | None = None
    ) -> list[Action]:
        """The vendor publishes an event to ``tenant``'s subscribers (every tenant's if None)."""
        if problem := topic_name_problem(topic):
            raise ValueError(problem)
        if qos not in (0, 1, 2):
            raise ValueError(f"QoS {qos} is not 0, 1 or 2")
        now = self._observe(now)
        return self._run_timers(now) + self._route(tenant, topic, payload, qos, now)

    # --- queries ------------------------------------------------------------------------------

    def keepalive_s(self, conn_id: ConnectionId) -> int | None:
        """The keep-alive the client asked for in its accepted CONNECT (0: none), else None."""
        conn = self._connection(conn_id)
        return conn.keepalive_s if conn.state is _State.CONNECTED else None

    def connection_count(self, tenant: str) -> int:
        """Connections of ``tenant`` that are past CONNACK 0 and not closed."""
        return self._live.get(tenant, 0)

    def session_views(self, tenant: str | None = None) -> list[SessionView]:
        """Snapshots of every session (of ``tenant`` if given)."""
        return [self._view(s) for s in self._all_sessions() if tenant in (None, s.tenant)]

    def session_view(self, client_id: str, *, tenant: str) -> SessionView | None:
        session = self._sessions.get(tenant, {}).get(client_id)
        return self._view(session) if session is not None else None

    # --- faults -------------------------------------------------------------------------------

    def refuse_next_connects(
        self,
        count: int,
        return_code: int = CONNACK_SERVER_UNAVAILABLE,
        *,
        tenant: str | None = None,
    ) -> None:
        """Refuse the next ``count`` CONNECTs (of ``tenant`` if given) with ``return_code``."""
        if not 1 <= return_code <= 5:
            raise ValueError("a refusal return code is 1..5 (Table 3.1)")
        self._refusals += [(tenant, return_code)] * count

    def begin_outage(
        self, return_code: int = CONNACK_SERVER_UNAVAILABLE, *, tenant: str | None = None
    ) -> None:
        """Refuse every CONNECT (of ``tenant`` if given) with ``return_code`` until
        :meth:`end_outage`: the broker is unreachable for that tenant, whatever client id a
        client uses. Live connections are left alone (close them with :meth:`disconnect`)."""
        if not 1 <= return_code <= 5:
            raise ValueError("a refusal return code is 1..5 (Table 3.1)")
        self._outages[tenant] = return_code

    def end_outage(self, *, tenant: str | None = None) -> None:
        """End :meth:`begin_outage` (for ``tenant``); CONNECTs are admitted again."""
        self._outages.pop(tenant, None)

    def in_outage(self, tenant: str | None = None) -> bool:
        return tenant in self._outages or None in self._outages

    def hold_offline(
        self,
        client_id: str,
        until: float,
        now: float,
        *,
        tenant: str | None = None,
        return_code: int = CONNACK_SERVER_UNAVAILABLE,
    ) -> list[Action]:
        """Disconnect ``client_id`` and refuse its CONNECTs until simulated time ``until``."""
        if not 1 <= return_code <= 5:
            raise ValueError("a refusal return code is 1..5 (Table 3.1)")
        self._held[(tenant, client_id)] = (until, return_code)
        return self.disconnect(client_id, now, f"held offline until {until}", tenant=tenant)

    def release(self, client_id: str, *, tenant: str | None = None) -> None:
        """End :meth:`hold_offline` early."""
        self._held.pop((tenant, client_id), None)

    def disconnect(
        self,
        client_id: str,
        now: float,
        reason: str = "closed by the broker",
        *,
        tenant: str | None = None,
    ) -> list[Action]:
        """Close the live connection(s) of ``client_id`` as a network failure would (the Will
        is published). Nothing happens if it is not connected."""
        now = self._observe(now)
        actions = self._run_timers(now)
        for session in self._find_sessions(client_id, tenant):
            if session.connection is not None:
                conn = session.connection
                actions.append(
                    self._notice(NoticeKind.FAULT, conn, fault="disconnect", reason=reason)
                )
                actions += self._close(conn, now, reason)
        return actions

    def drop_connection(self, conn_id: ConnectionId, now: float, reason: str) -> list[Action]:
        """Close ``conn_id`` as a network failure would (e.g. keep-alive expired, MQTT-3.1.2-24)."""
        conn = self._connection(conn_id)
        now = self._observe(now)
        actions = self._run_timers(now)
        if conn.state is not _State.CLOSED:
            actions += self._close(conn, now, reason)
        return actions

    def redeliver_inflight(
        self, client_id: str, now: float, *, tenant: str | None = None
    ) -> list[Action]:
        """Resend every unacknowledged PUBLISH of ``client_id`` now, DUP = 1, same packet id."""
        now = self._observe(now)
        actions = self._run_timers(now)
        for session in self._find_sessions(client_id, tenant):
            if session.connection is not None and session.inflight:
                conn = session.connection
                actions.append(self._notice(NoticeKind.FAULT, conn, fault="redeliver-inflight"))
                actions += self._resend_inflight(session, now)
        return actions

    def duplicate_next_delivery(
        self, client_id: str, *, tenant: str | None = None, times: int = 1
    ) -> None:
        """Send the next ``times`` new QoS >= 1 PUBLISHes to ``client_id`` twice, the copy with
        DUP = 1 (a QoS 0 copy would break MQTT-3.3.1-2, so QoS 0 deliveries are left alone)."""
        key = (tenant, client_id)
        self._duplicates[key] = self._duplicates.get(key, 0) + times

    # --- packets ------------------------------------------------------------------------------

    def _handle(self, conn: _CoreConnection, packet: Packet, now: float) -> list[Action]:
        if conn.state is _State.AWAITING_CONNECT:
            if isinstance(packet, Connect):
                return self._on_connect(conn, packet, now)
            return self._violation(
                conn, now, f"{type(packet).__name__.upper()} before CONNECT (MQTT-3.1.0-1)"
            )
        session = conn.session
        assert session is not None and conn.identity is not None
        match packet:
            case Connect():
                return self._violation(conn, now, "a second CONNECT (MQTT-3.1.0-2)")
            case Publish():
                return self._on_publish(conn, session, conn.identity, packet, now)
            case Puback(packet_id):
                return self._on_puback(conn, session, packet_id, now)
            case Pubrel(packet_id):  # MQTT-4.3.3-2: PUBCOMP with the same id, known or not
                session.awaiting_pubrel.discard(packet_id)
                return [Send(conn.conn_id, Pubcomp(packet_id))]
            case Pubrec(packet_id) | Pubcomp(packet_id):  # this broker never sends QoS 2
                return [self._unknown_packet_id(conn, packet)]
            case Subscribe():
                return self._on_subscribe(conn, session, conn.identity, packet)
            case Unsubscribe(packet_id, topic_filters):  # MQTT-3.10.4-1, -4, -5
                for topic_filter in topic_filters:
                    session.subscriptions.pop(topic_filter, None)
                return [Send(conn.conn_id, Unsuback(packet_id))]
            case Pingreq():  # MQTT-3.12.4-1
                return [Send(conn.conn_id, Pingresp())]
            case Disconnect():  # MQTT-3.14.4-3: the Will is discarded
                conn.will = None
                return self._close(conn, now, "client sent DISCONNECT")
            case _:  # the server-side decoder returns no server → client packet
                raise AssertionError(f"unexpected {packet!r}")

    def _on_connect(self, conn: _CoreConnection, connect: Connect, now: float) -> list[Action]:
        try:
            tenant, client_id, session, victim = self._admit(conn, connect, now)
        except _Refused as refusal:
            conn.state = _State.CLOSED
            return [
                self._notice(
                    NoticeKind.CONNECTION_REFUSED,
                    conn,
                    client_id=connect.client_id,
                    return_code=refusal.return_code,
                    reason=refusal.reason,
                ),
                Send(conn.conn_id, Connack(False, refusal.return_code)),  # MQTT-3.2.2-4
                Close(conn.conn_id, refusal.reason),  # MQTT-3.2.2-5
            ]
        actions: list[Action] = []
        if session is not None and session.connection is not None:  # MQTT-3.1.4-2
            older = session.connection
            actions.append(
                self._notice(
                    NoticeKind.TAKEOVER, older, new_conn_id=conn.conn_id, client_id=client_id
                )
            )
            actions += self._close(
                older, now, "take-over: a new connection with the same client id (MQTT-3.1.4-2)"
            )
            session = self._sessions.get(tenant, {}).get(client_id)  # gone if it was clean
        if session is not None and connect.clean_session:  # MQTT-3.1.2-6
            self._discard_session(session)
            session = None
        session_present = session is not None  # MQTT-3.2.2-1, -2, -3
        if session is None:
            if victim is not None:
                actions.append(
                    Notice(
                        NoticeKind.SESSION_EVICTED,
                        tenant=tenant,
                        client_id=victim.client_id,
                        detail={"queued": len(victim.queue), "inflight": len(victim.inflight)},
                    )
                )
                self._discard_session(victim)
            session = _Session(tenant, client_id, connect.clean_session)
            self._sessions.setdefault(tenant, {})[client_id] = session
        conn.state = _State.CONNECTED
        conn.session, session.connection = session, conn
        conn.keepalive_s = connect.keepalive_s
        conn.will = connect.will
        self._live[tenant] = self._live.get(tenant, 0) + 1
        actions.append(
            Send(conn.conn_id, Connack(session_present, CONNACK_ACCEPTED))
        )  # MQTT-3.1.4-4
        actions += self._resend_inflight(session, now)  # MQTT-4.4.0-1
        actions += self._fill_window(session, now)
        return actions

    def _admit(
        self, conn: _CoreConnection, connect: Connect, now: float
    ) -> tuple[str, str, _Session | None, _Session | None]:
        """Decide on a CONNECT without changing anything: (tenant, client id, existing session,
        session to evict to make room), or raise :class:`_Refused`."""
        if (connect.protocol_name, connect.protocol_level) not in SUPPORTED_PROTOCOLS:
            raise _Refused(
                CONNACK_UNACCEPTABLE_PROTOCOL_VERSION,
                f"protocol {connect.protocol_name!r} level {connect.protocol_level} is not MQTT 3.1.1 or 3.1 (MQTT-3.1.2-2)",
            )
        identity = conn.identity
        if identity is None:
            raise _Refused(CONNACK_NOT_AUTHORIZED, "no client certificate identity")
        tenant = identity.tenant
        outage = self._outages.get(tenant, self._outages.get(None))
        if outage is not None:
            raise _Refused(outage, "refused during an injected outage (begin_outage)")
        for index, (refused_tenant, return_code) in enumerate(self._refusals):
            if refused_tenant in (None, tenant):
                del self._refusals[index]
                raise _Refused(return_code, "refused by an injected fault (refuse_next_connects)")
        if connect.username is not None and connect.username != identity.email:
            raise _Refused(
                CONNACK_BAD_USER_NAME_OR_PASSWORD,
                f"user name {connect.username!r} is not the certificate's {identity.email!r}",
            )
        client_id = connect.client_id
        if not client_id:
            if not connect.clean_session:
                raise _Refused(
                    CONNACK_IDENTIFIER_REJECTED,
                    "empty client id with clean session 0 (MQTT-3.1.3-8)",
                )
            client_id = self._assign_client_id(tenant)  # MQTT-3.1.3-6
        if len(client_id) > self.policy.max_client_id_length:
            raise _Refused(
                CONNACK_IDENTIFIER_REJECTED,
                f"client id longer than {self.policy.max_client_id_length} characters (MQTT-3.1.3-9)",
            )
        for key in ((tenant, client_id), (None, client_id)):
            hold = self._held.get(key)
            if hold is not None:
                until, return_code = hold
                if now < until:
                    raise _Refused(return_code, f"held offline until {until} (injected fault)")
                del self._held[key]
        tenant_sessions = self._sessions.get(tenant, {})
        session = tenant_sessions.get(client_id)
        older = session.connection if session is not None else None
        if older is not None and self.policy.duplicate_client_id == "refuse":
            raise _Refused(CONNACK_IDENTIFIER_REJECTED, "client id in use by a live connection")
        live = self._live.get(tenant, 0) - (older is not None)
        if live >= self.policy.max_connections_per_tenant:
            raise _Refused(
                CONNACK_SERVER_UNAVAILABLE,
                f"tenant {tenant!r} already has {live} connections (limit {self.policy.max_connections_per_tenant})",
            )
        victim = None
        replaces = session is not None and (connect.clean_session or session.clean_session)
        if session is None or replaces:
            remaining = len(tenant_sessions) - replaces
            if remaining >= self.policy.max_sessions_per_tenant:
                victim = min(
                    (
                        s
                        for s in tenant_sessions.values()
                        if s.connection is None and s is not session
                    ),
                    key=lambda s: s.disconnected_at,
                    default=None,
                )
                if victim is None:
                    raise _Refused(
                        CONNACK_SERVER_UNAVAILABLE,
                        f"tenant {tenant!r} has {remaining} sessions, all connected",
                    )
        return tenant, client_id, session, victim

    def _on_publish(
        self,
        conn: _CoreConnection,
        session: _Session,
        identity: Identity,
        publish: Publish,
        now: float,
    ) -> list[Action]:
        """A client publishes: forward if allowed, acknowledge either way (MQTT-3.3.5-2)."""
        actions: list[Action] = []
        repeat = publish.qos == 2 and publish.packet_id in session.awaiting_pubrel
        if not repeat:  # MQTT-4.3.3-2: no duplicate onward delivery before PUBREL
            if self.policy.may_publish(identity, publish.topic):
                actions += self._route(
                    identity.tenant, publish.topic, publish.payload, publish.qos, now
                )
            else:
                actions.append(
                    self._notice(
                        NoticeKind.PUBLISH_REFUSED,
                        conn,
                        topic=publish.topic,
                        qos=publish.qos,
                        reason="the client may not publish to this topic",
                    )
                )
        if publish.packet_id is not None:
            if publish.qos == 1:  # MQTT-4.3.2-2
                actions.append(Send(conn.conn_id, Puback(publish.packet_id)))
            else:  # MQTT-4.3.3-2
                session.awaiting_pubrel.add(publish.packet_id)
                actions.append(Send(conn.conn_id, Pubrec(publish.packet_id)))
        return actions

    def _on_puback(
        self, conn: _CoreConnection, session: _Session, packet_id: int, now: float
    ) -> list[Action]:
        entry = session.inflight.pop(packet_id, None)
        if entry is None:
            return [self._unknown_packet_id(conn, Puback(packet_id))]
        actions: list[Action] = []
        message = entry.message
        if self.policy.purge_after_first_puback and not message.consumed:
            message.consumed = True
            holders = sorted(s.client_id for s in message.queued_in)
            self._unqueue_everywhere(message)
            if holders:
                actions.append(
                    self._notice(
                        NoticeKind.MESSAGE_PURGED,
                        conn,
                        message_id=message.message_id,
                        topic=message.topic,
                        purged_from=holders,
                    )
                )
        return actions + self._fill_window(session, now)

    def _on_subscribe(
        self, conn: _CoreConnection, session: _Session, identity: Identity, subscribe: Subscribe
    ) -> list[Action]:
        """MQTT-3.8.4-1..5: one SUBACK, same packet id, one return code per filter in order."""
        actions: list[Action] = []
        return_codes = []
        for topic_filter, requested_qos in subscribe.subscriptions:  # MQTT-3.8.4-4
            problem = topic_filter_problem(topic_filter)
            if problem is None and len(topic_filter) > self.policy.max_topic_filter_length:
                problem = (
                    f"topic filter longer than {self.policy.max_topic_filter_length} characters"
                )
            if problem is None and not self.policy.may_subscribe(identity, topic_filter):
                problem = "the client may not subscribe to this topic filter"
            if (
                problem is None
                and topic_filter not in session.subscriptions
                and len(session.subscriptions) >= self.policy.max_subscriptions_per_session
            ):
                problem = f"the session already has {len(session.subscriptions)} subscriptions"
            if problem is not None:
                return_codes.append(SUBACK_FAILURE)
                actions.append(
                    self._notice(
                        NoticeKind.SUBSCRIBE_REFUSED,
                        conn,
                        topic_filter=topic_filter,
                        reason=problem,
                    )
                )
                continue
            granted_qos = min(requested_qos, self.policy.max_qos)
            session.subscriptions[topic_filter] = granted_qos  # MQTT-3.8.4-3: replaces
            return_codes.append(granted_qos)
        actions.append(Send(conn.conn_id, Suback(subscribe.packet_id, tuple(return_codes))))
        return actions

    # --- delivery -----------------------------------------------------------------------------

    def _route(
        self, tenant: str | None, topic: str, payload: bytes, qos: int, now: float
    ) -> list[Action]:
        """Deliver one message to the matching sessions, following the policy's model."""
        message = _Message(
            self._next_message_id, tenant, topic, payload, qos, now, now + self.policy.retention_s
        )
        self._next_message_id += 1
        matches = []
        candidates = (
            self._all_sessions() if tenant is None else self._sessions.get(tenant, {}).values()
        )
        for session in candidates:
            granted = [q for f, q in session.subscriptions.items() if topic_matches(f, topic)]
            if granted:  # MQTT-3.3.5-1: one copy, at the highest matching QoS
                matches.append((session, max(granted)))
        summary = {"message_id": message.message_id, "topic": topic, "qos": qos}
        if not matches:
            return [
                Notice(
                    NoticeKind.MESSAGE_DROPPED,
                    tenant=tenant,
                    detail={**summary, "reason": "no subscriber"},
                )
            ]
        connected = [(s, q) for s, q in matches if s.connection is not None]
        receivers = connected if self.policy.purge_after_first_puback and connected else matches
        actions: list[Action] = []
        sent = False
        for session, granted_qos in receivers:
            delivered, more = self._deliver(
                session, message, min(qos, granted_qos), now
            )  # MQTT-3.8.4-6
            sent |= delivered
            actions += more
        offline = sorted(s.client_id for s in message.queued_in if s.connection is None)
        if message.queued_in:
            self._queued_messages[message.message_id] = message
        if offline:
            actions.append(
                Notice(
                    NoticeKind.MESSAGE_KEPT,
                    tenant=tenant,
                    detail={**summary, "sessions": offline, "expires_at": message.expires_at},
                )
            )
        elif not sent and not message.queued_in:
            if any(isinstance(a, Notice) and a.kind is NoticeKind.QUEUE_FULL for a in actions):
                reason = "every receiving queue was full"
            else:
                reason = "no connected subscriber and no durable session subscribed at QoS 1"
            actions.append(
                Notice(
                    NoticeKind.MESSAGE_DROPPED, tenant=tenant, detail={**summary, "reason": reason}
                )
            )
        return actions

    def _deliver(
        self, session: _Session, message: _Message, qos: int, now: float
    ) -> tuple[bool, list[Action]]:
        """Send now, queue, or skip; (whether a PUBLISH went out, actions)."""
        conn = session.connection
        if conn is None:
            if qos == 0 or session.clean_session:  # MQTT-3.1.2-5: QoS 1 and 2 are stored
                return False, []
            return False, self._enqueue(session, message, qos)
        if qos == 0:
            return True, [Send(conn.conn_id, Publish(message.topic, message.payload))]
        if session.queue or len(session.inflight) >= self.policy.max_inflight:
            return False, self._enqueue(session, message, qos)  # MQTT-4.6.0-5: keep the order
        return True, self._send_new(session, conn, message, qos, now)

    def _enqueue(self, session: _Session, message: _Message, qos: int) -> list[Action]:
        if len(session.queue) >= self.policy.max_queued_per_session:
            session.dropped += 1
            return [
                Notice(
                    NoticeKind.QUEUE_FULL,
                    tenant=session.tenant,
                    client_id=session.client_id,
                    detail={
                        "message_id": message.message_id,
                        "topic": message.topic,
                        "limit": self.policy.max_queued_per_session,
                        "dropped": session.dropped,
                    },
                )
            ]
        session.queue[message.message_id] = (message, qos)
        message.queued_in.add(session)
        return []

    def _send_new(
        self, session: _Session, conn: _CoreConnection, message: _Message, qos: int, now: float
    ) -> list[Action]:
        """A first PUBLISH: DUP = 0, RETAIN = 0 (MQTT-3.3.1-9), an unused packet id (MQTT-2.3.1-4)."""
        packet_id = next_free_packet_id(session.next_packet_id, session.inflight)
        session.next_packet_id = packet_id % MAX_PACKET_ID + 1
        publish = Publish(message.topic, message.payload, qos=qos, packet_id=packet_id)
        session.inflight[packet_id] = _Inflight(message, publish, self._resend_at(now))
        actions: list[Action] = [Send(conn.conn_id, publish)]
        for key in ((session.tenant, session.client_id), (None, session.client_id)):
            if self._duplicates.get(key):
                self._duplicates[key] -= 1
                if not self._duplicates[key]:
                    del self._duplicates[key]
                actions.append(
                    self._notice(
                        NoticeKind.FAULT, conn, fault="duplicate-delivery", packet_id=packet_id
                    )
                )
                actions.append(Send(conn.conn_id, replace(publish, dup=True)))
                break
        return actions

    def _resend_inflight(self, session: _Session, now: float) -> list[Action]:
        """Every unacknowledged PUBLISH again, in the original order, DUP = 1, same packet id
        (MQTT-4.4.0-1, MQTT-4.6.0-1, MQTT-3.3.1-1)."""
        conn = session.connection
        assert conn is not None
        actions: list[Action] = []
        for entry in session.inflight.values():
            entry.resend_at = self._resend_at(now)
            actions.append(Send(conn.conn_id, replace(entry.publish, dup=True)))
        return actions

    def _fill_window(self, session: _Session, now: float) -> list[Action]:
        """Move queued messages into the in-flight window while there is room."""
        actions: list[Action] = []
        conn = session.connection
        while (
            conn is not None and session.queue and len(session.inflight) < self.policy.max_inflight
        ):
            _, (message, qos) = session.queue.popitem(last=False)
            message.queued_in.discard(session)
            if not message.queued_in:
                self._queued_messages.pop(message.message_id, None)
            actions += self._send_new(session, conn, message, qos, now)
        return actions

    def _resend_at(self, now: float) -> float | None:
        timeout = self.policy.redelivery_timeout_s
        return None if timeout is None else now + timeout

    def _run_timers(self, now: float) -> list[Action]:
        actions: list[Action] = []
        while self._queued_messages:
            message = next(iter(self._queued_messages.values()))
            if now < message.expires_at:
                break
            holders = sorted(s.client_id for s in message.queued_in)
            self._unqueue_everywhere(message)
            actions.append(
                Notice(
                    NoticeKind.MESSAGE_EXPIRED,
                    tenant=message.tenant,
                    detail={
                        "message_id": message.message_id,
                        "topic": message.topic,
                        "published_at": message.published_at,
                        "expires_at": message.expires_at,
                        "sessions": holders,
                    },
                )
            )
        if self.policy.redelivery_timeout_s is not None:
            for session in self._connected_sessions():
                conn = session.connection
                assert conn is not None
                for entry in session.inflight.values():
                    if entry.resend_at is not None and entry.resend_at <= now:
                        entry.resend_at = self._resend_at(now)
                        actions.append(Send(conn.conn_id, replace(entry.publish, dup=True)))
        return actions

    # --- bookkeeping --------------------------------------------------------------------------

    def _close(self, conn: _CoreConnection, now: float, reason: str) -> list[Action]:
        """Close ``conn`` on the broker's initiative; the Will is published unless discarded."""
        return [Close(conn.conn_id, reason), *self._detach(conn, now)]

    def _detach(self, conn: _CoreConnection, now: float) -> list[Action]:
        was_connected = conn.state is _State.CONNECTED
        conn.state = _State.CLOSED
        session, conn.session = conn.session, None
        if not was_connected or session is None:
            return []
        session.connection = None
        session.disconnected_at = now
        self._live[session.tenant] -= 1
        if not self._live[session.tenant]:
            del self._live[session.tenant]
        if session.clean_session:  # MQTT-3.1.2-6: lasts as long as the network connection
            self._discard_session(session)
        will, conn.will = conn.will, None
        if will is None:
            return []
        return self._publish_will(conn, session, will, now)

    def _publish_will(
        self, conn: _CoreConnection, session: _Session, will: Will, now: float
    ) -> list[Action]:
        """MQTT-3.1.2-8: the Will goes out when the connection ends without DISCONNECT."""
        identity = conn.identity
        assert identity is not None
        notice = self._notice(
            NoticeKind.WILL_PUBLISHED,
            conn,
            client_id=session.client_id,
            topic=will.topic,
            qos=will.qos,
        )
        if not self.policy.may_publish(identity, will.topic):
            refused = self._notice(
                NoticeKind.PUBLISH_REFUSED,
                conn,
                client_id=session.client_id,
                topic=will.topic,
                qos=will.qos,
                reason="the client may not publish its Will to this topic",
            )
            return [refused]
        return [notice, *self._route(identity.tenant, will.topic, will.payload, will.qos, now)]

    def _discard_session(self, session: _Session) -> None:
        assert session.connection is None
        for message, _ in session.queue.values():
            message.queued_in.discard(session)
            if not message.queued_in:
                self._queued_messages.pop(message.message_id, None)
        session.queue.clear()
        session.inflight.clear()
        tenant_sessions = self._sessions[session.tenant]
        if tenant_sessions.get(session.client_id) is session:
            del tenant_sessions[session.client_id]
            if not tenant_sessions:
                del self._sessions[session.tenant]

    def _unqueue_everywhere(self, message: _Message) -> None:
        for session in message.queued_in:
            del session.queue[message.message_id]
        message.queued_in.clear()
        self._queued_messages.pop(message.message_id, None)

    def _assign_client_id(self, tenant: str) -> str:
        taken = self._sessions.get(tenant, {})
        while True:
            self._assigned_client_ids += 1
            client_id = f"auto-{self._assigned_client_ids}"
            if client_id not in taken:
                return client_id

    def _violation(self, conn: _CoreConnection, now: float, reason: str) -> list[Action]:
        """MQTT-4.8.0-1: a protocol violation closes the connection."""
        return [
            self._notice(NoticeKind.PROTOCOL_VIOLATION, conn, reason=reason),
            *self._close(conn, now, reason),
        ]

    def _unknown_packet_id(
        self, conn: _CoreConnection, packet: Puback | Pubrec | Pubcomp
    ) -> Notice:
        return self._notice(
            NoticeKind.UNKNOWN_PACKET_ID,
            conn,
            packet=type(packet).__name__.upper(),
            packet_id=packet.packet_id,
        )

    def _notice(
        self,
        kind: NoticeKind,
        conn: _CoreConnection,
        *,
        client_id: str | None = None,
        **detail: object,
    ) -> Notice:
        session = conn.session
        if client_id is None and session is not None:
            client_id = session.client_id
        tenant = conn.identity.tenant if conn.identity is not None else None
        return Notice(kind, conn.conn_id, tenant, client_id, detail)

    def _observe(self, now: float) -> float:
        """Simulated time as the core sees it: never earlier than what it has already seen
        (two adapter threads may read the clock in one order and call in the other)."""
        if now > self._now:
            self._now = now
        return self._now

    @staticmethod
    def _is_open(conn: _CoreConnection) -> bool:
        return conn.state is not _State.CLOSED

    def _connection(self, conn_id: ConnectionId) -> _CoreConnection:
        try:
            return self._connections[conn_id]
        except KeyError:
            raise ValueError(f"unknown connection {conn_id!r}") from None

    def _all_sessions(self) -> Iterator[_Session]:
        for sessions in self._sessions.values():
            yield from sessions.values()

    def _connected_sessions(self) -> Iterator[_Session]:
        for conn in self._connections.values():
            if conn.state is _State.CONNECTED and conn.session is not None:
                yield conn.session

    def _find_sessions(self, client_id: str, tenant: str | None) -> list[_Session]:
        if tenant is not None:
            session = self._sessions.get(tenant, {}).get(client_id)
            return [session] if session is not None else []
        return [s for s in self._all_sessions() if s.client_id == client_id]

    def _view(self, session: _Session) -> SessionView:
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
