"""Check results and requirement verdicts (docs/requirements.md §4: pass, fail, warn,
not-verified, error).

A requirement never passes by default: with no check result it is ``not-verified``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from conformance.catalogue import Requirement

__all__ = [
    "NO_CHECK_RAN",
    "Check",
    "CheckResult",
    "HarnessError",
    "NotVerified",
    "blame_harness",
    "requirement_verdict",
]

OUTCOMES = ("pass", "fail", "warn", "not-verified", "error")
NO_CHECK_RAN = "no check for this requirement ran in this run"
# How bad an outcome is when a requirement has several checks: the worst one wins.
_SEVERITY = {"error": 4, "fail": 3, "warn": 2, "not-verified": 1, "pass": 0}


class NotVerified(Exception):
    """Raised by a check that could not observe what it needs; the reason goes in the report."""


class HarnessError(RuntimeError):
    """The harness itself broke (verdict ``error``): never blamed on the SUT."""


MAX_REPRODUCERS = 3  # per check: the smallest failing examples; the rest are counted
MAX_NOTES = 10  # per check, distinct; the rest are counted
MAX_TEXT = 2_000  # characters of an expected/observed/note text kept
# What a failing check without a reproducer says when it gave no reason of its own.
NO_REPRODUCER = (
    "no reproducer: this check replays no single request; its evidence shows what the "
    "simulators sent and what the SUT did, in order"
)


@dataclass
class Check:
    """What a running check says about itself: expected vs observed, and how to reproduce.

    Bounded whatever the SUT does: at most :data:`MAX_REPRODUCERS` reproducers (the smallest
    first) and :data:`MAX_NOTES` distinct notes, with counts of what was left out."""

    expected: str | None = None
    observed: str | None = None
    notes: list[str] = field(default_factory=list)
    history_actors: set[str] = field(default_factory=set)
    notes_more: int = 0
    reproduce_more: int = 0
    why_no_reproducer: str | None = None
    _reproducers: list[tuple[int, str]] = field(default_factory=list)

    @property
    def reproduce(self) -> list[str]:
        """Commands that send a failing example again, the smallest first."""
        return [command for _, command in self._reproducers]

    def reproducer(self, command: str, size: int = 0) -> None:
        """Offer a command that reproduces a failure (``size``: how big its example is)."""
        if any(c == command for _, c in self._reproducers):
            return
        self._reproducers.append((size, command))
        self._reproducers.sort(key=lambda pair: pair[0])
        if len(self._reproducers) > MAX_REPRODUCERS:
            self._reproducers.pop()
            self.reproduce_more += 1

    def no_reproducer(self, reason: str) -> None:
        """Say why this check offers no command that replays its failure (shown when it fails
        without one)."""
        self.why_no_reproducer = reason

    def include_history(self, actor: str) -> None:
        """Also show this actor's evidence from before the check began (the SUT acted earlier)."""
        self.history_actors.add(actor)

    def expect(self, text: str) -> None:
        self.expected = _bounded(text)

    def observe(self, text: str) -> None:
        self.observed = _bounded(text)

    def note(self, text: str) -> None:
        text = _bounded(text)
        if text in self.notes:
            return
        if len(self.notes) < MAX_NOTES:
            self.notes.append(text)
        else:
            self.notes_more += 1

    def not_verified(self, reason: str) -> NotVerified:
        """``raise check.not_verified("why")``: the requirement could not be observed."""
        return NotVerified(reason)


def _bounded(text: str) -> str:
    return text if len(text) <= MAX_TEXT else text[:MAX_TEXT] + f"… ({len(text)} characters)"


@dataclass
class CheckResult:
    name: str
    requirement_ids: list[str]
    outcome: str
    message: str
    expected: str | None = None
    observed: str | None = None
    reproduce: list[str] = field(default_factory=list)
    reproduce_more: int = 0  # further failing examples, not listed
    notes: list[str] = field(default_factory=list)
    duration_s: float = 0.0
    evidence: list[dict[str, Any]] = field(default_factory=list)
    evidence_cut: int = 0  # events of this check not kept (the middle of a long timeline)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("requirement_ids")
        return data


def blame_harness(outcome: str, message: str, new_errors: list[str]) -> tuple[str, str]:
    """A check during which the simulators raised errors of their own gets ``error``: its
    verdict cannot be trusted, and the SUT is not to blame."""
    if not new_errors:
        return outcome, message
    more = f" (and {len(new_errors) - 1} more)" if len(new_errors) > 1 else ""
    return "error", f"the harness broke during this check: {new_errors[0]}{more}"


def requirement_verdict(req: Requirement, results: list[CheckResult]) -> tuple[str, str]:
    """The requirement's verdict and a one-line reason, from its checks' outcomes."""
    if not results:
        return "not-verified", NO_CHECK_RAN
    worst = max(results, key=lambda r: _SEVERITY[r.outcome])
    if worst.outcome == "not-verified" and any(r.outcome == "pass" for r in results):
        # Some checks observed and passed; the others could not observe. Still a pass, with a note.
        passed = [r for r in results if r.outcome == "pass"]
        return "pass", f"{len(passed)} check(s) passed; {worst.message}"
    return worst.outcome, worst.message
