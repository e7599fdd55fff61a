"""The simulators outside a conformance run: one clock, one evidence log, the observer and the
vendors' simulators, driven by typed operations (docs/sut-contract.md §6).

``conformance-sim serve`` and the pytest fixtures (:mod:`conformance.sim_fixtures`) start a
:class:`Simulation`; the control plane (:mod:`conformance.control`) and the fixtures' Python
calls reach its powers through :meth:`Simulation.parse` and :meth:`Simulation.perform`, which
hand each operation to the running vendor's ``perform``: a power is written once, in the
vendor's ``simulators/<vendor>/operations.py``.
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, TypeAdapter

from conformance.observer import Observer, Route
from conformance.vendors import RunningVendor, VendorRun, discover
from simulators.clock import Clock
from simulators.evidence import EvidenceEvent, Recorder
from simulators.network import LOCAL, Reach
from simulators.operations import AdvanceClock, Operation
from simulators.pki import PKI

__all__ = ["EvidenceFeed", "Simulation"]

FEED_EVENTS = 10_000  # the evidence `GET /log` can still give (the oldest are cut first)


class EvidenceFeed:
    """The latest evidence as JSON objects, for readers that come and go (``ctl log``): a ring
    of ``limit`` events; a reader behind the ring is told how many it missed. Filled from any
    thread; readers wait in the event loop."""

    def __init__(self, limit: int = FEED_EVENTS) -> None:
        self._lock = threading.Lock()
        self._events: deque[dict[str, Any]] = deque(maxlen=limit)
        self._next = 0  # the seq the next event gets
        self._waiters: set[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = set()
        self._seen = threading.Condition(self._lock)

    def add(self, event: EvidenceEvent) -> None:
        data = event.to_json()
        with self._lock:
            data["seq"] = self._next
            self._next += 1
            self._events.append(data)
            waiters = list(self._waiters)
            self._seen.notify_all()
        for loop, ready in waiters:
            loop.call_soon_threadsafe(ready.set)

    def since(self, seq: int) -> tuple[list[dict[str, Any]], int, int]:
        """The events from ``seq`` on, how many of those were cut, and the next seq."""
        with self._lock:
            first = self._next - len(self._events)
            start = max(seq, first)
            events = list(self._events)[start - first :] if start < self._next else []
            return events, max(0, first - seq), self._next

    @property
    def next_seq(self) -> int:
        with self._lock:
            return self._next

    async def wait_beyond(self, seq: int, timeout: float) -> bool:
        """Wait (at most ``timeout`` real seconds) until an event with ``seq`` or later exists."""
        ready = asyncio.Event()
        waiter = (asyncio.get_running_loop(), ready)
        with self._lock:
            if self._next > seq:
                return True
            self._waiters.add(waiter)
        try:
            await asyncio.wait_for(ready.wait(), timeout)
            return True
        except TimeoutError:
            return False
        finally:
            with self._lock:
                self._waiters.discard(waiter)

    def wait_any(self, seq: int, timeout: float) -> int:
        """From another thread: block until an event with ``seq`` or later exists, at most
        ``timeout`` real seconds; the next seq."""
        with self._seen:
            self._seen.wait_for(lambda: self._next > seq, timeout)
            return self._next


@dataclass
class Simulation:
    """The observer and the named vendors' simulators on one simulated clock."""

    pki_dir: Path
    reach: Reach = LOCAL  # --listen, --advertise
    observer_port: int = 0
    sink: Callable[[EvidenceEvent], None] | None = None  # e.g. the standalone log
    clock: Clock = field(default_factory=Clock)
    feed: EvidenceFeed = field(default_factory=EvidenceFeed)
    running: dict[str, RunningVendor] = field(default_factory=dict)
    _adapters: dict[str, TypeAdapter[Any]] = field(default_factory=dict)
    observer: Observer | None = None

    def __post_init__(self) -> None:
        self.pki = PKI.load_or_create(self.pki_dir, self.reach.certificate_names)
        self.recorder = Recorder(
            self.clock, check_head=0, check_tail=0, run_head=0, run_tail=100, sink=self._record
        )

    def _record(self, event: EvidenceEvent) -> None:
        self.feed.add(event)
        if self.sink is not None:
            self.sink(event)

    async def start(self, vendors: list[str], settings: dict[str, Any]) -> None:
        """Start the observer (once) and each vendor not started yet."""
        if self.observer is None:
            routes = {
                name: Route(
                    discover()[name].observer_record_model(), discover()[name].observer_keys
                )
                for name in discover()
            }
            observer = Observer(
                self.clock, self.recorder, routes, port=self.observer_port, reach=self.reach
            )
            await observer.start()
            self.observer = observer
        for name in vendors:
            if name in self.running:
                continue
            run = VendorRun(
                self.clock, self.recorder, self.pki, self.observer.base_url, self.pki_dir,
                settings.get(name), None, reach=self.reach,
            )  # fmt: skip
            self.running[name] = await discover()[name].start(run)
            self._adapters[name] = TypeAdapter(
                Annotated[discover()[name].operation_model(), Field(discriminator="op")]
            )

    def environment(self) -> dict[str, str]:
        """The ``CONFORMANCE_*`` variables a SUT needs (docs/sut-contract.md §3)."""
        assert self.observer is not None, "start() first"
        env = {
            "CONFORMANCE_CA_FILE": str(self.pki.ca),
            "CONFORMANCE_OBSERVER_URL": self.observer.base_url,
            "CONFORMANCE_SUT_CERT_FILE": str(self.pki.sut_server.cert),
            "CONFORMANCE_SUT_KEY_FILE": str(self.pki.sut_server.key),
        }
        for running in self.running.values():
            env.update(running.environment())
        return env

    def operations(self, vendor: str) -> TypeAdapter[Any]:
        """The vendor's operations, told apart by ``op``; KeyError naming the vendors served."""
        try:
            return self._adapters[vendor]
        except KeyError:
            raise KeyError(
                f"{vendor!r} is not served here (served: {', '.join(self.running) or 'none'})"
            ) from None

    def parse(self, vendor: str, data: Any) -> Operation:
        """An operation of ``vendor`` from JSON-like data; pydantic's ValidationError names the
        field and what is wrong."""
        operation: Operation = self.operations(vendor).validate_python(data)
        return operation

    async def perform(self, vendor: str, operation: Operation) -> Any:
        """Carry out ``operation`` on ``vendor``'s simulators; its evidence says so."""
        running = self.running[vendor]
        self.recorder.record("control", "->", vendor, "operation", operation.describe())
        return await running.perform(operation)

    async def advance(self, seconds: float) -> float:
        """Advance the one simulated clock every vendor reads; the new simulated time."""
        operation = AdvanceClock(seconds=seconds)
        self.recorder.record("control", "--", "clock", "operation", operation.describe())
        return await operation.apply(self)

    async def reset(self) -> dict[str, Any]:
        """Each vendor's ``reset`` operation: what earlier operations armed is disarmed."""
        return {
            name: await self.perform(name, self.parse(name, {"op": "reset"}))
            for name in self.running
        }

    def errors(self) -> list[str]:
        return [error for running in self.running.values() for error in running.errors()]

    async def stop(self) -> None:
        for running in reversed(list(self.running.values())):
            await running.stop()
        if self.observer is not None:
            await self.observer.stop()
