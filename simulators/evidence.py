"""Wire-level evidence: what happened, who did it, at which real and simulated time.

Simulators append :class:`EvidenceEvent` records to one :class:`Recorder` per run. Each event
is attributed to the check that caused it: the context variable :data:`CAUSE` carries the
check's name into the simulator code a check calls (and into every task started from there).
Replies that arrive in another task (a report to the observer, an acknowledgement) are tied to
their cause through :meth:`Recorder.remember_cause` / :meth:`Recorder.cause_of`. Events that no
check caused (startup, the SUT's own API calls, keep-alives) go to the run-level timeline.

Memory is bounded: each timeline keeps its first and last events and counts what it cut.
On hot paths, :meth:`Recorder.record_later` takes an event's time and place at once and makes
its text only when it is read (and never for an event that was cut).
"""

from __future__ import annotations

import contextvars
import itertools
import threading
from collections import OrderedDict, deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any

from simulators.clock import Clock

__all__ = ["CAUSE", "RUN", "EvidenceEvent", "Recorder", "Timeline"]

RUN = ""  # the cause of events no check caused: the run-level timeline
CAUSE: contextvars.ContextVar[str] = contextvars.ContextVar("evidence_cause", default=RUN)


@dataclass(frozen=True, slots=True)
class EvidenceEvent:
    """One thing that crossed the wire or one decision a simulator took."""

    seq: int
    real_s: float  # real seconds since the run's clock was made
    sim_s: float  # simulated seconds on the run's clock
    actor: str
    direction: str  # "->" sent to the peer, "<-" received from it, "--" internal decision
    peer: str
    kind: str
    summary: str
    detail: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["real_s"] = round(self.real_s, 6)
        data["sim_s"] = round(self.sim_s, 6)
        return data


_Row = tuple[Any, ...]  # an EvidenceEvent's fields: recording sits on hot paths, reading does not
# Makes an event's summary and detail from the arguments given to Recorder.record_later.
Render = Callable[..., tuple[str, dict[str, Any]]]


def _event(row: _Row) -> EvidenceEvent:
    """The event of a row; a row from ``record_later`` holds its renderer and arguments."""
    seq, real, sim, actor, direction, peer, kind, summary, detail = row
    if not isinstance(summary, str):
        summary, detail = summary(*detail)
    return EvidenceEvent(seq, real, sim, actor, direction, peer, kind, summary, detail)


class Timeline:
    """The events of one cause: the first ``head`` and the last ``tail``, and a count of the
    events cut between them."""

    def __init__(self, head: int, tail: int) -> None:
        self._head_limit = head
        self.head: list[_Row] = []
        self.tail: deque[_Row] = deque(maxlen=tail)
        self.total = 0

    def add(self, row: _Row) -> None:
        self.total += 1
        if len(self.head) < self._head_limit:
            self.head.append(row)
        else:
            self.tail.append(row)

    @property
    def cut(self) -> int:
        """How many events were recorded but not kept."""
        return self.total - len(self.head) - len(self.tail)

    def events(self) -> list[EvidenceEvent]:
        return [_event(row) for row in (*self.head, *self.tail)]


class Recorder:
    """Thread-safe evidence log for one run, one bounded timeline per cause."""

    def __init__(
        self,
        clock: Clock,
        *,
        check_head: int = 150,
        check_tail: int = 150,
        run_head: int = 300,
        run_tail: int = 700,
        max_causes: int = 5_000,
        sink: Callable[[EvidenceEvent], None] | None = None,
    ) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._seq = itertools.count()
        self._check_limits = (check_head, check_tail)
        self._timelines: OrderedDict[str, Timeline] = OrderedDict()
        self._timelines[RUN] = Timeline(run_head, run_tail)
        self._max_causes = max_causes
        self._causes: OrderedDict[str, str] = OrderedDict()
        self.dropped = 0  # events whose timeline was evicted (more causes than max_causes)
        self.sink = sink  # also called with every event (e.g. a standalone simulator's log)

    def record(
        self,
        actor: str,
        direction: str,
        peer: str,
        kind: str,
        summary: str,
        *,
        cause: str | None = None,
        **detail: Any,
    ) -> None:
        """Append one event to the timeline of ``cause`` (default: the current context's)."""
        self._add(actor, direction, peer, kind, summary, detail, cause)

    def record_later(
        self,
        actor: str,
        direction: str,
        peer: str,
        kind: str,
        render: Render,
        *args: Any,
        cause: str | None = None,
    ) -> None:
        """:meth:`record`, with the summary and detail made by ``render(*args)`` when the event
        is read; its time and place are taken now. ``args`` must not change afterwards."""
        self._add(actor, direction, peer, kind, render, args, cause)

    def _add(
        self,
        actor: str,
        direction: str,
        peer: str,
        kind: str,
        summary: str | Render,
        detail: dict[str, Any] | tuple[Any, ...],
        cause: str | None,
    ) -> None:
        real, sim = self._clock.readings()
        key = CAUSE.get() if cause is None else cause
        with self._lock:
            row = (next(self._seq), real, sim, actor, direction, peer, kind, summary, detail)
            timeline = self._timelines.get(key)
            if timeline is None:
                timeline = self._timelines[key] = Timeline(*self._check_limits)
                while len(self._timelines) > self._max_causes + 1:
                    evicted = next(k for k in self._timelines if k != RUN)
                    self.dropped += self._timelines.pop(evicted).total
            timeline.add(row)
        if self.sink is not None:
            self.sink(_event(row))

    # Attribution.

    @staticmethod
    @contextmanager
    def attributed(cause: str) -> Iterator[None]:
        """Attribute the events recorded in this context (and its tasks) to ``cause``."""
        token = CAUSE.set(cause)
        try:
            yield
        finally:
            CAUSE.reset(token)

    def remember_cause(self, key: str) -> None:
        """Tie ``key`` (a notification id, a packet id…) to the current cause, so a reply
        that arrives elsewhere can be attributed with :meth:`cause_of`."""
        cause = CAUSE.get()
        if cause == RUN:
            return
        with self._lock:
            self._causes[key] = cause
            self._causes.move_to_end(key)
            if len(self._causes) > 50_000:
                self._causes.popitem(last=False)

    def cause_of(self, key: str) -> str | None:
        """The cause remembered for ``key``, if any."""
        with self._lock:
            return self._causes.get(key)

    # Reading.

    def timeline(self, cause: str = RUN) -> Timeline:
        """The timeline of one cause (an empty one when it recorded nothing)."""
        with self._lock:
            found = self._timelines.get(cause)
            if found is None:
                return Timeline(0, 0)
            copy = Timeline(0, 0)
            copy.head, copy.tail, copy.total = list(found.head), deque(found.tail), found.total
            return copy

    def causes(self) -> list[str]:
        with self._lock:
            return list(self._timelines)

    def total(self) -> int:
        with self._lock:
            return sum(t.total for t in self._timelines.values()) + self.dropped
