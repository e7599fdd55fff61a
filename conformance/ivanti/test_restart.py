"""A deploy of the subscriber (IVT-SESS-03): the harness restarts the launched SUT, and what was
published while it was down must reach it through its durable session.

It runs after every other check (``restarts_sut``): the SUT is away for a while.
"""

from __future__ import annotations

import pytest

from conformance.driver import OBSERVER_WAIT_S, prose
from conformance.ivanti.driver import RECEIPT_WAIT_S, IvantiDriver
from conformance.restart import restarted_sut
from conformance.verdicts import Check
from simulators.ivanti.broker import Published

pytestmark = pytest.mark.restarts_sut
requirement = pytest.mark.requirement

GONE_WAIT_S = 10.0  # for the broker to see the stopped SUT's connections end


@requirement("IVT-SESS-03")
def test_durable_session_survives_a_restart(ivanti: IvantiDriver, check: Check) -> None:
    """The SUT is stopped (SIGTERM, its exit); one event of each type it subscribes to is
    published while it is down; it is started again with the same environment. The broker kept
    the events for its sessions (a re-connecting durable subscriber consumes them): it must come
    back under the same client IDs with clean session 0, and acknowledge and process (observer)
    each event. A client ID made from a random value, the PID or the start time opens an empty
    session instead."""
    ivanti.online()
    types = ivanti.subscribed_types()
    if not types:
        raise check.not_verified("the SUT subscribes to none of its consumed topics (IVT-SUB-01)")
    before = sorted(ivanti.client_ids())
    check.expect(
        f"back as {prose(before)} with clean session 0, and each of {len(types)} events "
        "published while the SUT was down received (PUBACK and observer)"
    )
    reporting = bool(ivanti.records())
    harness = ivanti.harness
    with restarted_sut(harness, check) as restart:
        restart.stop()
        ivanti.sim.wait_for(lambda views: not ivanti.live_of(views), GONE_WAIT_S)
        events = [ivanti.publish(t) for t in types]
        restart.start()
    assert restart.back_since_real_s is not None
    since = restart.back_since_real_s
    kept = [e for e in events if e.kept_for]
    holders = sorted({h for e in kept for h in e.kept_for})
    check.note(f"{len(kept)} of {len(events)} events kept for {prose(holders) or 'no session'}")
    ivanti.online(since=since)
    if holders:
        ivanti.wait_back(set(holders), since)
    back = [v for v in ivanti.connections() if v.accepted and v.opened_real_s > since]
    back_as = sorted({v.client_id or "?" for v in back})
    clean = sorted({v.client_id or "?" for v in back if v.clean_session})
    if not kept:
        check.observe(f"nothing was kept for the SUT while it was down; back as {prose(back_as)}")
        raise AssertionError(
            "nothing published while the SUT was down was kept for it: it had no durable "
            "session (clean session 0, subscribed at QoS 1) when it stopped"
        )
    if not set(holders) & set(back_as):
        check.observe(f"back as {prose(back_as)}; the events were kept for {prose(holders)}")
        raise AssertionError(
            f"the SUT came back as {prose(back_as)}, not as {prose(holders)} whose session kept "
            "the events: a client ID that changes at each start loses the session at every deploy"
        )
    ivanti.wait_acked(events, RECEIPT_WAIT_S)
    if reporting:
        ivanti.count_reports(events, OBSERVER_WAIT_S)
    missing = {e.event_type or e.topic: _missing(ivanti, e, reporting) for e in events}
    missing = {topic: why for topic, why in missing.items() if why}
    check.observe(
        f"back as {prose(back_as)}"
        + (f" (clean session 1: {prose(clean)})" if clean else "")
        + f"; {len(events) - len(missing)} of {len(events)} events received"
        + (
            f"; missing: {prose(f'{t} ({w})' for t, w in list(missing.items())[:3])}"
            if missing
            else ""
        )
    )
    if not reporting:
        check.note("the SUT has reported nothing to the observer: judged on PUBACKs only")
    assert not clean, f"came back with clean session 1 as {prose(clean)}: its session was discarded"
    assert not missing, (
        f"{len(missing)} event(s) published while the SUT was down were not received: "
        + prose(f"{t} ({w})" for t, w in list(missing.items())[:3])
    )


def _missing(ivanti: IvantiDriver, event: Published, reporting: bool) -> str:
    if not event.kept_for:
        return "not kept"
    if not ivanti.acked(event):
        return "no PUBACK"
    if reporting and not ivanti.reports(event):
        return "acknowledged, never reported"
    return ""
