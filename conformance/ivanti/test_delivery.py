"""Events delivered on a live connection: acknowledgement within 10 s, a repeated PUBLISH
(DUP = 1) acknowledged too, and payloads the vendor may send tomorrow (IVT-ACK-01, IVT-ACK-02,
IVT-PAY-01)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given

from conformance.driver import prose
from conformance.fuzzing import campaign_settings
from conformance.ivanti.driver import (
    ACK_LIMIT_S,
    NOT_REPLAYED_REDELIVERY,
    RECEIPT_WAIT_S,
    IvantiDriver,
    pair_acks,
)
from conformance.ivanti.strategies import evolved_events
from conformance.verdicts import Check, HarnessError
from simulators.ivanti.broker import Published
from simulators.ivanti.operations import DuplicateNext
from simulators.mqtt.server import CLOSED_BY_CLIENT

requirement = pytest.mark.requirement

BURST = 10  # events published at once for IVT-ACK-01 (at least one of each consumed type)
CAMPAIGN_BUDGET_S = 30.0  # real seconds a generated campaign may take to publish
PAYLOAD_ACK_WAIT_S = RECEIPT_WAIT_S  # how long an unusual payload may wait for its PUBACK


@requirement("IVT-ACK-01")
def test_acknowledges_every_publish_within_10s(ivanti: IvantiDriver, check: Check) -> None:
    """A burst of events of every consumed type the SUT subscribes to, published at once, as
    the vendor does when devices are busy: each PUBACK within 10 s of its PUBLISH."""
    ivanti.online()
    name, _ = ivanti.qos1_type(check)
    types = ivanti.subscribed_types() or [name]
    check.expect(f"a PUBACK within {ACK_LIMIT_S:g} s for each of {BURST} QoS 1 PUBLISHes")
    events = [ivanti.publish(types[n % len(types)]) for n in range(max(BURST, len(types)))]
    ivanti.wait_acked(events, ACK_LIMIT_S + 1)
    delays: list[float] = []
    late: list[str] = []
    undelivered = 0
    for event in events:
        copies = ivanti.copies(event)
        if not copies:
            undelivered += 1
            continue
        sent = min(c.publish.real_s for c in copies)
        acked = [c.acked_real_s for c in copies if c.acked_real_s is not None]
        delay = min(acked) - sent if acked else None
        if delay is None or delay > ACK_LIMIT_S:
            ivanti.reproduce(check, event.topic, event.payload)
            late.append(
                f"{event.topic} ({'no PUBACK' if delay is None else f'PUBACK after {delay:.1f} s'})"
            )
        else:
            delays.append(delay)
    if undelivered == len(events):
        raise check.not_verified("no event reached the SUT at QoS 1")
    check.observe(
        f"{len(delays)} of {len(events) - undelivered} acknowledged within {ACK_LIMIT_S:g} s"
        + (f" (slowest {max(delays) * 1000:.0f} ms)" if delays else "")
        + (f"; late: {prose(late[:3])}" if late else "")
    )
    if undelivered:
        check.note(f"{undelivered} event(s) were not delivered (no subscription at QoS 1)")
    assert not late, f"{len(late)} PUBLISH(es) not acknowledged within {ACK_LIMIT_S:g} s: {late[0]}"


@requirement("IVT-ACK-02")
def test_acknowledges_a_repeated_publish(ivanti: IvantiDriver, check: Check) -> None:
    """The broker sends one event twice on the same connection, the second copy DUP = 1 with the
    same packet id (an at-least-once resend): each PUBLISH needs its PUBACK (MQTT-4.3.2-2)."""
    ivanti.online()
    name, holder = ivanti.qos1_type(check)
    check.no_reproducer(NOT_REPLAYED_REDELIVERY)
    check.expect("a PUBACK for the first copy and one for the repeated copy (DUP = 1)")
    ivanti.perform(DuplicateNext(client_id=holder))
    event = ivanti.publish(name)
    mine = hash(event.payload)
    ivanti.sim.wait_for(
        lambda views: all(
            c.acked_real_s is not None or c.cut_off
            for v in views
            for c in pair_acks(v)
            if c.publish.payload_hash == mine
        ),
        RECEIPT_WAIT_S,
    )
    copies = ivanti.copies(event)
    repeats = [c for c in copies if c.dup]
    if not repeats:
        raise HarnessError(f"the broker sent no DUP = 1 copy of {event.topic} to {holder}")
    check.observe(
        prose(
            f"{'DUP=1' if c.dup else 'DUP=0'} id={c.publish.packet_id}: "
            + (
                "no PUBACK"
                if c.delay_real_s is None
                else f"PUBACK in {c.delay_real_s * 1000:.0f} ms"
            )
            for c in copies
        )
    )
    unanswered = [c for c in repeats if c.acked_real_s is None and not c.cut_off]
    if all(c.cut_off for c in repeats):
        raise check.not_verified(
            "the broker closed the connection (a take-over) before the SUT could answer the "
            "repeated copy"
        )
    assert not unanswered, (
        f"the repeated PUBLISH (DUP = 1, id {unanswered[0].publish.packet_id}) was not "
        f"acknowledged within {RECEIPT_WAIT_S:g} s"
    )


def _evolution_corpus(template: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """One change at a time to a realistic event (from the simulator's generator)."""
    device = dict(template["devices"][0])
    minimal = {k: v for k, v in device.items() if k == "identifier"}
    return {
        "unknown-envelope-field": {**template, "futureEnvelope": {"version": 2, "tags": ["a"]}},
        "unknown-device-field": {
            **template,
            "devices": [{**device, "futureField": "value", "batteryLevel": 87}],
        },
        "minimal-device": {**template, "devices": [minimal]},
        "no-timestamp": {k: v for k, v in template.items() if k != "timestamp"},
        "several-devices": {**template, "devices": [device, minimal, {**device, "status": "X"}]},
        "unknown-event-type": {**template, "eventType": "device.battery_low"},
        "unknown-status-and-os": {
            **template,
            "devices": [{**device, "status": "QUARANTINE_PENDING", "os": "VISIONOS"}],
        },
    }


@requirement("IVT-PAY-01")
def test_tolerates_payload_evolution(ivanti: IvantiDriver, check: Check) -> None:
    """Each variant changes one thing in a realistic event; then a Hypothesis campaign
    (conformance.ivanti.strategies.evolved_events). Every PUBLISH acknowledged, the connection
    kept, and a plain event acknowledged after."""
    ivanti.online()
    name, _ = ivanti.qos1_type(check)
    topic = ivanti.sim.topic(name)
    check.expect(
        "a PUBACK for every variant (unknown fields, missing optional fields, unknown "
        "eventType) and the connection kept"
    )
    template = ivanti.realistic(name)
    sent: dict[str, Published] = {
        variant: ivanti.publish(name, {**payload, "futureNonce": n})
        for n, (variant, payload) in enumerate(_evolution_corpus(template).items())
    }
    generated = _campaign(ivanti, name)
    for n, payload in enumerate(generated):
        sent[f"generated #{n + 1}"] = ivanti.publish(name, payload)
    _judge_payloads(ivanti, check, sent, topic, "variant", "IVT-PAY-01")


def _campaign(ivanti: IvantiDriver, name: str) -> list[dict[str, Any]]:
    """Examples of evolved events, drawn with the campaign settings (within a time budget)."""
    drawn: list[dict[str, Any]] = []
    clock = ivanti.harness.clock
    ends = clock.real() + CAMPAIGN_BUDGET_S

    @campaign_settings(ivanti.harness.settings.fuzz_profile)
    @given(evolved_events())
    def draw(event: dict[str, Any]) -> None:
        if clock.real() < ends:
            drawn.append({**event, "futureNonce": len(drawn)})

    draw()
    return drawn


def _judge_payloads(
    ivanti: IvantiDriver,
    check: Check,
    sent: dict[str, Published],
    topic: str,
    what: str,
    rid: str,
) -> None:
    """Every published payload acknowledged and the SUT still connected, then a plain event
    acknowledged; shared by IVT-PAY-01 and IVT-PAY-02."""
    events = list(sent.values())
    ivanti.wait_acked(events, PAYLOAD_ACK_WAIT_S)
    unanswered = [v for v, e in sent.items() if ivanti.copies(e) and not ivanti.acked(e)]
    undelivered = [v for v, e in sent.items() if not ivanti.copies(e)]
    for variant in unanswered:
        ivanti.reproduce(check, topic, sent[variant].payload)
    closed = [
        v
        for v in ivanti.connections()
        if v.close_reason == CLOSED_BY_CLIENT and (v.closed_real_s or 0) >= events[0].real_s
    ]
    problem = ivanti.harness.sut_alive() if ivanti.exited() else None
    check.observe(
        f"{len(sent) - len(unanswered) - len(undelivered)} of {len(sent)} {what}s acknowledged"
        + (f"; no PUBACK for {prose(unanswered[:4])}" if unanswered else "")
        + (f"; the SUT closed {len(closed)} connection(s)" if closed else "")
        + (f"; {problem}" if problem else "")
    )
    if undelivered:
        check.note(f"{len(undelivered)} {what}(s) not delivered: {prose(undelivered[:3])}")
    if problem:
        ivanti.harness.mark_down(problem)
        raise AssertionError(f"{problem} after the {what}s")
    assert not unanswered, (
        f"{len(unanswered)} {what}(s) not acknowledged within {PAYLOAD_ACK_WAIT_S:g} s, first: "
        f"{unanswered[0]}"
    )
    assert not closed, f"the SUT closed its connection after the {what}s ({closed[0].client_id})"
    health = ivanti.publish(ivanti.event_type(check))
    ivanti.online()
    ivanti.wait_acked([health])
    assert ivanti.acked(health), (
        f"a plain event published after the {what}s was not acknowledged within "
        f"{RECEIPT_WAIT_S:g} s ({rid})"
    )
