"""From pytest outcomes to check results, and from the run to its report files.

The heavy half of the plugin: loaded only once a conformance run has started.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from conformance import report
from conformance.catalogue import requirement
from conformance.vendors import discover
from conformance.verdicts import NO_REPRODUCER, Check, CheckResult, NotVerified, blame_harness

if TYPE_CHECKING:
    from conformance.plugin import RunState

__all__ = ["record_result", "write_run_report", "write_startup_report"]

HISTORY_LIMIT = 200  # run-level events of the actors a check asks for, at most


def record_result(
    state: RunState,
    item: pytest.Item,
    call: pytest.CallInfo[None],
    rep: pytest.TestReport,
    ids: list[str],
) -> None:
    """Turn one check's pytest outcome into a :class:`CheckResult` (and fix up ``rep``)."""
    exc = call.excinfo
    strict = state.settings.strict if state.settings else False
    if rep.passed:
        outcome, message = "pass", "as required"
    elif exc is not None and exc.errisinstance(NotVerified):
        outcome, message = "not-verified", str(exc.value)
        rep.outcome = "skipped"
        rep.longrepr = (str(item.path), item.location[1] or 0, f"not-verified: {message}")
    elif rep.skipped:
        outcome, message = "not-verified", _skip_reason(rep)
    elif exc is not None and exc.errisinstance((AssertionError, pytest.fail.Exception)):
        outcome, message = "fail", _first_line(str(exc.value))
        if all(requirement(r).level == "SHOULD" for r in ids) and not strict:
            outcome = "warn"
            rep.outcome = "passed"
            rep.sections.append(("conformance warning", message))
    else:
        outcome = "error"
        message = _first_line(exc.exconly() if exc is not None else "harness error")
    harness = state.harness
    if harness is not None:
        errors = harness.errors()
        blamed = blame_harness(outcome, message, errors[state.errors_seen :])
        state.errors_seen = len(errors)
        if blamed != (outcome, message):
            outcome, message = blamed
            rep.outcome = "failed"
            rep.longrepr = message
    check = item.funcargs.get("check") if hasattr(item, "funcargs") else None
    if outcome == "fail":  # the SUT's failure, said plainly (a harness error keeps its traceback)
        first = next(iter(getattr(check, "reproduce", [])), None)
        rep.longrepr = f"{' '.join(ids)}: {message}" + (f"\n  reproduce: {first}" if first else "")
    evidence: list[dict[str, Any]] = []
    cut = 0
    if harness is not None:
        timeline = harness.recorder.timeline(item.nodeid)
        events = timeline.events()
        cut = timeline.cut
        actors: set[str] = getattr(check, "history_actors", set())
        if actors:
            history = [
                e
                for e in harness.recorder.timeline().events()
                if e.actor in actors or e.peer in actors
            ]
            cut += max(0, len(history) - HISTORY_LIMIT)
            events = sorted([*history[-HISTORY_LIMIT:], *events], key=lambda e: e.seq)
        evidence = [e.to_json() for e in events]
    notes = list(getattr(check, "notes", [])) + (
        [f"… and {check.notes_more} more notes"]
        if isinstance(check, Check) and check.notes_more
        else []
    )
    reproduce = list(getattr(check, "reproduce", []))
    if outcome in ("fail", "warn") and not reproduce:  # say why there is nothing to replay
        why = getattr(check, "why_no_reproducer", None)
        notes.append(f"no reproducer: {why}" if why else NO_REPRODUCER)
    state.results.append(
        CheckResult(
            name=item.nodeid,
            requirement_ids=ids,
            outcome=outcome,
            message=message,
            expected=getattr(check, "expected", None),
            observed=getattr(check, "observed", None),
            reproduce=reproduce,
            reproduce_more=getattr(check, "reproduce_more", 0),
            notes=notes,
            duration_s=round(rep.duration, 3),
            evidence=evidence,
            evidence_cut=cut,
        )
    )


def _skip_reason(rep: pytest.TestReport) -> str:
    if isinstance(rep.longrepr, tuple):
        return str(rep.longrepr[2]).removeprefix("Skipped: ")
    return str(rep.longrepr)


def _first_line(text: str, limit: int = 500) -> str:
    text = text.strip()
    line = text.split("\nassert ")[0].split("\n+")[0].strip()
    return line[:limit]


def _titles() -> dict[str, str]:
    return {name: plugin.title for name, plugin in discover().items()}


def write_run_report(state: RunState) -> dict[str, Any]:
    harness = state.harness
    settings = state.settings
    assert harness is not None and settings is not None
    log_tail = harness.sut.log_tail() if harness.sut is not None else ""
    run_timeline = harness.recorder.timeline()
    data = report.build_report(
        report.RunInfo(
            run_id=state.run_id,
            started_at=state.started_at,
            sut_name=settings.manifest.name,
            sut_source=settings.manifest.source,
            vendors=settings.vendors,
            titles=_titles(),
            launched=settings.manifest.process is not None,
            strict=settings.strict,
            slow=settings.slow,
            simulated_s=harness.clock.now(),
            sut_log_tail=log_tail,
            run_events=[e.to_json() for e in run_timeline.events()],
            run_events_cut=run_timeline.cut,
            evidence_dropped=harness.recorder.dropped,
            observer_refused={
                v: dict(harness.observer.refusals(v).counts) for v in settings.vendors
            },
            **_gate_info(state),
            interrupted=state.interrupted,
            not_run=_not_run(state),
            exploration=state.exploration,
        ),
        state.results,
    )
    return _written(state, data)


def _not_run(state: RunState) -> list[str]:
    """The checks selected for the run that produced no result (an interrupted run)."""
    ran = {r.name for r in state.results}
    return [name for name in state.planned if name not in ran]


def write_startup_report(state: RunState, message: str) -> dict[str, Any]:
    settings = state.settings
    data = report.build_report(
        report.RunInfo(
            run_id=state.run_id,
            started_at=state.started_at,
            sut_name=settings.manifest.name if settings else "sut",
            sut_source=settings.manifest.source if settings else "",
            vendors=state.vendors,
            titles=_titles(),
            launched=bool(settings and settings.manifest.process is not None),
            strict=settings.strict if settings else False,
            slow=settings.slow if settings else False,
            startup_error=message,
            sut_log_tail=(
                state.harness.sut.log_tail()
                if state.harness is not None and state.harness.sut is not None
                else ""
            ),
            **_gate_info(state),
        ),
        [],
    )
    return _written(state, data)


def _gate_info(state: RunState) -> dict[str, Any]:
    """The report's provenance (``"run"``), waivers and baseline (docs/sut-contract.md §7)."""
    import time

    from conformance.provenance import manifest_digest, provenance

    settings = state.settings
    source = settings.manifest.source if settings else ""
    canonical = settings.manifest.model_dump_json(exclude={"source"}) if settings else ""
    profiles = {}
    if settings is not None:
        for name in settings.vendors:
            section = settings.manifest.section(name)
            if section is not None:
                profiles[name] = sorted(discover()[name].profiles(section))
    return {
        "provenance": provenance(
            options=state.options,
            profiles=profiles,
            sut_source=source,
            sut_digest=manifest_digest(source, canonical),
            started_at=state.started_at,
            ended_at=time.time(),
        ),
        "waivers": state.waivers,
        "baseline": state.baseline,
    }


def _written(state: RunState, data: dict[str, Any]) -> dict[str, Any]:
    """Write the report files, then the CI summaries, then prune old run folders."""
    from conformance import summaries

    paths = report.write_reports(data, state.run_dir, state.report_dir)
    summaries.write_summaries(data, paths, state.summary_targets)
    if state.keep_reports:
        summaries.prune_runs(state.report_dir, state.keep_reports, current=state.run_dir)
    return paths
