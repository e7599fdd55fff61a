"""The vocabulary of simulator operations (docs/architecture.md, "Operations").

An operation is what a running simulator can be asked to do, as a typed, validated value: send a
documented event, arm a fault, advance the clock, or read what the simulator saw. Each vendor
declares its operations in ``simulators/<vendor>/operations.py``; each one carries its own
``apply(target)``, written once. Every front door builds an operation and hands it to the
running vendor's ``perform``: the checks' drivers today; a control plane, a command line or a
pytest fixture are other front doors to the same values. Operations are pydantic models, so a
front door that reads JSON gets validation, and messages naming the field, for free.

Operations are frozen and forbid unknown fields. ``op`` names the operation on the wire (the
discriminator of a vendor's union); :meth:`Operation.describe` says in plain words what it does.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Literal, Protocol, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from simulators.faults import FaultKind

if TYPE_CHECKING:
    from simulators.clock import Clock

__all__ = ["AdvanceClock", "Applies", "Operation", "offered_fault"]

T_contra = TypeVar("T_contra", contravariant=True)
R_co = TypeVar("R_co", covariant=True)

# A jump of simulated time larger than this is surely a mistake (seconds for hours, say).
MAX_ADVANCE_S = 30 * 24 * 3600.0


class Operation(BaseModel):
    """One operation: frozen, unknown fields refused."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    op: str

    def describe(self) -> str:
        """The operation in plain words, for evidence and step-by-step scenarios."""
        fields = ", ".join(
            f"{name}={value!r}" for name, value in self.model_dump().items() if name != "op"
        )
        return f"{self.op}({fields})"


class Applies(Protocol[T_contra, R_co]):
    """An operation applied to a vendor's target (what its simulators are, bound to the SUT)."""

    async def apply(self, target: T_contra) -> R_co: ...


class AdvanceClock(Operation):
    """Move simulated time forward: retries, back-off, retention and removals that fall due
    happen now, while the SUT's own real-time timers are untouched."""

    op: Literal["advance-clock"] = "advance-clock"
    seconds: float = Field(gt=0, le=MAX_ADVANCE_S)

    def describe(self) -> str:
        return f"advance the simulated clock by {self.seconds:g} s"

    async def apply(self, target: HasClock) -> float:
        """The simulated time after the jump."""
        return target.clock.advance(self.seconds)


class HasClock(Protocol):
    @property
    def clock(self) -> Clock: ...


def offered_fault(kind: FaultKind, offered: Iterable[FaultKind], simulator: str) -> FaultKind:
    """``kind`` when ``simulator`` can show it; else a ValueError listing the kinds it can (a
    ``fault`` operation's validator: the vocabulary is shared, each vendor offers a part)."""
    kinds = list(offered)
    if kind not in kinds:
        raise ValueError(
            f"{simulator} cannot show {kind.value!r} (kinds: {', '.join(k.value for k in kinds)})"
        )
    return kind
