"""Device traffic of a standalone simulator (``conformance-sim serve pelion``): a few simulated
devices that register and change their resources on their own, so an integrator sees real
notifications while developing (docs/sut-contract.md §6).

:data:`DEMO_DEVICES` register at start; then, about ``events_per_s`` times a second (simulated
time), one device acts, in a fixed rotation:

- most steps change a resource value: the counter ``/3200/0/5501`` (text/plain) and the
  temperature ``/3303/0/5700`` (text/plain) of the first two devices, the humidity
  ``/3304/0/5700`` (OMA-TLV) of the second → a ``notifications`` item for every key
  subscribed to it (none until an application subscribes: ``PUT
  /v2/subscriptions/{device}/{path}`` or a pre-subscription);
- every 15th step the second device updates its registration (``reg-updates``);
- every 20th step the third device leaves: it de-registers, or every other time its
  registration expires (``de-registrations`` / ``registrations-expired``), and registers again
  at the next step (``registrations``). Registration events go to every key's channel.

The first device never re-registers, so a manual subscription to it lasts.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from simulators.pelion.devices import TLV, Resource
from simulators.pelion.simulator import PelionSimulator

__all__ = ["DEMO_DEVICES", "DemoTraffic"]

# 32-hex device ids, fixed so that a developer's configuration keeps working from run to run.
DEMO_DEVICES: tuple[str, ...] = (
    "016f1c2e7a0000000000000100100001",  # a counter and a thermometer (text/plain)
    "016f1c2e7a0000000000000100100002",  # a thermometer and a hygrometer (TLV); updates
    "016f1c2e7a0000000000000100100003",  # comes and goes
)


def _resources(index: int) -> list[Resource]:
    base = [
        Resource("/3/0/0", "Conformance Ltd", rt="Manufacturer", obs=False),
        Resource("/3/0/1", f"Demo device {index + 1}", rt="Model", obs=False),
    ]
    if index == 0:
        return [
            *base,
            Resource("/3200/0/5501", 0, rt="Digital Input Counter"),
            Resource("/3303/0/5700", 21.5, rt="Temperature"),
        ]
    if index == 1:
        return [
            *base,
            Resource("/3303/0/5700", 19.0, rt="Temperature"),
            Resource("/3304/0/5700", 40, rt="Humidity", ct=TLV),
        ]
    return [*base, Resource("/3200/0/5501", 0, rt="Digital Input Counter")]


class DemoTraffic:
    """Drives :data:`DEMO_DEVICES` of one simulator (run :meth:`run` as a task)."""

    def __init__(
        self,
        sim: PelionSimulator,
        events_per_s: float = 1.0,
        *,
        devices: Sequence[str] = DEMO_DEVICES,
        seed: int = 7,
    ) -> None:
        if events_per_s <= 0:
            raise ValueError("events_per_s must be positive")
        self.sim = sim
        self.interval_s = 1.0 / events_per_s
        self.devices = list(devices)
        self.random = random.Random(seed)
        self.step = 0
        self._away = False

    async def start(self) -> None:
        """Add the devices and register them."""
        for index, ep in enumerate(self.devices):
            if ep not in self.sim.devices.devices:
                self.sim.add_device(ep, resources=_resources(index), ept="demo-sensor")
            await self.sim.register(ep)

    async def run(self) -> None:
        await self.start()
        while True:
            await self.sim.clock.sleep(self.interval_s)
            await self.act()

    async def act(self) -> None:
        """One step of the rotation."""
        self.step += 1
        step, sim, rnd = self.step, self.sim, self.random
        first, second, third = self.devices[0], self.devices[1], self.devices[-1]
        if self._away:
            self._away = False
            await sim.register(third)
        elif step % 20 == 0:
            self._away = True
            if (step // 20) % 2:
                await sim.deregister(third)
            else:
                await sim.expire(third)
        elif step % 15 == 0:
            await sim.update_registration(second)
        elif step % 3 == 0:
            value = round(18 + rnd.random() * 6, 1)
            await sim.set_value(second, "/3303/0/5700", value)
            await sim.set_value(second, "/3304/0/5700", rnd.randint(30, 60))
        elif step % 3 == 1:
            counter = sim.devices.devices[first].resources["/3200/0/5501"]
            await sim.set_value(first, "/3200/0/5501", int(counter.value or 0) + 1)
        else:
            await sim.set_value(first, "/3303/0/5700", round(20 + rnd.random() * 3, 1))
