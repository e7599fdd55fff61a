"""What the Ivanti simulators can be asked to do, as typed operations (docs/architecture.md,
"Operations"), each bound to the SUT's tenant through :class:`IvantiTarget`.

Events: :class:`Publish` (a documented event type, with field overrides, or any bytes).
Faults: :class:`Disconnect`, :class:`HoldOffline` / :class:`Release`, :class:`Redeliver`,
:class:`DuplicateNext`, :class:`DropBeforeAck`, :class:`LoseInFlight`, :class:`LosePuback`,
:class:`RefuseConnects`,
:class:`BeginOutage` / :class:`EndOutage`, :class:`PresentImpostors` / :class:`StopImpostors`.
:class:`ArmFault` (the shared fault vocabulary). Queries: :class:`Connections`,
:class:`Sessions`. :class:`Reset`. Simulated time: :class:`simulators.operations.AdvanceClock`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from simulators.clock import Clock
from simulators.faults import FaultKind
from simulators.ivanti.broker import ImpostorKind, IvantiBroker, Published, Tenant
from simulators.ivanti.events import EVENT_TYPES
from simulators.mqtt.packetlog import ConnectionView
from simulators.mqtt.packets import CONNACK_SERVER_UNAVAILABLE
from simulators.mqtt.sessions import SessionView
from simulators.operations import AdvanceClock, Operation, offered_fault

__all__ = [
    "ArmFault",
    "BeginOutage",
    "Connections",
    "Disconnect",
    "DropBeforeAck",
    "DuplicateNext",
    "EndOutage",
    "HoldOffline",
    "IvantiOperation",
    "IvantiTarget",
    "LoseInFlight",
    "LosePuback",
    "PresentImpostors",
    "Publish",
    "Redeliver",
    "RefuseConnects",
    "Release",
    "Reset",
    "Sessions",
    "StopImpostors",
]

ClientId = Field(min_length=1, max_length=65_535)
ReturnCode = Field(default=CONNACK_SERVER_UNAVAILABLE, ge=1, le=5)  # MQTT 3.1.1 §3.2.2.3


@dataclass(frozen=True)
class IvantiTarget:
    """What Ivanti operations act on: the broker, and the SUT's tenant on it."""

    broker: IvantiBroker
    tenant: Tenant
    consumes: tuple[str, ...]  # the event types the SUT consumes (random picks come from them)

    @property
    def clock(self) -> Clock:
        return self.broker.clock


class Publish(Operation):
    """Publish to the SUT's tenant as the vendor's event source does: a realistic event of
    ``event_type`` (a random consumed type when neither it nor ``topic`` is given) with
    ``fields`` overriding its own, or exactly ``payload`` (any bytes, or a JSON object)."""

    op: Literal["publish"] = "publish"
    event_type: str | None = None
    fields: dict[str, Any] = {}
    payload: bytes | dict[str, Any] | None = None
    topic: str | None = None
    qos: Literal[0, 1] = 1

    @field_validator("event_type")
    @classmethod
    def _documented(cls, value: str | None) -> str | None:
        if value is not None and value not in EVENT_TYPES:
            raise ValueError(f"unknown event type {value!r} (known: {', '.join(EVENT_TYPES)})")
        return value

    def describe(self) -> str:
        what = self.event_type or (f"{len(self.payload)} B" if self.payload else "an event")
        return f"publish {what} at QoS {self.qos}" + (f" to {self.topic}" if self.topic else "")

    async def apply(self, target: IvantiTarget) -> Published:
        event: str | None = self.event_type
        payload = self.payload
        broker, tenant = target.broker, target.tenant
        if event is None and self.topic is None:
            event = broker.generators[tenant.tenant_id].pick(target.consumes)
        if self.fields and payload is None:
            event, made = broker.make_event(tenant, event)
            payload = {**made.model_dump(exclude_none=True), **self.fields}
        return await broker.publish(tenant, event, payload, topic=self.topic, qos=self.qos)


class Disconnect(Operation):
    """Close the client's live connection as a network failure would (no DISCONNECT)."""

    op: Literal["disconnect"] = "disconnect"
    client_id: str = ClientId

    def describe(self) -> str:
        return f"drop the connection of {self.client_id!r}"

    async def apply(self, target: IvantiTarget) -> None:
        await target.broker.disconnect(self.client_id, tenant=target.tenant)


class HoldOffline(Operation):
    """Drop the client and refuse its reconnects for a simulated duration (advance the clock
    to end it early in real time)."""

    op: Literal["hold-offline"] = "hold-offline"
    client_id: str = ClientId
    duration_sim_s: float = Field(gt=0)
    return_code: int = ReturnCode

    def describe(self) -> str:
        return f"hold {self.client_id!r} offline for {self.duration_sim_s:g} simulated s"

    async def apply(self, target: IvantiTarget) -> None:
        await target.broker.hold_offline(
            self.client_id,
            self.duration_sim_s,
            tenant=target.tenant,
            return_code=self.return_code,
        )


class Release(Operation):
    """End a :class:`HoldOffline` now."""

    op: Literal["release"] = "release"
    client_id: str = ClientId

    async def apply(self, target: IvantiTarget) -> None:
        await target.broker.release(self.client_id, tenant=target.tenant)


class Redeliver(Operation):
    """Resend every unacknowledged PUBLISH of the client now (DUP = 1, same packet id)."""

    op: Literal["redeliver"] = "redeliver"
    client_id: str = ClientId

    def describe(self) -> str:
        return f"redeliver every unacknowledged PUBLISH to {self.client_id!r} now (DUP = 1)"

    async def apply(self, target: IvantiTarget) -> None:
        await target.broker.redeliver(self.client_id, tenant=target.tenant)


class DuplicateNext(Operation):
    """Send each of the client's next ``times`` PUBLISHes twice (the copy with DUP = 1)."""

    op: Literal["duplicate"] = "duplicate"
    client_id: str = ClientId
    times: int = Field(default=1, ge=1, le=10_000)

    def describe(self) -> str:
        return f"duplicate the next {self.times} PUBLISH(es) to {self.client_id!r}"

    async def apply(self, target: IvantiTarget) -> None:
        await target.broker.duplicate_next(self.client_id, tenant=target.tenant, times=self.times)


class DropBeforeAck(Operation):
    """Close the connection right after the next ``times`` QoS 1 PUBLISHes to the client (any
    client when None), before a PUBACK can count."""

    op: Literal["drop-before-ack"] = "drop-before-ack"
    client_id: str | None = None
    times: int = Field(default=1, ge=1, le=10_000)

    def describe(self) -> str:
        who = repr(self.client_id) if self.client_id else "any client"
        return f"drop {who} right after its next {self.times} PUBLISH(es), before the PUBACK"

    async def apply(self, target: IvantiTarget) -> None:
        target.broker.drop_before_puback(self.client_id, times=self.times)


class LoseInFlight(Operation):
    """The next ``times`` QoS 1 PUBLISHes to the client are lost on the way: the broker holds
    each in flight, but the connection drops before it is written, so the client first sees it
    when the session resumes, resent with DUP = 1."""

    op: Literal["lose-in-flight"] = "lose-in-flight"
    client_id: str = ClientId
    times: int = Field(default=1, ge=1, le=10_000)

    def describe(self) -> str:
        return f"lose the next {self.times} PUBLISH(es) to {self.client_id!r} on the way"

    async def apply(self, target: IvantiTarget) -> None:
        target.broker.drop_before_puback(self.client_id, times=self.times, kind=FaultKind.UNSENT)


class LosePuback(Operation):
    """The client's next ``times`` PUBACKs are lost on the way to the broker: the connection
    stays, its PUBLISH stays in flight, and the broker redelivers it with DUP = 1 (after its
    redelivery timeout, on :class:`Redeliver`, or when the session resumes)."""

    op: Literal["lose-puback"] = "lose-puback"
    client_id: str = ClientId
    times: int = Field(default=1, ge=1, le=10_000)

    def describe(self) -> str:
        return f"lose the next {self.times} PUBACK(s) of {self.client_id!r} on the way"

    async def apply(self, target: IvantiTarget) -> None:
        await target.broker.lose_next_pubacks(
            self.client_id, tenant=target.tenant, times=self.times
        )


class RefuseConnects(Operation):
    """Refuse the tenant's next ``count`` CONNECTs with CONNACK ``return_code``."""

    op: Literal["refuse-connects"] = "refuse-connects"
    count: int = Field(ge=1, le=10_000)
    return_code: int = ReturnCode

    async def apply(self, target: IvantiTarget) -> None:
        await target.broker.refuse_next_connects(
            self.count, tenant=target.tenant, return_code=self.return_code
        )


class BeginOutage(Operation):
    """Refuse every CONNECT of the tenant with CONNACK ``return_code`` until
    :class:`EndOutage`; live connections stay (drop them with :class:`Disconnect`)."""

    op: Literal["begin-outage"] = "begin-outage"
    return_code: int = ReturnCode

    async def apply(self, target: IvantiTarget) -> None:
        await target.broker.begin_outage(tenant=target.tenant, return_code=self.return_code)


class EndOutage(Operation):
    op: Literal["end-outage"] = "end-outage"

    async def apply(self, target: IvantiTarget) -> None:
        await target.broker.end_outage(tenant=target.tenant)


class PresentImpostors(Operation):
    """Hand the next TCP connections to the broker's address to these impostors, one each, in
    order: a client meets their certificates where it expects the broker."""

    op: Literal["present-impostors"] = "present-impostors"
    kinds: list[ImpostorKind] = Field(min_length=1, max_length=100)

    async def apply(self, target: IvantiTarget) -> None:
        target.broker.present_impostors(self.kinds)


class StopImpostors(Operation):
    """Forget the impostor hand-overs not used yet; answers how many there were."""

    op: Literal["stop-impostors"] = "stop-impostors"

    async def apply(self, target: IvantiTarget) -> int:
        return target.broker.stop_impostors()


class Connections(Operation):
    """Query: the tenant's connections (every one kept), oldest first: client id, clean
    session, keep-alive, subscriptions, every packet with its DUP flag, QoS and times."""

    op: Literal["connections"] = "connections"
    open_only: bool = False

    async def apply(self, target: IvantiTarget) -> list[ConnectionView]:
        return target.broker.connections(target.tenant, open_only=self.open_only)


class Sessions(Operation):
    """The sessions the broker keeps for the tenant: subscriptions, in flight, queued."""

    op: Literal["sessions"] = "sessions"

    async def apply(self, target: IvantiTarget) -> list[SessionView]:
        return await target.broker.sessions(target.tenant)


# The shared fault vocabulary, as the Ivanti broker shows it (on QoS 1 PUBLISHes to a client).
IVANTI_FAULTS = (FaultKind.DROP_BEFORE_ACK, FaultKind.DUPLICATE, FaultKind.UNSENT)


class ArmFault(Operation):
    """Arm one fault of the shared vocabulary on the next ``times`` QoS 1 PUBLISHes:
    ``drop-before-ack`` (to ``client_id``, or any client), ``duplicate`` (sent twice, the copy
    with DUP = 1) or ``unsent`` (lost on the way, resent when the session resumes); the last two
    need ``client_id``."""

    op: Literal["fault"] = "fault"
    kind: FaultKind
    times: int = Field(default=1, ge=1, le=10_000)
    client_id: str | None = Field(default=None, min_length=1, max_length=65_535)

    @field_validator("kind")
    @classmethod
    def _offered(cls, value: FaultKind) -> FaultKind:
        return offered_fault(value, IVANTI_FAULTS, "the Ivanti broker")

    @model_validator(mode="after")
    def _client_given(self) -> ArmFault:
        if self.client_id is None and self.kind is not FaultKind.DROP_BEFORE_ACK:
            raise ValueError(f"{self.kind.value} needs client_id: the MQTT client id it targets")
        return self

    def describe(self) -> str:
        who = repr(self.client_id) if self.client_id else "any client"
        return f"arm {self.kind.value} on the next {self.times} PUBLISH(es) to {who}"

    async def apply(self, target: IvantiTarget) -> str:
        if self.kind is FaultKind.DROP_BEFORE_ACK:
            await DropBeforeAck(client_id=self.client_id, times=self.times).apply(target)
        elif self.kind is FaultKind.DUPLICATE:
            assert self.client_id is not None
            await DuplicateNext(client_id=self.client_id, times=self.times).apply(target)
        else:
            assert self.client_id is not None
            await LoseInFlight(client_id=self.client_id, times=self.times).apply(target)
        return self.describe()


class Reset(Operation):
    """Forget what earlier operations armed: faults on PUBLISHes, refused connects, an outage,
    clients held offline, impostors."""

    op: Literal["reset"] = "reset"

    async def apply(self, target: IvantiTarget) -> dict[str, Any]:
        target.broker.server.faults.clear()
        target.broker.core.faults.clear(tenant=target.tenant.tenant_id)
        return {"faults": "cleared", "impostors_forgotten": target.broker.stop_impostors()}


IvantiOperation = (
    Publish
    | Disconnect
    | HoldOffline
    | Release
    | Redeliver
    | DuplicateNext
    | DropBeforeAck
    | LoseInFlight
    | LosePuback
    | RefuseConnects
    | BeginOutage
    | EndOutage
    | PresentImpostors
    | StopImpostors
    | Connections
    | Sessions
    | ArmFault
    | Reset
    | AdvanceClock
)
"""Every Ivanti operation (``op`` tells them apart on the wire)."""
