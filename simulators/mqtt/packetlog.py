"""The packet log: what the MQTT server keeps of each connection and what the checks read.

Each connection has one :class:`ConnectionLog` (changed only in the server's loop), read as a
frozen :class:`ConnectionView`: who connected, what its CONNECT said, and every packet that
crossed the wire as a :class:`PacketRecord`.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Literal, NamedTuple

from simulators.mqtt.packets import Connack, Connect, Packet, Suback, Subscribe
from simulators.mqtt.policy import Identity

__all__ = [
    "CLOSED_BY_CLIENT",
    "Ack",
    "ConnectionLog",
    "ConnectionView",
    "Direction",
    "HandshakeFailure",
    "PacketRecord",
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
class Ack:
    """A PUBLISH sent to the client (QoS >= 1) and its PUBACK, if one came on this connection."""

    packet_id: int
    topic: str
    dup: bool
    sent_real_s: float
    acked_real_s: float | None
    payload_hash: int | None = None

    @property
    def delay_real_s(self) -> float | None:
        """Real seconds from this PUBLISH to its PUBACK (None: never acknowledged here)."""
        return None if self.acked_real_s is None else self.acked_real_s - self.sent_real_s


@dataclass(frozen=True, slots=True)
class HandshakeFailure:
    """A TLS handshake the listener refused or the client abandoned."""

    real_s: float
    peer: str
    reason: str


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

    def acks(self) -> list[Ack]:
        """Every QoS >= 1 PUBLISH sent on this connection, each with the PUBACK that answered it
        (the first PUBACK with its packet id after it), in sending order."""
        pending: dict[int, list[int]] = {}
        out: list[Ack] = []
        for record in self.packets:
            if record.kind == "PUBLISH" and record.direction == "out" and record.qos:
                assert record.packet_id is not None
                pending.setdefault(record.packet_id, []).append(len(out))
                out.append(
                    Ack(
                        record.packet_id,
                        record.topic or "",
                        record.dup,
                        record.real_s,
                        None,
                        record.payload_hash,
                    )
                )
            elif record.kind == "PUBACK" and record.direction == "in":
                assert record.packet_id is not None
                for index in pending.pop(record.packet_id, []):
                    ack = out[index]
                    out[index] = Ack(
                        ack.packet_id,
                        ack.topic,
                        ack.dup,
                        ack.sent_real_s,
                        record.real_s,
                        ack.payload_hash,
                    )
        return out


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
