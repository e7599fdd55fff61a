"""The packet log: what the MQTT server keeps of each connection and what the checks read.

Each connection has one :class:`ConnectionLog` (changed only in the server's loop), read as a
frozen :class:`ConnectionView`: who connected, what its CONNECT said, and every packet that
crossed the wire as a :class:`PacketRecord`. :func:`pair_acks` pairs the PUBLISHes the broker
sent with the PUBACKs that answered them; it is the one pairing the simulator and the checks use.

What a log keeps is bounded whatever the client sends: a string the client chose (client id,
user name, Will topic, a refused topic filter, a topic) is kept whole up to :data:`TEXT_KEPT`
characters, longer ones as an :func:`excerpt` that says how much was cut (a granted filter is
kept whole: the broker's policy bounds it); a connection keeps its first and latest
:data:`SUBSCRIPTIONS_KEPT` subscriptions (``subscriptions_total`` counts them all) and its latest
packets (``packets_total``); the Will's payload and the password are not kept. The server bounds
the logs together (:attr:`ConnectionLog.kept`).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field, replace
from typing import Literal, NamedTuple

from simulators.mqtt.packets import (
    SUBACK_FAILURE,
    Connack,
    Connect,
    Packet,
    Suback,
    Subscribe,
    Will,
)
from simulators.mqtt.policy import Identity
from simulators.mqtt.text import TEXT_KEPT, excerpt

__all__ = [
    "CLOSED_BY_CLIENT",
    "SUBSCRIPTIONS_KEPT",
    "TEXT_KEPT",
    "ConnectionLog",
    "ConnectionView",
    "Copy",
    "Direction",
    "HandshakeFailure",
    "PacketRecord",
    "excerpt",
    "pair_acks",
]

Direction = Literal["in", "out"]
CLOSED_BY_CLIENT = "closed by the client"  # a view's close_reason when the broker did not decide
SUBSCRIPTIONS_KEPT = 200  # per connection: the first 100 and the latest 100


class PacketRecord(NamedTuple):
    """One packet on one connection, as it crossed the wire (a named tuple: one is made per
    packet, on the hot path)."""

    real_s: float
    sim_s: float
    direction: Direction  # "in": from the client; "out": to it
    kind: str  # "PUBLISH", "PUBACK", …
    size: int  # bytes on the wire (fixed header included)
    packet_id: int | None = None
    qos: int | None = None
    dup: bool = False
    retain: bool = False
    topic: str | None = None
    payload_hash: int | None = None  # PUBLISH: ``hash(payload)``, to find one message's copies


@dataclass(frozen=True, slots=True)
class HandshakeFailure:
    """A TLS handshake the listener refused or the client abandoned. ``client_hello``: the
    client had sent a TLS record (its ClientHello) first; a bare TCP connect that closes, as a
    port check does, sent none, and refused nothing."""

    real_s: float
    peer: str
    reason: str
    client_hello: bool = True


@dataclass(frozen=True)
class ConnectionView:
    """A snapshot of one connection: who it is, what its CONNECT said, every packet."""

    conn_id: int
    peer: str  # "127.0.0.1:54321"
    tenant: str | None  # from the client certificate (None: not identified)
    email: str | None
    opened_real_s: float
    opened_sim_s: float
    closed_real_s: float | None  # when the broker closed it or saw it closed
    close_reason: str | None
    client_id: str | None  # from CONNECT
    clean_session: bool | None
    keepalive_s: int | None
    protocol_level: int | None
    username: str | None
    will_topic: str | None  # the CONNECT's Will topic, if it had a Will
    connack: int | None  # the return code the broker answered
    # (filter, requested QoS, granted or 0x80): the first and latest kept (see
    # subscriptions_total), each filter an excerpt()
    subscriptions: tuple[tuple[str, int, int], ...]
    packets: tuple[PacketRecord, ...]  # the last ones kept (see packets_total)
    packets_total: int
    subscriptions_total: int = -1  # every (filter, …) answered; -1: as many as kept

    def __post_init__(self) -> None:
        if self.subscriptions_total < 0:
            object.__setattr__(self, "subscriptions_total", len(self.subscriptions))

    @property
    def open(self) -> bool:
        return self.closed_real_s is None

    @property
    def accepted(self) -> bool:
        """CONNACK 0 was sent."""
        return self.connack == 0

    def sent(self, kind: str = "PUBLISH") -> list[PacketRecord]:
        return [p for p in self.packets if p.direction == "out" and p.kind == kind]

    def received(self, kind: str) -> list[PacketRecord]:
        return [p for p in self.packets if p.direction == "in" and p.kind == kind]

    def acks(self) -> list[Copy]:
        """:func:`pair_acks` of this connection."""
        return pair_acks(self)


@dataclass(frozen=True, slots=True)
class Copy:
    """One QoS >= 1 PUBLISH the broker sent on a connection, and the PUBACK that answered it
    there (None: none did), as :func:`pair_acks` paired them."""

    conn: ConnectionView
    publish: PacketRecord
    acked_real_s: float | None

    @property
    def packet_id(self) -> int | None:
        return self.publish.packet_id

    @property
    def topic(self) -> str:
        return self.publish.topic or ""

    @property
    def dup(self) -> bool:
        return self.publish.dup

    @property
    def payload_hash(self) -> int | None:
        return self.publish.payload_hash

    @property
    def sent_real_s(self) -> float:
        return self.publish.real_s

    @property
    def delay_real_s(self) -> float | None:
        """Real seconds from this PUBLISH to its PUBACK (None: never acknowledged here)."""
        return None if self.acked_real_s is None else self.acked_real_s - self.publish.real_s

    @property
    def cut_off(self) -> bool:
        """The broker closed the connection (a fault, a take-over) before a PUBACK came: the
        client could not answer this copy there."""
        conn = self.conn
        return (
            self.acked_real_s is None
            and conn.closed_real_s is not None
            and conn.close_reason != CLOSED_BY_CLIENT
        )


def pair_acks(view: ConnectionView) -> list[Copy]:
    """Every QoS >= 1 PUBLISH sent on ``view``, in sending order, each with the PUBACK that
    answered it, one to one: a PUBACK answers the oldest unanswered PUBLISH with its packet id,
    and a PUBACK that finds none answers nothing.

    Why one to one (MQTT 3.1.1): the receiver answers each QoS 1 PUBLISH it receives with a
    PUBACK carrying its packet id, and once it has, it treats a PUBLISH with that id as a new
    publication whatever its DUP flag (MQTT-4.3.2-2). A copy and its repeat (DUP = 1,
    MQTT-3.3.1-1; the same packet id, MQTT-2.3.1-3, -4) are therefore two PUBLISHes, each owed
    a PUBACK, and on one ordered connection the n-th PUBACK with an id answers the n-th PUBLISH
    with it. The sender may reuse an id once its PUBACK has come (MQTT-2.3.1-3, -4), so a late
    PUBACK for a repeat must answer the repeat, never a new message under the same id. "Every
    QoS 1 PUBLISH acknowledged" (IVT-ACK-01, IVT-ACK-02) thus counts each copy: a client that
    answers a message once leaves its repeat unanswered.
    """
    pending: dict[int, deque[int]] = {}  # packet id → indexes of unanswered copies, oldest first
    copies: list[Copy] = []
    for record in view.packets:
        if record.direction == "out" and record.kind == "PUBLISH" and record.qos:
            assert record.packet_id is not None
            pending.setdefault(record.packet_id, deque()).append(len(copies))
            copies.append(Copy(view, record, None))
        elif record.direction == "in" and record.kind == "PUBACK":
            waiting = pending.get(record.packet_id or 0)
            if waiting:
                index = waiting.popleft()
                copies[index] = Copy(view, copies[index].publish, record.real_s)
    return copies


@dataclass(eq=False)
class ConnectionLog:
    """The mutable record behind a :class:`ConnectionView` (changed only in the server's loop);
    bounded (see the module docstring)."""

    conn_id: int
    peer: str
    identity: Identity | None
    opened_real_s: float
    opened_sim_s: float
    packets: deque[PacketRecord]
    closed_real_s: float | None = None
    close_reason: str | None = None
    connect: Connect | None = None  # its strings excerpt()s; no Will payload, no password
    connack: int | None = None
    subscriptions: list[tuple[str, int, int]] = field(default_factory=list)  # the first ones
    latest_subscriptions: deque[tuple[str, int, int]] = field(
        default_factory=lambda: deque(maxlen=SUBSCRIPTIONS_KEPT // 2)
    )
    subscriptions_total: int = 0
    requested: dict[int, tuple[tuple[str, int], ...]] = field(default_factory=dict)
    packets_total: int = 0
    _subscriptions_weight: int = 0

    def note(self, packet: Packet) -> None:
        """Keep what a view reports from ``packet``: the CONNECT, the CONNACK's return code,
        each SUBSCRIBE's filters with the SUBACK's answers (MQTT-3.9.3-1: in order)."""
        if type(packet) is Connect:
            self.connect = _kept_connect(packet)
        elif type(packet) is Connack:
            self.connack = packet.return_code
        elif type(packet) is Subscribe:  # answered at once: the SUBACK follows in the batch
            self.requested[packet.packet_id] = packet.subscriptions
        elif type(packet) is Suback:
            for (topic_filter, requested), code in zip(
                self.requested.pop(packet.packet_id, ()), packet.return_codes, strict=False
            ):
                if code == SUBACK_FAILURE:
                    topic_filter = excerpt(topic_filter)
                self._subscribed((topic_filter, requested, code))

    def _subscribed(self, entry: tuple[str, int, int]) -> None:
        self.subscriptions_total += 1
        self._subscriptions_weight += _weight(entry)
        if len(self.subscriptions) < SUBSCRIPTIONS_KEPT - SUBSCRIPTIONS_KEPT // 2:
            self.subscriptions.append(entry)
            return
        latest = self.latest_subscriptions
        if len(latest) == latest.maxlen:
            self._subscriptions_weight -= _weight(latest[0])
        latest.append(entry)

    @property
    def kept(self) -> int:
        """What this log keeps, in entries of about :data:`TEXT_KEPT` characters (a packet
        record is one, a subscription one per :data:`TEXT_KEPT` characters of its filter):
        what a server's budget for all its logs counts."""
        return len(self.packets) + self._subscriptions_weight

    def who(self) -> str:
        """The client id from its CONNECT, else "conn <id>" (for the evidence)."""
        if self.connect is not None and self.connect.client_id:
            return self.connect.client_id
        return f"conn {self.conn_id}"

    def view(self) -> ConnectionView:
        connect = self.connect
        return ConnectionView(
            conn_id=self.conn_id,
            peer=self.peer,
            tenant=self.identity.tenant if self.identity else None,
            email=self.identity.email if self.identity else None,
            opened_real_s=self.opened_real_s,
            opened_sim_s=self.opened_sim_s,
            closed_real_s=self.closed_real_s,
            close_reason=self.close_reason,
            client_id=connect.client_id if connect else None,
            clean_session=connect.clean_session if connect else None,
            keepalive_s=connect.keepalive_s if connect else None,
            protocol_level=connect.protocol_level if connect else None,
            username=connect.username if connect else None,
            will_topic=connect.will.topic if connect and connect.will else None,
            connack=self.connack,
            subscriptions=(*self.subscriptions, *self.latest_subscriptions),
            packets=tuple(self.packets),
            packets_total=self.packets_total,
            subscriptions_total=self.subscriptions_total,
        )


def _weight(entry: tuple[str, int, int]) -> int:
    return 1 + len(entry[0]) // TEXT_KEPT


def _kept_connect(connect: Connect) -> Connect:
    """What a log keeps of a CONNECT: its strings as :func:`excerpt`, without the Will's
    payload (up to the packet size limit) and the password, which no view reports."""
    will = connect.will
    return replace(
        connect,
        client_id=excerpt(connect.client_id),
        will=Will(excerpt(will.topic), b"", will.qos, will.retain) if will else None,
        username=None if connect.username is None else excerpt(connect.username),
        password=None,
        protocol_name=excerpt(connect.protocol_name),
    )
