"""Scripted faults: plain calls or context managers that make a simulator misbehave on purpose.

A :class:`FaultPlan` holds, per target (``"deliver"``, ``"api:GET /assets"``…), a queue of
faults to apply to the next operations on that target. Simulators ``take()`` from it at the
moment the vendor would act; suites and users arm faults with :meth:`FaultPlan.arm`.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Fault", "FaultPlan"]


@dataclass(frozen=True)
class Fault:
    """One misbehaviour: ``kind`` names it, ``params`` tune it (e.g. status, retry_after)."""

    kind: str
    params: dict[str, Any] = field(default_factory=dict)

    def get(self, name: str, default: Any = None) -> Any:
        return self.params.get(name, default)


class FaultPlan:
    """Thread-safe queues of one-shot faults, keyed by target."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._queues: dict[str, deque[Fault]] = {}

    def add(self, target: str, kind: str, *, times: int = 1, **params: Any) -> Fault:
        """Apply fault ``kind`` to the next ``times`` operations on ``target``."""
        fault = Fault(kind, params)
        with self._lock:
            self._queues.setdefault(target, deque()).extend([fault] * times)
        return fault

    def take(self, target: str) -> Fault | None:
        """The fault to apply to this operation, if one is armed."""
        if not self._queues:
            return None  # the common case: nothing armed, no lock taken
        with self._lock:
            queue = self._queues.get(target)
            if not queue:
                return None
            fault = queue.popleft()
            if not queue:
                del self._queues[target]  # keep the no-lock fast path above reachable
            return fault

    def clear(self, target: str | None = None) -> None:
        with self._lock:
            if target is None:
                self._queues.clear()
            else:
                self._queues.pop(target, None)

    @contextmanager
    def arm(self, target: str, kind: str, *, times: int = 1, **params: Any) -> Iterator[Fault]:
        """Context manager form of :meth:`add`; unused faults are disarmed on exit."""
        fault = self.add(target, kind, times=times, **params)
        try:
            yield fault
        finally:
            with self._lock:
                left = deque(f for f in self._queues.get(target, ()) if f is not fault)
                if left:
                    self._queues[target] = left
                else:
                    self._queues.pop(target, None)
