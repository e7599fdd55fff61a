"""What a broker core asks its adapter to do, in order: :class:`Received` (record a packet from
the client), :class:`Send` (encode, write, record), :class:`Close` (flush, then close) and
:class:`Notice` (record a decision that is not a packet). See :mod:`simulators.mqtt.core`."""

from __future__ import annotations

import enum
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import TypeAlias

from simulators.mqtt.packets import Packet

__all__ = [
    "Action",
    "Close",
    "ConnectionId",
    "Notice",
    "NoticeKind",
    "Received",
    "Send",
]

ConnectionId: TypeAlias = Hashable


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
