"""Requirements judged over the whole run, on everything the broker and the CPS API saw:
connections and client IDs, persistent sessions, topic discovery, no publishing, and every
acknowledgement (IVT-CONN-01..03, IVT-SESS-01, IVT-SUB-03, IVT-PUB-01, IVT-ACK-01, IVT-ACK-03)."""

from __future__ import annotations

import pytest

from conformance.driver import prose
from conformance.ivanti.driver import (
    ACK_LIMIT_S,
    NOT_REPLAYED_ORDER,
    NOT_REPLAYED_SUT_ACTS,
    IvantiDriver,
)
from conformance.vendors import vendor
from conformance.verdicts import Check
from simulators.mqtt.runfacts import ConnectionFacts

pytestmark = pytest.mark.run_last(10)  # run-wide: every connection the broker saw
requirement = pytest.mark.requirement

MAX_CONNECTIONS = 15  # "Ivanti recommends a maximum of fifteen connections per tenant."


def _facts(ivanti: IvantiDriver, check: Check) -> ConnectionFacts:
    """The run-wide facts of the SUT's connections (every connection counted, not only those
    the packet log still keeps); with no accepted connection, the run could not observe it (or
    it is down, and the check fails with that cause)."""
    check.include_history("ivanti-broker")
    facts = ivanti.connection_facts()
    if not facts.accepted:
        ivanti.harness.require_sut()
        raise check.not_verified("the SUT made no accepted connection in this run")
    return facts


@requirement("IVT-CONN-01")
def test_at_most_15_connections(ivanti: IvantiDriver, check: Check) -> None:
    """The broker refuses a 16th connection, so the evidence is the SUT's CONNECTs: none may
    come while 15 of its connections (other than one it replaces) are live."""
    check.no_reproducer(NOT_REPLAYED_SUT_ACTS)
    check.expect(f"never more than {MAX_CONNECTIONS} concurrent connections of the tenant")
    facts = _facts(ivanti, check)
    over, example = facts.connects_beside(MAX_CONNECTIONS)
    check.observe(
        f"{facts.accepted} connection(s) over the run, at most {facts.peak_live} at once"
        + (f"; {over} attempt(s) at a 16th" if over else "")
    )
    assert not over, (
        f"the SUT tried to open connection number {MAX_CONNECTIONS + 1} ({over} time(s), "
        f"e.g. {example}) while {MAX_CONNECTIONS} were live"
    )


@requirement("IVT-CONN-02")
def test_a_single_connection(ivanti: IvantiDriver, check: Check) -> None:
    check.no_reproducer(NOT_REPLAYED_SUT_ACTS)
    check.expect("one connection per tenant at a time (vendor best practice)")
    facts = _facts(ivanti, check)
    peak = facts.peak_live
    check.observe(
        f"at most {peak} connection(s) at once; client IDs: {prose(facts.client_ids[:5])}"
    )
    assert peak <= 1, f"the SUT held {peak} connections at once (best practice: one per tenant)"


@requirement("IVT-CONN-03")
def test_unique_client_ids(ivanti: IvantiDriver, check: Check) -> None:
    """Two live connections never share a client ID: a CONNECT with the ID of a connection still
    open is a take-over (MQTT-3.1.4-2) or a refusal, either way a shared ID."""
    check.no_reproducer(NOT_REPLAYED_SUT_ACTS)
    check.expect("no CONNECT using the client ID of another live connection (no take-overs)")
    facts = _facts(ivanti, check)
    check.observe(
        f"{facts.accepted} connection(s), {facts.distinct_client_ids} client ID(s)"
        + (f"; {facts.shared} CONNECT(s) with the ID of a live connection" if facts.shared else "")
    )
    assert not facts.shared, (
        f"{facts.shared} time(s) a connection used the client ID {facts.first_shared!r} of a "
        "live connection (take-over or refusal)"
    )


@requirement("IVT-SESS-01")
def test_persistent_session_with_a_stable_client_id(ivanti: IvantiDriver, check: Check) -> None:
    """Every accepted CONNECT has clean session 0; after each connection ends, the SUT comes back
    with the same client ID (a new one would start an empty session)."""
    check.no_reproducer(NOT_REPLAYED_SUT_ACTS)
    check.expect(
        "clean session = 0 in every CONNECT, and each client ID used again after a reconnect"
    )
    facts = _facts(ivanti, check)
    check.observe(
        f"{facts.accepted} accepted connection(s): {facts.clean} with clean session = 1; after "
        f"{facts.resumed + facts.abandoned} reconnect(s), {facts.abandoned} with a client ID "
        "not used again"
    )
    assert not facts.clean, (
        f"{facts.clean} connection(s) with clean session = 1 (e.g. {facts.first_clean}): nothing "
        "is kept for the SUT while it is offline"
    )
    assert not facts.abandoned, (
        f"after its connection as {facts.first_abandoned!r} ended, the SUT connected with other "
        f"client IDs only (it used {facts.distinct_client_ids}, e.g. "
        f"{prose(list(facts.client_ids[:3]))})"
    )
    if not facts.resumed:
        ivanti.harness.require_sut()
        raise check.not_verified("the SUT never reconnected in this run")


@requirement("IVT-SUB-03")
def test_topics_from_the_metadata_call(ivanti: IvantiDriver, check: Check) -> None:
    login = ivanti.sim.login.email
    check.no_reproducer(NOT_REPLAYED_SUT_ACTS)
    check.expect(f"GET …/event/$metadata by {login} (the topics are not hard-coded)")
    calls = [
        c
        for c in ivanti.sim.cps.calls()
        if c.email == login and c.method == "GET" and c.path.endswith("/event/$metadata")
    ]
    views = [v for v in ivanti.connections() if v.accepted]
    subscribed = [p.real_s for v in views for p in v.received("SUBSCRIBE")]
    if calls:
        first = calls[0]
        before = not subscribed or first.real_s <= min(subscribed)
        check.observe(
            f"{len(calls)} metadata call(s), the first answered {first.status}"
            + (", before its first SUBSCRIBE" if before and subscribed else "")
        )
        return
    if ivanti.harness.manifest.process is None:
        raise check.not_verified(
            "no metadata call in this run; the SUT was started before it, so it may have made "
            "its call then"
        )
    check.observe(f"no metadata call; {len(subscribed)} SUBSCRIBE packet(s)")
    raise AssertionError("the SUT subscribed without asking for the event subscription metadata")


@requirement("IVT-PUB-01")
def test_does_not_publish(ivanti: IvantiDriver, check: Check) -> None:
    check.no_reproducer(NOT_REPLAYED_SUT_ACTS)
    check.expect("no PUBLISH (nor a Will) from the SUT to an event topic")
    facts = _facts(ivanti, check)
    check.observe(
        f"{facts.publishes} PUBLISH(es) from the SUT, {facts.watched_publishes} to event topics; "
        f"{facts.watched_wills} Will(s) on event topics (over {facts.connects} CONNECT(s))"
    )
    assert not facts.watched_publishes, (
        f"the SUT published {facts.watched_publishes} time(s) to event topics, e.g. "
        f"{facts.first_watched_topic}"
    )
    assert not facts.watched_wills, (
        f"the SUT set a Will on the event topic {facts.first_watched_will}"
    )


@requirement("IVT-ACK-01")
def test_every_event_acknowledged_within_10s(ivanti: IvantiDriver, check: Check) -> None:
    """Every QoS 1 PUBLISH of a plain event the checks published, first deliveries and
    redelivered copies (DUP = 1) alike, over the whole run: a PUBACK within 10 s, unless the
    connection ended first (the copy is then resent, and judged there)."""
    check.no_reproducer(
        "judged over the run's log, which keeps no payloads; the burst check of IVT-ACK-01 "
        "replays the events it found late"
    )
    check.expect(
        f"a PUBACK within {ACK_LIMIT_S:g} s for every QoS 1 PUBLISH of a plain event, "
        "redelivered ones (DUP = 1) included"
    )
    now = ivanti.harness.clock.real()
    copies = [c for c in ivanti.copies() if c.publish.payload_hash in ivanti.regular]
    late, judged = [], 0
    for copy in copies:
        limit = copy.publish.real_s + ACK_LIMIT_S
        ended = copy.conn.closed_real_s
        if copy.acked_real_s is not None and copy.acked_real_s <= limit:
            judged += 1
        elif copy.acked_real_s is not None or ((ended is None or ended > limit) and now > limit):
            judged += 1
            late.append(copy)
    if not judged:
        raise check.not_verified("no plain event reached the SUT at QoS 1 in this run")
    slowest = max((c.delay_real_s or 0 for c in copies if c.acked_real_s is not None), default=0)
    check.observe(
        f"{judged - len(late)} of {judged} deliveries acknowledged within "
        f"{ACK_LIMIT_S:g} s (slowest {slowest:.2f} s)"
    )
    assert not late, (
        f"{len(late)} PUBLISH(es) not acknowledged within {ACK_LIMIT_S:g} s, first: "
        f"{late[0].publish.topic} id={late[0].publish.packet_id} DUP={int(late[0].dup)} on "
        f"{late[0].conn.client_id}"
    )


@requirement("IVT-ACK-03")
def test_acknowledges_after_processing(ivanti: IvantiDriver, check: Check) -> None:
    """The vendor's broker purges a message at its first PUBACK, so an event acknowledged
    before it is processed is lost for every instance when the SUT then crashes. Judged on
    every plain event of the run the SUT both acknowledged and reported: the report must reach
    the observer before the event's first PUBACK reaches the broker. (paho acknowledges when
    ``on_message`` returns; libmosquitto, and clients built on it, before their callback
    runs.)"""
    check.no_reproducer(NOT_REPLAYED_ORDER)
    check.expect("each event's observer report before its first PUBACK")
    acked: dict[str, float] = {}
    for copy in ivanti.copies():
        digest = copy.publish.payload_hash
        key = ivanti.regular.get(digest) if digest is not None else None
        if key is not None and copy.acked_real_s is not None:
            acked[key] = min(acked.get(key, copy.acked_real_s), copy.acked_real_s)
    reported: dict[str, float] = {}
    keys = vendor("ivanti").observer_keys
    for arrival in ivanti.harness.observer.arrivals("ivanti"):
        for key in keys(arrival.record):
            if key in acked and key not in reported:
                reported[key] = arrival.real_s
    both = sorted(reported)
    if not both:
        raise check.not_verified(
            "no event was both acknowledged and reported to the observer in this run"
        )
    early = [k for k in both if acked[k] < reported[k]]
    check.observe(
        f"{len(both) - len(early)} of {len(both)} events reported before their first PUBACK"
        + (
            f"; the earliest PUBACK came {max(reported[k] - acked[k] for k in early):.3f} s "
            "before its report"
            if early
            else ""
        )
    )
    assert not early, (
        f"{len(early)} event(s) acknowledged before they were reported as processed: a crash "
        "between the PUBACK and the processing loses them for every instance (the broker purges "
        "a message at its first PUBACK)"
    )
