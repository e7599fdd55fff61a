"""How the MQTT server records what happens: each packet into its connection's
:class:`~simulators.mqtt.packetlog.ConnectionLog` and as one evidence event, each core notice and
listener event as one event, each with the cause (check) it belongs to.

Causes: evidence recorded while a check runs is that check's. A PUBLISH sent for a cause ties
its PUBACK to that cause, and a message the suite published (:meth:`MqttEvidence.remember_publisher`)
keeps its cause when it is delivered later (queued, resent). Evidence no check caused (a
client's own CONNECT, PINGREQ, SUBSCRIBE…) goes to :attr:`MqttEvidence.ambient_cause`, the check
that is watching, if any.
"""

from __future__ import annotations

import contextlib
from collections import OrderedDict
from typing import Any

from simulators.adapter import StateChanges
from simulators.clock import Clock
from simulators.evidence import CAUSE, RUN, Recorder
from simulators.mqtt.actions import Notice
from simulators.mqtt.codec import encode
from simulators.mqtt.packetlog import TEXT_KEPT, ConnectionLog, Direction, PacketRecord, excerpt
from simulators.mqtt.packets import (
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
)

__all__ = ["PUBLISHER_CAUSES_KEPT", "MqttEvidence", "wire_size"]

PUBLISHER_CAUSES_KEPT = 10_000
LISTED = 10  # topic filters or return codes a summary names (the rest are counted)
SUMMARY_KEPT = 4 * TEXT_KEPT  # characters of a notice's or an event's summary


class MqttEvidence:
    """The evidence of one listener (``actor``); ``changed`` is notified when a log changes."""

    def __init__(self, recorder: Recorder, clock: Clock, changed: StateChanges, actor: str) -> None:
        self.recorder = recorder
        self.clock = clock
        self.changed = changed
        self.actor = actor
        self.ambient_cause: str | None = None
        self._publisher_causes: OrderedDict[str, str] = OrderedDict()

    def packet(
        self,
        log: ConnectionLog,
        causes: dict[int, str],
        direction: Direction,
        packet: Packet,
        size: int,
    ) -> None:
        """Log one packet and record it as evidence (the hot path: kept lean). ``causes`` maps
        the packet ids of this connection's PUBLISHes sent for a cause to it. The log is changed
        without a lock (appends and assignments are atomic in CPython; readers copy under
        ``changed``), and notifying costs nothing when no thread waits."""
        real, sim = self.clock.readings()
        kind = _KINDS[type(packet)]
        cause: str | None = None
        if type(packet) is Publish:
            packet_id = packet.packet_id
            topic = packet.topic if len(packet.topic) <= TEXT_KEPT else excerpt(packet.topic)
            record = PacketRecord(
                real, sim, direction, kind, size, packet_id, packet.qos, packet.dup,
                packet.retain, topic, hash(packet.payload),
            )  # fmt: skip
            summary = (
                f"{kind} id={packet_id} q{packet.qos} dup={int(packet.dup)} "
                f"retain={int(packet.retain)} {topic} {size}B"
            )
            if direction == "out" and packet_id is not None:
                cause = CAUSE.get()
                if cause == RUN:  # a queued or resent message: its publisher's cause, if any
                    cause = self._publisher_causes.get(_message_key(packet.topic, packet.payload))
                if cause:
                    causes[packet_id] = cause
        else:
            packet_id = getattr(packet, "packet_id", None)
            record = PacketRecord(real, sim, direction, kind, size, packet_id)
            summary = _summary(kind, packet)
            if type(packet) is Puback:
                if causes:
                    cause = causes.pop(packet.packet_id, None)
            else:
                log.note(packet)
        log.packets.append(record)
        log.packets_total += 1
        self.changed.notify_all()
        peer = log.who()
        sender, receiver = (self.actor, peer) if direction == "out" else (peer, self.actor)
        self.recorder.record(
            sender, "->", receiver, "mqtt", summary, cause=self.cause(cause), conn=log.conn_id
        )

    def notice(self, notice: Notice) -> None:
        """One event for a decision of the core that is not a packet."""
        detail: dict[str, Any] = {
            k: excerpt(v) if isinstance(v, str) else v
            for k, v in notice.detail.items()
            if not isinstance(v, bytes) and k != "cause"
        }
        text = excerpt(", ".join(f"{k}={v}" for k, v in detail.items()), SUMMARY_KEPT)
        who = excerpt(notice.client_id or "") or (
            f"conn {notice.conn_id}" if notice.conn_id is not None else ""
        )
        peer = who or (notice.tenant or "broker")
        self.recorder.record(
            self.actor,
            "--",
            peer,
            notice.kind.value,
            f"{notice.kind.value}: {text}" if text else notice.kind.value,
            cause=self.cause(),
            tenant=notice.tenant,
            client_id=notice.client_id if notice.client_id is None else excerpt(notice.client_id),
            **detail,
        )

    def event(self, peer: str, kind: str, summary: str, **detail: Any) -> None:
        """One event of the listener about ``peer`` that is neither a packet nor a notice (TLS,
        close, refusal, fault)."""
        self.recorder.record(
            self.actor,
            "--",
            peer,
            kind,
            excerpt(summary, SUMMARY_KEPT),
            cause=self.cause(),
            **detail,
        )

    def cause(self, cause: str | None = None) -> str | None:
        """``cause`` if given; else the running check's, or the watching check's
        (:attr:`ambient_cause`) for evidence recorded outside any check."""
        if cause is None and self.ambient_cause is not None and CAUSE.get() == RUN:
            return self.ambient_cause
        return cause

    def remember_publisher(self, topic: str, payload: bytes) -> None:
        """Tie every later delivery of this message (queued, resent) to the current cause."""
        cause = CAUSE.get()
        if cause != RUN:
            causes = self._publisher_causes
            causes[_message_key(topic, payload)] = cause
            while len(causes) > PUBLISHER_CAUSES_KEPT:
                causes.popitem(last=False)


def wire_size(packet: Packet) -> int:
    """Bytes of ``packet`` on the wire, without encoding the common ones again."""
    if isinstance(packet, Puback | Pubrec | Pubrel | Pubcomp | Unsuback):
        return 4
    if isinstance(packet, Publish):
        body = 2 + len(packet.topic.encode()) + (2 if packet.qos else 0) + len(packet.payload)
        return 1 + _length_bytes(body) + body
    if isinstance(packet, Subscribe | Unsubscribe | Connect):
        with contextlib.suppress(ValueError):
            return len(encode(packet))
        return 0  # a level-5 CONNECT decoded partially
    return len(encode(packet))


def _length_bytes(length: int) -> int:
    return 1 if length < 128 else 2 if length < 16_384 else 3 if length < 2_097_152 else 4


def _message_key(topic: str, payload: bytes) -> str:
    return f"mqtt-message:{hash((topic, payload))}"


_KINDS: dict[type, str] = {
    cls: cls.__name__.upper()
    for cls in (
        Connect, Connack, Publish, Puback, Pubrec, Pubrel, Pubcomp, Subscribe, Suback,
        Unsubscribe, Unsuback, Pingreq, Pingresp, Disconnect,
    )
}  # fmt: skip


def _summary(kind: str, packet: Packet) -> str:
    """One line for the evidence (PUBLISH is summarized on the hot path itself)."""
    match packet:
        case Puback(packet_id) | Pubrec(packet_id) | Pubrel(packet_id) | Pubcomp(packet_id):
            return f"{kind} id={packet_id}"
        case Unsuback(packet_id):
            return f"{kind} id={packet_id}"
        case Connect():
            return (
                f"{kind} client_id={excerpt(packet.client_id)!r} clean={int(packet.clean_session)} "
                f"keepalive={packet.keepalive_s}s level={packet.protocol_level}"
                + (f" username={excerpt(packet.username)!r}" if packet.username is not None else "")
            )
        case Connack(session_present, return_code):
            return f"{kind} rc={return_code} session_present={int(session_present)}"
        case Subscribe(packet_id, subscriptions):
            return f"{kind} id={packet_id} " + _listed(
                [f"{excerpt(f)} q{q}" for f, q in subscriptions[:LISTED]], len(subscriptions), ", "
            )
        case Suback(packet_id, codes):
            return f"{kind} id={packet_id} " + _listed(
                [f"0x{c:02x}" for c in codes[:LISTED]], len(codes), ","
            )
        case Unsubscribe(packet_id, filters):
            return f"{kind} id={packet_id} " + _listed(
                [excerpt(f) for f in filters[:LISTED]], len(filters), ", "
            )
    return kind


def _listed(shown: list[str], total: int, separator: str) -> str:
    """``shown`` joined, and how many more there were."""
    more = f" (+{total - len(shown)} more)" if total > len(shown) else ""
    return separator.join(shown) + more
