"""simulators.adapter: the deadline loop, background tasks in the fault log, the bounded wait."""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass, field

from simulators.adapter import LOOK_AGAIN_S, BackgroundTasks, DeadlineLoop, StateChanges
from simulators.clock import Clock
from simulators.faultlog import FaultLog


async def settle() -> None:
    """Let every ready task run (a few turns of the loop; no time passes)."""
    for _ in range(10):
        await asyncio.sleep(0)


@dataclass
class Alarms:
    """A core with timers: each alarm fires once, at or after its time."""

    due: list[float] = field(default_factory=list)
    calls: int = 0

    def next_deadline(self) -> float | None:
        return min(self.due, default=None)

    def handle_timeout(self, now: float) -> list[float]:
        self.calls += 1
        fired = [t for t in self.due if t <= now]
        self.due = [t for t in self.due if t > now]
        return fired


def test_the_loop_fires_at_the_simulated_deadline_and_carries_out_what_is_due() -> None:
    async def scenario() -> list[float]:
        clock = Clock()
        core = Alarms(due=[3600.0, 7200.0])
        fired: list[float] = []
        got = asyncio.Event()

        def carry_out(out: list[float]) -> None:
            fired.extend(out)
            if out:
                got.set()

        task = asyncio.ensure_future(DeadlineLoop(clock, core, carry_out).run())
        await settle()
        assert core.calls == 1 and fired == []  # nothing due yet, and no real hour passes
        clock.advance(3600)
        await asyncio.wait_for(got.wait(), timeout=2)
        task.cancel()
        return fired

    assert asyncio.run(scenario()) == [3600.0]


def test_a_wake_from_another_thread_makes_the_loop_read_a_new_deadline() -> None:
    async def scenario() -> list[float]:
        clock = Clock()
        core = Alarms()
        fired: list[float] = []
        got = asyncio.Event()

        def carry_out(out: list[float]) -> None:
            fired.extend(out)
            if out:
                got.set()

        timers = DeadlineLoop(clock, core, carry_out)
        task = asyncio.ensure_future(timers.run())
        await settle()  # asleep with no deadline at all
        core.due.append(clock.now())  # due at once, but the loop does not know yet
        await asyncio.to_thread(timers.wake)
        await asyncio.wait_for(got.wait(), timeout=2)
        task.cancel()
        return fired

    assert len(asyncio.run(scenario())) == 1


def test_rearm_wakes_the_loop_only_when_the_deadline_moved() -> None:
    async def scenario() -> int:
        clock = Clock()
        core = Alarms(due=[3600.0])
        timers = DeadlineLoop(clock, core)
        task = asyncio.ensure_future(timers.run())
        await settle()
        before = core.calls
        timers.rearm()  # the same deadline: no wake-up
        await settle()
        assert core.calls == before
        core.due.append(60.0)
        timers.rearm()
        await settle()
        task.cancel()
        return core.calls - before

    assert asyncio.run(scenario()) == 1


def test_a_deadline_the_core_cannot_act_on_is_looked_at_again_not_spun_on() -> None:
    @dataclass
    class Stuck:
        fourth_call: asyncio.Event
        calls: int = 0

        def next_deadline(self) -> float | None:
            return 0.0  # due since the start: waiting on I/O the core does not own

        def handle_timeout(self, now: float) -> None:
            self.calls += 1
            if self.calls == 4:
                self.fourth_call.set()

    async def scenario() -> float:
        clock = Clock()
        core = Stuck(asyncio.Event())
        started = clock.real()
        task = asyncio.ensure_future(DeadlineLoop(clock, core).run())
        await asyncio.wait_for(core.fourth_call.wait(), timeout=2)
        task.cancel()
        return clock.real() - started

    assert asyncio.run(scenario()) >= 3 * LOOK_AGAIN_S * 0.9


def test_a_background_task_that_raises_is_written_to_the_fault_log_where_it_ran() -> None:
    async def scenario() -> asyncio.Task[None]:
        tasks = BackgroundTasks(FaultLog("sim"))

        async def fails() -> None:
            raise RuntimeError("lost otherwise")

        async def forever() -> None:
            await asyncio.Event().wait()

        failing = tasks.spawn(fails(), "deadline loop")
        waiting = tasks.spawn(forever(), "keep-alive watch")
        await asyncio.gather(failing, return_exceptions=True)
        await settle()
        (error,) = tasks.fault_log.errors()
        assert error.startswith("sim: deadline loop: RuntimeError: lost otherwise")
        await tasks.cancel()
        return waiting

    assert asyncio.run(scenario()).cancelled()


def test_wait_for_returns_the_predicates_value_once_a_change_is_notified() -> None:
    changes = StateChanges(Clock())
    state: list[int] = []

    def writer() -> None:
        for n in range(5):
            with changes:
                state.append(n)
                changes.notify_all()

    thread = threading.Timer(0.01, writer)
    thread.start()
    got = changes.wait_for(lambda: len(state) >= 5 and list(state), timeout=5)
    thread.join()
    assert got == [0, 1, 2, 3, 4]


def test_wait_for_returns_the_last_falsy_value_when_time_runs_out() -> None:
    changes = StateChanges(Clock())
    clock = Clock()
    started = clock.real()
    assert changes.wait_for(lambda: [], timeout=0.05) == []
    assert clock.real() - started >= 0.05
    assert changes.wait_for(lambda: 0, timeout=0) == 0


def test_the_predicate_runs_outside_the_lock() -> None:
    """A predicate may call into code that takes the lock in another thread (Pelion's
    channel_state asks the event loop, whose writers hold the lock)."""
    changes = StateChanges(Clock())

    def locked_elsewhere() -> bool:
        done = threading.Event()

        def take() -> None:
            with changes:
                done.set()

        threading.Thread(target=take).start()
        return done.wait(timeout=2)

    assert changes.wait_for(locked_elsewhere, timeout=5) is True


def test_look_again_sees_a_change_nobody_notified() -> None:
    changes = StateChanges(Clock(), look_again_s=0.01)
    flag = threading.Event()
    threading.Timer(0.02, flag.set).start()
    assert changes.wait_for(flag.is_set, timeout=5) is True
