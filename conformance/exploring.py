"""``--explore`` and ``--replay`` in a conformance run (docs/exploration.md): the plugin's side
of scenario exploration. Runs after the scripted checks, on the same harness (started here when
``--replay`` ran no check), and turns what the exploration found into check results under the
requirement each scenario broke, and into the report's "Exploration" section.
"""

from __future__ import annotations

import shlex
from typing import TYPE_CHECKING

from conformance.exploration import (
    Explorer,
    Failure,
    explore,
    load_scenario,
    replay,
)
from conformance.vendors import vendor
from conformance.verdicts import CheckResult

if TYPE_CHECKING:
    from conformance.harness import Harness
    from conformance.plugin import RunState

__all__ = ["run_exploration"]

REPLAY_BUDGET_S = 120.0  # a saved scenario is short: its replay takes at most this long


def run_exploration(state: RunState) -> bool:
    """Explore (or replay) every vendor of the run; True when a requirement failed."""
    harness = state.harness
    if harness is None:
        harness = _start_harness(state)
        if harness is None:
            return False
    if harness.sut_down is not None:
        state.exploration.append(
            {"unavailable": f"the SUT was down before exploring: {harness.sut_down}"}
        )
        return False
    failed = False
    if state.replay is not None:
        saved = load_scenario(state.replay)
        explorers = vendor(saved.vendor).explorers(harness)
        explorer = next(
            (x for x in explorers if saved.part in (None, x.part)),
            None,
        )
        if explorer is None:
            what = f"{saved.vendor} {saved.part or ''}".strip()
            state.exploration.append(
                {"vendor": saved.vendor, "part": saved.part or "",
                 "unavailable": f"the SUT offers nothing to replay {what} against"}
            )  # fmt: skip
            return False
        try:
            stats, judgement = replay(harness, explorer, saved, REPLAY_BUDGET_S)
        except ValueError as exc:  # a step the vendor's operations refuse: nothing was sent
            state.results.append(
                CheckResult(
                    name=f"replay::{state.replay.name}",
                    requirement_ids=[saved.requirement],
                    outcome="error",
                    message=f"{exc}; replay a file an exploration wrote",
                )
            )
            return True
        broken = {v.requirement: v for v in judgement.violations}
        outcome = "fail" if saved.requirement in broken else "pass"
        message = (
            broken[saved.requirement].message
            if saved.requirement in broken
            else "the replayed scenario no longer breaks it"
        )
        if judgement.not_judged is not None:
            outcome, message = "not-verified", judgement.not_judged
        state.results.append(
            CheckResult(
                name=f"replay::{state.replay.name}",
                requirement_ids=[saved.requirement],
                outcome=outcome,
                message=message,
                expected="the scenario, replayed, keeps the requirement",
                observed="\n".join(
                    f"{i}. {explorer.parse(step).describe()}"
                    for i, step in enumerate(saved.steps, 1)
                ),
                duration_s=round(stats.spent_s, 3),
                evidence=stats.failures[0].evidence if stats.failures else [],
            )
        )
        stats.failures = [f for f in stats.failures if f.violation.requirement != saved.requirement]
        failed = outcome == "fail" or bool(stats.failures)
        for failure in stats.failures:
            state.results.append(_result(failure, state))
        state.exploration.append({**stats.to_json(), "replay": str(state.replay)})
        return failed
    for name in state.vendors:
        # The budget is the vendor's: its parts (e.g. two channels) share it.
        parts: list[Explorer | None] = [*vendor(name).explorers(harness)] or [None]
        for part in parts:
            stats = explore(
                harness,
                name,
                part,
                state.explore_s / len(parts),
                seed=state.explore_seed,
                database=state.report_dir / "hypothesis",
                scenarios_dir=state.run_dir / "scenarios",
                report_dir=state.run_dir,
            )
            for failure in stats.failures:
                state.results.append(_result(failure, state))
                failed = True
            state.exploration.append(stats.to_json())
    return failed


def _result(failure: Failure, state: RunState) -> CheckResult:
    """A failing scenario as a check result under the requirement it broke."""
    saved = state.run_dir / (failure.file or "")
    replay_command = shlex.join(["pytest", f"conformance/{failure.vendor}", f"--replay={saved}"])
    part = f"{failure.part}::" if failure.part else ""
    return CheckResult(
        name=f"exploration::{failure.vendor}::{part}{failure.violation.requirement}",
        requirement_ids=[failure.violation.requirement],
        outcome="fail",
        message=f"{failure.violation.message} (a generated scenario of "
        f"{len(failure.steps)} step(s), failed again on replay)",
        expected="every scenario of vendor operations keeps the requirement",
        observed="\n".join(failure.numbered()),
        reproduce=[replay_command],
        evidence=failure.evidence,
        evidence_cut=failure.evidence_cut,
    )


def _start_harness(state: RunState) -> Harness | None:
    """The harness, started here when no scripted check started it (``--replay``)."""
    from conformance.harness import Harness
    from conformance.launcher import LaunchError

    assert state.settings is not None
    harness = Harness(state.settings, state.run_dir)
    state.harness = harness
    try:
        harness.start()
    except (LaunchError, OSError) as exc:
        state.startup_error = f"conformance: {exc}"
        harness.stop()
        return None
    return harness
