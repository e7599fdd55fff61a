"""Requirements of every SUT (GEN-LIVE-01, GEN-OBS-01), judged at the end of the run."""

from __future__ import annotations

import socket
from urllib.parse import urlsplit

import pytest

from conformance.harness import Harness
from conformance.verdicts import Check

pytestmark = pytest.mark.run_last(9)
requirement = pytest.mark.requirement


@requirement("GEN-LIVE-01")
def test_sut_still_up(harness: Harness, check: Check) -> None:
    manifest = harness.manifest
    check.expect("the SUT process is running and its readiness probe answers")
    problem = harness.sut_alive()
    if manifest.process is None:  # nothing launched: the receiver URL is all there is to check
        url = manifest.apple.webhook_url if manifest.apple else None
        if url is None:
            raise check.not_verified("no process, readiness probe or receiver URL to check")
        parts = urlsplit(url)
        try:
            with socket.create_connection(
                (parts.hostname or "", parts.port or (443 if parts.scheme == "https" else 80)), 5
            ):
                pass
        except OSError as exc:
            problem = f"{url} no longer accepts connections: {exc}"
        check.note(
            "no [process] or readiness probe declared: checked that the receiver URL "
            "still accepts connections"
        )
    check.observe(problem or "up")
    assert problem is None, problem


@requirement("GEN-OBS-01")
def test_sut_reports_to_observer(harness: Harness, check: Check) -> None:
    observations = list(harness.observer.observations)
    check.expect("at least one record POSTed to the observer during the run")
    check.observe(f"{len(observations)} record(s)")
    assert observations, (
        "the SUT reported nothing to the observer; the *-OBS-* requirements could not be verified"
    )
