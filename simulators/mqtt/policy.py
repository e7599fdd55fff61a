"""What a broker core follows and whom it serves: :class:`BrokerPolicy` (the vendor's rules, quoted,
as its defaults, and the bounds that keep memory finite), :class:`Identity` (who a connection is)
and topic checks, and packet id allocation (MQTT-2.3.1-2, -4)."""

from __future__ import annotations

from collections.abc import Callable, Container
from dataclasses import dataclass
from typing import Literal, TypeAlias, get_args

from simulators.mqtt.codec import DEFAULT_MAX_PACKET_SIZE

__all__ = [
    "MAX_PACKET_ID",
    "QUEUED_ENTRY_OVERHEAD",
    "BrokerPolicy",
    "Identity",
    "TopicCheck",
    "allow_all",
    "allow_none",
    "next_free_packet_id",
]

MAX_PACKET_ID = 0xFFFF
# What one queued copy of a message costs besides its payload and topic (the queue's entry,
# the message's back-reference): counted against ``max_queued_bytes_per_tenant``.
QUEUED_ENTRY_OVERHEAD = 200


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


DuplicateClientId = Literal["takeover", "refuse"]
"""A second connection with a live client ID takes the first over (MQTT-3.1.4-2), or is refused
with CONNACK 2."""


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

    The other limits keep memory bounded whatever a client does. None is the vendor's (it
    publishes no queue size): ``max_queued_bytes_per_tenant`` (128 MiB, a project assumption)
    bounds what a tenant's sessions hold queued together, each session's copy of a message
    counted (its payload, topic and :data:`QUEUED_ENTRY_OVERHEAD`): 1,000 durable sessions of
    one tenant fill it long before 100,000 messages each (``max_queued_per_session``) would.
    It holds about 190,000 queued copies of a 500-byte event: a single session 3 hours offline
    at 17 events/s.
    """

    max_connections_per_tenant: int = 15
    duplicate_client_id: DuplicateClientId = "takeover"
    retention_s: float = 10_800.0
    purge_after_first_puback: bool = True
    max_qos: int = 1
    redelivery_timeout_s: float | None = None
    max_inflight: int = 64
    max_queued_per_session: int = 100_000
    max_queued_bytes_per_tenant: int = 128 * 1024 * 1024
    max_sessions_per_tenant: int = 1_000
    max_subscriptions_per_session: int = 100
    max_topic_filter_length: int = 1_024
    max_client_id_length: int = 256
    max_packet_size: int = DEFAULT_MAX_PACKET_SIZE
    may_subscribe: TopicCheck = allow_all
    may_publish: TopicCheck = allow_none

    def __post_init__(self) -> None:
        if self.duplicate_client_id not in get_args(DuplicateClientId):
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
            "max_queued_bytes_per_tenant",
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
