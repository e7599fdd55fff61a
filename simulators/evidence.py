"""Wire-level evidence: what happened, who did it, at which real and simulated time.

Simulators append :class:`EvidenceEvent` records to one :class:`Recorder` per run. The
conformance plugin slices the record by sequence number to give each check its own timeline.
"""

from __future__ import annotations

import threading
from dataclasses import asdict, dataclass, field
from typing import Any

from simulators.clock import Clock

__all__ = ["EvidenceEvent", "Recorder"]


@dataclass(frozen=True)
class EvidenceEvent:
    """One thing that crossed the wire or one decision a simulator took."""

    seq: int
    real_s: float
    sim_s: float
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


class Recorder:
    """Append-only, thread-safe evidence log for one run.

    Events are stored as tuples (recording sits on the notifier's hot path) and become
    :class:`EvidenceEvent` objects when read.
    """

    def __init__(self, clock: Clock, *, limit: int = 200_000) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._events: list[tuple[Any, ...]] = []
        self._limit = limit
        self.dropped = 0

    def record(
        self,
        actor: str,
        direction: str,
        peer: str,
        kind: str,
        summary: str,
        **detail: Any,
    ) -> None:
        real, sim = self._clock.readings()
        with self._lock:
            events = self._events
            if len(events) < self._limit:
                events.append(
                    (len(events), real, sim, actor, direction, peer, kind, summary, detail)
                )
            else:
                self.dropped += 1

    def mark(self) -> int:
        """The sequence number the next event will get."""
        with self._lock:
            return len(self._events)

    def since(self, start: int, end: int | None = None) -> list[EvidenceEvent]:
        with self._lock:
            rows = self._events[start:end]
        return [EvidenceEvent(*row) for row in rows]

    def all(self) -> list[EvidenceEvent]:
        return self.since(0)
