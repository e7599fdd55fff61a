"""What every simulator adapter (the I/O side of a core) runs on: the deadline loop, background
tasks kept in the fault log, and the bounded wait a check's thread makes on simulator state.

- :class:`DeadlineLoop` drives a core's timers on the simulated clock. A core never reads a
  clock (docs/architecture.md, "Behaviour cores without I/O; thin adapters"): it says when it
  next has work (``next_deadline()``) and does what is due when told the time
  (``handle_timeout(now)``, the one timer verb of every core here, as in h11). The loop sleeps on
  :meth:`Clock.sleep_until` (docs/architecture.md, "Simulated time"), so :meth:`Clock.advance`
  and autojump reach it; vendor durations never pass as real sleeps.
- :class:`BackgroundTasks` starts an adapter's tasks. An exception that ends one is the
  simulator's own fault: it is written to the :class:`~simulators.faultlog.FaultLog`, and the
  harness turns the check running then into ``error``.
- :class:`StateChanges` is the lock and condition variable of an adapter's observable state (the
  connections, calls and attempts a check reads). The loop notifies it after a change; a check's
  thread blocks in :meth:`StateChanges.wait_for` until a predicate holds, for at most a timeout in
  real seconds.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from types import TracebackType
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

from simulators.clock import Clock
from simulators.faultlog import FaultLog

if TYPE_CHECKING:
    import ssl

    from aiohttp import web

__all__ = [
    "LOOK_AGAIN_S",
    "BackgroundTasks",
    "DeadlineLoop",
    "StateChanges",
    "TimerCore",
    "sleep_until_woken",
]

T = TypeVar("T")
Out = TypeVar("Out")
Out_co = TypeVar("Out_co", covariant=True)

# Real seconds before the loop looks again at a deadline that was due and is still due after
# handle_timeout(now): the core waits on I/O it does not own (a delivery in flight).
LOOK_AGAIN_S = 0.02


class TimerCore(Protocol[Out_co]):
    """A core with timers: it never reads a clock, it is told the time."""

    def next_deadline(self) -> float | None:
        """When :meth:`handle_timeout` next has work, in simulated seconds (None: never)."""
        ...

    def handle_timeout(self, now: float) -> Out_co:
        """Do what is due by ``now`` (simulated seconds); safe to call at any time."""
        ...


async def sleep_until_woken(
    clock: Clock,
    woken: asyncio.Event,
    deadline: float | None = None,
    real_timeout: float | None = None,
) -> None:
    """Return at the simulated ``deadline`` (None: none), when ``woken`` is set, or after
    ``real_timeout`` real seconds (None: no bound), whichever comes first."""
    waiters: list[asyncio.Future[Any]] = [asyncio.ensure_future(woken.wait())]
    if deadline is not None:
        waiters.append(asyncio.ensure_future(clock.sleep_until(deadline)))
    try:
        await asyncio.wait(waiters, timeout=real_timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()


class DeadlineLoop(Generic[Out]):
    """Runs ``core.handle_timeout(now)``, hands what it returns to ``carry_out``, then sleeps
    until ``core.next_deadline()`` (simulated time) or a wake-up, and again, until cancelled.

    Wake it (:meth:`wake`, :meth:`rearm`) when something outside the timers changed what is due.
    A deadline still due after ``handle_timeout`` is looked at again every :data:`LOOK_AGAIN_S`
    real seconds rather than in a busy loop."""

    def __init__(
        self,
        clock: Clock,
        core: TimerCore[Out],
        carry_out: Callable[[Out], object] | None = None,
    ) -> None:
        self.clock = clock
        self.core = core
        self._carry_out = carry_out
        self._woken = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._armed: float | None = None  # the deadline the loop sleeps until

    async def run(self) -> None:
        """The loop itself: spawn it as a background task of the adapter."""
        self._woken = asyncio.Event()  # bound to this event loop (an adapter may start again)
        self._loop = asyncio.get_running_loop()
        while True:
            now = self.clock.now()
            out = self.core.handle_timeout(now)
            if self._carry_out is not None:
                self._carry_out(out)
            self._woken.clear()
            deadline = self._armed = self.core.next_deadline()
            if deadline is not None and deadline <= now:
                await sleep_until_woken(self.clock, self._woken, None, LOOK_AGAIN_S)
            else:
                await sleep_until_woken(self.clock, self._woken, deadline)

    def wake(self) -> None:
        """Make the loop run ``handle_timeout`` and read the deadline again (any thread)."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return  # not running: it reads the deadline when it starts
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            self._woken.set()
        else:
            loop.call_soon_threadsafe(self._woken.set)

    def rearm(self) -> None:
        """:meth:`wake` the loop only if the core's next deadline moved since it went to sleep
        (in the loop's thread; it costs one ``next_deadline()``, so an adapter may call it after
        every change)."""
        if self.core.next_deadline() != self._armed:
            self._woken.set()


@dataclass(frozen=True)
class BackgroundTasks:
    """An adapter's background tasks; the exception that ends one goes to ``fault_log``."""

    fault_log: FaultLog
    _running: set[asyncio.Task[Any]] = field(default_factory=set, init=False, repr=False)

    def spawn(self, coro: Coroutine[Any, Any, T], where: str) -> asyncio.Task[T]:
        """Start ``coro`` as a task; ``where`` names it in the fault log."""
        task = asyncio.ensure_future(coro)
        self.fault_log.watch(task, where)
        self._running.add(task)
        task.add_done_callback(self._running.discard)
        return task

    async def cancel(self) -> None:
        """Cancel every task still running and wait until they have ended."""
        for task in list(self._running):
            task.cancel()
        await asyncio.gather(*self._running, return_exceptions=True)


class StateChanges:
    """The lock of an adapter's observable state and the signal that it changed.

    Writers change the state under ``with changes:`` (a reentrant lock) and call
    :meth:`notify_all`; readers copy it out under the same lock. :meth:`wait_for` is the one
    bounded wait on that state. ``look_again_s`` is for state that also changes without a
    notification (an adapter whose predicates read its cores): waiters look again that often.
    """

    def __init__(self, clock: Clock, *, look_again_s: float | None = None) -> None:
        self._clock = clock
        self._look_again_s = look_again_s
        self._condition = threading.Condition(threading.RLock())
        self._version = 0  # notifications so far: one between a look and a wait is not lost
        self._waiting = 0  # threads in wait_for: notify_all is free without them

    def __enter__(self) -> bool:
        return self._condition.__enter__()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._condition.__exit__(kind, exc, traceback)

    def notify_all(self) -> None:
        """The state changed: every waiter looks again (cheap when none waits, so hot paths may
        call it after every change)."""
        if not self._waiting:
            return
        with self._condition:
            self._version += 1
            self._condition.notify_all()

    def wait_for(self, predicate: Callable[[], T], timeout: float) -> T:
        """Block until ``predicate()`` is truthy or ``timeout`` real seconds have passed; return
        its last value. Call it from any thread but the event loop's (which makes the changes).

        ``predicate`` runs outside the lock, after every notification (and every
        ``look_again_s``), so it may read the state through accessors that take the lock or
        call into the loop."""
        end = self._clock.real() + timeout
        with self._condition:
            self._waiting += 1
        try:
            while True:
                with self._condition:
                    seen = self._version
                value = predicate()
                left = end - self._clock.real()
                if value or left <= 0:
                    return value
                if self._look_again_s is not None:
                    left = min(left, self._look_again_s)
                with self._condition:
                    if self._version == seen:
                        self._condition.wait(left)
        finally:
            with self._condition:
                self._waiting -= 1


async def start_site(
    runner: web.AppRunner, host: str, port: int, ssl_context: ssl.SSLContext | None = None
) -> int:
    """Serve ``runner`` on ``host:port`` (0: a free port, chosen by the system); the port it is
    bound to."""
    from aiohttp import web

    site = web.TCPSite(runner, host, port, ssl_context=ssl_context)
    await site.start()
    server = site._server
    assert isinstance(server, asyncio.base_events.Server)
    return int(server.sockets[0].getsockname()[1])
