"""A running Ivanti simulator for the tests: the plug-in's own ``start`` in a background event
loop (as in a conformance run), with helpers to publish, advance time, read the packet log and
point third-party peers at it."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TypeVar

from conformance.ivanti.running import RunningIvanti, start
from conformance.ivanti.section import IvantiSection
from conformance.ivanti.vendor import IvantiSettings
from conformance.vendors import VendorRun
from simulators.clock import Clock
from simulators.evidence import Recorder
from simulators.ivanti.broker import Login, Published, Tenant
from simulators.ivanti.operations import IvantiTarget, Publish
from simulators.loop import LoopThread
from simulators.mqtt.packetlog import ConnectionView
from simulators.operations import Applies
from simulators.pki import PKI
from tests.sim.ivanti_peers import Target

T = TypeVar("T")
R = TypeVar("R")
_ids = itertools.count(1)


@dataclass
class IvantiEnv:
    sim: RunningIvanti
    loop: LoopThread
    clock: Clock
    recorder: Recorder
    pki: PKI

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 30.0) -> T:
        return self.loop.run(coro, timeout)

    @property
    def tenant(self) -> Tenant:
        return self.sim.tenant

    @property
    def port(self) -> int:
        return self.sim.broker.port

    def publish(self, event: str | None = "device_check_in", **kwargs: Any) -> Published:
        return self.perform(Publish(event_type=event, **kwargs))

    def perform(self, operation: Applies[IvantiTarget, R]) -> R:
        """One operation on the SUT tenant, in the simulators' loop."""
        return self.run(self.sim.perform(operation))

    def login(self, name: str, tenant: Tenant | None = None) -> Login:
        return self.sim.broker.login(tenant or self.tenant, name)

    def target(
        self,
        client_id: str | None = None,
        *,
        login: Login | None = None,
        topic: str | None = None,
        **fields: Any,
    ) -> Target:
        """Where a peer connects as ``login`` (default: the SUT's), subscribing to every topic of
        the login's tenant (``<tenant>/device/#`` or ``device/#``)."""
        login = login or self.sim.login
        tenant = login.tenant
        return Target(
            host="127.0.0.1",
            port=self.port,
            ca=self.pki.ca,
            cert=login.cert.cert,
            key=login.cert.key,
            client_id=client_id or f"peer-{next(_ids)}",
            topic=topic or f"{tenant.prefix}device/#",
            **fields,
        )

    def views(self, client_id: str) -> list[ConnectionView]:
        return [c for c in self.sim.broker.connections() if c.client_id == client_id]

    def wait_for(
        self, predicate: Callable[[list[ConnectionView]], Any], timeout: float = 15.0
    ) -> Any:
        result = self.sim.broker.wait_for(predicate, timeout)
        assert result, f"timed out after {timeout} s; connections: {self.sim.broker.connections()}"
        return result

    def poll(self, condition: Callable[[], Any], timeout: float = 15.0) -> Any:
        """Check ``condition`` every 20 ms until it holds (bounded), for state that has no
        event to wait on (the core's sessions, the evidence)."""
        deadline = self.clock.real() + timeout
        while not (result := condition()) and self.clock.real() < deadline:
            threading.Event().wait(0.02)
        assert result, f"condition not met within {timeout} s"
        return result

    def wait_subscribed(self, client_id: str, timeout: float = 15.0) -> ConnectionView:
        """The open connection of ``client_id`` once its SUBACK went out."""
        views: list[ConnectionView] = self.wait_for(
            lambda cs: [c for c in cs if c.client_id == client_id and c.open and c.subscriptions],
            timeout,
        )
        return views[-1]

    def wait_connected(self, client_id: str, timeout: float = 15.0) -> ConnectionView:
        views: list[ConnectionView] = self.wait_for(
            lambda cs: [c for c in cs if c.client_id == client_id and c.open and c.accepted],
            timeout,
        )
        return views[-1]

    def wait_closed(self, client_id: str, timeout: float = 15.0) -> None:
        self.wait_for(
            lambda cs: (
                [c for c in cs if c.client_id == client_id]
                and not [c for c in cs if c.client_id == client_id and c.open]
            ),
            timeout,
        )

    def wait_acked(self, client_id: str, count: int, timeout: float = 15.0) -> ConnectionView:
        """The latest connection of ``client_id`` once ``count`` of its PUBLISHes are acked."""
        views: list[ConnectionView] = self.wait_for(
            lambda cs: [
                c
                for c in cs
                if c.client_id == client_id
                and sum(a.acked_real_s is not None for a in c.acks()) >= count
            ],
            timeout,
        )
        return views[-1]


@contextmanager
def ivanti_env(pki_dir: Path, **settings: Any) -> Iterator[IvantiEnv]:
    """A broker and CPS API as a conformance run starts them (no generated traffic unless
    ``events_per_s`` is given and ``section`` is None)."""
    pki = PKI.load_or_create(pki_dir)
    clock = Clock()
    recorder = Recorder(clock)
    loop = LoopThread("ivanti-test")
    section = settings.pop("section", IvantiSection())
    chosen = replace(IvantiSettings(events_per_s=0), **settings)
    run = VendorRun(clock, recorder, pki, "http://127.0.0.1:9", pki_dir, chosen, section)
    sim = loop.run(start(run))
    env = IvantiEnv(sim, loop, clock, recorder, pki)
    try:
        yield env
    finally:
        try:
            loop.run(sim.stop())
        finally:
            loop.stop()
        assert sim.errors() == [], sim.errors()
