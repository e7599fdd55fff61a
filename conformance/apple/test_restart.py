"""A deploy of the receiver (APL-REC-01): the harness restarts the launched SUT while
notifications are on their way, and the vendor's retries must bring each one to it once.

It runs after every other check (``restarts_sut``): the SUT is away for a while.
"""

from __future__ import annotations

import pytest

from conformance.apple.driver import AppleDriver, answer
from conformance.driver import DUPLICATE_SETTLE_S, prose
from conformance.restart import restarted_sut
from conformance.verdicts import Check, HarnessError
from simulators.apple.delivery import DeliveryState
from simulators.apple.models import association
from simulators.faults import FaultKind

pytestmark = pytest.mark.restarts_sut
requirement = pytest.mark.requirement

FIRST_ATTEMPT_WAIT_S = 15.0  # for the first attempt of a notification sent while it is away


@requirement("APL-REC-01")
def test_notification_sent_during_a_restart_processed_once(
    apple: AppleDriver, check: Check
) -> None:
    """Three notifications meet the restart: one the SUT processed just before the SIGTERM but
    whose answer was lost (the connection dropped), one sent 0.5 s after the SIGTERM (while the
    SUT shuts down: it may take it, refuse it or be gone), one after it exited (refused). The
    SUT is started again, and the simulated clock runs the vendor's retry schedule (+60 s,
    +300 s). "An HTTP 2xx response status from an MDM server indicates a successful
    notification delivery", so each must end acknowledged and be reported exactly once: a 2xx
    given while shutting down without processing loses the notification for good, and a
    deduplication the restart forgot processes the retry of the first one again."""
    control = association(1)
    if apple.deliver(control).state is not DeliveryState.DELIVERED:
        raise check.not_verified(
            "the SUT did not acknowledge a notification before the restart (see APL-AUTH-01), "
            "so what a restart does cannot be told apart"
        )
    lost, stopping, down = association(1), association(1), association(1)
    check.expect(
        "a notification whose answer was lost just before the SIGTERM, one sent right after "
        "it and one sent while the SUT was down each reported (processed) exactly once when the "
        "vendor's retries are over"
    )
    apple.fail_next(FaultKind.DROP_BEFORE_ACK)  # processed, but the vendor sees no answer
    pending = {lost.notificationId: apple.deliver_later(lost)}
    if not apple.wait_attempts(dict.fromkeys(pending, 1), FIRST_ATTEMPT_WAIT_S):
        raise HarnessError("the notifier made no first attempt of a notification")
    apple.count_reports(pending, apple.observer_wait)  # its processing, before the restart
    with restarted_sut(apple.harness, check) as restart:

        def send_while_stopping() -> None:
            pending[stopping.notificationId] = apple.deliver_later(stopping)

        restart.stop(while_stopping=send_while_stopping)
        pending[down.notificationId] = apple.deliver_later(down)
        if not apple.wait_attempts(dict.fromkeys(pending, 1), FIRST_ATTEMPT_WAIT_S):
            raise HarnessError("the notifier made no first attempt while the SUT was away")
        restart.start()
        try:
            deliveries = apple.finish_deliveries(pending)
        except TimeoutError:
            raise HarnessError("a delivery did not end after its last attempt") from None
    ids = list(pending)
    names = {
        lost.notificationId: "answer lost before the SIGTERM",
        stopping.notificationId: "sent while stopping",
        down.notificationId: "sent while down",
    }
    if fenced := apple.fence(awaiting=ids):
        raise check.not_verified(fenced)
    counts = apple.count_reports(ids, DUPLICATE_SETTLE_S, more_than=1)
    story = {
        nid: f"{names[nid]}: "
        + ", ".join(answer(a) for a in deliveries[nid].attempts)
        + f"; reported {counts[nid]} time(s)"
        for nid in ids
    }
    check.observe(prose(story.values()))
    unprocessed = [nid for nid in ids if counts[nid] == 0]
    assert not unprocessed, "never processed: " + prose(
        story[nid]
        + (
            " (acknowledged, so the vendor will not send it again)"
            if deliveries[nid].state is DeliveryState.DELIVERED
            else f" (none of the vendor's {len(deliveries[nid].attempts)} attempts acknowledged)"
        )
        for nid in unprocessed
    )
    twice = [nid for nid in ids if counts[nid] > 1]
    assert not twice, f"processed more than once: {prose(story[nid] for nid in twice)}"
