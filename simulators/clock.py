"""The one simulated clock every simulator reads (architecture.md, "Simulated time").

Simulated time is real monotonic time plus an offset. ``advance(seconds)`` moves the offset
forward and wakes every sleeper, so a retry due at +300 s fires at once instead of after five
real minutes, while the system under test keeps running in real time against real sockets.

Cores never read this clock: they take ``now`` as an argument and answer with deadlines.
Adapters call :meth:`Clock.now` and :meth:`Clock.sleep_until`.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable

__all__ = ["Clock"]


class Clock:
    """Simulated time = real monotonic time + offset; thread-safe.

    ``advance`` may be called from any thread (a pytest check drives simulators that run in a
    background event loop); sleepers in any event loop are woken to re-check their deadline.
    """

    def __init__(self, *, start: float = 0.0, _real: Callable[[], float] = time.monotonic) -> None:
        self._real = _real  # kept as an attribute so that tests can substitute a fake real clock
        self._lock = threading.Lock()
        self._origin = _real()
        self._offset = start
        self._wakers: set[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = set()

    # Reads take no lock: the offset is one float, replaced atomically; advance() only adds.

    def now(self) -> float:
        """Simulated seconds since the clock was made (plus ``start``)."""
        return self._real() - self._origin + self._offset

    def readings(self) -> tuple[float, float]:
        """``(real(), now())`` read at one instant."""
        real = self._real() - self._origin
        return real, real + self._offset

    def real(self) -> float:
        """Real monotonic seconds since the clock was made."""
        return self._real() - self._origin

    @property
    def offset(self) -> float:
        """How far simulated time runs ahead of real time, in seconds."""
        return self._offset

    def advance(self, seconds: float) -> float:
        """Jump simulated time forward and wake every sleeper; return the new ``now()``."""
        if seconds < 0:
            raise ValueError("time can't go backwards")
        with self._lock:
            self._offset += seconds
            wakers = list(self._wakers)
        for loop, event in wakers:
            if not loop.is_closed():
                loop.call_soon_threadsafe(event.set)
        return self.now()

    async def sleep_until(self, deadline: float) -> None:
        """Return once simulated time reaches ``deadline`` (real time or ``advance``)."""
        loop = asyncio.get_running_loop()
        while (remaining := deadline - self.now()) > 0:
            event = asyncio.Event()
            key = (loop, event)
            with self._lock:
                self._wakers.add(key)
            try:
                await asyncio.wait_for(event.wait(), timeout=remaining)
            except TimeoutError:
                pass
            finally:
                with self._lock:
                    self._wakers.discard(key)

    async def sleep(self, seconds: float) -> None:
        """Sleep ``seconds`` of simulated time."""
        await self.sleep_until(self.now() + seconds)
