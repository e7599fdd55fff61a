"""MQTT 3.1.1 wire format (OASIS MQTT 3.1.1, chapters 1–3): :func:`encode` and :class:`Decoder`.

The decoder is incremental and strict: give it bytes as they arrive, take packets out, and it
raises :class:`MalformedPacket` for anything a receiver must reject, citing the rule. A broker
closes the connection on that error (MQTT-4.8.0-1); nothing else is lost.

``Decoder(side="server")`` (the broker's side) accepts only what a client may send;
``Decoder(side="client")`` accepts only what a server may send, for test clients.
"""

from __future__ import annotations

from typing import Final, Literal, NoReturn, assert_never

from simulators.mqtt.packets import (
    PROTOCOL_LEVEL_3_1,
    PROTOCOL_LEVEL_3_1_1,
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
from simulators.mqtt.text import excerpt
from simulators.mqtt.topics import topic_name_problem

__all__ = [
    "DEFAULT_MAX_PACKET_SIZE",
    "SUPPORTED_PROTOCOLS",
    "Decoder",
    "MalformedPacket",
    "Side",
    "encode",
]

Side = Literal["server", "client"]

# The decoder refuses a packet whose Remaining Length exceeds this, from the header alone.
DEFAULT_MAX_PACKET_SIZE: Final = 1 << 20
# §2.2.3: at most four bytes of Remaining Length, so at most 268,435,455.
MAX_REMAINING_LENGTH: Final = 268_435_455
MAX_UINT16: Final = 0xFFFF

# §3.1.2.1-2: the (protocol name, protocol level) pairs decoded in full.
SUPPORTED_PROTOCOLS: Final = frozenset(
    {("MQTT", PROTOCOL_LEVEL_3_1_1), ("MQIsdp", PROTOCOL_LEVEL_3_1)}
)
_KNOWN_PROTOCOL_NAMES: Final = frozenset({"MQTT", "MQIsdp"})

# Table 2.1, Control packet types.
CONNECT, CONNACK, PUBLISH, PUBACK, PUBREC, PUBREL, PUBCOMP = 1, 2, 3, 4, 5, 6, 7
SUBSCRIBE, SUBACK, UNSUBSCRIBE, UNSUBACK, PINGREQ, PINGRESP, DISCONNECT = 8, 9, 10, 11, 12, 13, 14

_NAMES: Final = {
    CONNECT: "CONNECT",
    CONNACK: "CONNACK",
    PUBLISH: "PUBLISH",
    PUBACK: "PUBACK",
    PUBREC: "PUBREC",
    PUBREL: "PUBREL",
    PUBCOMP: "PUBCOMP",
    SUBSCRIBE: "SUBSCRIBE",
    SUBACK: "SUBACK",
    UNSUBSCRIBE: "UNSUBSCRIBE",
    UNSUBACK: "UNSUBACK",
    PINGREQ: "PINGREQ",
    PINGRESP: "PINGRESP",
    DISCONNECT: "DISCONNECT",
}
# Table 2.1, "Direction of flow".
_CLIENT_TO_SERVER: Final = frozenset(
    {CONNECT, PUBLISH, PUBACK, PUBREC, PUBREL, PUBCOMP, SUBSCRIBE, UNSUBSCRIBE, PINGREQ, DISCONNECT}
)
_SERVER_TO_CLIENT: Final = frozenset(
    {CONNACK, PUBLISH, PUBACK, PUBREC, PUBREL, PUBCOMP, SUBACK, UNSUBACK, PINGRESP}
)
# Table 2.2, Flag Bits (PUBLISH excepted: DUP, QoS, RETAIN).
_FLAGS: Final = {PUBREL: 0b0010, SUBSCRIBE: 0b0010, UNSUBSCRIBE: 0b0010}
_FLAG_CLAUSES: Final = {
    PUBREL: "MQTT-3.6.1-1",
    SUBSCRIBE: "MQTT-3.8.1-1",
    UNSUBSCRIBE: "MQTT-3.10.1-1",
}
_SUBACK_CODES: Final = frozenset({0x00, 0x01, 0x02, SUBACK_FAILURE})
_MAX_CONNACK_CODE: Final = 5  # Table 3.1: 6-255 are reserved


class MalformedPacket(Exception):
    """Bytes a receiver must reject; ``reason`` says why and cites the rule."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


# --- encoding ---------------------------------------------------------------------------------


def encode(packet: Packet) -> bytes:
    """The bytes of ``packet``. Raises ValueError for a packet that cannot be encoded as valid
    MQTT 3.1.1 (e.g. QoS 1 without a packet id, a string over 65,535 bytes, U+0000)."""
    match packet:
        case Connect():
            first, body = CONNECT << 4, _connect_body(packet)
        case Connack(session_present, return_code):
            _check_byte(return_code, "CONNACK return code")
            if session_present and return_code:
                raise ValueError(
                    "session present must be 0 with a non-zero return code (MQTT-3.2.2-4)"
                )
            first, body = CONNACK << 4, bytes([int(session_present), return_code])
        case Publish():
            first, body = _publish_header_and_body(packet)
        case Puback(packet_id):
            first, body = PUBACK << 4, _packet_id(packet_id)
        case Pubrec(packet_id):
            first, body = PUBREC << 4, _packet_id(packet_id)
        case Pubrel(packet_id):
            first, body = PUBREL << 4 | _FLAGS[PUBREL], _packet_id(packet_id)
        case Pubcomp(packet_id):
            first, body = PUBCOMP << 4, _packet_id(packet_id)
        case Subscribe(packet_id, subscriptions):
            if not subscriptions:
                raise ValueError("SUBSCRIBE needs at least one topic filter (MQTT-3.8.3-3)")
            parts = [_packet_id(packet_id)]
            for topic_filter, qos in subscriptions:
                _check_qos(qos, "requested QoS")
                parts += [_string(topic_filter, "topic filter"), bytes([qos])]
            first, body = SUBSCRIBE << 4 | _FLAGS[SUBSCRIBE], b"".join(parts)
        case Suback(packet_id, return_codes):
            if not return_codes or not set(return_codes) <= _SUBACK_CODES:
                raise ValueError(f"SUBACK return codes must be 0, 1, 2 or 0x80: {return_codes}")
            first, body = SUBACK << 4, _packet_id(packet_id) + bytes(return_codes)
        case Unsubscribe(packet_id, topic_filters):
            if not topic_filters:
                raise ValueError("UNSUBSCRIBE needs at least one topic filter (MQTT-3.10.3-2)")
            parts = [_packet_id(packet_id)] + [_string(f, "topic filter") for f in topic_filters]
            first, body = UNSUBSCRIBE << 4 | _FLAGS[UNSUBSCRIBE], b"".join(parts)
        case Unsuback(packet_id):
            first, body = UNSUBACK << 4, _packet_id(packet_id)
        case Pingreq():
            first, body = PINGREQ << 4, b""
        case Pingresp():
            first, body = PINGRESP << 4, b""
        case Disconnect():
            first, body = DISCONNECT << 4, b""
        case _:
            assert_never(packet)
    return bytes([first]) + _remaining_length(len(body)) + body


def _connect_body(packet: Connect) -> bytes:
    will, username, password = packet.will, packet.username, packet.password
    if password is not None and username is None:
        raise ValueError("a password needs a user name (MQTT-3.1.2-22)")
    _check_byte(packet.protocol_level, "protocol level")
    _check_uint16(packet.keepalive_s, "keep alive")
    flags = (
        (username is not None) << 7 | (password is not None) << 6 | int(packet.clean_session) << 1
    )
    payload = [_string(packet.client_id, "client identifier")]
    if will is not None:
        _check_qos(will.qos, "will QoS")
        flags |= int(will.retain) << 5 | will.qos << 3 | 1 << 2
        payload += [_string(will.topic, "will topic"), _binary(will.payload, "will message")]
    if username is not None:
        payload.append(_string(username, "user name"))
    if password is not None:
        payload.append(_binary(password, "password"))
    header = (
        _string(packet.protocol_name, "protocol name")
        + bytes([packet.protocol_level, flags])
        + packet.keepalive_s.to_bytes(2, "big")
    )
    return header + b"".join(payload)


def _publish_header_and_body(packet: Publish) -> tuple[int, bytes]:
    _check_qos(packet.qos, "QoS")
    if packet.qos == 0:
        if packet.packet_id is not None:
            raise ValueError("a QoS 0 PUBLISH has no packet id (MQTT-2.3.1-5)")
        if packet.dup:
            raise ValueError("DUP must be 0 for QoS 0 (MQTT-3.3.1-2)")
        packet_id = b""
    else:
        if packet.packet_id is None:
            raise ValueError("a QoS 1 or 2 PUBLISH needs a packet id (MQTT-2.3.1-1)")
        packet_id = _packet_id(packet.packet_id)
    first = PUBLISH << 4 | int(packet.dup) << 3 | packet.qos << 1 | int(packet.retain)
    return first, _string(packet.topic, "topic name") + packet_id + packet.payload


def _remaining_length(length: int) -> bytes:
    """§2.2.3: seven bits a byte, least significant first, continuation in bit 7."""
    if length > MAX_REMAINING_LENGTH:
        raise ValueError(f"remaining length {length} exceeds {MAX_REMAINING_LENGTH} (§2.2.3)")
    out = bytearray()
    while True:
        length, digit = divmod(length, 128)
        out.append(digit | (0x80 if length else 0))
        if not length:
            return bytes(out)


def _string(text: str, what: str) -> bytes:
    """§1.5.3 UTF-8 encoded string: 2-byte length, then well-formed UTF-8 without U+0000."""
    if "\x00" in text:
        raise ValueError(f"{what} contains U+0000 (MQTT-1.5.3-2)")
    try:
        data = text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(f"{what} is not encodable as UTF-8 (MQTT-1.5.3-1): {exc}") from None
    return _binary(data, what)


def _binary(data: bytes, what: str) -> bytes:
    if len(data) > MAX_UINT16:
        raise ValueError(f"{what} is {len(data)} bytes; at most {MAX_UINT16} (§1.5.3)")
    return len(data).to_bytes(2, "big") + data


def _packet_id(packet_id: int) -> bytes:
    if not 1 <= packet_id <= MAX_UINT16:
        raise ValueError(f"packet id {packet_id} is not in 1..65535 (MQTT-2.3.1-1)")
    return packet_id.to_bytes(2, "big")


def _check_qos(qos: int, what: str) -> None:
    if qos not in (0, 1, 2):
        raise ValueError(f"{what} {qos} is not 0, 1 or 2")


def _check_byte(value: int, what: str) -> None:
    if not 0 <= value <= 0xFF:
        raise ValueError(f"{what} {value} does not fit in a byte")


def _check_uint16(value: int, what: str) -> None:
    if not 0 <= value <= MAX_UINT16:
        raise ValueError(f"{what} {value} is not in 0..65535")


# --- decoding ---------------------------------------------------------------------------------


class Decoder:
    """Incremental decoder for one direction of one connection.

    ``receive_data`` buffers bytes; ``next_packet`` returns the next complete packet or None.
    ``feed`` does both and returns every complete packet. A :class:`MalformedPacket` is sticky:
    once raised, the decoder raises it again and buffers nothing more.
    """

    def __init__(
        self, side: Side = "server", *, max_packet_size: int = DEFAULT_MAX_PACKET_SIZE
    ) -> None:
        if side not in ("server", "client"):
            raise ValueError(f"side is 'server' or 'client', not {side!r}")
        if not 0 <= max_packet_size <= MAX_REMAINING_LENGTH:
            raise ValueError(f"max_packet_size must be in 0..{MAX_REMAINING_LENGTH}")
        self.side: Side = side
        self.max_packet_size = max_packet_size
        self._accepted = _CLIENT_TO_SERVER if side == "server" else _SERVER_TO_CLIENT
        self._buffer = bytearray()
        self._error: MalformedPacket | None = None

    @property
    def buffered(self) -> int:
        """Bytes received but not yet part of a returned packet."""
        return len(self._buffer)

    def receive_data(self, data: bytes) -> None:
        if self._error is None:
            self._buffer += data

    def next_packet(self) -> Packet | None:
        if self._error is not None:
            raise self._error
        try:
            return self._next_packet()
        except MalformedPacket as exc:
            self._error = exc
            self._buffer.clear()
            raise

    def feed(self, data: bytes) -> list[Packet]:
        """Buffer ``data`` and return every packet it completes (raises on a malformed one)."""
        self.receive_data(data)
        packets = []
        while (packet := self.next_packet()) is not None:
            packets.append(packet)
        return packets

    def _next_packet(self) -> Packet | None:
        buffer = self._buffer
        if not buffer:
            return None
        packet_type, flags = buffer[0] >> 4, buffer[0] & 0x0F
        self._check_type_and_flags(packet_type, flags)  # before waiting for more bytes
        length, multiplier, index = 0, 1, 1
        while True:
            if index >= len(buffer):
                return None
            digit = buffer[index]
            length += (digit & 0x7F) * multiplier
            index += 1
            if not digit & 0x80:
                break
            if index == 5:
                _malformed("remaining length longer than four bytes (§2.2.3)")
            multiplier *= 128
        if length > self.max_packet_size:
            _malformed(
                f"{_NAMES[packet_type]} remaining length {length} exceeds the limit of "
                f"{self.max_packet_size} bytes"
            )
        if len(buffer) < index + length:
            return None
        body = bytes(buffer[index : index + length])
        del buffer[: index + length]
        return _parse(packet_type, flags, body)

    def _check_type_and_flags(self, packet_type: int, flags: int) -> None:
        if packet_type not in _NAMES:
            _malformed(f"reserved control packet type {packet_type} (Table 2.1: forbidden)")
        if packet_type not in self._accepted:
            peer = "client" if self.side == "server" else "server"
            _malformed(
                f"a {self.side} never receives {_NAMES[packet_type]} "
                f"(Table 2.1: a {peer} does not send it)"
            )
        if packet_type == PUBLISH:
            qos = flags >> 1 & 0b11
            if qos == 3:
                _malformed("PUBLISH with QoS 3 (MQTT-3.3.1-4)")
            if qos == 0 and flags & 0b1000:
                _malformed("PUBLISH with QoS 0 and DUP 1 (MQTT-3.3.1-2)")
            return
        expected = _FLAGS.get(packet_type, 0)
        if flags != expected:
            clause = _FLAG_CLAUSES.get(packet_type, "MQTT-2.2.2-1")
            _malformed(
                f"{_NAMES[packet_type]} flags are 0b{flags:04b}, must be 0b{expected:04b} "
                f"({clause}, MQTT-2.2.2-2)"
            )


def _malformed(reason: str) -> NoReturn:
    raise MalformedPacket(reason)


class _Reader:
    """Reads the fields of one packet body; a field running past the end is a truncation."""

    def __init__(self, body: bytes, packet: str) -> None:
        self._body = body
        self._at = 0
        self._packet = packet

    @property
    def remaining(self) -> int:
        return len(self._body) - self._at

    def take(self, count: int, what: str) -> bytes:
        if count > self.remaining:
            _malformed(
                f"{self._packet} truncated: {what} needs {count} bytes, {self.remaining} left"
            )
        data = self._body[self._at : self._at + count]
        self._at += count
        return data

    def byte(self, what: str) -> int:
        return self.take(1, what)[0]

    def uint16(self, what: str) -> int:
        return int.from_bytes(self.take(2, what), "big")

    def packet_id(self) -> int:
        packet_id = self.uint16("packet identifier")
        if packet_id == 0:
            _malformed(f"{self._packet} with packet identifier 0 (MQTT-2.3.1-1: non-zero)")
        return packet_id

    def binary(self, what: str) -> bytes:
        return self.take(self.uint16(f"{what} length"), what)

    def string(self, what: str) -> str:
        """§1.5.3: well-formed UTF-8 (MQTT-1.5.3-1) without U+0000 (MQTT-1.5.3-2)."""
        data = self.binary(what)
        try:
            text = data.decode("utf-8")  # strict: rejects surrogates and overlong forms
        except UnicodeDecodeError:
            _malformed(f"{self._packet} {what} is not well-formed UTF-8 (MQTT-1.5.3-1)")
        if "\x00" in text:
            _malformed(f"{self._packet} {what} contains U+0000 (MQTT-1.5.3-2)")
        return text  # a leading U+FEFF is kept, never stripped (MQTT-1.5.3-3)

    def rest(self) -> bytes:
        return self.take(self.remaining, "rest")

    def finish(self) -> None:
        if self.remaining:
            _malformed(f"{self._packet} has {self.remaining} unexpected trailing bytes")


def _parse(packet_type: int, flags: int, body: bytes) -> Packet:
    reader = _Reader(body, _NAMES[packet_type])
    packet: Packet
    if packet_type == CONNECT:
        return _parse_connect(reader)
    if packet_type == PUBLISH:
        return _parse_publish(reader, flags)
    if packet_type == CONNACK:
        packet = _parse_connack(reader)
    elif packet_type == PUBACK:
        packet = Puback(reader.packet_id())
    elif packet_type == PUBREC:
        packet = Pubrec(reader.packet_id())
    elif packet_type == PUBREL:
        packet = Pubrel(reader.packet_id())
    elif packet_type == PUBCOMP:
        packet = Pubcomp(reader.packet_id())
    elif packet_type == SUBSCRIBE:
        packet = _parse_subscribe(reader)
    elif packet_type == SUBACK:
        packet = _parse_suback(reader)
    elif packet_type == UNSUBSCRIBE:
        packet = _parse_unsubscribe(reader)
    elif packet_type == UNSUBACK:
        packet = Unsuback(reader.packet_id())
    elif packet_type == PINGREQ:
        packet = Pingreq()
    elif packet_type == PINGRESP:
        packet = Pingresp()
    else:
        packet = Disconnect()
    reader.finish()
    return packet


def _parse_connect(reader: _Reader) -> Connect:
    protocol_name = reader.string("protocol name")
    if protocol_name not in _KNOWN_PROTOCOL_NAMES:
        _malformed(f"CONNECT protocol name {excerpt(protocol_name)!r} is not MQTT (MQTT-3.1.2-1)")
    protocol_level = reader.byte("protocol level")
    flags = reader.byte("connect flags")
    keepalive_s = reader.uint16("keep alive")
    clean_session = bool(flags & 0x02)
    if (protocol_name, protocol_level) not in SUPPORTED_PROTOCOLS:
        # Another protocol version (MQTT 5 adds properties here): stop so that the broker can
        # answer return code 1 (MQTT-3.1.2-2) instead of closing on a "malformed" packet.
        return Connect(
            client_id="",
            clean_session=clean_session,
            keepalive_s=keepalive_s,
            protocol_name=protocol_name,
            protocol_level=protocol_level,
        )
    if flags & 0x01:
        _malformed("CONNECT reserved flag is 1 (MQTT-3.1.2-3)")
    has_will, will_qos, will_retain = bool(flags & 0x04), flags >> 3 & 0b11, bool(flags & 0x20)
    has_username, has_password = bool(flags & 0x80), bool(flags & 0x40)
    if not has_will and (will_qos or will_retain):
        _malformed(
            "CONNECT will QoS or will retain set without the will flag (MQTT-3.1.2-13, MQTT-3.1.2-15)"
        )
    if will_qos == 3:
        _malformed("CONNECT will QoS 3 (MQTT-3.1.2-14)")
    if has_password and not has_username:
        _malformed("CONNECT password flag without user name flag (MQTT-3.1.2-22)")
    client_id = reader.string("client identifier")  # MQTT-3.1.3-3, MQTT-3.1.3-4
    will = None
    if has_will:  # MQTT-3.1.2-9
        will_topic = reader.string("will topic")
        if problem := topic_name_problem(will_topic):
            _malformed(f"CONNECT will topic: {problem}")
        will = Will(will_topic, reader.binary("will message"), will_qos, will_retain)
    username = reader.string("user name") if has_username else None  # MQTT-3.1.2-19
    password = reader.binary("password") if has_password else None  # MQTT-3.1.2-21
    reader.finish()  # MQTT-3.1.2-18, -20: nothing the flags do not announce
    return Connect(
        client_id=client_id,
        clean_session=clean_session,
        keepalive_s=keepalive_s,
        will=will,
        username=username,
        password=password,
        protocol_name=protocol_name,
        protocol_level=protocol_level,
    )


def _parse_publish(reader: _Reader, flags: int) -> Publish:
    qos = flags >> 1 & 0b11
    topic = reader.string("topic name")  # MQTT-3.3.2-1
    if problem := topic_name_problem(topic):
        _malformed(f"PUBLISH {problem}")
    packet_id = reader.packet_id() if qos else None
    return Publish(
        topic=topic,
        payload=reader.rest(),
        qos=qos,
        dup=bool(flags & 0b1000),
        retain=bool(flags & 0b0001),
        packet_id=packet_id,
    )


def _parse_connack(reader: _Reader) -> Connack:
    acknowledge_flags = reader.byte("acknowledge flags")
    return_code = reader.byte("return code")
    if acknowledge_flags & 0xFE:
        _malformed("CONNACK reserved acknowledge flag bits 7-1 are not 0 (§3.2.2.1)")
    if return_code > _MAX_CONNACK_CODE:
        _malformed(f"CONNACK return code {return_code} is reserved (Table 3.1)")
    session_present = bool(acknowledge_flags & 0x01)
    if session_present and return_code:
        _malformed("CONNACK session present with a non-zero return code (MQTT-3.2.2-4)")
    return Connack(session_present, return_code)


def _parse_subscribe(reader: _Reader) -> Subscribe:
    packet_id = reader.packet_id()
    subscriptions = []
    while reader.remaining:
        topic_filter = reader.string("topic filter")  # MQTT-3.8.3-1
        if not topic_filter:
            _malformed("SUBSCRIBE with an empty topic filter (MQTT-4.7.3-1)")
        requested_qos = reader.byte("requested QoS")
        if requested_qos & 0b1111_1100 or requested_qos == 3:
            _malformed(f"SUBSCRIBE requested QoS byte 0x{requested_qos:02x} (MQTT-3.8.3-4)")
        subscriptions.append((topic_filter, requested_qos))
    if not subscriptions:
        _malformed("SUBSCRIBE without a topic filter (MQTT-3.8.3-3)")
    return Subscribe(packet_id, tuple(subscriptions))


def _parse_suback(reader: _Reader) -> Suback:
    packet_id = reader.packet_id()
    return_codes = tuple(reader.rest())
    if not return_codes:
        _malformed("SUBACK without a return code (MQTT-3.8.4-5)")
    if not set(return_codes) <= _SUBACK_CODES:
        _malformed(f"SUBACK reserved return code in {return_codes} (MQTT-3.9.3-2)")
    return Suback(packet_id, return_codes)


def _parse_unsubscribe(reader: _Reader) -> Unsubscribe:
    packet_id = reader.packet_id()
    topic_filters = []
    while reader.remaining:
        topic_filter = reader.string("topic filter")  # MQTT-3.10.3-1
        if not topic_filter:
            _malformed("UNSUBSCRIBE with an empty topic filter (MQTT-4.7.3-1)")
        topic_filters.append(topic_filter)
    if not topic_filters:
        _malformed("UNSUBSCRIBE without a topic filter (MQTT-3.10.3-2)")
    return Unsubscribe(packet_id, tuple(topic_filters))
