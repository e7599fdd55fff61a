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
        return asdict(self)


class Recorder:
    """Append-only, thread-safe evidence log for one run."""

    def __init__(self, clock: Clock, *, limit: int = 200_000) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._events: list[EvidenceEvent] = []
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
    ) -> EvidenceEvent:
        with self._lock:
            event = EvidenceEvent(
                seq=len(self._events) + self.dropped,
                real_s=round(self._clock.real(), 6),
                sim_s=round(self._clock.now(), 6),
                actor=actor,
                direction=direction,
                peer=peer,
                kind=kind,
                summary=summary,
                detail=detail,
            )
            if len(self._events) < self._limit:
                self._events.append(event)
            else:
                self.dropped += 1
            return event

    def mark(self) -> int:
        """The sequence number the next event will get."""
        with self._lock:
            return len(self._events) + self.dropped

    def since(self, start: int, end: int | None = None) -> list[EvidenceEvent]:
        with self._lock:
            return [e for e in self._events if e.seq >= start and (end is None or e.seq < end)]

    def all(self) -> list[EvidenceEvent]:
        with self._lock:
            return list(self._events)
