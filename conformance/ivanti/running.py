"""The Ivanti simulators of one run: :class:`RunningIvanti` composes the broker, the CPS API and
the impostors, and binds the operations a check uses to the SUT's tenant.

Checks act through typed operations (:mod:`simulators.ivanti.operations`), run in the
simulators' loop: ``harness.run(sim.perform(Publish(event_type="device_check_in")))``,
``sim.perform(HoldOffline(client_id=…, duration_sim_s=7200))``, ``sim.perform(BeginOutage())``.
Queries are plain calls from the check's thread: ``sim.connections(open_only=True)`` (a
``ConnectionView`` per connection: client id, clean session, keep-alive, subscriptions, packets
with DUP, QoS, sizes, real and simulated times), ``sim.wait_for(predicate, timeout)``,
``sim.cps.calls()``, ``sim.impostors[kind]``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

from conformance.ivanti.section import IvantiSection
from conformance.ivanti.vendor import IvantiSettings
from conformance.vendors import Endpoint, VendorRun
from simulators.adapter import BackgroundTasks
from simulators.faultlog import FaultLog
from simulators.ivanti.broker import (
    ACTOR,
    Impostor,
    ImpostorKind,
    IvantiBroker,
    Login,
    Tenant,
)
from simulators.ivanti.cps import CpsServer
from simulators.ivanti.events import EVENT_TYPES
from simulators.ivanti.operations import IvantiTarget
from simulators.mqtt.policy import BrokerPolicy
from simulators.mqtt.runfacts import ConnectionFacts
from simulators.mqtt.server import ConnectionView
from simulators.operations import Applies

__all__ = ["SUT_LOGIN", "SUT_TENANT", "RunningIvanti", "start"]

R = TypeVar("R")
SUT_TENANT = "sut"  # the SUT's tenant name (its GUID is stable from run to run)
SUT_LOGIN = "sut"  # the SUT's identity: sut@sut.ivanti.test


@dataclass
class RunningIvanti:
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

    async def first_contact(self) -> str | None:
        """Nothing to send: the SUT is the one that connects (its mistakes are the checks')."""
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

    @property
    def target(self) -> IvantiTarget:
        """What operations act on: the broker and the SUT's tenant."""
        return IvantiTarget(self.broker, self.tenant, self.consumes)

    async def perform(self, operation: Applies[IvantiTarget, R]) -> R:
        """Carry out one operation (:mod:`simulators.ivanti.operations`) on the SUT's tenant."""
        return await operation.apply(self.target)

    def connections(self, *, open_only: bool = False) -> list[ConnectionView]:
        """The SUT tenant's connections (every one kept), oldest first."""
        return self.broker.connections(self.tenant, open_only=open_only)

    def connection_facts(self) -> ConnectionFacts:
        """What the SUT tenant's connections did over the whole run, every one counted."""
        return self.broker.connection_facts(self.tenant)

    def wait_for(self, predicate: Callable[[list[ConnectionView]], Any], timeout: float) -> Any:
        """Block until ``predicate`` holds for the SUT tenant's connections, at most
        ``timeout`` real seconds; return its last value."""
        return self.broker.wait_for(
            lambda views: predicate([v for v in views if v.tenant == self.tenant.tenant_id]),
            timeout,
        )


async def start(run: VendorRun) -> RunningIvanti:
    settings: IvantiSettings = run.settings or IvantiSettings()
    section = run.section if isinstance(run.section, IvantiSection) else None
    style = section.topic_style if section is not None else settings.topic_style
    consumes = tuple(section.consumes) if section is not None else tuple(EVENT_TYPES)
    fault_log = FaultLog(ACTOR)
    policy = BrokerPolicy(redelivery_timeout_s=settings.redelivery_timeout_s)
    if settings.duplicate_client_id is not None:  # else the core's default
        policy = replace(policy, duplicate_client_id=settings.duplicate_client_id)
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
        reach=run.reach,
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
    sim = RunningIvanti(broker, cps, settings, section, tenant, login, consumes)
    if run.section is None and settings.events_per_s > 0:  # standalone: the vendor's own traffic
        sim._tasks.spawn(
            broker.generate(tenant, settings.events_per_s, consumes), "event generator"
        )
    return sim
