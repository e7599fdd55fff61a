"""The broker drops, refuses and impersonates: reconnection, redelivery after a reconnect,
exactly-once processing, the outage shorter than the retention window, impostor brokers and
back-off (IVT-RECON-01, IVT-ACK-02, IVT-OBS-01, IVT-SESS-02, IVT-TLS-03, IVT-RECON-02).

These run after the checks on a live connection. The SUT's reconnects are its own timers, so
waits are in real time, bounded by its observed back-off; the outage's hours pass through the
simulated clock.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest

from conformance.driver import DUPLICATE_SETTLE_S, OBSERVER_WAIT_S, prose
from conformance.ivanti.driver import (
    NOT_REPLAYED_OVER_TIME,
    NOT_REPLAYED_REDELIVERY,
    NOT_REPLAYED_TLS,
    RECEIPT_WAIT_S,
    IvantiDriver,
    pair_acks,
)
from conformance.verdicts import Check, HarnessError, NotVerified
from simulators.ivanti.broker import ImpostorKind, Published
from simulators.ivanti.operations import (
    BeginOutage,
    DropBeforeAck,
    DuplicateNext,
    EndOutage,
    LoseInFlight,
    PresentImpostors,
    Sessions,
    StopImpostors,
)

# After the other vendors' checks: its waits overlap PEL-WS-05's window.
pytestmark = pytest.mark.run_last(8)
requirement = pytest.mark.requirement

OUTAGE_SIM_S = 2 * 3600 + 50 * 60  # 2 h 50 min: inside the 3-hour retention window
IMPOSTORS: tuple[ImpostorKind, ...] = ("unknown-ca", "expired", "wrong-host")
DECIDE_WAIT_S = 5.0  # after a TLS handshake with an impostor: its CONNECT, or its close
REFUSALS = 3  # "after 3 consecutive refusals"
RATE_WINDOW_S = 5.0  # real seconds over which the CONNECT rate is averaged
REFUSALS_WAIT_S = 30.0  # for the SUT to be refused 3 times in a row (at least)
REFUSALS_WAIT_MAX_S = 120.0  # however slowly it retries


@requirement("IVT-RECON-01")
def test_reconnects_after_a_drop(ivanti: IvantiDriver, check: Check) -> None:
    ivanti.online()
    check.no_reproducer(NOT_REPLAYED_OVER_TIME)
    check.expect("a new accepted connection after the broker drops the SUT's connection")
    started = ivanti.harness.clock.real()
    dropped = ivanti.drop()
    live = ivanti.online(since=started)
    back = min(v.opened_real_s for v in live) - started
    check.observe(
        f"dropped {prose(dropped)}; connected again after {back:.2f} s as "
        f"{prose(sorted({v.client_id or '?' for v in live}))}"
    )


def _resend_acked(ivanti: IvantiDriver, event: Published) -> bool:
    return any(c.dup and c.acked_real_s is not None for c in ivanti.copies(event))


def _dropped_and_redelivered(
    ivanti: IvantiDriver, check: Check, *, await_ack: bool, lost: bool = False
) -> tuple[Published, str, str | None]:
    """Publish one event to a session of the SUT, drop that connection right after the PUBLISH
    (before a PUBACK can count; with ``lost``, before the PUBLISH is even written), wait for the
    SUT to come back (the broker resends the PUBLISH with DUP = 1 when the session resumes) and,
    with ``await_ack``, for the resend's PUBACK. Returns the event, the client id that held it,
    and why nothing could be resent (None when it was)."""
    name, holder = ivanti.qos1_type(check)
    ivanti.perform(LoseInFlight(client_id=holder) if lost else DropBeforeAck(client_id=holder))
    started = ivanti.harness.clock.real()
    try:
        event = ivanti.publish(name)
        ivanti.online(since=started)
        ivanti.wait_back({holder}, started)
    finally:
        ivanti.sim.broker.server.faults.clear()
    rejoined = [v for v in ivanti.live() if v.client_id == holder and v.opened_real_s > started]
    if not rejoined and (codes := ivanti.refused(holder, started)):
        return (
            event,
            holder,
            f"{holder}, which held the event, could not come back: the broker refused it "
            f"(CONNACK {prose(sorted(set(codes)))}) while the SUT's other connections were up",
        )
    if not rejoined:
        return (
            event,
            holder,
            (
                f"the SUT came back with other client IDs ({prose(ivanti.client_ids())}), so its "
                f"session as {holder} was not resumed"
            ),
        )
    if rejoined[-1].clean_session:
        return event, holder, "the SUT came back with clean session = 1: its session was discarded"
    if not any(
        c.dup for c in pair_acks(rejoined[-1]) if c.publish.payload_hash == hash(event.payload)
    ):
        return event, holder, None  # not resent although resumed: the caller says so
    if not await_ack:
        return event, holder, None
    ivanti.sim.wait_for(
        lambda views: any(
            c.dup and c.acked_real_s is not None and c.publish.payload_hash == hash(event.payload)
            for v in views
            for c in pair_acks(v)
        ),
        RECEIPT_WAIT_S,
    )
    return event, holder, None


@requirement("IVT-ACK-02")
def test_acknowledges_a_publish_redelivered_after_a_reconnect(
    ivanti: IvantiDriver, check: Check
) -> None:
    """The broker closes the connection right after a PUBLISH: the SUT's PUBACK, if any, cannot
    count; when the persistent session resumes, the broker sends it again with DUP = 1 and the
    same packet id (MQTT-4.4.0-1), which needs a PUBACK."""
    ivanti.online()
    check.no_reproducer(NOT_REPLAYED_REDELIVERY)
    check.expect("after the reconnect, a PUBACK for the PUBLISH resent with DUP = 1")
    event, holder, not_resumed = _dropped_and_redelivered(ivanti, check, await_ack=True)
    if not_resumed:
        raise check.not_verified(f"{not_resumed}: nothing could be redelivered (see IVT-SESS-01)")
    copies = ivanti.copies(event)
    resent = [c for c in copies if c.dup]
    if not resent:
        raise HarnessError(f"the broker did not resend {event.topic} when {holder} came back")
    check.observe(
        prose(
            f"{'DUP=1' if c.dup else 'DUP=0'} id={c.publish.packet_id} on connection "
            f"{c.conn.conn_id}: " + ("PUBACK" if c.acked_real_s is not None else "no PUBACK")
            for c in copies
        )
    )
    assert _resend_acked(ivanti, event), (
        f"the PUBLISH redelivered after the reconnect (DUP = 1, id {resent[0].publish.packet_id}) "
        f"was not acknowledged within {RECEIPT_WAIT_S:g} s"
    )


@requirement("IVT-ACK-04")
def test_processes_a_redelivery_whose_first_copy_was_lost(
    ivanti: IvantiDriver, check: Check
) -> None:
    """The broker holds a PUBLISH in flight but the connection drops before the PUBLISH is
    written: the SUT never saw it. When the session resumes the broker resends it with DUP = 1
    (MQTT-4.4.0-1); DUP = 1 only says the message "might be re-delivery" (MQTT-3.3.1-1), never
    that it was processed, so the SUT must process it (observer) as well as acknowledge it."""
    ivanti.online()
    check.no_reproducer(NOT_REPLAYED_REDELIVERY)
    check.expect(
        "the event whose first copy never arrived, resent with DUP = 1, acknowledged and "
        "reported as processed"
    )
    event, holder, not_resumed = _dropped_and_redelivered(ivanti, check, await_ack=True, lost=True)
    if not_resumed:
        raise check.not_verified(f"{not_resumed}: nothing could be redelivered (see IVT-SESS-01)")
    copies = ivanti.copies(event)
    if not any(c.dup for c in copies):
        raise HarnessError(f"the broker did not resend {event.topic} when {holder} came back")
    acked = any(c.acked_real_s is not None for c in copies)
    if not acked:
        check.observe("the resend (DUP = 1) was not acknowledged")
        raise check.not_verified("the resend was not acknowledged (judged by IVT-ACK-02)")
    if reason := ivanti.fence(check, awaiting=[event]):
        raise check.not_verified(reason)
    reports = ivanti.reports(event)
    check.observe(
        f"{len(copies)} copy(ies) reached the SUT, all DUP = 1; acknowledged; reported "
        f"{reports} time(s)"
    )
    assert reports, (
        "the SUT acknowledged the PUBLISH resent with DUP = 1 but never processed it, although "
        "its first copy never reached it (DUP = 1 does not mean 'already processed')"
    )


@requirement("IVT-OBS-01")
def test_processes_each_event_once(ivanti: IvantiDriver, check: Check) -> None:
    """Two events delivered twice: one repeated at once on the same connection (DUP = 1), one
    resent after the connection dropped before its PUBACK (awaited until the resend's PUBACK,
    bounded). Each is reported once: the reports are awaited in any order (a SUT may process
    concurrently), and a second one a little longer (:data:`DUPLICATE_SETTLE_S`). A half that
    could not be judged is never a pass: it is named, and the check is then not-verified unless
    the other half fails."""
    ivanti.online()
    name, holder = ivanti.qos1_type(check)
    check.no_reproducer(NOT_REPLAYED_REDELIVERY)
    check.expect("one observer report per event, although each was delivered twice")
    ivanti.perform(DuplicateNext(client_id=holder))
    repeated = ivanti.publish(name)
    ivanti.wait_acked([repeated], RECEIPT_WAIT_S)
    resent, _, not_resumed = _dropped_and_redelivered(ivanti, check, await_ack=True)
    events = {"repeated at once": repeated, "resent after a reconnect": resent}
    unjudged = {
        what: (
            (not_resumed if what.startswith("resent") and not_resumed else "")
            or ("not delivered twice" if len(ivanti.copies(e)) < 2 else "")
            or ("no copy acknowledged" if not ivanti.acked(e) else "")
        )
        for what, e in events.items()
    }
    unjudged = {what: why for what, why in unjudged.items() if why}
    judged = {what: e for what, e in events.items() if what not in unjudged}
    for what, why in unjudged.items():
        check.note(f"the event {what} cannot be judged: {why}")
    if not judged:
        raise check.not_verified(
            "no event was both delivered twice and acknowledged, so processing cannot be judged"
        )
    if reason := ivanti.fence(check, awaiting=judged.values()):
        raise check.not_verified(reason)
    by_key = ivanti.count_reports(judged.values(), DUPLICATE_SETTLE_S, more_than=1)
    counts = {what: by_key.get(e.key or "", 0) for what, e in judged.items()}
    check.observe(prose(f"{what}: reported {n} time(s)" for what, n in counts.items()))
    never = [what for what, n in counts.items() if n == 0]
    more = [what for what, n in counts.items() if n > 1]
    assert not more, f"processed more than once: {prose(f'{w} ({counts[w]} times)' for w in more)}"
    assert not never, f"acknowledged but never processed: {prose(never)}"
    if unjudged:
        raise check.not_verified(
            f"only the event {prose(judged)} could be judged (processed once); the event "
            f"{prose(f'{w} ({why})' for w, why in unjudged.items())} could not"
        )


@requirement("IVT-SESS-02")
def test_receives_what_was_published_while_offline(ivanti: IvantiDriver, check: Check) -> None:
    """An outage: the broker refuses every connection of the tenant while events of each
    consumed type are published, then 2 h 50 min pass (simulated; the vendor keeps events 3 h).
    Once connections are accepted again, every event must reach the SUT: acknowledged, and
    processed (observer) when the SUT reports."""
    ivanti.online()
    types = ivanti.subscribed_types()
    if not types:
        raise check.not_verified("the SUT subscribes to none of its consumed topics (IVT-SUB-01)")
    check.expect(
        f"each of {len(types)} events published during an outage of "
        f"{OUTAGE_SIM_S / 3600:.2f} simulated hours received (PUBACK and observer) once "
        "connections are accepted again"
    )
    reporting = bool(ivanti.records())
    harness = ivanti.harness
    ivanti.perform(BeginOutage())
    try:
        dropped = ivanti.drop()
        events = [ivanti.publish(t) for t in types]
        harness.clock.advance(OUTAGE_SIM_S)
    finally:
        ivanti.perform(EndOutage())
    released = harness.clock.real()
    ivanti.reproduce_offline(check, events[:3])
    kept = [e for e in events if e.kept_for]
    check.note(
        f"dropped {prose(dropped)}; {len(kept)} of {len(events)} events kept for "
        f"{prose(sorted({s for e in kept for s in e.kept_for}))}"
    )
    if not kept:
        sessions = ivanti.perform(Sessions())
        what = prose(
            f"{s.client_id} (clean session {int(s.clean_session)}, "
            f"QoS {prose(sorted({q for _, q in s.subscriptions})) or '-'})"
            for s in sessions
        )
        check.observe("nothing was kept for the SUT while it was offline")
        raise AssertionError(
            "nothing published during the outage was kept for the SUT: it has no persistent "
            f"session subscribed at QoS 1 (sessions: {what or 'none'})"
        )
    ivanti.online(since=released)
    holders = {h for e in kept for h in e.kept_for}
    ivanti.wait_back(holders, released)
    back_as = set(ivanti.client_ids())
    if not holders & back_as:
        check.observe(f"connected again as {prose(sorted(back_as))}")
        raise AssertionError(
            f"the events were kept for the SUT's session {prose(sorted(holders))}, but it came "
            f"back as {prose(sorted(back_as))}: a new client ID starts an empty session"
        )
    ivanti.wait_acked(events, RECEIPT_WAIT_S)
    if reporting:
        ivanti.count_reports(events, OBSERVER_WAIT_S)
    missing = {
        e.event_type or e.topic: "not kept"
        if not e.kept_for
        else "no PUBACK"
        if not ivanti.acked(e)
        else "acknowledged, never reported"
        if reporting and not ivanti.reports(e)
        else ""
        for e in events
    }
    missing = {topic: why for topic, why in missing.items() if why}
    back = min((v.opened_real_s for v in ivanti.live()), default=released) - released
    check.observe(
        f"connected again {max(back, 0):.2f} s after the outage; "
        f"{len(events) - len(missing)} of {len(events)} events received"
        + (
            f"; missing: {prose(f'{t} ({w})' for t, w in list(missing.items())[:3])}"
            if missing
            else ""
        )
    )
    if not reporting:
        check.note("the SUT has reported nothing to the observer: judged on PUBACKs only")
    assert not missing, (
        f"{len(missing)} event(s) published while the SUT was offline were not received: "
        + prose(f"{t} ({w})" for t, w in list(missing.items())[:3])
    )


@requirement("IVT-TLS-03")
def test_refuses_impostor_brokers(ivanti: IvantiDriver, check: Check) -> None:
    """The broker's address hands the SUT's next three connections to impostors (a certificate
    from an unknown CA, an expired one, one for another host name), then the real broker again.
    A SUT that verifies the broker aborts each handshake: no CONNECT reaches an impostor."""
    ivanti.online()
    check.no_reproducer(NOT_REPLAYED_TLS)
    check.expect(
        "no MQTT CONNECT to a broker presenting a certificate from an unknown CA, an expired "
        "one, or one for another host name; then a connection to the real broker"
    )
    impostors = ivanti.sim.impostors
    before = {k: (i.handshakes_refused, len(i.connections())) for k, i in impostors.items()}

    def met(kind: ImpostorKind) -> bool:
        refused, conns = before[kind]
        return (
            impostors[kind].handshakes_refused > refused
            or len(impostors[kind].connections()) > conns
        )

    def decided(kind: ImpostorKind) -> bool:
        """A handshake the client began failed, or a TLS connection to the impostor ended or
        carried a CONNECT: a completed handshake alone decides nothing (a client that skips
        host-name checks sends its CONNECT just after)."""
        refused, conns = before[kind]
        views = impostors[kind].connections()[conns:]
        return impostors[kind].handshakes_refused > refused or any(
            v.received("CONNECT") or v.closed_real_s is not None for v in views
        )

    ivanti.perform(PresentImpostors(kinds=list(IMPOSTORS)))
    started = ivanti.harness.clock.real()
    try:
        ivanti.drop()
        for kind in IMPOSTORS:  # the SUT's own back-off paces its attempts
            impostors[kind].server.wait_for(
                lambda views, k=kind: met(k) or ivanti.exited(),  # type: ignore[misc]
                ivanti.reconnect_bound(),
            )
            if met(kind):  # then, bounded, for what decides it
                impostors[kind].server.wait_for(
                    lambda views, k=kind: decided(k) or ivanti.exited(),  # type: ignore[misc]
                    DECIDE_WAIT_S,
                )
            if not met(kind):
                break
    finally:
        left = ivanti.perform(StopImpostors())
    outcome = {}
    for kind in IMPOSTORS:
        refused, conns = before[kind]
        views = impostors[kind].connections()[conns:]
        if any(v.received("CONNECT") for v in views):
            outcome[kind] = "CONNECT sent"
        elif impostors[kind].handshakes_refused > refused or views:
            outcome[kind] = "refused, no CONNECT"
        else:
            outcome[kind] = "not met"
    seen = prose(f"{kind}: {what}" for kind, what in outcome.items())
    connected = [k for k, what in outcome.items() if what == "CONNECT sent"]
    if connected:  # judged on what the impostors saw, whatever the SUT did next
        check.observe(seen)
        raise AssertionError(
            f"the SUT sent its MQTT CONNECT to the impostor broker(s): {prose(connected)}"
        )
    try:
        live = ivanti.online(since=ivanti.harness.clock.real())
    except (AssertionError, NotVerified) as gone:  # refusing was right; going is GEN-LIVE-01's
        check.observe(f"{seen}; then the SUT did not come back ({gone})")
        if all(what == "refused, no CONNECT" for what in outcome.values()):
            check.note(
                "it refused every impostor; that it did not come back is judged by GEN-LIVE-01"
            )
            return
        raise check.not_verified(f"the SUT went before it met every impostor: {gone}") from None
    back = min((v.opened_real_s for v in live), default=started) - started
    check.observe(f"{seen}; back on the real broker {back:.1f} s after the drop")
    if left:
        raise check.not_verified(
            f"the SUT made only {len(IMPOSTORS) - left} connection attempt(s) within its "
            f"back-off bound, so it met {prose(k for k, w in outcome.items() if w != 'not met')} only"
        )


@dataclass
class _Stream:
    """The CONNECTs of one client id (or of every new one) after the drop."""

    attempts: list[tuple[float, bool]] = field(default_factory=list)  # (real time, accepted)

    def third_refusal(self) -> float | None:
        """When the REFUSALS-th consecutive refusal came, if it did."""
        run = 0
        for when, accepted in self.attempts:
            run = 0 if accepted else run + 1
            if run == REFUSALS:
                return when
        return None


def _streams(ivanti: IvantiDriver, since: float, known: set[str]) -> dict[str, _Stream]:
    streams: dict[str, _Stream] = {}
    for view in ivanti.connections():
        for connect in view.received("CONNECT"):
            if connect.real_s < since:
                continue
            who = view.client_id if view.client_id in known else "(new client IDs)"
            streams.setdefault(who, _Stream()).attempts.append((connect.real_s, view.connack == 0))
    for stream in streams.values():
        stream.attempts.sort()
    return streams


@requirement("IVT-RECON-02")
def test_backs_off_when_refused(ivanti: IvantiDriver, check: Check) -> None:
    """Every CONNECT of the tenant is refused (CONNACK 3, server unavailable) after a drop.
    After 3 consecutive refusals, each client ID of the SUT (and the new ones together) may
    CONNECT at most once per second on average, measured over 5 s; then the broker accepts
    again and the SUT must come back."""
    ivanti.online()
    check.no_reproducer(NOT_REPLAYED_OVER_TIME)
    check.expect(
        f"after {REFUSALS} consecutive refusals, at most 1 CONNECT per second on average "
        f"(over {RATE_WINDOW_S:g} s) per client ID"
    )
    clock, sim = ivanti.harness.clock, ivanti.sim
    known = {v.client_id for v in ivanti.connections() if v.client_id and v.accepted}
    ivanti.perform(BeginOutage())
    started = clock.real()
    try:
        ivanti.drop()

        def thirds() -> list[float]:
            streams = _streams(ivanti, started, known).values()
            return [t for s in streams if (t := s.third_refusal()) is not None]

        def storm(_: object) -> bool:
            return any(
                _rate_count(s) > RATE_WINDOW_S for s in _streams(ivanti, started, known).values()
            )

        deadline = _await_three_refusals(ivanti, started, known, thirds)
        ends = 0.0
        # Each stream is judged over a full window after its own third refusal; streams that
        # reach it later (other client IDs) extend the wait, within the same deadline.
        while (found := thirds()) and max(found) + RATE_WINDOW_S > ends:
            ends = max(found) + RATE_WINDOW_S
            stormy = sim.wait_for(storm, max(0.0, ends - clock.real()))
            if stormy or ends > deadline:
                break
    finally:
        ivanti.perform(EndOutage())
    streams = _streams(ivanti, started, known)
    judged = {who: s for who, s in streams.items() if s.third_refusal() is not None}
    live = ivanti.online(since=clock.real())
    counts = {who: _rate_count(s) for who, s in judged.items()}
    check.observe(
        prose(
            f"{who}: {len(s.attempts)} CONNECT(s), {counts[who]} in the {RATE_WINDOW_S:g} s "
            "after the third refusal"
            for who, s in judged.items()
        )
        or f"{sum(len(s.attempts) for s in streams.values())} CONNECT(s) after the drop"
    )
    check.note(f"connected again as {prose(sorted({v.client_id or '?' for v in live}))}")
    fast = {who: n for who, n in counts.items() if n > RATE_WINDOW_S}
    assert not fast, (
        f"{prose(f'{who} ({n} CONNECTs)' for who, n in fast.items())} in the "
        f"{RATE_WINDOW_S:g} s after {REFUSALS} consecutive refusals: more than 1 per second"
    )
    if not judged:
        raise check.not_verified(
            f"the SUT was not refused {REFUSALS} times in a row within its own pace (at most "
            f"{REFUSALS_WAIT_MAX_S:g} s) "
            f"(CONNECTs: {sum(len(s.attempts) for s in streams.values())}), so its back-off "
            "could not be measured"
        )


def _await_three_refusals(
    ivanti: IvantiDriver, started: float, known: set[str], thirds: Callable[[], list[float]]
) -> float:
    """Wait until some stream of the SUT was refused 3 times in a row, at the SUT's own pace:
    REFUSALS_WAIT_S, extended while it keeps trying to 2.5 times its longest gap between
    refused CONNECTs after its latest one (a client that retries every 15 s is judged too),
    at most REFUSALS_WAIT_MAX_S. Returns the deadline it kept to."""
    clock, sim = ivanti.harness.clock, ivanti.sim
    deadline = started + REFUSALS_WAIT_S
    while not thirds() and clock.real() < deadline:
        seen = sum(len(s.attempts) for s in _streams(ivanti, started, known).values())

        def moved(_: object, seen: int = seen) -> bool:
            streams = _streams(ivanti, started, known).values()
            return bool(thirds()) or sum(len(s.attempts) for s in streams) > seen

        sim.wait_for(moved, max(0.0, deadline - clock.real()))
        attempts = (t for s in _streams(ivanti, started, known).values() for t, _ in s.attempts)
        times = [started, *sorted(attempts)]  # from the drop: the first wait is a gap too
        gaps = [b - a for a, b in itertools.pairwise(times)]
        if gaps:
            pace = times[-1] + 2.5 * max(gaps)
            deadline = min(max(deadline, pace), started + REFUSALS_WAIT_MAX_S)
        if ivanti.exited():
            break
    return deadline


def _rate_count(stream: _Stream) -> int:
    """CONNECTs in the window after the third consecutive refusal."""
    third = stream.third_refusal()
    if third is None:
        return 0
    return sum(1 for when, _ in stream.attempts if third < when <= third + RATE_WINDOW_S)
