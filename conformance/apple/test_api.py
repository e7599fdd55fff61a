"""The SUT as an Apps and Books API client (``api_client = true``): APL-API-01..04.

The harness arms the API before the SUT starts: the first two calls after client config are
answered 503 + Retry-After then 429/9646, and the SUT's first event is held PENDING. SUT timers
run in real time, so polling gaps and back-off are measured in real seconds.
"""

from __future__ import annotations

import itertools

import pytest

from conformance.apple.conftest import AppleDriver
from conformance.apple.sim import API_RETRY_AFTER_S
from conformance.verdicts import Check
from simulators.apple.api import ApiRequest

pytestmark = pytest.mark.run_last(1)  # after the receiver checks: the SUT's timers have run
requirement = pytest.mark.requirement

STARTUP_WAIT_S = 20.0  # how long the SUT has to make its first API calls
POLL_MIN_GAP_S = 30.0  # "wait at least 30 seconds between subsequent status queries"
QUICK_WINDOW_S = 6.0  # without --slow: how long after the first PENDING poll we watch
NO_NOTIFICATION_S = 300.0  # "If your MDM server doesn't receive a notification … within 5 minutes"
BACKOFF_MIN_S = 1.0  # the least pause after a 429 that counts as backing off
# Gaps are measured in this process from requests another process timed: allow the
# measurement this much slack (scheduling, loopback latency), never more.
MEASUREMENT_SLACK_S = 0.05


def _require_api_client(apple: AppleDriver, check: Check) -> None:
    section = apple.sim.section
    if section is None or not section.api_client:
        raise check.not_verified("profile not declared: the SUT's [apple] api_client is false")
    check.include_history("apple-api")


def _pending_polls(requests: list[ApiRequest]) -> list[ApiRequest]:
    return [r for r in requests if r.endpoint == "GET status" and r.event_status == "PENDING"]


@requirement("APL-API-01")
def test_configures_notifications(apple: AppleDriver, check: Check) -> None:
    _require_api_client(apple, check)
    api = apple.sim.api
    check.expect(
        "POST client/config with notificationUrl and notificationAuthToken (HTTPS URL), "
        "accepted after the synchronous TEST_NOTIFICATION"
    )
    api.wait_for(lambda rs: any(r.endpoint == "POST client/config" for r in rs), STARTUP_WAIT_S)
    configs = [r for r in api.requests if r.endpoint == "POST client/config"]
    if not configs:
        pytest.fail(f"the SUT made no POST client/config within {STARTUP_WAIT_S:.0f} s")
    check.observe(
        "; ".join(f"{r.status}" + (f"/{r.error_number}" if r.error_number else "") for r in configs)
    )
    last = configs[-1]
    assert last.status == 200, (
        f"client/config was rejected: {last.status} errorNumber {last.error_number}"
    )
    url = apple.sim.service.client_config.get("notificationUrl", "")
    assert url.startswith("https://"), f"configured notification URL {url!r} is not HTTPS"


@requirement("APL-API-02")
def test_status_polls_are_30s_apart(apple: AppleDriver, check: Check) -> None:
    _require_api_client(apple, check)
    api = apple.sim.api
    slow = apple.harness.settings.slow
    window = POLL_MIN_GAP_S + 5 if slow else QUICK_WINDOW_S
    check.expect(
        f"no two GET status polls of a PENDING event less than {POLL_MIN_GAP_S:.0f} s apart"
    )
    api.wait_for(lambda rs: _pending_polls(rs), STARTUP_WAIT_S)
    polls = _pending_polls(api.requests)
    if not polls:
        if not slow:
            api.release_events()
        raise check.not_verified(
            "the SUT polled no PENDING event (it made no mutating call, or "
            "never asked for the status)"
        )
    first = polls[0]
    deadline = first.real_s + window
    api.wait_for(
        lambda rs: (
            apple.harness.clock.real() >= deadline
            or len([p for p in _pending_polls(rs) if p.event_id == first.event_id]) > 1
        ),
        max(0.0, deadline - apple.harness.clock.real()),
    )
    polls = [p for p in _pending_polls(api.requests) if p.event_id == first.event_id]
    gaps = [b.real_s - a.real_s for a, b in itertools.pairwise(polls)]
    watched = apple.harness.clock.real() - first.real_s
    check.observe(
        f"{len(polls)} poll(s) of event {first.event_id} in {watched:.1f} s; "
        f"gaps {[round(g, 1) for g in gaps]}"
    )
    if not slow:
        api.release_events()
        check.note(
            f"watched {watched:.0f} s after the first poll; --slow watches a full "
            f"{POLL_MIN_GAP_S:.0f} s window"
        )
    assert all(g >= POLL_MIN_GAP_S - MEASUREMENT_SLACK_S for g in gaps), (
        f"polled a PENDING event again after {min(gaps):.1f} s (at least 30 s required)"
    )


@requirement("APL-API-03")
def test_polls_when_no_notification(apple: AppleDriver, check: Check) -> None:
    _require_api_client(apple, check)
    api = apple.sim.api
    if not apple.harness.settings.slow:
        raise check.not_verified(
            "slow check (waits 5 minutes of the SUT's own timer): run with --slow"
        )
    check.expect("a GET status poll once 5 minutes pass without a notification for the event")
    creations = [r for r in api.requests if r.event_id and r.method == "POST" and r.status == 200]
    held = [e for e in apple.sim.service.events.values() if e.held]
    if not held or not creations:
        raise check.not_verified("no event was held without notifications in this run")
    event = held[0]
    created = next((r for r in creations if r.event_id == event.event_id), creations[0])
    limit = created.real_s + NO_NOTIFICATION_S + POLL_MIN_GAP_S + 10
    api.wait_for(
        lambda rs: any(
            p.event_id == event.event_id and p.real_s >= created.real_s + NO_NOTIFICATION_S
            for p in _pending_polls(rs)
        ),
        max(0.0, limit - apple.harness.clock.real()),
    )
    late = [
        p
        for p in _pending_polls(api.requests)
        if p.event_id == event.event_id and p.real_s >= created.real_s + NO_NOTIFICATION_S
    ]
    api.release_events()
    check.observe(f"{len(late)} poll(s) after 5 minutes without a notification")
    assert late, "no status poll after 5 minutes without a notification"


@requirement("APL-API-04")
@pytest.mark.parametrize("answer", ["503-retry-after", "429-9646"])
def test_backs_off(apple: AppleDriver, check: Check, answer: str) -> None:
    _require_api_client(apple, check)
    api = apple.sim.api
    status = 503 if answer.startswith("503") else 429
    need = float(API_RETRY_AFTER_S) if status == 503 else BACKOFF_MIN_S
    check.expect(f"after {answer}, the next call to that endpoint no sooner than {need:g} s")

    def answered(rs: list[ApiRequest]) -> list[ApiRequest]:
        return [r for r in rs if r.status == status and r.error_number in (9729, 9646)]

    def retried(rs: list[ApiRequest]) -> bool:
        hits = answered(rs)
        return bool(hits) and any(
            r.endpoint == hits[0].endpoint and r.real_s > hits[0].real_s for r in rs
        )

    api.wait_for(retried, STARTUP_WAIT_S + need)
    hits = answered(api.requests)
    if not hits:
        raise check.not_verified(f"the SUT made no API call that could be answered {status}")
    hit = hits[0]
    after = [r for r in api.requests if r.endpoint == hit.endpoint and r.real_s > hit.real_s]
    if not after:
        check.observe(f"{hit.endpoint} answered {status}; not retried within the run")
        check.note("the SUT did not call that endpoint again: no early retry to fault")
        return
    gap = after[0].real_s - hit.real_s
    check.observe(f"{hit.endpoint} answered {status}; next call {gap:.2f} s later")
    assert gap >= need - MEASUREMENT_SLACK_S, (
        f"retried {hit.endpoint} {gap:.2f} s after {answer} (needs ≥ {need:g} s)"
    )
