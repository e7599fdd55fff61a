"""The one simulated clock every simulator reads (docs/architecture.md, "Simulated time").

Two kinds of time run through a conformance run, and they must never be mixed:

- **Simulated time** (``now()``, fields named ``*_sim_s`` or ``*_at``): vendor durations. A
  retry due at +300 s, a 3-hour retention window or a 24-hour channel removal pass through this
  clock. Simulated time is real monotonic time plus an offset; :meth:`Clock.advance` moves the
  offset forward and wakes every sleeper, so hours take no real time while the system under test
  keeps running in real time against real sockets.
- **Real time** (``real()``, fields named ``*_real_s``): the SUT's own timers (status polling,
  ``Retry-After``, keep-alive, pings, reconnect back-off) and answer times. They are judged in
  real seconds; :meth:`Clock.sleep_real` is unaffected by ``advance`` so a jump of simulated
  hours never fires a real-time rule.

Cores never read this clock: they take ``now`` as an argument and answer with deadlines.
Adapters call :meth:`Clock.now` and :meth:`Clock.sleep_until`.

**Autojump** is a mode of the clock, scoped to a context rather than owned by an adapter:
inside ``with clock.autojump():`` (and in every task started from it), a sleeper jumps the clock
to its deadline instead of waiting for it. The harness turns it on around the simulator
operations a check waits for (a notification and its retries); background activity keeps the
pace of real time.

**Sleep notes** let a driver tell when a task it started is quiet: inside
``with clock.noting(note):`` (and in every task started from it), ``note.deadline`` is the
simulated deadline the task is asleep until, or None while it runs. One note per task: tasks
that task starts would write to the same note, so a driver gives each its own. Scenario exploration
(``conformance/exploration.py``) waits until each operation it started has finished or sleeps
until a later simulated time before it takes the next step.
"""

from __future__ import annotations

import asyncio
import contextvars
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress

__all__ = ["Clock", "SleepNote"]

_AUTOJUMP: contextvars.ContextVar[bool] = contextvars.ContextVar("autojump", default=False)


class SleepNote:
    """Where one task (and the tasks it starts) sleeps on simulated time: ``deadline`` while
    asleep, None while running (see "Sleep notes" above)."""

    __slots__ = ("changed", "deadline")

    def __init__(self, changed: asyncio.Event | None = None) -> None:
        self.deadline: float | None = None
        self.changed = changed  # set whenever ``deadline`` changes (may be shared)

    def note(self, deadline: float | None) -> None:
        self.deadline = deadline
        if self.changed is not None:
            self.changed.set()


_NOTE: contextvars.ContextVar[SleepNote | None] = contextvars.ContextVar("sleep_note", default=None)


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

    def real(self) -> float:
        """Real monotonic seconds since the clock was made."""
        return self._real() - self._origin

    def readings(self) -> tuple[float, float]:
        """``(real(), now())`` read at one instant."""
        real = self._real() - self._origin
        return real, real + self._offset

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

    # Waiting on simulated time.

    @contextmanager
    def autojump(self) -> Iterator[None]:
        """Within this context (and tasks started from it), sleepers jump to their deadline."""
        token = _AUTOJUMP.set(True)
        try:
            yield
        finally:
            _AUTOJUMP.reset(token)

    @staticmethod
    @contextmanager
    def noting(note: SleepNote) -> Iterator[None]:
        """Within this context (and tasks started from it), sleeps are written to ``note``."""
        token = _NOTE.set(note)
        try:
            yield
        finally:
            _NOTE.reset(token)

    def asleep(self, note: SleepNote) -> bool:
        """Whether the noted task sleeps until a simulated time still to come."""
        deadline = note.deadline
        return deadline is not None and deadline > self.now()

    @staticmethod
    def autojumping() -> bool:
        """Whether sleepers in the current context jump the clock."""
        return _AUTOJUMP.get()

    async def sleep_until(self, deadline: float) -> None:
        """Return once simulated time reaches ``deadline`` (real time or ``advance``).

        The waker is registered before the clock is read, so an ``advance`` from another thread
        between the read and the wait still wakes this sleeper (no lost wake-up)."""
        loop = asyncio.get_running_loop()
        event = asyncio.Event()
        key = (loop, event)
        note = _NOTE.get()
        with self._lock:
            self._wakers.add(key)
        try:
            while True:
                event.clear()
                remaining = deadline - self.now()
                if remaining <= 0:
                    return
                if _AUTOJUMP.get():
                    self.advance(remaining)
                    continue
                if note is not None:
                    note.note(deadline)
                with suppress(TimeoutError):
                    await asyncio.wait_for(event.wait(), timeout=remaining)
        finally:
            if note is not None:
                note.note(None)
            with self._lock:
                self._wakers.discard(key)

    async def sleep(self, seconds: float) -> None:
        """Sleep ``seconds`` of simulated time."""
        await self.sleep_until(self.now() + seconds)

    # Waiting on real time.

    async def sleep_real(self, seconds: float) -> None:
        """Wait ``seconds`` of real time: the pace of the SUT's own timers. ``advance`` never
        shortens it, and autojump does not apply."""
        await asyncio.sleep(seconds)
