"""The simulated devices as a check drives them (vendor doc, "Notifications": registrations,
registration updates, de-registrations, expiries and resource changes become items on the
channels of the subscribed keys)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from simulators.clock import Clock
from simulators.pelion.channels import ItemQueued
from simulators.pelion.config import PelionConfig
from simulators.pelion.devices import (
    DEFAULT_RESPONSE_DELAY_S,
    TLV,
    Device,
    Resource,
    Value,
)
from simulators.pelion.models import Event, Kind, Outgoing
from simulators.pelion.schedule import Schedule

__all__ = ["DeviceControl", "standard_resources"]


def standard_resources() -> list[Resource]:
    """A device's usual LwM2M resources: text/plain ones and an OMA-TLV one."""
    return [
        Resource("/3/0/0", "Conformance Ltd", rt="Manufacturer", obs=False),
        Resource("/3/0/1", "Simulated sensor", rt="Model", obs=False),
        Resource("/3200/0/5501", 0, rt="Digital Input Counter"),
        Resource("/3303/0/5700", 21.5, rt="Temperature"),
        Resource("/3304/0/5700", 40, rt="Humidity", ct=TLV),
    ]


class DeviceControl:
    """What devices do, as a check asks: each step routes its events to the channels."""

    def __init__(self, schedule: Schedule, config: PelionConfig) -> None:
        self.schedule = schedule
        self.clock: Clock = schedule.clock
        self.config = config
        self._uid_seq = 0

    def add_device(
        self,
        ep: str | None = None,
        *,
        resources: Iterable[Resource] | None = None,
        ept: str = "default",
        original_ep: str | None = None,
        lifetime_s: float | None = None,
        queue_mode: bool = False,
        response_delay_s: float = DEFAULT_RESPONSE_DELAY_S,
    ) -> Device:
        """Make a device known (not registered yet). Without ``resources`` it has
        :func:`standard_resources` (text/plain and TLV)."""
        if ep is None:
            self._uid_seq += 1
            ep = f"0172b9ba5409{self._uid_seq:020x}"
        device = Device(
            ep,
            ept=ept,
            resources={r.path: r for r in (resources or standard_resources())},
            original_ep=original_ep,
            q=queue_mode,
            lifetime_s=lifetime_s,
            response_delay_s=response_delay_s,
        )
        return self.schedule.in_loop(lambda: self.schedule.devices.add(device))

    async def register(self, ep: str) -> list[ItemQueued]:
        """The device registers: a ``registrations`` item on every key's channel."""
        return self.schedule.route(
            self.schedule.devices.register(ep, self.clock.now()), f"{ep} registered"
        )

    async def update_registration(
        self, ep: str, resources: Iterable[Resource] | None = None
    ) -> list[ItemQueued]:
        """A registration update: a ``reg-updates`` item on every key's channel."""
        out = self.schedule.devices.update_registration(ep, self.clock.now(), resources=resources)
        return self.schedule.route(out, f"{ep} updated its registration")

    async def deregister(self, ep: str) -> list[ItemQueued]:
        """The device de-registers: a ``de-registrations`` item on every key's channel."""
        return self.schedule.route(
            self.schedule.devices.deregister(ep, self.clock.now()), f"{ep} de-registered"
        )

    async def expire(self, ep: str) -> list[ItemQueued]:
        """The registration expires: a ``registrations-expired`` item on every key's channel."""
        return self.schedule.route(
            self.schedule.devices.expire(ep, self.clock.now()), f"{ep} expired"
        )

    async def set_value(self, ep: str, path: str, value: Value) -> list[ItemQueued]:
        """A resource changes: a ``notifications`` item for every key subscribed to it."""
        out = self.schedule.devices.set_value(ep, path, value, self.clock.now())
        return self.schedule.route(out, f"{ep}{path} = {value!r}")

    def subscribe(self, ep: str, path: str, key: str | None = None) -> None:
        """Subscribe ``key`` (default: the run's) to a resource, as ``PUT
        /v2/subscriptions/{ep}/{path}`` does."""
        self.schedule.in_loop(
            lambda: self.schedule.devices.subscribe(key or self.config.api_key, ep, path)
        )

    async def inject(
        self,
        kind: Kind,
        bodies: Iterable[Mapping[str, Any]],
        *,
        key: str | None = None,
        original_ep: str | None = None,
    ) -> list[ItemQueued]:
        """Queue raw items of ``kind`` on ``key``'s channel (default: the run's), whatever the
        devices and subscriptions: unknown fields, odd values, 10,000 items at once. A body
        needs ``ep`` (``id`` for ``async-responses``); ``uid`` and ``timestamp`` are added by
        serialization v2, so leave them out."""
        events = [Event(kind, body, original_ep) for body in bodies]
        return await self.queue(events, key=key, what=f"{len(events)} {kind} injected")

    async def queue(
        self, events: Iterable[Event], *, key: str | None = None, what: str = "events queued"
    ) -> list[ItemQueued]:
        """Queue ready-made events on ``key``'s channel (default: the run's)."""
        target = key or self.config.api_key
        return self.schedule.route([Outgoing(event, target) for event in events], what)
