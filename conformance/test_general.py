"""Requirements of every SUT (GEN-LIVE-01, GEN-OBS-01), judged at the end of the run."""

from __future__ import annotations

import pytest

from conformance.harness import Harness
from conformance.verdicts import Check

pytestmark = pytest.mark.run_last(14)  # last: after every vendor check and every restart
requirement = pytest.mark.requirement


@requirement("GEN-LIVE-01")
def test_sut_still_up(harness: Harness, check: Check) -> None:
    manifest = harness.manifest
    check.expect("the SUT process is running and its readiness probe answers")
    check.no_reproducer(
        "whether the SUT is still up at the end is judged: the failing checks before this one "
        "carry the requests that preceded its going down"
    )
    problem = harness.sut_alive() or harness.sut_down
    if manifest.process is None:  # nothing launched: the SUT's endpoints are all there is
        endpoints = harness.endpoints()
        if not endpoints:
            raise check.not_verified("no process, readiness probe or SUT endpoint to check")
        problem = next(filter(None, map(harness.unreachable, endpoints)), None)
        check.note(
            "no [process] or readiness probe declared: checked that the SUT's endpoints "
            "still accept connections"
        )
    check.observe(problem or "up")
    assert problem is None, problem


@requirement("GEN-OBS-01")
def test_sut_reports_to_observer(harness: Harness, check: Check) -> None:
    reported = harness.observer.count()
    check.expect("at least one record POSTed to the observer during the run")
    check.no_reproducer(
        "the SUT's reports over the whole run are judged: every reproducer of the run sends "
        "it something it should report to $CONFORMANCE_OBSERVER_URL"
    )
    check.observe(f"{reported} record(s)")
    assert reported, (
        "the SUT reported nothing to the observer; the *-OBS-* requirements could not be verified"
    )
