"""Apple subscriptions: a deferred SUBSCRIPTION_MANAGEMENT DISASSOCIATE arrives weeks after its
request (APL-SUB-01), and an API-mode SUT manages seats without errors and without treating a
deferred disassociation as lost (APL-SUB-02).

The vendor doc: "When you set the deferred flag to true in a disassociation request, the
notification arrives at the end of the current billing period rather than immediately."
"""

from __future__ import annotations

import uuid

import pytest

from conformance.apple.driver import AppleDriver, answer
from conformance.driver import prose
from conformance.verdicts import Check, HarnessError
from simulators.apple.api import ApiRequest
from simulators.apple.delivery import Delivery
from simulators.apple.operations import EndBillingPeriod, ManageSubscriptions, SeatSubscription

requirement = pytest.mark.requirement

DAY_S = 24 * 3600.0
STARTUP_WAIT_S = 20.0  # how long the SUT has to make its subscription calls (as test_api)
NO_NOTIFICATION_S = 300.0  # "If your MDM server doesn't receive a notification … within 5 minutes"
POLL_MIN_GAP_S = 30.0  # "wait at least 30 seconds between subsequent status queries"
GRACE_S = 10.0  # past the SUT's 5-minute timer and one poll, before the absence is judged
FAST_WATCH_S = 20.0  # without --slow: at least this long after the deferred call is looked at
# Errors the harness injects (APL-API-04), never the simulated service's own answer.
INJECTED_ERRORS = frozenset({9646, 9729})
SUBSCRIPTION_MUTATIONS = ("POST subscriptions/associate", "POST subscriptions/disassociate")


@requirement("APL-SUB-01")
@pytest.mark.run_last(12)  # after every other vendor check: it jumps the shared clock by weeks
def test_deferred_disassociation_processed_weeks_later(apple: AppleDriver, check: Check) -> None:
    """A seat assigned before the run is disassociated with ``deferred``; the billing period
    ends (simulated); the SUBSCRIPTION_MANAGEMENT the simulated service then sends, under an
    eventId the SUT never saw pending, must be processed (observer)."""
    apple.harness.require_sut()
    user = f"conformance-seat-{uuid.uuid4().hex[:8]}"
    apple.perform(SeatSubscription(client_user_id=user))
    event_id = apple.perform(
        ManageSubscriptions(action="disassociate", client_user_ids=[user], deferred=True)
    )
    check.expect(
        "the SUBSCRIPTION_MANAGEMENT DISASSOCIATE sent at the end of the billing period, weeks "
        "(simulated) after its deferred request, reported to the observer"
    )
    released = apple.perform(EndBillingPeriod(), timeout=EndBillingPeriod().timeout_s + 30)
    mine = next((r for r in released if r.event_id == event_id), None)
    if mine is None:
        raise HarnessError(f"the deferred disassociation {event_id} was not released")
    notification = mine.notification
    deliveries: list[Delivery] = mine.deliveries
    if not deliveries:  # the SUT configured no notification URL (or not this type)
        check.note("the simulated API had no receiver for it: delivered to the declared URL")
        deliveries = [apple.deliver(notification)]
    apple.reproduce(check, notification.to_wire())
    days = (mine.released_sim_s - mine.requested_sim_s) / DAY_S
    attempts = [a for d in deliveries for a in d.attempts]
    nid = notification.notificationId
    if unverifiable := apple.unacknowledged(deliveries) or apple.fence(awaiting=[nid]):
        raise check.not_verified(unverifiable)
    reports = apple.reports_of([nid])
    check.observe(
        f"sent {days:.1f} simulated days after the request (eventId {event_id}); answered "
        f"{answer(attempts[-1])}; reported {len(reports)} time(s)"
    )
    assert reports, (
        f"the deferred disassociation (eventId {event_id}, {days:.0f} simulated days after its "
        "request) was acknowledged but never reported as processed"
    )


def _deferred_calls(apple: AppleDriver, calls: list[ApiRequest]) -> list[ApiRequest]:
    """The SUT's accepted ``deferred`` disassociations."""
    events = apple.sim.service.events
    return [
        r
        for r in calls
        if r.endpoint == "POST subscriptions/disassociate"
        and r.status == 200
        and r.event_id in events
        and events[r.event_id].deferred
    ]


def _repeats(apple: AppleDriver, deferred: ApiRequest, calls: list[ApiRequest]) -> list[ApiRequest]:
    """Later disassociations by the SUT (deferred or not) naming a seat of ``deferred``."""
    events = apple.sim.service.events
    seats = set(events[deferred.event_id or ""].seats)
    return [
        r
        for r in calls
        if r.endpoint == "POST subscriptions/disassociate"
        and r.real_s > deferred.real_s
        and r.event_id in events
        and seats & set(events[r.event_id].seats)
    ]


@requirement("APL-SUB-02")
@pytest.mark.run_last(11)  # with the API checks: the SUT's own timers have run
def test_subscription_calls_accepted(apple: AppleDriver, check: Check) -> None:
    """Every call the SUT made to the subscriptions API was accepted (the simulated service
    answers as the vendor documents: an error means the request was not a valid one), and it
    associated or disassociated at least one seat."""
    apple.require_api_client(check)
    api = apple.sim.api
    check.expect("no subscriptions API call answered with an error, a seat associated")
    api.wait_for(lambda rs: _deferred_calls(apple, rs), STARTUP_WAIT_S)
    calls = [r for r in api.calls() if r.path.startswith("subscriptions")]
    if not calls:
        raise check.not_verified("the SUT made no call to the subscriptions API")
    refused = [r for r in calls if r.status >= 400 and r.error_number not in INJECTED_ERRORS]
    managed = [r for r in calls if r.endpoint in SUBSCRIPTION_MUTATIONS and r.status == 200]
    check.observe(
        f"{len(calls)} subscriptions call(s), {len(managed)} accepted associate/disassociate, "
        f"{len(refused)} refused"
        + (
            f": {prose(f'{r.endpoint} {r.status}/{r.error_number}' for r in refused[:5])}"
            if refused
            else ""
        )
    )
    assert not refused, (
        f"{refused[0].endpoint} was answered {refused[0].status} errorNumber "
        f"{refused[0].error_number}"
    )
    if not managed:
        raise check.not_verified("the SUT only read subscriptions: it managed no seat")


@requirement("APL-SUB-02")
@pytest.mark.run_last(11)
def test_deferred_disassociation_not_treated_as_lost(apple: AppleDriver, check: Check) -> None:
    """After a ``deferred`` disassociation no notification comes for weeks (simulated): the SUT
    must not disassociate those seats again. A repeat at any time is a violation; its absence
    is evidence only once the SUT's 5-minute timer (and a poll) have run, with --slow."""
    apple.require_api_client(check)
    api, clock = apple.sim.api, apple.harness.clock
    check.expect(
        "no second disassociation of the seats of a deferred disassociation while no "
        "notification comes (watched for 5 minutes and a poll)"
    )
    api.wait_for(lambda rs: _deferred_calls(apple, rs), STARTUP_WAIT_S)
    deferred_calls = _deferred_calls(apple, api.calls())
    if not deferred_calls:
        raise check.not_verified("the SUT made no deferred disassociation")
    deferred = deferred_calls[0]
    watch_s = FAST_WATCH_S
    if apple.harness.settings.slow:
        watch_s = NO_NOTIFICATION_S + POLL_MIN_GAP_S + GRACE_S
    api.wait_for(
        lambda rs: _repeats(apple, deferred, rs),
        max(0.0, deferred.real_s + watch_s - clock.real()),
    )
    repeats = _repeats(apple, deferred, api.calls())
    watched = clock.real() - deferred.real_s
    check.observe(
        f"deferred disassociation (eventId {deferred.event_id}) watched for {watched:.0f} s: "
        + (
            prose(f"disassociated again {r.real_s - deferred.real_s:.1f} s later" for r in repeats)
            if repeats
            else "not repeated"
        )
    )
    assert not repeats, (
        f"the seats of deferred disassociation {deferred.event_id} were disassociated again "
        f"{repeats[0].real_s - deferred.real_s:.1f} s later, with no notification due before "
        "the end of the billing period"
    )
    if watched < NO_NOTIFICATION_S + POLL_MIN_GAP_S:
        raise check.not_verified(
            f"slow check: only {watched:.0f} s after the deferred disassociation were watched, "
            "not the SUT's 5-minute timer: run with --slow"
        )
