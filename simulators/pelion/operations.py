"""What the simulated Pelion service can be asked to do, as typed operations
(docs/architecture.md, "Operations"), each aimed at one channel through :class:`PelionTarget`.

Events: :class:`Inject` and :class:`InjectTogether` (items of any kind on the channel: notifications, registrations,
updates, de-registrations, expirations, async responses); :class:`Notify` (a resource's new
value, once or as a burst). :class:`ArmFault` arms the shared fault vocabulary;
:class:`Reset` disarms it. Faults on the callback:
:class:`FailDeliveries`. Faults on the WebSocket: :class:`CloseSocket`, :class:`DropSocket`,
:class:`DelayHandshakes`, :class:`RevokeKey`; and :class:`Ping`, :class:`DeleteChannel`,
:class:`SerializeWith`. The caller's client certificate on callback PUTs:
:class:`PresentCaller`. Queries: :class:`Attempts`, :class:`Connections`,
:class:`ChannelStatus`, :class:`ChannelReport`. Simulated time:
:class:`simulators.operations.AdvanceClock`.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import Field, field_validator

from simulators.clock import Clock
from simulators.faults import FaultKind
from simulators.operations import AdvanceClock, Operation, offered_fault
from simulators.pelion.callback import CallerChain
from simulators.pelion.channels import ItemQueued
from simulators.pelion.models import Event, Kind, SerializationConfig
from simulators.pelion.records import ChannelSnapshot, DeliveryAttempt
from simulators.pelion.simulator import PelionSimulator
from simulators.pelion.websocket import ConnectionInfo, PingRecord

__all__ = [
    "ArmFault",
    "Attempts",
    "ChannelReport",
    "ChannelStatus",
    "CloseSocket",
    "Connections",
    "DelayHandshakes",
    "DeleteChannel",
    "DropSocket",
    "FailDeliveries",
    "Inject",
    "InjectTogether",
    "Notify",
    "PelionOperation",
    "PelionTarget",
    "Ping",
    "PresentCaller",
    "Reset",
    "RevokeKey",
    "SerializeWith",
]

MAX_ITEMS = 50_000  # per injection: the vendor's queue limit
MAX_BURST = 10_000  # notifications per Notify: what one request may cost
# A Notify names no device: the first of the standalone simulator's demo devices.
DEFAULT_DEVICE = "016f1c2e7a0000000000000100100001"


@dataclass(frozen=True)
class PelionTarget:
    """What Pelion operations act on: the service, and the API key whose channel an
    operation concerns unless it names one (``key``)."""

    service: PelionSimulator
    key: str

    @property
    def clock(self) -> Clock:
        return self.service.clock


class _OnChannel(Operation):
    key: str | None = None  # the API key of the channel; default: the target's

    def key_of(self, target: PelionTarget) -> str:
        return self.key or target.key


class Inject(_OnChannel):
    """Queue items of ``kind`` on the channel, whatever the devices are doing; they leave in
    the channel's next batch (callback PUT, WebSocket frame or long-poll answer)."""

    op: Literal["inject"] = "inject"
    kind: Kind
    items: list[dict[str, Any]] = Field(min_length=1, max_length=MAX_ITEMS)
    original_ep: str | None = None  # the devices' own name, for serialization's original_ep

    def describe(self) -> str:
        return f"queue {len(self.items)} {self.kind} item(s)"

    async def apply(self, target: PelionTarget) -> list[ItemQueued]:
        return await target.service.inject(
            self.kind, self.items, key=self.key_of(target), original_ep=self.original_ep
        )


class InjectTogether(_OnChannel):
    """Queue items of several kinds at once, so that they leave in one message."""

    op: Literal["inject-together"] = "inject-together"
    items: list[tuple[Kind, dict[str, Any]]] = Field(min_length=1, max_length=MAX_ITEMS)

    def describe(self) -> str:
        return f"queue {len(self.items)} items of {len({k for k, _ in self.items})} kinds together"

    async def apply(self, target: PelionTarget) -> list[ItemQueued]:
        events = [Event(kind, dict(body)) for kind, body in self.items]
        return await target.service.queue(events, key=self.key_of(target))


class Notify(_OnChannel):
    """A resource's new ``value`` (text/plain), as the device would report it: ``count``
    ``notifications`` items for ``device``'s ``path`` queued on the channel (a burst when
    more than one), leaving in its next batches."""

    op: Literal["notify"] = "notify"
    device: str = Field(default=DEFAULT_DEVICE, min_length=1, max_length=256)
    path: str = Field(default="/3200/0/5501", min_length=2, max_length=256)
    value: str = Field(default="1", max_length=65_536)
    count: int = Field(default=1, ge=1, le=MAX_BURST)

    @field_validator("path")
    @classmethod
    def _resource_path(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError(f"{value!r} is not a resource path: write it like /3200/0/5501")
        return value

    def describe(self) -> str:
        return f"notify {self.device}{self.path} = {self.value!r} x{self.count}"

    async def apply(self, target: PelionTarget) -> dict[str, Any]:
        payload = base64.b64encode(self.value.encode()).decode()
        item = {"ep": self.device, "path": self.path, "ct": "text/plain", "payload": payload,
                "max-age": 0}  # fmt: skip
        queued = await target.service.inject(
            "notifications", [item] * self.count, key=self.key_of(target)
        )
        answer: dict[str, Any] = {"queued": len(queued), "item": item}
        if not queued:
            answer["why_none"] = (
                "no notification channel for this API key yet: register a callback "
                "(PUT /v2/notification/callback) or open the WebSocket first"
            )
        return answer


class FailDeliveries(Operation):
    """The next ``times`` callback attempts misbehave: counted as ``status``, or unanswered
    (``timeout``); not sent at all (``unsent``, failing with ``status`` or as unanswered when
    it is None); sent in full and then the connection aborted before the answer is read
    (``drop-before-ack``: the receiver has the batch, the service resends it); or half sent
    and stalled until the request timeout (``stall``)."""

    op: Literal["fail-deliveries"] = "fail-deliveries"
    kind: Literal[
        FaultKind.STATUS,
        FaultKind.TIMEOUT,
        FaultKind.UNSENT,
        FaultKind.DROP_BEFORE_ACK,
        FaultKind.STALL,
    ] = FaultKind.STATUS
    times: int = Field(default=1, ge=1, le=10_000)
    status: int | None = Field(default=500, ge=100, le=599)

    def describe(self) -> str:
        what = {
            FaultKind.STATUS: f"count as answered {self.status}",
            FaultKind.TIMEOUT: "count as unanswered",
            FaultKind.UNSENT: "never send",
            FaultKind.DROP_BEFORE_ACK: "drop the answer (after the request was sent) of",
            FaultKind.STALL: "stall halfway",
        }[self.kind]
        return f"{what} the next {self.times} callback attempt(s)"

    async def apply(self, target: PelionTarget) -> None:
        params = (
            {"status": self.status} if self.kind in (FaultKind.STATUS, FaultKind.UNSENT) else {}
        )
        target.service.faults.add("callback", self.kind, times=self.times, **params)


class PresentCaller(Operation):
    """Present ``chain`` as the caller's client certificate on every callback PUT from now on
    (verification and batches): the ``genuine`` chain (the run's caller root → intermediate →
    leaf, as the vendor's GlobalSign chain), ``none``, or the ``untrusted`` chain (the same
    shape under another root); answers the chain presented until now."""

    op: Literal["present-caller"] = "present-caller"
    chain: CallerChain

    def describe(self) -> str:
        return f"present the {self.chain} caller certificate on callback PUTs"

    async def apply(self, target: PelionTarget) -> CallerChain:
        return target.service.client.present(self.chain)


class CloseSocket(_OnChannel):
    """Close the channel's bound WebSocket with ``code``; answers whether one was bound."""

    op: Literal["close-socket"] = "close-socket"
    code: int = Field(ge=1000, le=4999)
    reason: str = Field(default="", max_length=123)  # RFC 6455 §5.5: 125 bytes with the code

    def describe(self) -> str:
        return f"close the WebSocket with {self.code}"

    async def apply(self, target: PelionTarget) -> bool:
        return await target.service.close_socket(self.code, self.reason, self.key_of(target))


class DropSocket(_OnChannel):
    """End the channel's bound WebSocket without a close frame (the client sees 1006)."""

    op: Literal["drop-socket"] = "drop-socket"

    def describe(self) -> str:
        return "end the WebSocket without a close frame (1006)"

    async def apply(self, target: PelionTarget) -> bool:
        return await target.service.drop_socket(self.key_of(target))


class Ping(_OnChannel):
    """Ping the bound socket now and wait (at most the pong timeout) for the pong; a missing
    pong closes the socket as the vendor does."""

    op: Literal["ping"] = "ping"

    async def apply(self, target: PelionTarget) -> PingRecord | None:
        return await target.service.ping(self.key_of(target))


class DelayHandshakes(Operation):
    """Hold the next ``times`` WebSocket handshakes ``seconds`` (real) before the 101; a
    second connect with the same key meanwhile gets 429."""

    op: Literal["delay-handshakes"] = "delay-handshakes"
    seconds: float = Field(gt=0, le=60)
    times: int = Field(default=1, ge=1, le=10_000)

    def describe(self) -> str:
        return (
            f"hold the next {self.times} WebSocket handshake(s) {self.seconds:g} s before the 101"
        )

    async def apply(self, target: PelionTarget) -> None:
        target.service.faults.add(
            "handshake", FaultKind.DELAY, times=self.times, seconds=self.seconds
        )


class RevokeKey(_OnChannel):
    """Revoke the key now (its sockets are closed as the vendor closes an unauthorized one)
    and accept it again after ``seconds_real`` of real time; answers the sockets closed."""

    op: Literal["revoke-key"] = "revoke-key"
    seconds_real: float = Field(gt=0, le=3600)

    def describe(self) -> str:
        return f"revoke the API key for {self.seconds_real:g} real s"

    async def apply(self, target: PelionTarget) -> list[ConnectionInfo]:
        return await target.service.revoke_key_for(self.seconds_real, self.key_of(target))


class DeleteChannel(_OnChannel):
    """Delete the channel as its application would (REST); answers the mechanism deleted."""

    op: Literal["delete-channel"] = "delete-channel"

    def describe(self) -> str:
        return "delete the channel (REST), which closes its WebSocket with 1001"

    async def apply(self, target: PelionTarget) -> str | None:
        return await target.service.delete_channel(self.key_of(target))


class SerializeWith(_OnChannel):
    """Serialize the channel's next batches with ``config`` (None: the vendor default), as a
    second registration with another ``serialization`` would; answers the config it had."""

    op: Literal["serialize-with"] = "serialize-with"
    config: dict[str, Any] | None = None

    async def apply(self, target: PelionTarget) -> SerializationConfig | None:
        return target.service.serialize_with(self.config, self.key_of(target))


class Attempts(_OnChannel):
    """Query: every delivery attempt on the channel so far (callback PUTs, WebSocket frames,
    poll answers): its items, uids, answer or error, time, and the back-off that followed."""

    op: Literal["attempts"] = "attempts"

    async def apply(self, target: PelionTarget) -> list[DeliveryAttempt]:
        key = self.key_of(target)
        return [a for a in target.service.attempts() if a.key == key]


class Connections(Operation):
    """Query: every WebSocket connect kept so far (handshake, pings, frames, close codes)."""

    op: Literal["connections"] = "connections"

    async def apply(self, target: PelionTarget) -> list[ConnectionInfo]:
        return target.service.connections()


class ChannelStatus(_OnChannel):
    """Query: the channel now (its mechanism, status, what is queued), None without one."""

    op: Literal["channel-status"] = "channel-status"

    async def apply(self, target: PelionTarget) -> ChannelSnapshot | None:
        return target.service.channel_state(self.key_of(target))


class ChannelReport(_OnChannel):
    """Query: the channel now (None without one) and every removal of a channel on this key
    (``reason``: ``failing-24h``, ``deleted``…, ``at``: simulated seconds)."""

    op: Literal["channel"] = "channel"

    async def apply(self, target: PelionTarget) -> dict[str, Any]:
        key = self.key_of(target)
        removed = [r for r in target.service.removed_channels() if r.key == key]
        return {"channel": target.service.channel_state(key), "removed": removed}


# The shared fault vocabulary, as the Pelion callback client shows it.
PELION_FAULTS = (
    FaultKind.STATUS,
    FaultKind.TIMEOUT,
    FaultKind.UNSENT,
    FaultKind.DROP_BEFORE_ACK,
    FaultKind.STALL,
)


class ArmFault(Operation):
    """Arm one fault of the shared vocabulary on the next ``times`` callback attempts:
    ``status`` (counted as failed with ``status``), ``timeout``, ``unsent``,
    ``drop-before-ack`` or ``stall``."""

    op: Literal["fault"] = "fault"
    kind: FaultKind
    times: int = Field(default=1, ge=1, le=10_000)
    status: int = Field(default=500, ge=100, le=599)

    @field_validator("kind")
    @classmethod
    def _offered(cls, value: FaultKind) -> FaultKind:
        return offered_fault(value, PELION_FAULTS, "the Pelion simulator")

    def describe(self) -> str:
        return f"arm {self.kind.value} on the next {self.times} callback attempt(s)"

    async def apply(self, target: PelionTarget) -> str:
        kind: Any = self.kind
        await FailDeliveries(kind=kind, times=self.times, status=self.status).apply(target)
        return self.describe()


class Reset(Operation):
    """Disarm every fault armed on the service (callback attempts, handshakes)."""

    op: Literal["reset"] = "reset"

    async def apply(self, target: PelionTarget) -> dict[str, Any]:
        target.service.faults.clear()
        return {"faults": "cleared"}


PelionOperation = (
    Inject
    | InjectTogether
    | FailDeliveries
    | PresentCaller
    | CloseSocket
    | DropSocket
    | Ping
    | DelayHandshakes
    | RevokeKey
    | DeleteChannel
    | SerializeWith
    | Attempts
    | Connections
    | ChannelStatus
    | ChannelReport
    | Notify
    | ArmFault
    | Reset
    | AdvanceClock
)
"""Every Pelion operation (``op`` tells them apart on the wire)."""
