"""The Ivanti side of a run: the manifest section, the observer record, and :class:`IvantiSim`,
the running broker, CPS API and impostors with the Python API a check uses.

For a check writer (every coroutine runs in the simulators' loop: ``harness.run(sim.publish(…))``;
the queries are plain calls from the check's thread)::

    sim.tenant / sim.login                  the SUT's tenant (GUID, style, topics) and identity
    await sim.publish("device_check_in")    -> Published (topic, payload, key, delivered_to, kept_for)
    await sim.publish(payload=b"\\xff", topic=sim.topic("device_enrolled"))   any bytes
    await sim.hold_offline(client_id, 2 * 3600)   drop it; refuse CONNACK 3 for 2 simulated hours
    await sim.disconnect(client_id) / sim.redeliver(client_id) / sim.duplicate_next(client_id)
    await sim.refuse_next_connects(3)      CONNACK 3 to the next three CONNECTs of the tenant
    await sim.begin_outage() / end_outage() CONNACK 3 to every CONNECT of the tenant until ended
    sim.present_impostors(["expired"])      the broker's address hands its next connection to
                                            that impostor (sim.stop_impostors() forgets the rest)
    sim.cps.calls()                         every CPS request (method, path, caller, status)
    sim.drop_before_puback(client_id)       close right after the next PUBLISH, before its PUBACK
    sim.connections(open_only=True)         ConnectionView per connection: client id, clean session,
                                            keep-alive, subscriptions, packets (DUP, QoS, sizes,
                                            real/simulated times), acks() with PUBACK delays
    sim.wait_for(predicate, timeout)        block until predicate(connections()) holds
    await sim.sessions()                    SessionView per kept session (queued, in flight)
    sim.impostors["unknown-ca"|"expired"|"wrong-host"]   .port, .connect_received
    sim.broker.clock.advance(3 * 3600)      three simulated hours; queued events expire on time
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from conformance.ivanti.vendor import IvantiSettings
from conformance.manifest import Section
from conformance.vendors import Endpoint, VendorRun
from simulators.adapter import BackgroundTasks
from simulators.faultlog import FaultLog
from simulators.ivanti.broker import (
    ACTOR,
    Impostor,
    ImpostorKind,
    IvantiBroker,
    Login,
    Published,
    Tenant,
)
from simulators.ivanti.cps import CpsServer
from simulators.ivanti.events import EVENT_TYPES, DeviceEvent
from simulators.mqtt.broker import BrokerPolicy, SessionView
from simulators.mqtt.packets import CONNACK_SERVER_UNAVAILABLE
from simulators.mqtt.server import ConnectionView

__all__ = ["SUT_LOGIN", "SUT_TENANT", "IvantiSection", "IvantiSim", "ObservedEvent", "start"]

SUT_TENANT = "sut"  # the SUT's tenant name (its GUID is stable from run to run)
SUT_LOGIN = "sut"  # the SUT's identity: sut@sut.ivanti.test


class IvantiSection(Section):
    """``[ivanti]``: the SUT subscribes to the Ivanti broker (sut-contract.md §2)."""

    consumes: list[str] = Field(default_factory=lambda: list(EVENT_TYPES), min_length=1)
    topic_style: Literal["neurons", "epmm"] = "neurons"

    @field_validator("consumes")
    @classmethod
    def _known(cls, value: list[str]) -> list[str]:
        unknown = [name for name in value if name not in EVENT_TYPES]
        if unknown:
            raise ValueError(
                f"unknown event types {', '.join(map(repr, unknown))} "
                f"(known: {', '.join(EVENT_TYPES)})"
            )
        return list(dict.fromkeys(value))


class ObservedEvent(BaseModel):
    """``POST {observer}/ivanti``: ``{"topic": "<topic>", "message": <the JSON payload>}``."""

    model_config = ConfigDict(extra="allow")
    topic: str
    message: Any


@dataclass
class IvantiSim:
    """The Ivanti simulators of one run (or of ``conformance-sim serve ivanti``)."""

    broker: IvantiBroker
    cps: CpsServer
    settings: IvantiSettings
    section: IvantiSection | None
    tenant: Tenant  # the SUT's
    login: Login  # the SUT's identity (certificate and login email)
    consumes: tuple[str, ...]
    _tasks: BackgroundTasks = field(init=False)

    def __post_init__(self) -> None:
        self._tasks = BackgroundTasks(self.broker.fault_log)

    # --- the plug-in interface ----------------------------------------------------------------

    def environment(self) -> dict[str, str]:
        return {
            "CONFORMANCE_IVANTI_BROKER_HOST": self.broker.host,
            "CONFORMANCE_IVANTI_BROKER_PORT": str(self.broker.port),
            "CONFORMANCE_IVANTI_CLIENT_CERT": str(self.login.cert.cert),
            "CONFORMANCE_IVANTI_CLIENT_KEY": str(self.login.cert.key),
            "CONFORMANCE_IVANTI_USERNAME": self.login.email,
            "CONFORMANCE_IVANTI_CPS_URL": self.cps.base_url,
        }

    def endpoints(self) -> list[Endpoint]:
        return []  # the SUT serves nothing: it connects to the broker

    async def after_ready(self) -> None:
        return None

    def errors(self) -> list[str]:
        return self.broker.fault_log.errors() + self.cps.fault_log.errors()

    async def stop(self) -> None:
        await self._tasks.cancel()
        await self.cps.stop()
        await self.broker.stop()

    # --- the API for checks -------------------------------------------------------------------

    def topic(self, event_type: str) -> str:
        """The SUT tenant's topic of ``event_type``."""
        return self.tenant.topic(event_type)

    @property
    def consumed_topics(self) -> dict[str, str]:
        """Event type → topic of the event types the SUT declares it consumes."""
        return {name: self.tenant.topics[name] for name in self.consumes}

    @property
    def impostors(self) -> dict[ImpostorKind, Impostor]:
        return self.broker.impostors

    async def publish(
        self,
        event: str | DeviceEvent | None = None,
        payload: bytes | dict[str, Any] | None = None,
        *,
        topic: str | None = None,
        qos: int = 1,
    ) -> Published:
        """Publish to the SUT's tenant (see :meth:`IvantiBroker.publish`); a random consumed
        event type when neither ``event`` nor ``topic`` is given."""
        if event is None and topic is None:
            event = self.broker.generators[self.tenant.tenant_id].pick(self.consumes)
        return await self.broker.publish(self.tenant, event, payload, topic=topic, qos=qos)

    async def hold_offline(
        self,
        client_id: str,
        duration_sim_s: float,
        *,
        return_code: int = CONNACK_SERVER_UNAVAILABLE,
    ) -> None:
        await self.broker.hold_offline(
            client_id, duration_sim_s, tenant=self.tenant, return_code=return_code
        )

    async def release(self, client_id: str) -> None:
        await self.broker.release(client_id, tenant=self.tenant)

    async def disconnect(self, client_id: str) -> None:
        await self.broker.disconnect(client_id, tenant=self.tenant)

    async def redeliver(self, client_id: str) -> None:
        await self.broker.redeliver(client_id, tenant=self.tenant)

    async def duplicate_next(self, client_id: str, times: int = 1) -> None:
        await self.broker.duplicate_next(client_id, tenant=self.tenant, times=times)

    async def refuse_next_connects(
        self, count: int, return_code: int = CONNACK_SERVER_UNAVAILABLE
    ) -> None:
        await self.broker.refuse_next_connects(count, tenant=self.tenant, return_code=return_code)

    async def begin_outage(self, return_code: int = CONNACK_SERVER_UNAVAILABLE) -> None:
        await self.broker.begin_outage(tenant=self.tenant, return_code=return_code)

    async def end_outage(self) -> None:
        await self.broker.end_outage(tenant=self.tenant)

    def present_impostors(self, kinds: list[ImpostorKind]) -> None:
        self.broker.present_impostors(kinds)

    def stop_impostors(self) -> int:
        return self.broker.stop_impostors()

    def drop_before_puback(self, client_id: str | None = None, times: int = 1) -> None:
        self.broker.drop_before_puback(client_id, times=times)

    def connections(self, *, open_only: bool = False) -> list[ConnectionView]:
        """The SUT tenant's connections (every one kept), oldest first."""
        return self.broker.connections(self.tenant, open_only=open_only)

    def wait_for(self, predicate: Callable[[list[ConnectionView]], Any], timeout: float) -> Any:
        """Block until ``predicate`` holds for the SUT tenant's connections, at most
        ``timeout`` real seconds; return its last value."""
        return self.broker.wait_for(
            lambda views: predicate([v for v in views if v.tenant == self.tenant.tenant_id]),
            timeout,
        )

    async def sessions(self) -> list[SessionView]:
        return await self.broker.sessions(self.tenant)


async def start(run: VendorRun) -> IvantiSim:
    settings: IvantiSettings = run.settings or IvantiSettings()
    section = run.section if isinstance(run.section, IvantiSection) else None
    style = section.topic_style if section is not None else settings.topic_style
    consumes = tuple(section.consumes) if section is not None else tuple(EVENT_TYPES)
    fault_log = FaultLog(ACTOR)
    policy = BrokerPolicy(
        duplicate_client_id=settings.duplicate_client_id,
        redelivery_timeout_s=settings.redelivery_timeout_s,
    )
    # Event timestamps are the vendor's wall clock: now, moving with simulated time.
    epoch_ms = round((time.time() - run.clock.now()) * 1000)
    broker = IvantiBroker(
        run.clock,
        run.recorder,
        run.pki,
        port=settings.broker_port,
        policy=policy,
        epoch_ms=epoch_ms,
        fault_log=fault_log,
    )
    tenant = broker.add_tenant(SUT_TENANT, style)
    login = broker.login(tenant, SUT_LOGIN)
    cps = CpsServer(broker, run.clock, run.recorder, port=settings.cps_port, fault_log=fault_log)
    await broker.start()
    try:
        await cps.start()
    except BaseException:
        await broker.stop()
        raise
    sim = IvantiSim(broker, cps, settings, section, tenant, login, consumes)
    if run.section is None and settings.events_per_s > 0:  # standalone: the vendor's own traffic
        sim._tasks.spawn(
            broker.generate(tenant, settings.events_per_s, consumes), "event generator"
        )
    return sim
