"""A deploy of the callback receiver (PEL-REC-01): the harness restarts the launched SUT while
notifications are queued for it, and the service's back-off resend must bring each one to it
once.

It runs after every other check (``restarts_sut``): the SUT is away for a while.
"""

from __future__ import annotations

import secrets

import pytest

from conformance.driver import DUPLICATE_SETTLE_S, prose
from conformance.pelion.driver import PelionDriver, describe
from conformance.restart import restarted_sut
from conformance.verdicts import Check
from simulators.pelion.channels import ItemQueued
from simulators.pelion.delivery import REQUEST_TIMEOUT_S

pytestmark = pytest.mark.restarts_sut
requirement = pytest.mark.requirement

FIRST_ATTEMPT_WAIT_S = REQUEST_TIMEOUT_S + 5  # for the batch sent while stopping to be tried


@requirement("PEL-REC-01")
def test_notifications_sent_during_a_restart_processed_once(
    pelion: PelionDriver, check: Check
) -> None:
    """A notification is queued 0.5 s after the SIGTERM (its batch meets the SUT shutting down:
    taken, refused or gone) and another once it exited. The SUT is started again; the service
    resends with its back-off (the waits jump the simulated clock) until each is acknowledged.
    "When the web application responds with 200 OK to the current notification batch, Device
    Management sends the next batch": a 2xx ends the resends, so an item acknowledged while
    shutting down and never processed is lost. Each must be reported exactly once (by uid)."""
    pelion.ensure_callback(check)
    stopping: list[ItemQueued] = []
    check.expect(
        "a notification queued 0.5 s after SIGTERM and one queued while the SUT was down each "
        "acknowledged after the restart (or while stopping) and reported once"
    )
    with restarted_sut(pelion.harness, check) as restart:

        def send_while_stopping() -> None:
            stopping.extend(_notification(pelion, "stopping"))

        restart.stop(while_stopping=send_while_stopping)
        uids = {q.item.uid for q in stopping}
        if not pelion.service.wait_for(lambda: pelion.attempts_of(uids), FIRST_ATTEMPT_WAIT_S):
            check.note(  # e.g. the channel was waiting out a back-off from an earlier check
                "the service made no attempt to send the batch queued while stopping before "
                "the SUT was started again"
            )
        down = _notification(pelion, "down")
        restart.start()
    queued = stopping + down
    attempts = pelion.deliver("callback", queued)
    names = {q.item.uid: name for name, qs in (("stopping", stopping), ("down", down)) for q in qs}
    acknowledged = {uid for a in attempts if a.succeeded and a.uids for uid in a.uids}
    if fenced := pelion.fence(
        "callback", awaiting=[q for q in queued if q.item.uid in acknowledged]
    ):
        raise check.not_verified(fenced)
    counts = pelion.count_reports(queued, DUPLICATE_SETTLE_S, more_than=1)
    story = {
        q.item.uid: f"queued while {names[q.item.uid]}: "
        + ("acknowledged" if q.item.uid in acknowledged else "never acknowledged")
        + f", reported {counts.get(q.item.uid, 0)} time(s)"
        for q in queued
    }
    check.observe(prose(story.values()) + f" (attempts: {describe(attempts)})")
    refused = [uid for uid in story if uid not in acknowledged]
    assert not refused, "not acknowledged by the back-off resends after the restart: " + prose(
        story[uid] for uid in refused
    )
    lost = [uid for uid in story if not counts.get(uid)]
    assert not lost, (
        "acknowledged (2xx) but never processed, so the service will not send it again: "
        + prose(story[uid] for uid in lost)
    )
    twice = [uid for uid in story if counts.get(uid, 0) > 1]
    assert not twice, f"processed more than once: {prose(story[uid] for uid in twice)}"


def _notification(pelion: PelionDriver, when: str) -> list[ItemQueued]:
    return pelion.notifications(
        "callback", [f"restart-{when}-".encode() + secrets.token_hex(3).encode()]
    )
