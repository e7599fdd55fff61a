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
from enum import StrEnum
from typing import Any

__all__ = ["Fault", "FaultKind", "FaultPlan"]


class FaultKind(StrEnum):
    """The misbehaviours every vendor's simulators share, one spelling each (a vendor offers
    those its service can show). Typed operations arm them; the cores and adapters apply them."""

    STATUS = "status"  # the attempt counts as failed with a status (fail the next N)
    TIMEOUT = "timeout"  # the attempt counts as unanswered
    UNSENT = "unsent"  # nothing reaches the SUT; the attempt fails as configured
    DROP_BEFORE_ACK = "drop-before-ack"  # sent in full, then the connection drops before
    # the acknowledgement (a 2xx, a PUBACK) can count: the SUT has it, the sender resends
    DUPLICATE = "duplicate"  # sent twice
    DELAY = "delay"  # held before it is sent
    STALL = "stall"  # half sent, then nothing until the SUT's timeout


@dataclass(frozen=True)
class Fault:
    """One misbehaviour: ``kind`` names it, ``params`` tune it (e.g. status, retry_after)."""

    kind: FaultKind
    params: dict[str, Any] = field(default_factory=dict)

    def get(self, name: str, default: Any = None) -> Any:
        return self.params.get(name, default)


class FaultPlan:
    """Thread-safe queues of one-shot faults, keyed by target."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._queues: dict[str, deque[Fault]] = {}

    def add(self, target: str, kind: FaultKind, *, times: int = 1, **params: Any) -> Fault:
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
    def arm(
        self, target: str, kind: FaultKind, *, times: int = 1, **params: Any
    ) -> Iterator[Fault]:
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
