"""Scenario exploration (docs/exploration.md): after the scripted checks, generated sequences of
vendor operations, faults and simulated time against the live SUT, judged at their end,
shrunk to the shortest failing scenario, saved, and replayable.

The engine is generic: a Hypothesis rule-based state machine whose rules are a vendor's
operations (:meth:`Explorer.rules`), played through the vendor's explorer, which also judges a
scenario once it is quiet (:meth:`Explorer.finish`), with the same code as its scripted checks.
A vendor offers one per part of the SUT it can explore (a channel, say) through
:meth:`conformance.vendors.Vendor.explorers`; the vendor's budget is shared among them.

Bounded: the whole exploration of a vendor (generation, shrinking and the replay that tells a
real failure from a flaky one) runs in a worker thread that the caller waits for at most the
budget; every step takes at most what is left of it (:class:`Budget`). A failure is only
reported when a failing scenario fails again, under the same requirement, on replay; a
shorter one found afterwards by dropping single steps counts only when it fails twice.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections import Counter
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Protocol, TypeVar

if TYPE_CHECKING:
    from hypothesis.strategies import SearchStrategy

    from conformance.harness import Harness
    from simulators.operations import Operation

__all__ = [
    "AWAITING_S",
    "Budget",
    "BudgetSpent",
    "Exploration",
    "Explorer",
    "Failure",
    "Judgement",
    "Violation",
    "explore",
    "load_scenario",
    "parse_step",
    "replay",
]

T = TypeVar("T")
# The share of the budget held for replaying failing scenarios once one is seen (at most this).
REPLAY_SHARE = 0.2
REPLAY_RESERVE_MAX_S = 20.0
REPLAY_MARGIN = 1.5  # a replay is kept this many times the time its failing play took
CANDIDATES = 3  # failing scenarios replayed per requirement and round, shortest first
KEPT = 20  # failing scenarios kept per requirement
STEPS_PER_SCENARIO = 6  # Hypothesis' stateful_step_count: short scenarios shrink fast
EVIDENCE_LIMIT = 200  # events of a failing scenario's timeline kept in the report
FILE_LIMIT_BYTES = 256 * 1024  # a scenario file to --replay, at most
# How long an explorer's fence waits for the items it awaits before its marker (the scripted
# checks: 10 s). A lost item costs this on every play; a failure counts only when it comes back.
AWAITING_S = 1.0
SCHEMA = "conformance-scenario/1"


class BudgetSpent(BaseException):
    """The budget ran out: the exploration stops at once. A BaseException, so that Hypothesis
    (which treats every Exception as a failing example) lets it through."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "the budget ran out"


@dataclass
class Budget:
    """Wall time left: every wait of an exploration is bounded by :meth:`remaining`."""

    deadline: float  # time.monotonic()

    def remaining(self) -> float:
        return self.deadline - time.monotonic()

    def check(self) -> None:
        if self.remaining() <= 0:
            raise BudgetSpent

    def run(self, harness: Harness, coro: Coroutine[Any, Any, T], *, autojump: bool = False) -> T:
        """Run ``coro`` in the simulators' loop for at most the time left (``autojump``: its
        waits on the simulated clock take no time, :meth:`Harness.run`)."""
        remaining = self.remaining()
        if remaining <= 0:
            coro.close()
            raise BudgetSpent
        try:
            return harness.run(coro, timeout=remaining, autojump=autojump)
        except TimeoutError:
            raise BudgetSpent from None


@dataclass
class _SearchBudget(Budget):
    """The search's share of the budget: all of it until a failure is seen, then all but the
    time kept for replaying it: ``reserve_s``, or more when the failing play took longer (a
    replay costs what the play cost), at most half of what was left."""

    player: _Player | None = None
    reserve_s: float = 0.0
    cap_s: float = 0.0

    def remaining(self) -> float:
        held = 0.0
        if self.player is not None and self.player.shortest:
            slowest = self.player.slowest_failing_play_s
            held = max(self.reserve_s, min(REPLAY_MARGIN * slowest, self.cap_s))
        return self.deadline - held - time.monotonic()


@dataclass(frozen=True)
class Violation:
    """A MUST requirement a scenario broke, on evidence."""

    requirement: str
    message: str


@dataclass(frozen=True)
class Judgement:
    """What a quiet scenario shows: the requirements it broke, or why it could not be judged."""

    violations: tuple[Violation, ...] = ()
    not_judged: str | None = None


class Explorer(Protocol):
    """A vendor's part of scenario exploration, bound to one run's harness."""

    @property
    def part(self) -> str:
        """What of the SUT this explores (e.g. ``callback``, ``websocket``): the report and a
        saved scenario name it, and ``--replay`` picks the explorer by it."""

    def rules(self) -> dict[str, SearchStrategy[Operation]]:
        """The state machine's rules: a name and the operations it may take."""

    def parse(self, step: Mapping[str, Any]) -> Operation:
        """One saved step (an operation as JSON) as an operation; ValueError when invalid."""

    def name(self, operation: Operation, number: int) -> Operation:
        """The generated ``operation`` as step ``number`` of a scenario: e.g. the symbolic
        names of the items it creates (``n3``), which every play maps to fresh ones."""

    def boundaries(self, operation: Operation) -> list[str]:
        """The vendor boundaries an operation covers (for the report's coverage)."""

    def begin(self, budget: Budget) -> None:
        """A new scenario: forget the last one's items; clear armed faults."""

    def perform(self, operation: Operation, budget: Budget) -> None:
        """Carry out one step and wait (bounded) until the simulators are quiet again: every
        operation started has finished or sleeps until a later simulated time."""

    def finish(self, budget: Budget) -> Judgement:
        """Let what is pending run out (the vendor's retries, on the simulated clock), then
        judge the scenario with the scripted checks' code."""


def parse_step(step: Mapping[str, Any], steps: Any) -> Operation:
    """One saved step (an operation as JSON) as one of ``steps``, a union of operation models
    told apart by ``op`` (what :meth:`Explorer.parse` does); ValueError naming what is wrong."""
    from pydantic import Field, TypeAdapter, ValidationError

    adapter: TypeAdapter[Operation] = TypeAdapter(Annotated[steps, Field(discriminator="op")])
    try:
        return adapter.validate_python(step)
    except ValidationError as exc:
        raise ValueError(str(exc)) from None


@dataclass
class Failure:
    """A failing scenario: its steps, what it broke, and the evidence of its last play."""

    vendor: str
    violation: Violation
    steps: list[Operation]
    evidence: list[dict[str, Any]] = field(default_factory=list)
    evidence_cut: int = 0
    replayed: bool | None = None  # None: not replayed (no time left); False: flaky
    file: str | None = None  # where it was saved, relative to the report folder
    part: str = ""  # the explorer's part

    def numbered(self) -> list[str]:
        return [f"{i}. {step.describe()}" for i, step in enumerate(self.steps, 1)]

    def wire(self) -> list[dict[str, Any]]:
        return [step.model_dump(mode="json") for step in self.steps]

    def digest(self) -> str:
        text = json.dumps(self.wire(), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:12]


@dataclass
class Exploration:
    """One vendor's exploration, for the report's "Exploration" section."""

    vendor: str
    budget_s: float
    seed: int | None = None
    part: str = ""  # the explorer's part (e.g. a channel)
    scenarios: int = 0
    judged: int = 0
    not_judged: Counter[str] = field(default_factory=Counter)
    steps: int = 0
    operations: Counter[str] = field(default_factory=Counter)
    boundaries: Counter[str] = field(default_factory=Counter)
    spent_s: float = 0.0
    driving_s: float = 0.0  # inside operations and judging: the SUT, simulators, observer
    failures: list[Failure] = field(default_factory=list)
    flaky: list[Failure] = field(default_factory=list)
    first_found_s: float | None = None  # when the first violation was seen, from the start
    errors: Counter[str] = field(default_factory=Counter)  # steps the harness could not take
    unavailable: str | None = None  # why this vendor was not explored
    stopped: str = ""  # why it ended

    def to_json(self) -> dict[str, Any]:
        def failure(f: Failure) -> dict[str, Any]:
            return {
                "requirement": f.violation.requirement,
                "message": f.violation.message,
                "steps": f.numbered(),
                "file": f.file,
                "replayed": f.replayed,
            }

        return {
            "vendor": self.vendor,
            "part": self.part,
            "budget_s": self.budget_s,
            "seed": self.seed,
            "spent_s": round(self.spent_s, 3),
            "driving_s": round(self.driving_s, 3),
            "scenarios": self.scenarios,
            "judged": self.judged,
            "not_judged": dict(self.not_judged.most_common(5)),
            "steps": self.steps,
            "operations": dict(sorted(self.operations.items())),
            "boundaries": dict(sorted(self.boundaries.items())),
            "failures": [failure(f) for f in self.failures],
            "flaky": [failure(f) for f in self.flaky],
            "first_found_s": (None if self.first_found_s is None else round(self.first_found_s, 3)),
            "errors": dict(self.errors.most_common(5)),
            "unavailable": self.unavailable,
            "stopped": self.stopped,
        }


class _Player:
    """Plays scenarios through an explorer, keeping score; shared by the state machine, the
    replay of a failure and ``--replay``."""

    def __init__(self, harness: Harness, explorer: Explorer, stats: Exploration) -> None:
        self.harness = harness
        self.explorer = explorer
        self.stats = stats
        self.lock = threading.Lock()
        # By requirement: the shortest failing scenarios seen, shortest first (a few, so that
        # a flaky shortest one does not hide a steady longer one).
        self.shortest: dict[str, list[Failure]] = {}
        self.steps: list[Operation] = []
        self.cause = ""
        self.started = time.monotonic()
        self.play_started = self.started
        self.slowest_failing_play_s = 0.0

    def begin(self, budget: Budget) -> None:
        budget.check()
        if self.harness.sut_down is not None:  # nothing more can be observed
            raise BudgetSpent(f"the SUT went down: {self.harness.sut_down}")
        self.steps = []
        self.play_started = time.monotonic()
        self.stats.scenarios += 1
        self.cause = (
            f"exploration::{self.stats.vendor}::{self.stats.part}::scenario-{self.stats.scenarios}"
        )
        self.harness.cause = self.cause
        self._timed(lambda: self.explorer.begin(budget))

    def step(self, operation: Operation, budget: Budget) -> None:
        budget.check()
        self.steps.append(operation)
        self.stats.steps += 1
        self.stats.operations[operation.op] += 1
        self.stats.boundaries.update(self.explorer.boundaries(operation))
        self._timed(lambda: self.explorer.perform(operation, budget))

    def finish(self, budget: Budget) -> Judgement:
        judgement = self._timed(lambda: self.explorer.finish(budget))
        if not judgement.violations and (down := self.harness.sut_alive()):
            judgement = Judgement((Violation("GEN-LIVE-01", down),))
        if judgement.not_judged is not None:
            self.stats.not_judged[judgement.not_judged] += 1
        else:
            self.stats.judged += 1
        for violation in judgement.violations:
            self._keep(violation)
        return judgement

    def _keep(self, violation: Violation) -> None:
        if self.stats.first_found_s is None:
            self.stats.first_found_s = time.monotonic() - self.started
        took = time.monotonic() - self.play_started
        self.slowest_failing_play_s = max(self.slowest_failing_play_s, took)
        timeline = self.harness.recorder.timeline(self.cause)
        events = timeline.events()
        cut = timeline.cut + max(0, len(events) - EVIDENCE_LIMIT)
        failure = Failure(
            self.stats.vendor,
            violation,
            list(self.steps),
            [e.to_json() for e in events[-EVIDENCE_LIMIT:]],
            cut,
            part=self.stats.part,
        )
        with self.lock:
            kept = self.shortest.setdefault(violation.requirement, [])
            if all(f.wire() != failure.wire() for f in kept):
                kept.append(failure)
                kept.sort(key=_size)
                del kept[KEPT:]

    def _timed(self, action: Callable[[], T]) -> T:
        started = time.monotonic()
        try:
            return action()
        except Exception as exc:  # the harness's fault: counted, never a requirement failure
            self.stats.errors[f"{type(exc).__name__}: {exc}"[:300]] += 1
            raise
        finally:
            self.stats.driving_s += time.monotonic() - started

    def play(self, steps: list[Operation], budget: Budget) -> Judgement:
        self.begin(budget)
        for operation in steps:
            self.step(operation, budget)
        return self.finish(budget)


def _size(failure: Failure) -> tuple[int, int]:
    return len(failure.steps), len(json.dumps(failure.wire()))


class ScenarioFailed(AssertionError):
    """A scenario broke a requirement (what Hypothesis shrinks)."""


def _machine(player: _Player, budget: Budget, vendor: str) -> type[Any]:
    """The rule-based state machine whose rules are the explorer's operations."""
    from hypothesis.stateful import RuleBasedStateMachine, initialize, rule

    def start(self: Any) -> None:
        player.begin(budget)

    def make_rule(strategy: SearchStrategy[Operation]) -> Callable[..., None]:
        def step(self: Any, operation: Operation) -> None:
            player.step(player.explorer.name(operation, len(player.steps) + 1), budget)

        return rule(operation=strategy)(step)

    def teardown(self: Any) -> None:
        if budget.remaining() <= 0 or not player.steps:
            return
        judgement = player.finish(budget)
        if judgement.violations:
            first = judgement.violations[0]
            raise ScenarioFailed(f"{first.requirement}: {first.message}")

    namespace: dict[str, Any] = {"start": initialize()(start), "teardown": teardown}
    for name, strategy in player.explorer.rules().items():
        namespace[name] = make_rule(strategy)
    # A stable name: the Hypothesis database keys its examples by it.
    title = "".join(word.title() for word in (vendor, player.stats.part))
    return type(f"{title}Exploration", (RuleBasedStateMachine,), namespace)


def explore(
    harness: Harness,
    vendor: str,
    explorer: Explorer | None,
    budget_s: float,
    *,
    seed: int | None,
    database: Path | None,
    scenarios_dir: Path,
    report_dir: Path,
) -> Exploration:
    """Explore ``vendor`` (``explorer``'s part of it) for at most ``budget_s`` seconds of wall
    time."""
    stats = Exploration(vendor, budget_s, seed, part=explorer.part if explorer else "")
    if explorer is None:
        stats.unavailable = "nothing of the SUT this vendor can explore"
        return stats
    started = time.monotonic()
    budget = Budget(started + budget_s)
    player = _Player(harness, explorer, stats)
    worker = threading.Thread(
        target=_explore_in_thread,
        args=(player, budget, budget_s, seed, database, vendor),
        name=f"explore-{vendor}",
        daemon=True,
    )
    worker.start()
    worker.join(timeout=budget_s + 1.0)
    if worker.is_alive():  # a step outlived its bound: abandon it, the budget is the budget
        stats.stopped = stats.stopped or "the budget ran out during a step (abandoned)"
    stats.spent_s = time.monotonic() - started
    # Never wait long for the lock: an abandoned worker may be anywhere.
    locked = player.lock.acquire(timeout=5.0)
    try:
        kept_lists = [list(kept) for kept in list(player.shortest.values())]
    finally:
        if locked:
            player.lock.release()
    for kept in kept_lists:
        confirmed = [f for f in kept if f.replayed]
        flaky = [f for f in kept if f.replayed is False]
        if confirmed:
            stats.failures.append(confirmed[0])
        elif flaky:
            stats.flaky.append(flaky[0])
    for failure in [*stats.failures, *stats.flaky]:
        _save(failure, scenarios_dir, report_dir)
    from simulators.evidence import RUN

    harness.cause = RUN
    return stats


def _explore_in_thread(
    player: _Player,
    budget: Budget,
    budget_s: float,
    seed: int | None,
    database: Path | None,
    vendor: str,
) -> None:
    """Rounds of Hypothesis until a failure is confirmed on replay or the budget is spent: a
    round ends when Hypothesis has shrunk what it found (or found it flaky); its failing
    scenarios are then replayed, shortest first."""
    stats = player.stats
    reserve = min(budget_s * REPLAY_SHARE, REPLAY_RESERVE_MAX_S)
    search = _SearchBudget(budget.deadline, player, reserve, budget_s / 2)
    rounds = 0
    while search.remaining() > 0:
        round_seed = None if seed is None else seed + rounds
        rounds += 1
        try:
            stats.stopped = _round(player, search, round_seed, database, vendor)
        except BudgetSpent as spent:
            stats.stopped = str(spent)
        try:
            if _confirm_all(player, budget):
                stats.stopped += "; confirmed on replay"
                return
        except BudgetSpent:
            stats.stopped += "; no time was left to replay a failure"
            return
        except Exception as exc:  # a harness fault while replaying: counted, never a verdict
            stats.stopped += f"; the replay broke: {type(exc).__name__}: {exc}"[:300]
            return
        if player.harness.sut_down is not None:
            return
        if not player.shortest and stats.stopped.startswith("the exploration broke"):
            return  # a harness fault: another round would break the same way


def _round(
    player: _Player, search: Budget, seed: int | None, database: Path | None, vendor: str
) -> str:
    """One run of the state machine; why it ended."""
    from hypothesis import HealthCheck, Phase, Verbosity, settings
    from hypothesis import seed as with_seed
    from hypothesis.database import DirectoryBasedExampleDatabase
    from hypothesis.stateful import run_state_machine_as_test

    machine = _machine(player, search, vendor)
    if seed is not None:
        machine = with_seed(seed)(machine)
    config = settings(
        max_examples=1_000_000,
        stateful_step_count=STEPS_PER_SCENARIO,
        deadline=None,
        database=(
            DirectoryBasedExampleDatabase(str(database))
            if database is not None and seed is None
            else None
        ),
        suppress_health_check=list(HealthCheck),
        phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.shrink],
        report_multiple_bugs=False,
        verbosity=Verbosity.quiet,
        print_blob=False,
    )
    try:
        run_state_machine_as_test(machine, settings=config)  # type: ignore[no-untyped-call]
    except BudgetSpent:
        raise
    except Exception as exc:  # a failure (ours), Hypothesis' Flaky, or a harness fault
        if search.remaining() <= 0 and not player.shortest:
            return "the budget ran out"  # a scenario the budget cut can look flaky to Hypothesis
        if isinstance(exc, ScenarioFailed) or player.shortest:
            return "a scenario broke a requirement; shrunk"
        return f"the exploration broke: {type(exc).__name__}: {exc}"[:500]
    return "no scenario broke a requirement"


def _confirm_all(player: _Player, budget: Budget) -> bool:
    """Replay the failing scenarios not replayed yet, shortest first (at most
    :data:`CANDIDATES` a requirement), until one fails its requirement again; those that do
    not are flaky. True when some requirement has a confirmed failure."""
    with player.lock:
        found = {rid: list(kept) for rid, kept in player.shortest.items()}
    confirmed = False
    for candidates in found.values():
        if any(f.replayed for f in candidates):
            confirmed = True
            continue
        for failure in [f for f in candidates if f.replayed is None][:CANDIDATES]:
            again = _fails_again(player, failure.steps, failure, budget)
            with player.lock:
                failure.replayed = again
            if again:
                confirmed = True
                _minimize(player, failure, budget)
                break
    return confirmed


def _fails_again(player: _Player, steps: list[Operation], failure: Failure, budget: Budget) -> bool:
    judgement = player.play(steps, budget)
    return failure.violation.requirement in {v.requirement for v in judgement.violations}


def _minimize(player: _Player, failure: Failure, budget: Budget) -> None:
    """After Hypothesis: drop single steps, last first, while the scenario still fails its
    requirement (a flaky scenario met while shrinking can stop Hypothesis short). The result
    counts only when it fails a second time; then it is kept as confirmed. BudgetSpent ends
    it with what was confirmed so far."""
    rid = failure.violation.requirement
    steps = list(failure.steps)
    for index in reversed(range(len(steps))):
        trial = steps[:index] + steps[index + 1 :]
        if trial and _fails_again(player, trial, failure, budget):
            steps = trial
    if len(steps) == len(failure.steps) or not _fails_again(player, steps, failure, budget):
        return
    wire = [step.model_dump(mode="json") for step in steps]
    with player.lock:
        for kept in player.shortest.get(rid, []):
            if kept.wire() == wire:
                kept.replayed = True


def _save(failure: Failure, scenarios_dir: Path, report_dir: Path) -> None:
    """``<report>/scenarios/<ID>-<hash>.json``: the steps in order, as the operations parse."""
    scenarios_dir.mkdir(parents=True, exist_ok=True)
    path = scenarios_dir / f"{failure.violation.requirement}-{failure.digest()}.json"
    data = {
        "schema": SCHEMA,
        "vendor": failure.vendor,
        "part": failure.part,
        "requirement": failure.violation.requirement,
        "message": failure.violation.message,
        "described": failure.numbered(),
        "steps": failure.wire(),
    }
    path.write_text(json.dumps(data, indent=1) + "\n")
    try:
        failure.file = str(path.relative_to(report_dir))
    except ValueError:
        failure.file = str(path)


@dataclass(frozen=True)
class SavedScenario:
    vendor: str
    requirement: str
    steps: list[dict[str, Any]]
    part: str | None = None  # the explorer's part; None: the vendor's first


def load_scenario(path: Path) -> SavedScenario:
    """A scenario file written by an exploration; ValueError naming what is wrong."""
    if not path.is_file():
        raise ValueError(f"--replay: no file {path}")
    if path.stat().st_size > FILE_LIMIT_BYTES:
        raise ValueError(f"--replay: {path} is larger than {FILE_LIMIT_BYTES} bytes")
    try:
        data = json.loads(path.read_text("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"--replay: {path} is not JSON ({exc})") from None
    if not isinstance(data, dict) or data.get("schema") != SCHEMA:
        raise ValueError(f"--replay: {path} is not a scenario file (schema {SCHEMA})")
    vendor, requirement, steps = data.get("vendor"), data.get("requirement"), data.get("steps")
    if not isinstance(vendor, str) or not isinstance(requirement, str):
        raise ValueError(f"--replay: {path} names no vendor or requirement")
    if not isinstance(steps, list) or not steps or not all(isinstance(s, dict) for s in steps):
        raise ValueError(f"--replay: {path} has no steps (a list of operations)")
    part = data.get("part")
    if part is not None and not isinstance(part, str):
        raise ValueError(f"--replay: {path} names its part as {part!r}, not a string")
    return SavedScenario(vendor, requirement, steps, part or None)


def replay(
    harness: Harness, explorer: Explorer, saved: SavedScenario, budget_s: float
) -> tuple[Exploration, Judgement]:
    """Re-drive a saved scenario and re-judge it."""
    stats = Exploration(saved.vendor, budget_s, part=explorer.part)
    try:
        steps = [explorer.parse(step) for step in saved.steps]
    except ValueError as exc:
        raise ValueError(f"--replay: step does not parse: {exc}") from None
    player = _Player(harness, explorer, stats)
    started = time.monotonic()
    try:
        judgement = player.play(steps, Budget(started + budget_s))
    except BudgetSpent:
        judgement = Judgement(not_judged=f"the replay took longer than {budget_s:g} s")
    stats.spent_s = time.monotonic() - started
    with player.lock:
        stats.failures = [kept[0] for kept in player.shortest.values()]
    for failure in stats.failures:
        failure.replayed = True
    from simulators.evidence import RUN

    harness.cause = RUN
    return stats, judgement
