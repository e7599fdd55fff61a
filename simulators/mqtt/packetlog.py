"""The packet log: what the MQTT server keeps of each connection and what the checks read.

Each connection has one :class:`ConnectionLog` (changed only in the server's loop), read as a
frozen :class:`ConnectionView`: who connected, what its CONNECT said, and every packet that
crossed the wire as a :class:`PacketRecord`. :func:`pair_acks` pairs the PUBLISHes the broker
sent with the PUBACKs that answered them; it is the one pairing the simulator and the checks use.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Literal, NamedTuple

from simulators.mqtt.packets import Connack, Connect, Packet, Suback, Subscribe
from simulators.mqtt.policy import Identity

__all__ = [
    "CLOSED_BY_CLIENT",
    "ConnectionLog",
    "ConnectionView",
    "Copy",
    "Direction",
    "HandshakeFailure",
    "PacketRecord",
    "pair_acks",
]

Direction = Literal["in", "out"]
CLOSED_BY_CLIENT = "closed by the client"  # a view's close_reason when the broker did not decide


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
    subscriptions: tuple[tuple[str, int, int], ...]  # (filter, requested QoS, granted or 0x80)
    packets: tuple[PacketRecord, ...]  # the last ones kept (see packets_total)
    packets_total: int

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
    """The mutable record behind a :class:`ConnectionView` (changed only in the server's loop)."""

    conn_id: int
    peer: str
    identity: Identity | None
    opened_real_s: float
    opened_sim_s: float
    packets: deque[PacketRecord]
    closed_real_s: float | None = None
    close_reason: str | None = None
    connect: Connect | None = None
    connack: int | None = None
    subscriptions: list[tuple[str, int, int]] = field(default_factory=list)
    requested: dict[int, tuple[tuple[str, int], ...]] = field(default_factory=dict)
    packets_total: int = 0

    def note(self, packet: Packet) -> None:
        """Keep what a view reports from ``packet``: the CONNECT, the CONNACK's return code,
        each SUBSCRIBE's filters with the SUBACK's answers (MQTT-3.9.3-1: in order)."""
        if type(packet) is Connect:
            self.connect = packet
        elif type(packet) is Connack:
            self.connack = packet.return_code
        elif type(packet) is Subscribe:
            self.requested[packet.packet_id] = packet.subscriptions
        elif type(packet) is Suback:
            for (topic_filter, requested), code in zip(
                self.requested.pop(packet.packet_id, ()), packet.return_codes, strict=False
            ):
                self.subscriptions.append((topic_filter, requested, code))

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
            subscriptions=tuple(self.subscriptions),
            packets=tuple(self.packets),
            packets_total=self.packets_total,
        )
