"""simulators.mqtt.packetlog: the one PUBLISH/PUBACK pairing. A PUBACK answers the oldest
unanswered PUBLISH with its packet id, so a copy and its DUP = 1 repeat each need their own
(MQTT-4.3.2-2), and a packet id reused after its PUBACK (MQTT-2.3.1-3, -4) is a new pairing."""

from __future__ import annotations

from collections import deque

import pytest

from simulators.mqtt.packetlog import (
    CLOSED_BY_CLIENT,
    SUBSCRIPTIONS_KEPT,
    TEXT_KEPT,
    ConnectionLog,
    ConnectionView,
    PacketRecord,
    excerpt,
    pair_acks,
)
from simulators.mqtt.packets import SUBACK_FAILURE, Connect, Suback, Subscribe, Will


def view(*packets: PacketRecord, closed: str | None = None) -> ConnectionView:
    return ConnectionView(
        conn_id=1, peer="127.0.0.1:1", tenant="t", email="e", opened_real_s=0.0,
        opened_sim_s=0.0, closed_real_s=9.0 if closed else None, close_reason=closed,
        client_id="c", clean_session=False, keepalive_s=10, protocol_level=4, username=None,
        will_topic=None, connack=0, subscriptions=(), packets=packets, packets_total=len(packets),
    )  # fmt: skip


def publish(real: float, packet_id: int, *, dup: bool = False, payload: int = 7) -> PacketRecord:
    return PacketRecord(real, real, "out", "PUBLISH", 10, packet_id, 1, dup, False, "t", payload)


def puback(real: float, packet_id: int) -> PacketRecord:
    return PacketRecord(real, real, "in", "PUBACK", 4, packet_id)


def answered(v: ConnectionView) -> list[tuple[int | None, bool, float | None]]:
    return [(c.packet_id, c.dup, c.acked_real_s) for c in pair_acks(v)]


def test_one_puback_answers_the_publish_not_its_repeat() -> None:
    v = view(publish(1.0, 5), publish(1.1, 5, dup=True), puback(1.2, 5))
    assert answered(v) == [(5, False, 1.2), (5, True, None)]


def test_a_second_puback_answers_the_repeat() -> None:
    v = view(publish(1.0, 5), publish(1.1, 5, dup=True), puback(1.2, 5), puback(1.4, 5))
    assert answered(v) == [(5, False, 1.2), (5, True, 1.4)]
    assert [c.delay_real_s for c in pair_acks(v)] == pytest.approx([0.2, 0.3])


def test_a_reused_packet_id_is_not_answered_by_the_repeats_puback() -> None:
    """After the first PUBACK the broker may reuse id 5 for a new message; the SUT's PUBACK for
    the repeat answers the repeat, and the new message waits for its own."""
    v = view(
        publish(1.0, 5),
        publish(1.1, 5, dup=True),
        puback(1.2, 5),
        publish(1.3, 5, payload=8),  # a new message
        puback(1.4, 5),  # for the repeat
    )
    assert answered(v) == [(5, False, 1.2), (5, True, 1.4), (5, False, None)]


def test_stray_and_interleaved_pubacks() -> None:
    v = view(publish(1.0, 1), publish(1.1, 2), puback(1.2, 9), puback(1.3, 2), puback(1.4, 1))
    assert answered(v) == [(1, False, 1.4), (2, False, 1.3)]


def test_qos_0_publishes_and_inbound_publishes_are_not_copies() -> None:
    qos0 = PacketRecord(1.0, 1.0, "out", "PUBLISH", 10, None, 0)
    inbound = PacketRecord(1.1, 1.1, "in", "PUBLISH", 10, 3, 1)
    assert pair_acks(view(qos0, inbound, puback(1.2, 3))) == []


def test_the_server_view_and_the_checks_pair_alike() -> None:
    """ConnectionView.acks() (the simulator's tests) is pair_acks (the checks)."""
    v = view(publish(1.0, 5), publish(1.1, 5, dup=True), puback(1.2, 5))
    assert v.acks() == pair_acks(v)
    [first, repeat] = v.acks()
    assert (first.topic, first.payload_hash, first.sent_real_s) == ("t", 7, 1.0)
    assert repeat.acked_real_s is None and not repeat.cut_off


def test_a_copy_the_broker_cut_off_is_marked() -> None:
    """The broker closed the connection before the repeat's PUBACK: it could not come there."""
    copies = pair_acks(view(publish(1.0, 5), publish(1.1, 5, dup=True), closed="take-over"))
    assert [c.cut_off for c in copies] == [True, True]
    copies = pair_acks(view(publish(1.0, 5), closed=CLOSED_BY_CLIENT))
    assert [c.cut_off for c in copies] == [False]


def test_a_log_keeps_a_bounded_excerpt_of_what_the_client_chose() -> None:
    """A CONNECT's strings are kept as excerpts that say how much was cut, its Will payload and
    password not at all; refused filters are excerpts, granted ones whole; a connection keeps
    its first and latest subscriptions and counts them all."""
    log = ConnectionLog(1, "127.0.0.1:1", None, 0.0, 0.0, deque(maxlen=10))
    log.note(
        Connect(
            "c" * 70_000,
            will=Will("w" * 300, b"p" * 1_000_000, 1),
            username="u" * 300,
            password=b"secret",
        )
    )
    assert log.connect is not None and log.connect.will is not None
    assert log.connect.will.payload == b"" and log.connect.password is None
    view = log.view()
    assert view.client_id == "c" * TEXT_KEPT + f"…[{70_000 - TEXT_KEPT} more characters cut]"
    assert view.username is not None and view.username.endswith("[44 more characters cut]")
    granted = "t/" + "g" * 900
    for n in range(1, 1_001):
        log.note(Subscribe(n, ((granted, 1), ("r" * 5_000, 1))))
        log.note(Suback(n, (1, SUBACK_FAILURE)))
    view = log.view()
    assert view.subscriptions_total == 2_000
    assert len(view.subscriptions) == SUBSCRIPTIONS_KEPT
    assert view.subscriptions[0] == (granted, 1, 1)
    assert view.subscriptions[1] == (excerpt("r" * 5_000), 1, SUBACK_FAILURE)
    assert log.kept == sum(1 + len(f) // TEXT_KEPT for f, _, _ in view.subscriptions)
