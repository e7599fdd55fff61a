"""simulators.clock: simulated time = real time + offset; advance() wakes sleepers."""

from __future__ import annotations

import asyncio

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
