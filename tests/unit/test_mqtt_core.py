"""simulators.mqtt.core: every rule of the broker core as an example, in the terms of the vendor
doc ("Using the Event Notification Service") and of MQTT 3.1.1 (clause numbers MQTT-x.y.z-n)."""

from __future__ import annotations

import pytest

from simulators.mqtt.actions import NoticeKind, Received
from simulators.mqtt.core import BrokerCore
from simulators.mqtt.packets import (
    CONNACK_BAD_USER_NAME_OR_PASSWORD,
    CONNACK_IDENTIFIER_REJECTED,
    CONNACK_NOT_AUTHORIZED,
    CONNACK_SERVER_UNAVAILABLE,
    CONNACK_UNACCEPTABLE_PROTOCOL_VERSION,
    SUBACK_FAILURE,
    Connack,
    Connect,
    Disconnect,
    Pingreq,
    Pingresp,
    Puback,
    Pubcomp,
    Publish,
    Pubrec,
    Pubrel,
    Suback,
    Subscribe,
    Unsuback,
    Unsubscribe,
    Will,
)
from simulators.mqtt.policy import (
    QUEUED_ENTRY_OVERHEAD,
    BrokerPolicy,
    Identity,
    allow_all,
    next_free_packet_id,
)
from simulators.mqtt.topics import topic_filter_problem, topic_matches
from tests.unit.mqtt_harness import (
    ALICE,
    ANNE,
    BOB,
    OPEN_POLICY,
    Harness,
    closed,
    notices,
    packets_to,
    publishes_to,
)

ACCEPTED = Connack(False, 0)
RESUMED = Connack(True, 0)
RETENTION_S = 3 * 3600  # "a maximum duration of 3 hours"

# An MQTT 5 CONNECT: name "MQTT", level 5, clean start, keep-alive 60, no properties, id "v5".
MQTT5_CONNECT = bytes.fromhex("10 0f 00044d515454 05 02 003c 00 0002 7635".replace(" ", ""))


def refused(return_code: int) -> Connack:
    return Connack(False, return_code)


# --- CONNECT ----------------------------------------------------------------------------------


def test_accepted_connect_gets_connack_0_and_records_keepalive() -> None:
    h = Harness()
    actions = h.connect("c1", keepalive_s=30)
    assert isinstance(actions[0], Received)
    assert packets_to("c1", actions) == [ACCEPTED]
    assert h.core.keepalive_s("c1") == 30  # the adapter enforces 1.5 x this in real time
    assert h.core.connection_count("tenant-a") == 1
    assert h.core.next_deadline() is None  # keep-alive is not a core deadline


def test_mqtt5_connect_gets_return_code_1_and_leaves_nothing_behind() -> None:
    h = Harness()
    h.open("c1")
    actions = h.send_bytes("c1", MQTT5_CONNECT)
    assert packets_to("c1", actions) == [
        refused(CONNACK_UNACCEPTABLE_PROTOCOL_VERSION)
    ]  # MQTT-3.1.2-2
    assert closed(actions) == ["c1"]
    assert h.core.session_views() == []
    assert h.core.connection_count("tenant-a") == 0


def test_unknown_protocol_name_closes_without_connack() -> None:
    h = Harness()
    h.open("c1")
    actions = h.send("c1", Connect("c1", protocol_name="HTTP"))
    assert packets_to("c1", actions) == []  # MQTT-3.1.2-1, MQTT-3.1.4-1
    assert closed(actions) == ["c1"]
    assert notices(NoticeKind.MALFORMED_PACKET, actions)


def test_no_certificate_identity_gets_return_code_5() -> None:
    h = Harness()
    actions = h.connect("c1", identity=None)
    assert packets_to("c1", actions) == [refused(CONNACK_NOT_AUTHORIZED)]
    assert closed(actions) == ["c1"]
    [notice] = notices(NoticeKind.CONNECTION_REFUSED, actions)
    assert notice.detail["return_code"] == CONNACK_NOT_AUTHORIZED


def test_user_name_must_be_the_certificate_email() -> None:
    h = Harness()
    assert packets_to("c1", h.connect("c1", username="mallory@a.example")) == [
        refused(CONNACK_BAD_USER_NAME_OR_PASSWORD)
    ]
    assert packets_to("c2", h.connect("c2", username=ALICE.email, password=b"ignored")) == [
        ACCEPTED
    ]
    assert packets_to("c3", h.connect("c3")) == [ACCEPTED]  # no user name: the certificate decides


def test_empty_client_id_needs_clean_session() -> None:
    h = Harness()
    assert packets_to("c1", h.connect("c1", client_id="", clean_session=False)) == [
        refused(CONNACK_IDENTIFIER_REJECTED)  # MQTT-3.1.3-8
    ]
    assert packets_to("c2", h.connect("c2", client_id="", clean_session=True)) == [ACCEPTED]
    [view] = h.core.session_views()
    assert view.client_id  # MQTT-3.1.3-6: the broker assigned one


def test_overlong_client_id_is_rejected() -> None:
    h = Harness(BrokerPolicy(max_client_id_length=8))
    assert packets_to("c1", h.connect("c1", client_id="x" * 9)) == [
        refused(CONNACK_IDENTIFIER_REJECTED)
    ]
    assert h.core.session_views() == []


def test_a_packet_before_connect_closes_the_connection() -> None:
    h = Harness()
    h.open("c1")
    actions = h.send("c1", Pingreq())
    assert packets_to("c1", actions) == []  # MQTT-3.1.0-1
    assert closed(actions) == ["c1"]
    assert notices(NoticeKind.PROTOCOL_VIOLATION, actions)


def test_a_second_connect_closes_the_connection() -> None:
    h = Harness()
    h.connect("c1")
    actions = h.send("c1", Connect("c1"))
    assert closed(actions) == ["c1"]  # MQTT-3.1.0-2
    assert h.core.connection_count("tenant-a") == 0


def test_nothing_after_a_refused_connect_is_processed() -> None:
    h = Harness()
    h.open("c1", identity=None)
    actions = h.send("c1", Connect("c1"), Subscribe(1, (("a", 1),)), Pingreq())
    assert packets_to("c1", actions) == [refused(CONNACK_NOT_AUTHORIZED)]  # MQTT-3.1.4-5
    assert h.send("c1", Pingreq()) == []


def test_data_on_an_unknown_connection_is_a_harness_error() -> None:
    with pytest.raises(ValueError, match="unknown connection"):
        BrokerCore().data_received("nope", b"", 0.0)
    core = BrokerCore()
    core.connection_made(1, ALICE, 0.0)
    with pytest.raises(ValueError, match="already exists"):
        core.connection_made(1, ALICE, 0.0)


# --- "Ivanti recommends a maximum of fifteen connections per tenant" -----------------------------


def test_the_16th_connection_of_a_tenant_gets_return_code_3() -> None:
    h = Harness()
    for n in range(15):
        assert packets_to(n, h.connect(n, f"a{n}")) == [ACCEPTED]
    actions = h.connect(15, "a15")
    assert packets_to(15, actions) == [refused(CONNACK_SERVER_UNAVAILABLE)]
    assert closed(actions) == [15]
    assert h.core.connection_count("tenant-a") == 15
    assert h.core.session_view("a15", tenant="tenant-a") is None  # no zombie session
    assert packets_to("b", h.connect("b", identity=BOB)) == [ACCEPTED]  # other tenants unaffected
    h.lose(3)
    assert packets_to(16, h.connect(16, "a16")) == [ACCEPTED]  # a freed slot is usable again


def test_the_limit_counts_a_take_over_as_a_replacement() -> None:
    h = Harness()
    for n in range(15):
        h.connect(n, f"a{n}")
    actions = h.connect("again", "a0")
    assert packets_to("again", actions) == [ACCEPTED]
    assert closed(actions) == [0]
    assert h.core.connection_count("tenant-a") == 15


def test_refused_connections_leave_no_count_behind() -> None:
    h = Harness()
    h.core.faults.refuse_next_connects(5)
    for n in range(5):
        assert packets_to(n, h.connect(n)) == [refused(CONNACK_SERVER_UNAVAILABLE)]
    for n in range(5):
        h.lose(n)
    assert h.core.connection_count("tenant-a") == 0
    assert h.core.session_views() == []
    for n in range(15):
        assert packets_to(f"ok{n}", h.connect(f"ok{n}")) == [ACCEPTED]


# --- "Every connection should have a unique MQTT client ID" -------------------------------------


def test_duplicate_client_id_takes_over_by_default() -> None:
    h = Harness()
    h.connect("old", "same", clean_session=False)
    actions = h.connect("new", "same", clean_session=False)
    assert closed(actions) == ["old"]  # MQTT-3.1.4-2
    assert packets_to("new", actions) == [RESUMED]
    [notice] = notices(NoticeKind.TAKEOVER, actions)
    assert notice.conn_id == "old" and notice.detail["new_conn_id"] == "new"
    assert h.core.connection_count("tenant-a") == 1
    assert h.core.session_view("same", tenant="tenant-a").conn_id == "new"  # type: ignore[union-attr]


def test_duplicate_client_id_can_be_refused_and_the_original_stays_up() -> None:
    h = Harness(BrokerPolicy(duplicate_client_id="refuse"))
    h.connect("old", "same")
    actions = h.connect("new", "same")
    assert packets_to("new", actions) == [refused(CONNACK_IDENTIFIER_REJECTED)]
    assert closed(actions) == ["new"]
    assert packets_to("old", h.send("old", Pingreq())) == [Pingresp()]


def test_client_ids_are_per_tenant() -> None:
    h = Harness()
    h.connect("a", "same", identity=ALICE, clean_session=False)
    h.subscribe("a", "t/x")
    actions = h.connect("b", "same", identity=BOB, clean_session=False)
    assert closed(actions) == []
    assert packets_to("b", actions) == [ACCEPTED]  # tenant b does not resume tenant a's session
    assert len(publishes_to("a", h.publish("t/x", tenant="tenant-a"))) == 1


# --- connection lifecycle --------------------------------------------------------------------------


def test_pingreq_gets_pingresp() -> None:
    h = Harness()
    h.connect("c1")
    assert packets_to("c1", h.send("c1", Pingreq())) == [Pingresp()]  # MQTT-3.12.4-1


def test_disconnect_closes_and_discards_the_will() -> None:
    h = Harness(OPEN_POLICY)
    h.connect("watcher")
    h.subscribe("watcher", "wills/#")
    h.connect("c1", will=Will("wills/c1", b"gone", 1))
    actions = h.send("c1", Disconnect())
    assert closed(actions) == ["c1"]
    assert publishes_to("watcher", actions + h.lose("c1")) == []  # MQTT-3.14.4-3


def test_the_will_is_published_when_the_connection_is_lost() -> None:
    h = Harness(OPEN_POLICY)
    h.connect("watcher")
    h.subscribe("watcher", "wills/#")
    h.connect("c1", will=Will("wills/c1", b"gone", 1, retain=True))
    actions = h.lose("c1")
    [publish] = publishes_to("watcher", actions)  # MQTT-3.1.2-8
    assert (publish.topic, publish.payload, publish.retain) == ("wills/c1", b"gone", False)
    assert notices(NoticeKind.WILL_PUBLISHED, actions)


def test_a_will_to_a_forbidden_topic_is_refused() -> None:
    h = Harness()  # the vendor default: clients are subscribers only
    h.connect("watcher")
    h.subscribe("watcher", "#")
    h.connect("c1", will=Will("t/x", b"gone"))
    actions = h.lose("c1")
    assert publishes_to("watcher", actions) == []
    assert notices(NoticeKind.PUBLISH_REFUSED, actions)


def test_a_malformed_packet_closes_that_connection_only_and_loses_nothing_queued() -> None:
    h = Harness()
    h.durable_subscriber("durable", "t/x")
    h.connect("other", "other")
    h.publish("t/x", b"event")
    bad = bytes.fromhex("82 04 0001 0000")  # SUBSCRIBE with an empty, QoS-less topic filter
    actions = h.send_bytes("other", bad)
    assert closed(actions) == ["other"]
    [notice] = notices(NoticeKind.MALFORMED_PACKET, actions)
    assert "truncated" in str(notice.detail["reason"]) or "MQTT-4.7.3-1" in str(
        notice.detail["reason"]
    )
    assert h.send_bytes("other", b"more") == []  # nothing after the decision to close
    h.lose("other")
    actions = h.connect("back", "durable", clean_session=False)
    assert [p.payload for p in publishes_to("back", actions)] == [b"event"]


def test_malformed_bytes_after_valid_packets_in_one_chunk() -> None:
    h = Harness()
    h.connect("c1")
    actions = h.send_bytes("c1", bytes.fromhex("c000") + bytes.fromhex("f000"))
    assert packets_to("c1", actions) == [Pingresp()]  # the good packet is answered first
    assert closed(actions) == ["c1"]


# --- sessions --------------------------------------------------------------------------------------


def test_clean_session_is_discarded_at_disconnect() -> None:
    h = Harness()
    h.connect("c1", "me", clean_session=True)
    h.subscribe("c1", "t/x")
    h.lose("c1")
    assert h.core.session_views() == []  # MQTT-3.1.2-6
    assert packets_to("c2", h.connect("c2", "me", clean_session=False)) == [ACCEPTED]
    assert publishes_to("c2", h.publish("t/x")) == []  # the subscription went with the session


def test_persistent_session_keeps_subscriptions_across_reconnects() -> None:
    h = Harness()
    h.connect("c1", "me", clean_session=False)
    assert packets_to("c1", h.subscribe("c1", "t/x", qos=2)) == [Suback(1, (1,))]
    h.lose("c1")
    assert packets_to("c2", h.connect("c2", "me", clean_session=False)) == [RESUMED]  # MQTT-3.2.2-2
    assert len(publishes_to("c2", h.publish("t/x"))) == 1


def test_clean_session_connect_discards_a_stored_session() -> None:
    h = Harness()
    h.durable_subscriber("c1", "t/x")
    h.publish("t/x")
    actions = h.connect("c2", "c1", clean_session=True)
    assert packets_to("c2", actions) == [ACCEPTED]  # MQTT-3.2.2-1: no PUBLISH, no session
    h.lose("c2")
    assert h.core.session_views() == []


def test_unacknowledged_publishes_are_resent_first_with_dup_and_their_packet_ids() -> None:
    h = Harness(BrokerPolicy(max_inflight=3))
    h.connect("c1", "me", clean_session=False)
    h.subscribe("c1", "t/#")
    sent = []
    for n in range(5):
        sent += publishes_to("c1", h.publish(f"t/{n}", str(n).encode()))
    assert [p.packet_id for p in sent] == [1, 2, 3]  # two more wait for room in the window
    h.send("c1", Puback(2))  # frees a slot: message 3 goes out as packet 4
    h.lose("c1")
    actions = h.connect("c2", "me", clean_session=False)
    assert packets_to("c2", actions)[0] == RESUMED
    resent = [(p.packet_id, p.payload, p.dup) for p in publishes_to("c2", actions)]
    assert resent == [(1, b"0", True), (3, b"2", True), (4, b"3", True)]  # MQTT-4.4.0-1, 4.6.0-1
    # The window is full: message 4 waits for a PUBACK, then goes out new (DUP = 0).
    [fresh] = publishes_to("c2", h.send("c2", Puback(1)))
    assert (fresh.payload, fresh.dup, fresh.packet_id) == (b"4", False, 5)


def test_packet_ids_are_never_reused_while_in_flight() -> None:
    h = Harness(BrokerPolicy(max_inflight=2))
    h.connect("c1")
    h.subscribe("c1", "t")
    [held] = publishes_to("c1", h.publish("t"))
    for _ in range(3):
        [publish] = publishes_to("c1", h.publish("t"))
        assert publish.packet_id != held.packet_id  # MQTT-2.3.1-4
        h.send("c1", Puback(publish.packet_id or 0))


@pytest.mark.parametrize(
    "candidate, in_use, expected",
    [(1, set(), 1), (1, {1, 2}, 3), (65_535, set(), 65_535), (65_535, {65_535, 1}, 2)],
)
def test_packet_ids_wrap_after_65535_and_skip_those_in_flight(
    candidate: int, in_use: set[int], expected: int
) -> None:
    assert next_free_packet_id(candidate, in_use) == expected


# --- delivery: "All MQTT clients maintaining an active subscription ... receive the message" -------


def test_a_connected_subscriber_gets_qos1_without_dup_or_retain() -> None:
    h = Harness()
    h.connect("c1")
    h.subscribe("c1", "t/x")
    assert publishes_to("c1", h.publish("t/x", b"{}")) == [
        Publish("t/x", b"{}", qos=1, packet_id=1)
    ]
    assert packets_to("c1", h.send("c1", Puback(1))) == []


@pytest.mark.parametrize(
    "requested, published, delivered",
    [(2, 1, 1), (2, 2, 1), (1, 0, 0), (0, 1, 0), (1, 2, 1)],
)
def test_delivered_qos_is_the_minimum_of_published_and_granted(
    requested: int, published: int, delivered: int
) -> None:
    h = Harness()
    h.connect("c1")
    [suback] = packets_to("c1", h.subscribe("c1", "t", qos=requested))
    assert suback == Suback(1, (min(requested, 1),))  # "MQTT delivers messages with QoS level 1"
    [publish] = publishes_to("c1", h.publish("t", qos=published))
    assert publish.qos == delivered  # MQTT-3.8.4-6: never upgraded


def test_overlapping_subscriptions_deliver_one_copy_at_the_highest_qos() -> None:
    h = Harness()
    h.connect("c1")
    h.send("c1", Subscribe(1, (("t/#", 0), ("t/+", 1))))
    [publish] = publishes_to("c1", h.publish("t/x"))
    assert publish.qos == 1  # MQTT-3.3.5-1


def test_a_message_with_no_subscriber_is_dropped_with_a_notice() -> None:
    h = Harness()
    actions = h.publish("t/x")
    [notice] = notices(NoticeKind.MESSAGE_DROPPED, actions)
    assert notice.detail["reason"] == "no subscriber"


def test_active_consumers_take_the_message_and_offline_durable_sessions_do_not() -> None:
    h = Harness()
    h.durable_subscriber("offline", "t/x")
    h.connect("online")
    h.subscribe("online", "t/x")
    actions = h.publish("t/x", b"e1")
    assert len(publishes_to("online", actions)) == 1
    assert not notices(NoticeKind.MESSAGE_KEPT, actions)
    assert publishes_to("again", h.connect("again", "offline", clean_session=False)) == []


def test_events_are_per_tenant() -> None:
    h = Harness()
    h.connect("a")
    h.subscribe("a", "device/check_in")
    h.connect("b", identity=BOB)
    h.subscribe("b", "device/check_in")
    actions = h.publish("device/check_in", tenant="tenant-b")
    assert publishes_to("a", actions) == [] and len(publishes_to("b", actions)) == 1


# --- "retained in the system for a maximum duration of 3 hours" --------------------------------------


def test_a_message_with_no_active_consumer_waits_for_a_durable_subscriber() -> None:
    h = Harness()
    h.durable_subscriber("c1", "t/x")
    actions = h.publish("t/x", b"e1", tenant="tenant-a")
    [kept] = notices(NoticeKind.MESSAGE_KEPT, actions)
    assert kept.detail["sessions"] == ["c1"]
    assert h.core.next_deadline() == h.now + RETENTION_S
    h.advance(RETENTION_S - 1)
    actions = h.connect("c2", "c1", clean_session=False)
    assert packets_to("c2", actions) == [
        RESUMED,
        Publish("t/x", b"e1", qos=1, packet_id=1),
    ]  # RETAIN 0


def test_a_queued_message_expires_after_180_minutes() -> None:
    h = Harness()
    h.durable_subscriber("c1", "t/x")
    h.publish("t/x", b"e1")
    assert h.advance(RETENTION_S - 0.5) == []
    [expired] = notices(NoticeKind.MESSAGE_EXPIRED, h.advance(0.5))
    assert expired.detail["sessions"] == ["c1"]
    assert h.core.next_deadline() is None
    assert packets_to("c2", h.connect("c2", "c1", clean_session=False)) == [RESUMED]


def test_expiry_holds_even_when_handle_timeout_is_late() -> None:
    h = Harness()
    h.durable_subscriber("c1", "t/x")
    h.publish("t/x")
    h.now += RETENTION_S + 60  # no handle_timeout: the reconnect itself runs the timers first
    actions = h.connect("c2", "c1", clean_session=False)
    assert publishes_to("c2", actions) == []
    assert notices(NoticeKind.MESSAGE_EXPIRED, actions)


def test_a_qos0_subscription_is_not_durable() -> None:
    h = Harness()
    h.connect("c1", clean_session=False)
    h.subscribe("c1", "t/x", qos=0)
    h.lose("c1")
    actions = h.publish("t/x")
    assert notices(NoticeKind.MESSAGE_DROPPED, actions)  # MQTT-3.1.2-5: QoS 1 and 2 are stored


# --- "The system purges the message after delivery ... PUBACK" ----------------------------------------


def test_the_first_puback_purges_the_message_from_every_queue() -> None:
    h = Harness()
    h.durable_subscriber("s1", "t/x")
    h.durable_subscriber("s2", "t/x")
    h.publish("t/x", b"e1")
    [publish] = publishes_to("s1b", h.connect("s1b", "s1", clean_session=False))
    actions = h.send("s1b", Puback(publish.packet_id or 0))
    [purged] = notices(NoticeKind.MESSAGE_PURGED, actions)
    assert purged.detail["purged_from"] == ["s2"]
    assert publishes_to("s2b", h.connect("s2b", "s2", clean_session=False)) == []
    assert h.core.next_deadline() is None


def test_before_any_puback_every_durable_subscriber_still_gets_it() -> None:
    h = Harness()
    h.durable_subscriber("s1", "t/x")
    h.durable_subscriber("s2", "t/x")
    h.publish("t/x", b"e1")
    assert len(publishes_to("s1b", h.connect("s1b", "s1", clean_session=False))) == 1
    assert len(publishes_to("s2b", h.connect("s2b", "s2", clean_session=False))) == 1


def test_a_copy_already_sent_stays_in_flight_after_the_purge() -> None:
    h = Harness()
    for name in ("s1", "s2"):
        h.connect(name, clean_session=False)
        h.subscribe(name, "t/x")
    actions = h.publish("t/x")
    assert len(publishes_to("s1", actions)) == len(publishes_to("s2", actions)) == 1
    h.send("s1", Puback(1))
    h.lose("s2")
    [again] = publishes_to("s2b", h.connect("s2b", "s2", clean_session=False))
    assert again.dup and again.packet_id == 1  # MQTT-4.4.0-1 still holds for s2's copy


def test_standard_mqtt_fans_out_per_session() -> None:
    h = Harness(BrokerPolicy(purge_after_first_puback=False))
    h.durable_subscriber("offline", "t/x")
    h.connect("online")
    h.subscribe("online", "t/x")
    actions = h.publish("t/x", b"e1")
    assert len(publishes_to("online", actions)) == 1
    assert notices(NoticeKind.MESSAGE_KEPT, actions)[0].detail["sessions"] == ["offline"]
    h.send("online", Puback(1))
    assert len(publishes_to("back", h.connect("back", "offline", clean_session=False))) == 1


# --- bounds ---------------------------------------------------------------------------------------


def test_a_full_queue_drops_new_messages_with_a_notice() -> None:
    h = Harness(BrokerPolicy(max_queued_per_session=3))
    h.durable_subscriber("c1", "t/x")
    for n in range(4):
        actions = h.publish("t/x", str(n).encode())
    [full] = notices(NoticeKind.QUEUE_FULL, actions)
    assert full.detail["dropped"] == 1
    [dropped] = notices(NoticeKind.MESSAGE_DROPPED, actions)
    assert dropped.detail["reason"] == "every receiving queue was full"
    view = h.core.session_view("c1", tenant="tenant-a")
    assert view is not None and (view.queued, view.dropped) == (3, 1)
    payloads = [p.payload for p in publishes_to("c2", h.connect("c2", "c1", clean_session=False))]
    assert payloads == [b"0", b"1", b"2"]


def test_a_tenants_queued_bytes_are_bounded_across_its_sessions() -> None:
    """Many durable sessions of one tenant, each queueing its copy of every event: together they
    hold at most max_queued_bytes_per_tenant (each copy counted); a copy that would pass it is
    dropped with a notice, and the bytes are free again once copies leave the queues (sent,
    purged by a PUBACK, expired)."""
    payload = b"x" * 500
    cost = len(payload) + len("t/x") + QUEUED_ENTRY_OVERHEAD
    h = Harness(BrokerPolicy(max_queued_bytes_per_tenant=cost * 250))
    for n in range(100):
        h.durable_subscriber(f"s{n}", "t/x")
    for _ in range(3):
        actions = h.publish("t/x", payload)
    full = notices(NoticeKind.QUEUE_FULL, actions)
    assert len(full) == 50 and full[0].detail["tenant_bytes_limit"] == cost * 250
    assert h.core.queued_bytes("tenant-a") == cost * 250
    [first, *_] = publishes_to("c", h.connect("c", "s0", clean_session=False))
    sent_now = cost * 250 - h.core.queued_bytes("tenant-a")
    assert sent_now > 0  # s0's copies left its queue for the in-flight window
    h.send("c", Puback(first.packet_id or 0))  # purges that message from every queue
    assert h.core.queued_bytes("tenant-a") <= cost * 250 - sent_now - 99 * cost
    h.advance(BrokerPolicy().retention_s + 1)  # the rest expires
    assert h.core.queued_bytes("tenant-a") == 0


def test_the_inflight_window_releases_queued_messages_in_order() -> None:
    h = Harness(BrokerPolicy(max_inflight=2))
    h.connect("c1")
    h.subscribe("c1", "t")
    sent = []
    for n in range(5):
        sent += publishes_to("c1", h.publish("t", str(n).encode()))
    assert [p.payload for p in sent] == [b"0", b"1"]
    for n in range(2, 5):
        [publish] = publishes_to("c1", h.send("c1", Puback(sent[0].packet_id or 0)))
        sent = [*sent[1:], publish]
        assert publish.payload == str(n).encode()


def test_the_oldest_disconnected_session_is_evicted_for_a_new_one() -> None:
    h = Harness(BrokerPolicy(max_sessions_per_tenant=2))
    h.durable_subscriber("s1", "t")
    h.now += 1
    h.durable_subscriber("s2", "t")
    actions = h.connect("s3", clean_session=False)
    [evicted] = notices(NoticeKind.SESSION_EVICTED, actions)
    assert evicted.client_id == "s1"
    assert {v.client_id for v in h.core.session_views()} == {"s2", "s3"}


def test_sessions_all_connected_at_the_cap_refuse_a_new_one() -> None:
    h = Harness(BrokerPolicy(max_sessions_per_tenant=1))
    h.connect("s1", clean_session=False)
    assert packets_to("s2", h.connect("s2")) == [refused(CONNACK_SERVER_UNAVAILABLE)]
    assert packets_to("s1b", h.connect("s1b", "s1", clean_session=False)) == [RESUMED]  # take-over


# --- subscriptions ----------------------------------------------------------------------------------


def test_subscribe_refusals_get_0x80_in_place() -> None:
    def no_admin(identity: Identity, topic_filter: str) -> bool:
        return not topic_filter.startswith("admin")

    h = Harness(BrokerPolicy(may_subscribe=no_admin, max_topic_filter_length=10))
    h.connect("c1")
    subscribe = Subscribe(7, (("ok", 1), ("a/#/b", 1), ("admin/x", 1), ("x" * 11, 0), ("ok2", 0)))
    actions = h.send("c1", subscribe)
    assert packets_to("c1", actions) == [
        Suback(7, (1, SUBACK_FAILURE, SUBACK_FAILURE, SUBACK_FAILURE, 0))
    ]
    reasons = [n.detail["reason"] for n in notices(NoticeKind.SUBSCRIBE_REFUSED, actions)]
    assert (
        "MQTT-4.7.1-2" in str(reasons[0])
        and "may not" in str(reasons[1])
        and "longer" in str(reasons[2])
    )


def test_subscriptions_per_session_are_capped_but_can_be_replaced() -> None:
    h = Harness(BrokerPolicy(max_subscriptions_per_session=1))
    h.connect("c1")
    assert packets_to("c1", h.subscribe("c1", "a")) == [Suback(1, (1,))]
    assert packets_to("c1", h.subscribe("c1", "b")) == [Suback(1, (SUBACK_FAILURE,))]
    assert packets_to("c1", h.subscribe("c1", "a", qos=0)) == [Suback(1, (0,))]  # MQTT-3.8.4-3


def test_unsubscribe_stops_deliveries_and_is_always_acknowledged() -> None:
    h = Harness()
    h.connect("c1")
    h.subscribe("c1", "t")
    assert packets_to("c1", h.send("c1", Unsubscribe(9, ("t", "never")))) == [
        Unsuback(9)
    ]  # MQTT-3.10.4-5
    assert publishes_to("c1", h.publish("t")) == []


@pytest.mark.parametrize(
    "topic_filter, topic, matches",
    [
        ("sport/#", "sport", True),
        ("sport/#", "sport/tennis/player1", True),
        ("sport/+", "sport/", True),
        ("sport/+", "sport", False),
        ("+/+", "/finance", True),
        ("#", "$SYS/x", False),  # MQTT-4.7.2-1
        ("+/x", "$SYS/x", False),
        ("$SYS/#", "$SYS/x", True),
        ("a/b", "a/B", False),  # case sensitive, no normalization (MQTT-4.7.3-4)
    ],
)
def test_topic_matching(topic_filter: str, topic: str, matches: bool) -> None:
    assert topic_filter_problem(topic_filter) is None
    assert topic_matches(topic_filter, topic) is matches


@pytest.mark.parametrize("topic_filter", ["", "a/#/b", "a#", "a/b+", "+a"])
def test_invalid_topic_filters(topic_filter: str) -> None:
    assert topic_filter_problem(topic_filter) is not None


# --- clients publishing ----------------------------------------------------------------------------


def test_a_client_may_not_publish_by_default_but_is_still_acknowledged() -> None:
    h = Harness()
    h.connect("sub")
    h.subscribe("sub", "t")
    h.connect("c1")
    actions = h.send("c1", Publish("t", b"x", qos=1, packet_id=5))
    assert packets_to("c1", actions) == [Puback(5)]  # MQTT-3.3.5-2
    assert publishes_to("sub", actions) == []
    assert notices(NoticeKind.PUBLISH_REFUSED, actions)[0].detail["topic"] == "t"


def test_an_allowed_client_publish_is_forwarded_without_retain() -> None:
    h = Harness(OPEN_POLICY)
    h.connect("sub")
    h.subscribe("sub", "t")
    h.connect("c1")
    actions = h.send("c1", Publish("t", b"x", qos=1, dup=True, retain=True, packet_id=5))
    assert publishes_to("sub", actions) == [
        Publish("t", b"x", qos=1, packet_id=1)
    ]  # MQTT-3.3.1-3, -9


def test_inbound_qos2_is_delivered_once() -> None:
    h = Harness(OPEN_POLICY)
    h.connect("sub")
    h.subscribe("sub", "t")
    h.connect("c1")
    first = h.send("c1", Publish("t", b"x", qos=2, packet_id=5))
    assert packets_to("c1", first) == [Pubrec(5)]
    repeat = h.send("c1", Publish("t", b"x", qos=2, dup=True, packet_id=5))
    assert packets_to("c1", repeat) == [Pubrec(5)]
    assert len(publishes_to("sub", first + repeat)) == 1  # MQTT-4.3.3-2
    assert packets_to("c1", h.send("c1", Pubrel(5))) == [Pubcomp(5)]


def test_acknowledgements_for_nothing_in_flight_are_noticed() -> None:
    h = Harness()
    h.connect("c1")
    actions = h.send("c1", Puback(42), Pubrec(43), Pubcomp(44))
    assert [n.detail["packet_id"] for n in notices(NoticeKind.UNKNOWN_PACKET_ID, actions)] == [
        42,
        43,
        44,
    ]
    assert closed(actions) == []


# --- in-session redelivery and faults ------------------------------------------------------------------


def test_optional_in_session_redelivery_resends_with_dup() -> None:
    h = Harness(BrokerPolicy(redelivery_timeout_s=30))
    h.connect("c1")
    h.subscribe("c1", "t")
    h.publish("t")
    assert h.core.next_deadline() == h.now + 30
    assert h.advance(29) == []
    assert publishes_to("c1", h.advance(1)) == [Publish("t", b"{}", qos=1, dup=True, packet_id=1)]
    h.send("c1", Puback(1))
    assert h.core.next_deadline() is None


def test_redeliver_inflight_fault() -> None:
    h = Harness()
    h.connect("c1")
    h.subscribe("c1", "t")
    h.publish("t")
    actions = h.core.redeliver_inflight("c1", h.now, tenant="tenant-a")
    assert publishes_to("c1", actions) == [Publish("t", b"{}", qos=1, dup=True, packet_id=1)]


def test_lost_puback_fault_keeps_the_publish_in_flight_until_redelivered() -> None:
    h = Harness(BrokerPolicy(redelivery_timeout_s=30))
    h.core.faults.lose_next_pubacks("c1")
    h.connect("c1")
    h.subscribe("c1", "t")
    h.publish("t")
    h.send("c1", Puback(1))  # lost: the PUBLISH stays in flight
    assert publishes_to("c1", h.advance(30)) == [Publish("t", b"{}", qos=1, dup=True, packet_id=1)]
    h.send("c1", Puback(1))  # the next one counts
    assert h.core.next_deadline() is None


def test_duplicate_next_delivery_fault() -> None:
    h = Harness()
    h.core.faults.duplicate_next_delivery("c1")
    h.connect("c1")
    h.subscribe("c1", "t")
    first = publishes_to("c1", h.publish("t", b"1"))
    assert first == [
        Publish("t", b"1", 1, packet_id=1),
        Publish("t", b"1", 1, dup=True, packet_id=1),
    ]
    assert len(publishes_to("c1", h.publish("t", b"2"))) == 1  # only the next one


def test_refuse_next_connects_fault_is_per_tenant_when_asked() -> None:
    h = Harness()
    h.core.faults.refuse_next_connects(1, CONNACK_NOT_AUTHORIZED, tenant="tenant-b")
    assert packets_to("a", h.connect("a")) == [ACCEPTED]
    assert packets_to("b", h.connect("b", identity=BOB)) == [refused(CONNACK_NOT_AUTHORIZED)]
    assert packets_to("b2", h.connect("b2", identity=BOB)) == [ACCEPTED]


def test_an_outage_refuses_every_client_id_of_the_tenant_until_it_ends() -> None:
    """begin_outage: every CONNECT of the tenant, whatever its client id, gets the return code
    (and leaves nothing behind); other tenants and live connections are unaffected; end_outage
    admits again, and a durable session resumes with what was queued meanwhile."""
    h = Harness()
    h.connect("c1", "me", clean_session=False)
    h.subscribe("c1", "t")
    h.core.faults.begin_outage(tenant="tenant-a")
    assert h.core.faults.in_outage("tenant-a") and not h.core.faults.in_outage("tenant-b")
    assert h.core.connection_count("tenant-a") == 1  # the live connection stays
    assert closed(h.core.disconnect("me", h.now, tenant="tenant-a")) == ["c1"]
    h.lose("c1")
    h.publish("t", b"during the outage")
    for n, client_id in enumerate(["me", "someone-else", "me"]):
        conn = f"r{n}"
        assert packets_to(conn, h.connect(conn, client_id, clean_session=False)) == [
            refused(CONNACK_SERVER_UNAVAILABLE)
        ]
        h.lose(conn)
    assert packets_to("b", h.connect("b", identity=BOB)) == [ACCEPTED]
    assert h.core.connection_count("tenant-a") == 0
    h.core.faults.end_outage(tenant="tenant-a")
    actions = h.connect("c2", "me", clean_session=False)
    assert [p.payload for p in publishes_to("c2", actions)] == [b"during the outage"]
    h.core.faults.begin_outage(CONNACK_NOT_AUTHORIZED)  # every tenant
    assert packets_to("x", h.connect("x", identity=BOB)) == [refused(CONNACK_NOT_AUTHORIZED)]
    with pytest.raises(ValueError, match=r"1\.\.5"):
        h.core.faults.begin_outage(0)


def test_hold_offline_and_disconnect_faults() -> None:
    h = Harness()
    h.connect("c1", "me", clean_session=False)
    h.subscribe("c1", "t")
    actions = h.core.hold_offline("me", h.now + 60, h.now, tenant="tenant-a")
    assert closed(actions) == ["c1"]
    h.lose("c1")
    h.publish("t", b"while held")
    assert packets_to("c2", h.connect("c2", "me", clean_session=False)) == [
        refused(CONNACK_SERVER_UNAVAILABLE)
    ]
    h.now += 60
    actions = h.connect("c3", "me", clean_session=False)
    assert [p.payload for p in publishes_to("c3", actions)] == [b"while held"]
    assert closed(h.core.disconnect("me", h.now, "drop before PUBACK", tenant="tenant-a")) == ["c3"]
    assert h.core.disconnect("nobody", h.now) == []


def test_drop_connection_is_how_the_adapter_ends_a_silent_client() -> None:
    h = Harness()
    h.connect("c1", keepalive_s=10)
    actions = h.core.drop_connection("c1", h.now, "keep-alive expired (MQTT-3.1.2-24)")
    assert closed(actions) == ["c1"]
    assert h.core.connection_count("tenant-a") == 0


def test_two_tenant_members_share_nothing_but_the_tenant_limit() -> None:
    h = Harness()
    h.connect("a1", identity=ALICE)
    h.connect("a2", identity=ANNE)
    assert h.core.connection_count("tenant-a") == 2


def test_time_never_runs_backwards_inside_the_core() -> None:
    h = Harness()
    h.durable_subscriber("c1", "t")
    h.publish("t")
    h.advance(RETENTION_S)
    h.now -= RETENTION_S  # an adapter that read its clock too early
    assert publishes_to("c2", h.connect("c2", "c1", clean_session=False)) == []


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_qos": 2},
        {"max_inflight": 0},
        {"max_inflight": 65_536},
        {"redelivery_timeout_s": 0},
        {"duplicate_client_id": "ignore"},
        {"retention_s": -1},
        {"max_queued_per_session": -1},
    ],
)
def test_policy_rejects_what_the_core_cannot_do(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        BrokerPolicy(**kwargs)  # type: ignore[arg-type]


def test_vendor_defaults() -> None:
    policy = BrokerPolicy()
    assert policy.max_connections_per_tenant == 15
    assert policy.retention_s == 180 * 60  # "retentionPeriodMinutes": 180
    assert policy.max_qos == 1
    assert policy.duplicate_client_id == "takeover"
    assert policy.purge_after_first_puback
    assert policy.may_subscribe(ALICE, "x") and not policy.may_publish(ALICE, "x")
    assert allow_all(ALICE, "x")
