"""The SUT as an Apps and Books API client (``api_client = true``): APL-API-01..04.

The harness arms the API before the SUT starts: the first two calls after client config are
answered 503 + Retry-After then 429/9646, and the SUT's first event is held PENDING for the
whole run. The SUT's timers run in real time, so polling gaps and back-off are measured in real
seconds, over everything the SUT did during the run: these checks are judged last, pass only on
evidence, fail on a violation, and are not-verified (with the reason) otherwise.
"""

from __future__ import annotations

import itertools

import pytest

from conformance.apple.driver import AppleDriver
from conformance.apple.running import API_RETRY_AFTER_S
from conformance.driver import prose
from conformance.verdicts import Check
from simulators.apple.api import ApiRequest
from simulators.problem import Problem

pytestmark = pytest.mark.run_last(11)  # after every other vendor check: the SUT's timers have run
requirement = pytest.mark.requirement

STARTUP_WAIT_S = 20.0  # how long the SUT has to make its first API calls
POLL_MIN_GAP_S = 30.0  # "wait at least 30 seconds between subsequent status queries"
RETRY_GRACE_S = 10.0  # how long past Retry-After we wait for the SUT to call again
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
    check.no_reproducer(
        "the SUT's own calls to the Apps and Books API and their timing are judged: no request "
        "to the SUT replays them (`conformance-sim serve apple` logs them as the SUT makes them)"
    )


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
    configs = [r for r in api.calls() if r.endpoint == "POST client/config"]
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
    """Evidence is a gap of at least 30 s between two polls of a PENDING event, or 30 s of
    silence after one while it stays PENDING; a shorter gap is a violation."""
    _require_api_client(apple, check)
    api, clock = apple.sim.api, apple.harness.clock
    check.expect(
        f"no two GET status polls of a PENDING event less than {POLL_MIN_GAP_S:.0f} s apart"
    )
    api.wait_for(_pending_polls, STARTUP_WAIT_S)
    polls = _pending_polls(api.calls())
    if not polls:
        raise check.not_verified(
            "the SUT polled no PENDING event (it made no mutating call, or never asked for the "
            "status)"
        )
    event = polls[0].event_id
    verdict = _judge_polls(polls, event, clock.real())
    if verdict is None:  # not yet 30 s since the last poll: watch until there is evidence
        last = [p for p in polls if p.event_id == event][-1]
        api.wait_for(
            lambda rs: (
                clock.real() >= last.real_s + POLL_MIN_GAP_S + MEASUREMENT_SLACK_S
                or len([p for p in _pending_polls(rs) if p.event_id == event]) > len(polls)
            ),
            max(0.0, last.real_s + POLL_MIN_GAP_S + MEASUREMENT_SLACK_S - clock.real()),
        )
        polls = _pending_polls(api.calls())
        verdict = _judge_polls(polls, event, clock.real())
    mine = [p for p in polls if p.event_id == event]
    gaps = [round(b.real_s - a.real_s, 1) for a, b in itertools.pairwise(mine)]
    check.observe(
        f"{len(mine)} poll(s) of PENDING event {event}"
        + (f", {prose(gaps)} s apart" if gaps else "")
    )
    if verdict is None:
        raise check.not_verified("no 30 s stretch after a poll could be observed in this run")
    assert verdict == "ok", verdict


def _judge_polls(polls: list[ApiRequest], event: str | None, now_real_s: float) -> Problem:
    """ "ok" with evidence, a violation's description, or None while there is no evidence yet."""
    mine = [p for p in polls if p.event_id == event]
    for a, b in itertools.pairwise(mine):
        if b.real_s - a.real_s < POLL_MIN_GAP_S - MEASUREMENT_SLACK_S:
            return f"polled PENDING event {event} again after {b.real_s - a.real_s:.1f} s (at least 30 s required)"
    long_gap = any(
        b.real_s - a.real_s >= POLL_MIN_GAP_S - MEASUREMENT_SLACK_S
        for a, b in itertools.pairwise(mine)
    )
    silence = now_real_s - mine[-1].real_s >= POLL_MIN_GAP_S
    return "ok" if long_gap or silence else None


@requirement("APL-API-03")
def test_polls_when_no_notification(apple: AppleDriver, check: Check) -> None:
    _require_api_client(apple, check)
    api = apple.sim.api
    if not apple.harness.settings.slow:
        raise check.not_verified(
            "slow check (waits 5 minutes of the SUT's own timer): run with --slow"
        )
    check.expect("a GET status poll once 5 minutes pass without a notification for the event")
    creations = [r for r in api.calls() if r.event_id and r.method == "POST" and r.status == 200]
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
        for p in _pending_polls(api.calls())
        if p.event_id == event.event_id and p.real_s >= created.real_s + NO_NOTIFICATION_S
    ]
    api.release_events()
    check.observe(f"{len(late)} poll(s) after 5 minutes without a notification")
    assert late, "no status poll after 5 minutes without a notification"


@requirement("APL-API-04")
@pytest.mark.parametrize("answer", ["503-retry-after", "429-9646"])
def test_backs_off(apple: AppleDriver, check: Check, answer: str) -> None:
    """Evidence is the SUT's next call to the endpoint that was answered 503 (Retry-After) or
    429: no sooner than Retry-After (or 1 s after a 429) passes; sooner fails."""
    _require_api_client(apple, check)
    api, clock = apple.sim.api, apple.harness.clock
    status = 503 if answer.startswith("503") else 429
    need = float(API_RETRY_AFTER_S) if status == 503 else BACKOFF_MIN_S
    check.expect(f"after {answer}, the next call to that endpoint no sooner than {need:g} s")

    def answered(rs: list[ApiRequest]) -> list[ApiRequest]:
        return [r for r in rs if r.status == status and r.error_number in (9729, 9646)]

    api.wait_for(answered, STARTUP_WAIT_S)
    hits = answered(api.calls())
    if not hits:
        raise check.not_verified(f"the SUT made no API call that could be answered {status}")
    hit = hits[0]

    def again(rs: list[ApiRequest]) -> list[ApiRequest]:
        return [r for r in rs if r.endpoint == hit.endpoint and r.real_s > hit.real_s]

    deadline = hit.real_s + need + RETRY_GRACE_S
    api.wait_for(again, max(0.0, deadline - clock.real()))
    after = again(api.calls())
    if not after:
        check.observe(
            f"{hit.endpoint} answered {status}; not called again in {need + RETRY_GRACE_S:g} s"
        )
        raise check.not_verified(
            f"the SUT did not call {hit.endpoint} again after the {status}, so its back-off "
            "could not be observed"
        )
    gap = after[0].real_s - hit.real_s
    check.observe(f"{hit.endpoint} answered {status}; next call {gap:.2f} s later")
    assert gap >= need - MEASUREMENT_SLACK_S, (
        f"retried {hit.endpoint} {gap:.2f} s after {answer} (needs ≥ {need:g} s)"
    )
