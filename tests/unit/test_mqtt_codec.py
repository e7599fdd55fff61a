"""simulators.mqtt.codec: golden bytes for every packet in both directions (written by hand from
OASIS MQTT 3.1.1 chapter 3), every malformation a receiver must reject, Hypothesis round trips
over arbitrary splits, and a small cross-check against amqtt 0.12.1's independent codec."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from amqtt.adapters import BufferReader
from amqtt.mqtt.connect import (
    ConnectPacket,
    ConnectPayload,
    ConnectVariableHeader,
)
from amqtt.mqtt.puback import PubackPacket
from amqtt.mqtt.publish import PublishPacket
from amqtt.mqtt.suback import SubackPacket
from amqtt.mqtt.subscribe import SubscribePacket
from hypothesis import given, settings
from hypothesis import strategies as st

from simulators.mqtt.codec import Decoder, MalformedPacket, Side, encode
from simulators.mqtt.packets import (
    SUBACK_FAILURE,
    Connack,
    Connect,
    Disconnect,
    Packet,
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

BOTH: tuple[Side, ...] = ("server", "client")
SERVER: tuple[Side, ...] = ("server",)  # client → server packets: the broker's decoder
CLIENT: tuple[Side, ...] = ("client",)  # server → client packets: a test client's decoder


def h(text: str) -> bytes:
    return bytes.fromhex(text.replace(" ", ""))


# (packet, its bytes, the decoders that accept it)
GOLDEN: list[tuple[Packet, str, tuple[Side, ...]]] = [
    (Connect("c1"), "10 0e 0004 4d515454 04 02 003c 0002 6331", SERVER),
    (
        Connect(
            "c1",
            clean_session=False,
            keepalive_s=30,
            will=Will("w", b"bye", 1, retain=True),
            username="u@x",
            password=b"pw",
        ),
        "10 1f 0004 4d515454 04 ec 001e 0002 6331 0001 77 0003 627965 0003 754078 0002 7077",
        SERVER,
    ),
    (
        Connect("c1", keepalive_s=0, protocol_name="MQIsdp", protocol_level=3),
        "10 10 0006 4d5149736470 03 02 0000 0002 6331",
        SERVER,
    ),
    (Connack(True, 0), "20 02 01 00", CLIENT),
    (Connack(False, 5), "20 02 00 05", CLIENT),
    (Publish("a/b", b"hi"), "30 07 0003 612f62 6869", BOTH),
    (
        Publish("a/b", b"hi", qos=1, dup=True, retain=True, packet_id=10),
        "3b 09 0003 612f62 000a 6869",
        BOTH,
    ),
    (Publish("t", b"", qos=2, packet_id=65535), "34 05 0001 74 ffff", BOTH),
    (Publish("t", b"x" * 200), "30 cb01 0001 74" + "78" * 200, BOTH),  # 203 = 0x4b + 1 * 128
    (Puback(1), "40 02 0001", BOTH),
    (Pubrec(2), "50 02 0002", BOTH),
    (Pubrel(3), "62 02 0003", BOTH),  # MQTT-3.6.1-1: flags 0010
    (Pubcomp(4), "70 02 0004", BOTH),
    (Subscribe(1, (("a/#", 1), ("b", 2))), "82 0c 0001 0003 612f23 01 0001 62 02", SERVER),
    (Suback(1, (1, SUBACK_FAILURE, 0)), "90 05 0001 01 80 00", CLIENT),
    (Unsubscribe(2, ("a/#", "b")), "a2 0a 0002 0003 612f23 0001 62", SERVER),
    (Unsuback(2), "b0 02 0002", CLIENT),
    (Pingreq(), "c0 00", SERVER),
    (Pingresp(), "d0 00", CLIENT),
    (Disconnect(), "e0 00", SERVER),
]


@pytest.mark.parametrize(
    "packet, wire, sides",
    GOLDEN,
    ids=[f"{type(p).__name__}-{i}" for i, (p, _, _) in enumerate(GOLDEN)],
)
def test_golden_bytes(packet: Packet, wire: str, sides: tuple[Side, ...]) -> None:
    assert encode(packet) == h(wire)
    for side in sides:
        assert Decoder(side).feed(h(wire)) == [packet]
    for side in set(BOTH) - set(sides):  # Table 2.1: each type flows one way only
        with pytest.raises(MalformedPacket, match=f"a {side} never receives"):
            Decoder(side).feed(h(wire))


@pytest.mark.parametrize(
    "remaining_length, header",
    [(127, "7f"), (128, "8001"), (16_383, "ff7f"), (16_384, "808001"), (2_097_152, "80808001")],
)
def test_remaining_length_boundaries(remaining_length: int, header: str) -> None:
    """§2.2.3: 7 bits a byte, least significant first."""
    packet = Publish("t", b"x" * (remaining_length - 3))
    wire = encode(packet)
    assert wire[1 : 1 + len(h(header))] == h(header)
    assert Decoder(max_packet_size=remaining_length).feed(wire) == [packet]


def test_mqtt5_connect_decodes_far_enough_to_refuse_it() -> None:
    """MQTT 5 adds properties after the keep-alive; the broker needs only the level (MQTT-3.1.2-2)."""
    wire = h("10 0f 0004 4d515454 05 02 003c 00 0002 7635")
    [connect] = Decoder().feed(wire)
    assert isinstance(connect, Connect)
    assert (connect.protocol_name, connect.protocol_level, connect.keepalive_s) == ("MQTT", 5, 60)


def test_a_leading_byte_order_mark_is_kept() -> None:
    [publish] = Decoder().feed(h("30 06 0004 efbbbf 61"))
    assert isinstance(publish, Publish) and publish.topic == "\ufeffa"  # MQTT-1.5.3-3


# (side, bytes, what the reason says)
MALFORMED: list[tuple[Side, str, str]] = [
    ("server", "00 00", "reserved control packet type 0"),
    ("client", "f0 00", "reserved control packet type 15"),
    ("server", "30 ff ff ff ff", "longer than four bytes"),  # raised before a fifth byte arrives
    ("server", "60 02 0001", "MQTT-3.6.1-1"),  # PUBREL flags 0000
    ("server", "80 06 0001 0001 61 01", "MQTT-3.8.1-1"),  # SUBSCRIBE flags 0000
    ("server", "a0 05 0001 0001 61", "MQTT-3.10.1-1"),  # UNSUBSCRIBE flags 0000
    ("server", "41 02 0001", "MQTT-2.2.2-1"),  # PUBACK flags 0001
    ("server", "c1 00", "MQTT-2.2.2-1"),
    ("server", "11 0e 0004 4d515454 04 02 003c 0002 6331", "MQTT-2.2.2-1"),
    ("server", "36 06 0001 61 0001 00", "MQTT-3.3.1-4"),  # QoS 3
    ("client", "38 03 0001 61", "MQTT-3.3.1-2"),  # DUP with QoS 0
    ("server", "30 03 0001 ff", "MQTT-1.5.3-1"),  # not UTF-8
    ("server", "30 05 0003 eda080", "MQTT-1.5.3-1"),  # an encoded surrogate, U+D800
    ("server", "30 05 0003 c0af61", "MQTT-1.5.3-1"),  # an overlong '/'
    ("server", "30 04 0002 6100", "MQTT-1.5.3-2"),  # U+0000
    ("server", "30 05 0003 612f23", "MQTT-3.3.2-2"),  # '#' in a topic name
    ("client", "30 03 0001 2b", "MQTT-3.3.2-2"),  # '+' in a topic name
    ("server", "30 02 0000", "MQTT-4.7.3-1"),  # empty topic name
    ("server", "82 05 0001 0000 01", "MQTT-4.7.3-1"),  # empty topic filter
    ("server", "82 02 0001", "MQTT-3.8.3-3"),  # SUBSCRIBE with no topic
    ("server", "82 06 0001 0001 61 03", "MQTT-3.8.3-4"),  # requested QoS 3
    ("server", "82 06 0001 0001 61 41", "MQTT-3.8.3-4"),  # reserved bits
    ("server", "a2 02 0001", "MQTT-3.10.3-2"),  # UNSUBSCRIBE with no topic
    ("server", "a2 04 0001 0000", "MQTT-4.7.3-1"),
    ("server", "32 05 0001 61 0000", "MQTT-2.3.1-1"),  # packet id 0
    ("server", "40 02 0000", "MQTT-2.3.1-1"),
    ("server", "82 06 0000 0001 61 01", "MQTT-2.3.1-1"),
    ("server", "a2 05 0000 0001 61", "MQTT-2.3.1-1"),
    ("client", "90 03 0000 01", "MQTT-2.3.1-1"),
    ("client", "b0 02 0000", "MQTT-2.3.1-1"),
    ("server", "40 03 0001 00", "trailing"),
    ("server", "c0 01 00", "trailing"),
    ("server", "e0 01 00", "trailing"),
    ("server", "10 0f 0004 4d515454 04 02 003c 0002 6331 00", "trailing"),
    ("client", "d0 01 00", "trailing"),
    ("server", "40 01 00", "truncated"),
    ("server", "32 03 0001 61", "truncated"),  # QoS 1 without a packet id
    ("server", "30 03 0005 61", "truncated"),  # a string running past the body
    ("server", "10 0d 0004 4d515454 04 02 003c 0005 61", "truncated"),
    ("server", "10 0e 0004 4d515454 04 82 003c 0002 6331", "truncated"),  # user name flag, no name
    ("server", "10 07 0004 4d515454 05", "truncated"),  # even MQTT 5 needs its header
    ("server", "10 0e 0004 4d515458 04 02 003c 0002 6331", "MQTT-3.1.2-1"),  # "MQTX"
    ("server", "10 0e 0004 4d515454 04 03 003c 0002 6331", "MQTT-3.1.2-3"),  # reserved flag
    ("server", "10 0e 0004 4d515454 04 0a 003c 0002 6331", "MQTT-3.1.2-13"),  # will QoS, no will
    ("server", "10 0e 0004 4d515454 04 22 003c 0002 6331", "MQTT-3.1.2-15"),  # will retain, no will
    ("server", "10 0e 0004 4d515454 04 1e 003c 0002 6331", "MQTT-3.1.2-14"),  # will QoS 3
    ("server", "10 0e 0004 4d515454 04 42 003c 0002 6331", "MQTT-3.1.2-22"),  # password, no user
    (
        "server",
        "10 13 0004 4d515454 04 06 003c 0002 6331 0001 23 0000",
        "MQTT-3.3.2-2",
    ),  # will topic
    ("server", "10 0e 0004 4d515454 04 02 003c 0002 ff31", "MQTT-1.5.3-1"),  # client id
    ("client", "20 02 02 00", "§3.2.2.1"),  # CONNACK reserved bits
    ("client", "20 02 00 06", "reserved"),  # CONNACK return code 6
    ("client", "20 02 01 05", "MQTT-3.2.2-4"),  # session present with a refusal
    ("client", "20 01 00", "truncated"),
    ("client", "90 03 0001 03", "MQTT-3.9.3-2"),  # SUBACK return code 3
    ("client", "90 02 0001", "MQTT-3.8.4-5"),  # SUBACK without return codes
]


@pytest.mark.parametrize("side, wire, reason", MALFORMED)
def test_malformed(side: Side, wire: str, reason: str) -> None:
    decoder = Decoder(side)
    with pytest.raises(MalformedPacket) as raised:
        decoder.feed(h(wire))
    assert reason in raised.value.reason
    with pytest.raises(MalformedPacket):  # the error is sticky
        decoder.feed(encode(Puback(1)))


def test_packet_size_is_refused_from_the_header_before_the_body_arrives() -> None:
    decoder = Decoder(max_packet_size=1024)
    with pytest.raises(MalformedPacket, match="exceeds the limit of 1024"):
        decoder.feed(h("30 81 08"))  # 1025 announced, not one body byte sent
    assert decoder.buffered == 0
    assert Decoder().max_packet_size == 1 << 20  # 1 MiB by default


def test_good_packets_before_a_bad_one_are_not_lost() -> None:
    decoder = Decoder()
    decoder.receive_data(encode(Pingreq()) + h("f0 00"))
    assert decoder.next_packet() == Pingreq()
    with pytest.raises(MalformedPacket):
        decoder.next_packet()


@pytest.mark.parametrize(
    "packet, problem",
    [
        (Publish("t", b"", qos=1), "needs a packet id"),
        (Publish("t", b"", qos=0, packet_id=1), "MQTT-2.3.1-5"),
        (Publish("t", b"", qos=0, dup=True), "MQTT-3.3.1-2"),
        (Publish("t", b"", qos=3, packet_id=1), "QoS 3"),
        (Publish("t\x00", b""), "MQTT-1.5.3-2"),
        (Publish("\ud800", b""), "MQTT-1.5.3-1"),
        (Publish("x" * 65_536, b""), "at most 65535"),
        (Puback(0), "1..65535"),
        (Puback(65_536), "1..65535"),
        (Connect("c", password=b"p"), "MQTT-3.1.2-22"),
        (Connect("c", keepalive_s=65_536), "keep alive"),
        (Connack(True, 2), "MQTT-3.2.2-4"),
        (Subscribe(1, ()), "MQTT-3.8.3-3"),
        (Unsubscribe(1, ()), "MQTT-3.10.3-2"),
        (Suback(1, (3,)), "0x80"),
        (Suback(1, ()), "0x80"),
    ],
)
def test_encode_refuses_what_is_not_valid_mqtt(packet: Packet, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        encode(packet)


# --- Hypothesis: decode(encode(p)) == p, whatever the split ------------------------------------------

text = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=12)
topic_names = text.filter(lambda t: t and "+" not in t and "#" not in t)
topic_filters = text.filter(bool)
packet_ids = st.integers(1, 0xFFFF)
payloads = st.binary(max_size=300)


@st.composite
def publishes(draw: st.DrawFn) -> Publish:
    qos = draw(st.integers(0, 2))
    return Publish(
        topic=draw(topic_names),
        payload=draw(payloads),
        qos=qos,
        dup=qos > 0 and draw(st.booleans()),
        retain=draw(st.booleans()),
        packet_id=draw(packet_ids) if qos else None,
    )


@st.composite
def connects(draw: st.DrawFn) -> Connect:
    username = draw(st.none() | text)
    name, level = draw(st.sampled_from([("MQTT", 4), ("MQIsdp", 3)]))
    return Connect(
        client_id=draw(text),
        clean_session=draw(st.booleans()),
        keepalive_s=draw(st.integers(0, 0xFFFF)),
        will=draw(
            st.none() | st.builds(Will, topic_names, payloads, st.integers(0, 2), st.booleans())
        ),
        username=username,
        password=None if username is None else draw(st.none() | st.binary(max_size=20)),
        protocol_name=name,
        protocol_level=level,
    )


acknowledgements = st.one_of(
    st.builds(Puback, packet_ids),
    st.builds(Pubrec, packet_ids),
    st.builds(Pubrel, packet_ids),
    st.builds(Pubcomp, packet_ids),
)
client_packets = st.one_of(
    connects(),
    publishes(),
    acknowledgements,
    st.builds(
        Subscribe,
        packet_ids,
        st.lists(st.tuples(topic_filters, st.integers(0, 2)), min_size=1, max_size=4).map(tuple),
    ),
    st.builds(Unsubscribe, packet_ids, st.lists(topic_filters, min_size=1, max_size=4).map(tuple)),
    st.just(Pingreq()),
    st.just(Disconnect()),
)
server_packets = st.one_of(
    st.integers(0, 5).flatmap(
        lambda rc: st.builds(Connack, st.just(False) if rc else st.booleans(), st.just(rc))
    ),
    publishes(),
    acknowledgements,
    st.builds(
        Suback,
        packet_ids,
        st.lists(st.sampled_from([0, 1, 2, SUBACK_FAILURE]), min_size=1, max_size=4).map(tuple),
    ),
    st.builds(Unsuback, packet_ids),
    st.just(Pingresp()),
)


def _decode_in_pieces(side: Side, wire: bytes, cuts: list[int]) -> list[Packet]:
    decoder = Decoder(side)
    decoded: list[Packet] = []
    start = 0
    for cut in [*sorted({min(c, len(wire)) for c in cuts}), len(wire)]:
        decoded += decoder.feed(wire[start:cut])
        start = cut
    assert decoder.buffered == 0
    return decoded


@settings(max_examples=300, deadline=None)
@given(
    st.lists(client_packets, min_size=1, max_size=5), st.lists(st.integers(0, 2_000), max_size=8)
)
def test_round_trip_client_to_server(packets: list[Packet], cuts: list[int]) -> None:
    wire = b"".join(encode(p) for p in packets)
    assert _decode_in_pieces("server", wire, cuts) == packets


@settings(max_examples=300, deadline=None)
@given(
    st.lists(server_packets, min_size=1, max_size=5), st.lists(st.integers(0, 2_000), max_size=8)
)
def test_round_trip_server_to_client(packets: list[Packet], cuts: list[int]) -> None:
    wire = b"".join(encode(p) for p in packets)
    assert _decode_in_pieces("client", wire, cuts) == packets


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(BOTH), st.binary(max_size=64))
def test_any_bytes_decode_or_raise_malformed_and_nothing_else(side: Side, data: bytes) -> None:
    """The fuzzing contract: accepted, or rejected with the documented exception."""
    try:
        packets = Decoder(side).feed(data)
    except MalformedPacket:
        return
    for packet in packets:
        if not (isinstance(packet, Connect) and packet.protocol_level not in (3, 4)):
            assert Decoder(side).feed(encode(packet)) == [packet]


# --- amqtt 0.12.1 as an independent codec -----------------------------------------------------------


def amqtt_decode(packet_class: Any, wire: bytes) -> Any:
    """Decode ``wire`` with an amqtt packet class (amqtt is untyped, hence Any)."""
    return asyncio.run(packet_class.from_stream(BufferReader(wire)))


@pytest.mark.parametrize(
    "connect",
    [
        Connect("c1"),
        Connect(
            "sub-1", clean_session=False, keepalive_s=30, username="alice@a.example", password=b"pw"
        ),
        Connect("c2", will=Will("wills/c2", b"gone", 1, retain=True)),
    ],
)
def test_amqtt_reads_our_connect(connect: Connect) -> None:
    theirs = amqtt_decode(ConnectPacket, encode(connect))
    will = connect.will
    assert (theirs.proto_name, theirs.proto_level, theirs.client_id) == (
        "MQTT",
        4,
        connect.client_id,
    )
    assert (theirs.clean_session_flag, theirs.keep_alive) == (
        connect.clean_session,
        connect.keepalive_s,
    )
    assert theirs.username == connect.username
    assert theirs.password == (connect.password.decode() if connect.password is not None else None)
    assert theirs.will_flag == (will is not None)
    if will is not None:
        assert (theirs.will_topic, theirs.will_message) == (will.topic, will.payload)
        assert (theirs.will_qos, theirs.will_retain_flag) == (will.qos, will.retain)


@pytest.mark.parametrize(
    "publish",
    [
        Publish("a/b", b"{}"),
        Publish("t/\u00e9", b"\x00\xff" * 100, qos=1, dup=True, retain=True, packet_id=65_535),
    ],
)
def test_amqtt_reads_our_publish_and_we_read_theirs(publish: Publish) -> None:
    theirs = amqtt_decode(PublishPacket, encode(publish))
    assert (theirs.topic_name, theirs.data, theirs.qos) == (
        publish.topic,
        publish.payload,
        publish.qos,
    )
    assert (theirs.dup_flag, theirs.retain_flag, theirs.packet_id) == (
        publish.dup,
        publish.retain,
        publish.packet_id,
    )
    built = PublishPacket.build(
        publish.topic, publish.payload, publish.packet_id, publish.dup, publish.qos, publish.retain
    )
    assert Decoder("client").feed(built.to_bytes()) == [publish]


def test_amqtt_reads_our_subscribe_suback_puback_and_we_read_theirs() -> None:
    subscribe = Subscribe(7, (("tenant/device/#", 1), ("tenant/device/check_in", 2)))
    theirs = amqtt_decode(SubscribePacket, encode(subscribe))
    assert (theirs.variable_header.packet_id, theirs.payload.topics) == (
        7,
        list(subscribe.subscriptions),
    )
    assert Decoder("server").feed(
        SubscribePacket.build(list(subscribe.subscriptions), 7).to_bytes()
    ) == [subscribe]

    suback = Suback(7, (1, SUBACK_FAILURE))
    theirs = amqtt_decode(SubackPacket, encode(suback))
    assert (theirs.variable_header.packet_id, theirs.payload.return_codes) == (7, [1, 0x80])
    assert Decoder("client").feed(SubackPacket.build(7, [1, 0x80]).to_bytes()) == [suback]

    assert amqtt_decode(PubackPacket, encode(Puback(513))).packet_id == 513
    assert Decoder("server").feed(PubackPacket.build(513).to_bytes()) == [Puback(513)]


def test_we_read_amqtts_connect() -> None:
    header = ConnectVariableHeader(0, 45, "MQTT", 4)
    header.username_flag = header.password_flag = header.will_flag = True
    header.will_qos = 1
    payload = ConnectPayload("amqtt-1", "wills/x", b"bye", "alice@a.example", "secret")
    wire = ConnectPacket(variable_header=header, payload=payload).to_bytes()
    assert Decoder().feed(wire) == [
        Connect(
            "amqtt-1",
            clean_session=False,
            keepalive_s=45,
            will=Will("wills/x", b"bye", 1),
            username="alice@a.example",
            password=b"secret",
        )
    ]
