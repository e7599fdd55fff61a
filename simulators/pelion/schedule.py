"""The delivery schedule of the simulated service: the one owner of the cores
(:class:`~simulators.pelion.channels.ChannelRegistry`,
:class:`~simulators.pelion.devices.Devices`) and of what is under way (vendor doc, "The event
notification channel": one batch in flight per channel).

A scheduler task (a :class:`~simulators.adapter.DeadlineLoop` over
:meth:`Schedule.handle_timeout`) wakes at the cores' ``next_deadline()`` on the simulated
clock or when something changed, applies the timers and starts what is due through the
``start_due`` hook (the sending component). Effects (a socket to close, a poll to answer, a
channel removed) are carried out where they arise, through the hooks the facade wires.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable, Iterable
from typing import TypeVar

from simulators.adapter import BackgroundTasks, DeadlineLoop, StateChanges, sleep_until_woken
from simulators.clock import Clock
from simulators.evidence import CAUSE, RUN, Recorder
from simulators.pelion.channels import (
    ChannelOptions,
    ChannelRegistry,
    ChannelRemoved,
    Effect,
    ItemQueued,
    Undeliverable,
    Wake,
)
from simulators.pelion.config import ACTOR, PEER
from simulators.pelion.delivery import Batch, CloseSocket, PollAnswer
from simulators.pelion.devices import Devices
from simulators.pelion.models import Outgoing
from simulators.pelion.websocket import Connection

__all__ = ["Schedule"]

T = TypeVar("T")


def _nothing(*_: object) -> None:
    """A hook nobody wired."""


class Schedule:
    """The cores, the timers, and the count of what is under way (one owner each)."""

    def __init__(
        self,
        clock: Clock,
        recorder: Recorder,
        options: ChannelOptions,
        changed: StateChanges,
        tasks: BackgroundTasks,
    ) -> None:
        self.clock = clock
        self.recorder = recorder
        self.registry = ChannelRegistry(options)
        self.devices = Devices()
        self.changed = changed
        self.tasks = tasks
        self.timers = DeadlineLoop(clock, self)  # the scheduler
        self.busy = 0  # deliveries, verifications and poll answers under way
        self.sending: set[object] = set()  # channel cores with a batch in flight
        self.undeliverable = 0
        self._wakers: set[asyncio.Event] = set()  # drive() calls waiting for a poke
        self.loop: asyncio.AbstractEventLoop | None = None
        # Hooks the facade wires to the components.
        self.start_due: Callable[[float], None] = _nothing
        self.answer_poll: Callable[[PollAnswer], None] = _nothing
        self.forget_channel: Callable[[str], None] = _nothing

    def in_loop(self, fn: Callable[[], T]) -> T:
        """``fn()`` in the simulators' loop (at once when already there, or before start)."""
        loop = self.loop
        if loop is None or loop.is_closed():
            return fn()
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            return fn()

        async def call() -> T:
            return fn()

        return asyncio.run_coroutine_threadsafe(call(), loop).result(timeout=30)

    # --- timers --------------------------------------------------------------------------

    def poke(self) -> None:
        """Something changed: the scheduler and every :meth:`drive` look again."""
        for event in self._wakers:
            event.set()
        self.timers.wake()

    def handle_timeout(self, now: float) -> None:
        """Apply every timer due by ``now``, carry out the effects, start what is due."""
        out = self.devices.handle_timeout(now)
        if out:
            self._note_device_events(out)
            self.carry_out(self.registry.dispatch(out, now))
        effects = self.registry.handle_timeout(now)
        if effects:
            self.carry_out(effects)
        self.start_due(now)

    def next_deadline(self) -> float | None:
        """When :meth:`handle_timeout` next has work (a due time at or before now while a
        batch is in flight: the scheduler looks again shortly)."""
        deadlines = [d for d in (self.registry.next_deadline(), self.devices.next_deadline()) if d]
        return min(deadlines) if deadlines else None

    async def _wait(self, deadline: float | None, real_timeout: float | None) -> None:
        """Until ``deadline`` (simulated; jumps under autojump), a poke, or ``real_timeout``."""
        event = asyncio.Event()
        self._wakers.add(event)
        try:
            await sleep_until_woken(self.clock, event, deadline, real_timeout)
        finally:
            self._wakers.discard(event)

    async def drive(
        self,
        until: Callable[[], bool] | None = None,
        *,
        timeout_real_s: float = 60.0,
        max_sim_s: float | None = None,
    ) -> bool:
        """Run the schedule in the caller's context until ``until()`` holds (default:
        :meth:`idle`); False when ``timeout_real_s`` (real) ran out first. Jumps the clock only
        while nothing is under way and never past ``max_sim_s`` from the start
        (:meth:`simulators.pelion.simulator.PelionSimulator.drive`)."""
        predicate = until or self.idle
        start_real = self.clock.real()
        limit = None if max_sim_s is None else self.clock.now() + max_sim_s
        while True:
            self.handle_timeout(self.clock.now())
            if predicate():
                return True
            left = timeout_real_s - (self.clock.real() - start_real)
            if left <= 0:
                return False
            deadline = self.next_deadline()
            now = self.clock.now()
            jump = (
                self.busy == 0
                and deadline is not None
                and deadline > now
                and (limit is None or deadline <= limit)
            )
            await self._wait(deadline if jump else None, min(left, 0.05))

    def idle(self) -> bool:
        """No item queued on any channel, nothing in flight, no device request pending (a
        registration's lifetime running out is not pending work)."""
        if self.busy or self.sending:
            return False
        if any(self.devices.pending_requests(ep) for ep in self.devices.devices):
            return False
        return all(
            core is None or len(core.queue) == 0
            for core in (self.registry.core(k) for k in self.registry.keys())  # noqa: SIM118 (a method)
        )

    # --- what is under way ---------------------------------------------------------------

    def begin(self, core: object) -> None:
        """A batch of ``core`` is on its way (one per channel)."""
        self.sending.add(core)
        self.busy += 1

    def end(self, core: object) -> None:
        self.sending.discard(core)
        self.busy -= 1
        self.poke()

    def cause_of(self, batch: Batch) -> str:
        """The check that queued the batch's first (else last) item; the run otherwise."""
        for item in (batch.items[0], batch.items[-1]):
            cause = self.recorder.cause_of(item.uid)
            if cause is not None:
                return cause
        return RUN

    # --- effects -------------------------------------------------------------------------

    def carry_out(self, effects: Iterable[Effect]) -> list[ItemQueued]:
        """Carry out what the cores decided; return the items queued."""
        cause = CAUSE.get()
        queued: list[ItemQueued] = []
        lost: Counter[str] = Counter()
        wake = False
        for effect in effects:
            if type(effect) is ItemQueued:
                queued.append(effect)
                if cause != RUN:
                    self.recorder.remember_cause(effect.item.uid)
                wake = True
            elif isinstance(effect, Wake):
                wake = True
            elif isinstance(effect, PollAnswer):
                self.answer_poll(effect)
            elif isinstance(effect, CloseSocket):
                if isinstance(effect.socket, Connection):
                    effect.socket.close(int(effect.code), effect.reason)
            elif isinstance(effect, ChannelRemoved):
                self.forget_channel(effect.key)
                self.recorder.record(
                    ACTOR,
                    "--",
                    PEER,
                    "channel-removed",
                    f"{effect.mechanism} channel removed ({effect.reason}); "
                    f"{effect.dropped_items} queued item(s) dropped",
                    reason=effect.reason,
                    dropped=effect.dropped_items,
                )
            elif isinstance(effect, Undeliverable):
                lost[effect.event.kind] += 1
        if lost:
            self.undeliverable += sum(lost.values())
            self.recorder.record(
                ACTOR,
                "--",
                PEER,
                "undeliverable",
                "no channel for the key: lost " + ", ".join(f"{n} {k}" for k, n in lost.items()),
            )
        if wake:
            self.poke()
        return queued

    def _note_device_events(self, out: list[Outgoing]) -> None:
        kinds = Counter(o.event.kind for o in out)
        self.recorder.record(
            "devices",
            "--",
            ACTOR,
            "device-events",
            "devices: " + ", ".join(f"{n} {k}" for k, n in kinds.items()),
        )

    def route(self, out: list[Outgoing], what: str) -> list[ItemQueued]:
        """Queue device events on their channels, record it, start what is due."""
        now = self.clock.now()
        queued = self.carry_out(self.registry.dispatch(out, now))
        uids = [q.item.uid for q in queued[:3]]
        more = f" +{len(queued) - 3}" if len(queued) > 3 else ""
        self.recorder.record(
            "devices",
            "--",
            ACTOR,
            "queued",
            f"{what}: {len(queued)} item(s) queued (uid {', '.join(uids)}{more})"
            if queued
            else f"{what}: nothing queued (no channel or no subscriber)",
            uids=uids,
        )
        self.handle_timeout(self.clock.now())
        return queued
