"""The fourteen MQTT 3.1.1 control packets (OASIS MQTT 3.1.1, chapter 3) as frozen values.

A packet here is what travels, not how it is encoded: :mod:`simulators.mqtt.codec` turns one
into bytes and back. Fields hold Python values (``bool`` flags, ``bytes`` payloads, ``tuple``
lists) so packets compare, hash and print well in evidence and test failures.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeAlias

__all__ = [
    "CONNACK_ACCEPTED",
    "CONNACK_BAD_USER_NAME_OR_PASSWORD",
    "CONNACK_IDENTIFIER_REJECTED",
    "CONNACK_NOT_AUTHORIZED",
    "CONNACK_SERVER_UNAVAILABLE",
    "CONNACK_UNACCEPTABLE_PROTOCOL_VERSION",
    "PROTOCOL_LEVEL_3_1",
    "PROTOCOL_LEVEL_3_1_1",
    "SUBACK_FAILURE",
    "Connack",
    "Connect",
    "Disconnect",
    "Packet",
    "Pingreq",
    "Pingresp",
    "Puback",
    "Pubcomp",
    "Publish",
    "Pubrec",
    "Pubrel",
    "Suback",
    "Subscribe",
    "Unsuback",
    "Unsubscribe",
    "Will",
]

# §3.1.2.1-2: protocol name and level. "MQTT" level 4 is MQTT 3.1.1; "MQIsdp" level 3 is MQTT 3.1.
PROTOCOL_LEVEL_3_1 = 3
PROTOCOL_LEVEL_3_1_1 = 4

# Table 3.1, Connect Return code values.
CONNACK_ACCEPTED = 0x00
CONNACK_UNACCEPTABLE_PROTOCOL_VERSION = 0x01
CONNACK_IDENTIFIER_REJECTED = 0x02
CONNACK_SERVER_UNAVAILABLE = 0x03
CONNACK_BAD_USER_NAME_OR_PASSWORD = 0x04
CONNACK_NOT_AUTHORIZED = 0x05

# §3.9.3: SUBACK return codes are the granted QoS (0x00, 0x01, 0x02) or 0x80, Failure.
SUBACK_FAILURE = 0x80


@dataclass(frozen=True, slots=True)
class Will:
    """The Will Message stored with a connection (§3.1.2.5, MQTT-3.1.2-8)."""

    topic: str
    payload: bytes
    qos: int = 0
    retain: bool = False


@dataclass(frozen=True, slots=True)
class Connect:
    """CONNECT, client → server (§3.1).

    For a protocol level other than 3 or 4 (e.g. MQTT 5) the decoder stops after the keep-alive
    so the broker can answer return code 1; the fields after it keep their defaults here.
    """

    client_id: str
    clean_session: bool = True
    keepalive_s: int = 60
    will: Will | None = None
    username: str | None = None
    password: bytes | None = None
    protocol_name: str = "MQTT"
    protocol_level: int = PROTOCOL_LEVEL_3_1_1


@dataclass(frozen=True, slots=True)
class Connack:
    """CONNACK, server → client (§3.2)."""

    session_present: bool
    return_code: int


@dataclass(frozen=True, slots=True)
class Publish:
    """PUBLISH, both directions (§3.3). ``packet_id`` is None exactly when ``qos`` is 0."""

    topic: str
    payload: bytes
    qos: int = 0
    dup: bool = False
    retain: bool = False
    packet_id: int | None = None


@dataclass(frozen=True, slots=True)
class Puback:
    """PUBACK, both directions (§3.4): QoS 1 acknowledgement."""

    packet_id: int


@dataclass(frozen=True, slots=True)
class Pubrec:
    """PUBREC, both directions (§3.5): QoS 2, part 1."""

    packet_id: int


@dataclass(frozen=True, slots=True)
class Pubrel:
    """PUBREL, both directions (§3.6): QoS 2, part 2."""

    packet_id: int


@dataclass(frozen=True, slots=True)
class Pubcomp:
    """PUBCOMP, both directions (§3.7): QoS 2, part 3."""

    packet_id: int


@dataclass(frozen=True, slots=True)
class Subscribe:
    """SUBSCRIBE, client → server (§3.8): ``(topic_filter, requested_qos)`` pairs, at least one."""

    packet_id: int
    subscriptions: tuple[tuple[str, int], ...]


@dataclass(frozen=True, slots=True)
class Suback:
    """SUBACK, server → client (§3.9): one return code per filter, in order (MQTT-3.9.3-1)."""

    packet_id: int
    return_codes: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Unsubscribe:
    """UNSUBSCRIBE, client → server (§3.10): at least one topic filter."""

    packet_id: int
    topic_filters: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Unsuback:
    """UNSUBACK, server → client (§3.11)."""

    packet_id: int


@dataclass(frozen=True, slots=True)
class Pingreq:
    """PINGREQ, client → server (§3.12)."""


@dataclass(frozen=True, slots=True)
class Pingresp:
    """PINGRESP, server → client (§3.13)."""


@dataclass(frozen=True, slots=True)
class Disconnect:
    """DISCONNECT, client → server (§3.14)."""


Packet: TypeAlias = (
    Connect
    | Connack
    | Publish
    | Puback
    | Pubrec
    | Pubrel
    | Pubcomp
    | Subscribe
    | Suback
    | Unsubscribe
    | Unsuback
    | Pingreq
    | Pingresp
    | Disconnect
)
