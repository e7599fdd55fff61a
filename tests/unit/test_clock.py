"""simulators.clock: simulated time = real time + offset; advance() wakes sleepers."""

from __future__ import annotations

import asyncio
import threading

import pytest

from simulators.clock import Clock


class FakeReal:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_now_follows_real_time_plus_offset() -> None:
    real = FakeReal()
    clock = Clock(_real=real)
    assert clock.now() == 0.0
    real.t += 2.5
    assert clock.now() == 2.5
    assert clock.advance(60) == 62.5
    assert clock.offset == 60
    assert clock.real() == 2.5


def test_time_cannot_go_backwards() -> None:
    with pytest.raises(ValueError, match="backwards"):
        Clock().advance(-1)


def test_advance_wakes_a_sleeper_at_once() -> None:
    async def scenario() -> float:
        clock = Clock()
        loop = asyncio.get_running_loop()
        sleeper = asyncio.ensure_future(clock.sleep(3 * 3600))  # 3 hours of vendor time
        await asyncio.sleep(0)
        started = loop.time()
        clock.advance(3 * 3600)
        await asyncio.wait_for(sleeper, timeout=2)
        return loop.time() - started

    assert asyncio.run(scenario()) < 1.0


def test_sleeper_keeps_waiting_when_advance_falls_short() -> None:
    async def scenario() -> bool:
        clock = Clock()
        sleeper = asyncio.ensure_future(clock.sleep(300))
        await asyncio.sleep(0)
        clock.advance(100)
        await asyncio.sleep(0.05)
        still_waiting = not sleeper.done()
        clock.advance(200)
        await asyncio.wait_for(sleeper, timeout=2)
        return still_waiting

    assert asyncio.run(scenario())


class RacyClock(Clock):
    """A clock on which another thread calls ``advance`` right after the sleeper's first read of
    ``now()``: the interleaving that used to lose the wake-up (the sleeper read the time, then
    registered its waker, and waited the whole stale remainder in real seconds)."""

    def __init__(self, jump: float) -> None:
        super().__init__()
        self.jump = jump
        self.armed = False

    def now(self) -> float:
        value = super().now()
        if self.armed:
            self.armed = False
            other = threading.Thread(target=self.advance, args=(self.jump,))
            other.start()
            other.join()
        return value


def test_an_advance_between_reading_the_time_and_waiting_is_not_lost() -> None:
    async def scenario() -> float:
        clock = RacyClock(jump=3600)
        loop = asyncio.get_running_loop()
        clock.armed = True
        started = loop.time()
        await asyncio.wait_for(clock.sleep_until(clock.offset + 3600), timeout=5)
        return loop.time() - started

    assert asyncio.run(scenario()) < 1.0


def test_autojump_is_scoped_to_its_context() -> None:
    """Inside ``autojump()`` (and tasks started there) a sleeper jumps the clock; elsewhere it
    waits for real time or an ``advance``."""

    async def scenario() -> tuple[float, bool]:
        clock = Clock()
        outside = asyncio.ensure_future(clock.sleep(600))
        with clock.autojump():
            inside = asyncio.ensure_future(clock.sleep(300))  # inherits the context
        await asyncio.wait_for(inside, timeout=2)
        jumped = clock.offset
        await asyncio.sleep(0.05)
        waiting = not outside.done()
        outside.cancel()
        return jumped, waiting

    jumped, outside_still_waiting = asyncio.run(scenario())
    assert 299 < jumped <= 300
    assert outside_still_waiting and not Clock.autojumping()


def test_a_day_of_simulated_time_never_fires_a_real_time_rule() -> None:
    """The SUT's own timers are judged in real time: advancing 24 h while a real-time deadline
    (here 0.3 s) is pending fires nothing early, and simulated sleepers all wake."""

    async def scenario() -> tuple[float, bool]:
        clock = Clock()
        loop = asyncio.get_running_loop()
        started = loop.time()
        real_rule = asyncio.ensure_future(clock.sleep_real(0.3))
        vendor_wait = asyncio.ensure_future(clock.sleep(3 * 3600))
        await asyncio.sleep(0)
        clock.advance(24 * 3600)
        await asyncio.wait_for(vendor_wait, timeout=2)
        early = real_rule.done()
        await real_rule
        return loop.time() - started, early

    elapsed, fired_early = asyncio.run(scenario())
    assert not fired_early
    assert elapsed >= 0.3
