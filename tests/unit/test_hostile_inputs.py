"""Every value a SUT controls reaches the harness through a parser or a key function; each of
them, given anything, answers or raises its documented refusal, and nothing else (a SUT's
problem is never the harness's ``error``: docs/architecture.md, "A harness fault is never the
SUT's failure"). One Hypothesis property per entry point:

- the observer: a body becomes records or a refusal (reason, 4xx, message), and what it keeps
  is Unicode text its keys and evidence can handle; each vendor's record model raises only
  ValidationError; each vendor's ``observer_keys`` and Ivanti's ``event_key`` take anything;
- MQTT: the decoder raises only MalformedPacket, and what it decodes can be logged,
  summarized and handled by the broker core;
- the CPS API: Basic credentials and the device lookup body raise only ``Unreadable``;
- the Pelion API: its header readers take any text, its request models raise only
  ValidationError and accept only Unicode text, a device request raises only RequestRejected;
- the Apps and Books API: authorization, client configuration, mutations and status polls
  raise only ApiError, and what a mutation accepts can later be sent as a notification.

Text here includes lone surrogates (JSON's ``"\\ud800"`` and aiohttp's ``surrogateescape``
header decoding both produce them).
"""

from __future__ import annotations

import base64
import contextlib
import json
from collections import deque
from typing import Any

from hypothesis import assume, example, given
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from conformance.observer import _parse, _short, footprint
from conformance.vendors import discover
from simulators.apple.service import SUBSCRIBABLE, ApiError, AppsAndBooks
from simulators.ivanti.cps import Unreadable, basic_email, lookup_identifiers
from simulators.ivanti.events import event_key
from simulators.mqtt.codec import Decoder, MalformedPacket, encode
from simulators.mqtt.core import BrokerCore
from simulators.mqtt.evidence import _KINDS, _summary, wire_size
from simulators.mqtt.packetlog import ConnectionLog
from simulators.mqtt.packets import (
    Connect,
    Disconnect,
    Pingreq,
    Puback,
    Pubcomp,
    Publish,
    Pubrec,
    Pubrel,
    Subscribe,
    Unsubscribe,
)
from simulators.mqtt.policy import Identity
from simulators.pelion.api import _is_json
from simulators.pelion.devices import Devices, RequestRejected
from simulators.pelion.handshake import bearer_token, offered_subprotocols
from simulators.pelion.models import RegisterWebsocketChannel, Webhook, parse_presubscriptions

# --- strategies -------------------------------------------------------------------------------

SURROGATES = st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF)
CHARACTERS = st.one_of(st.characters(exclude_categories=()), SURROGATES)
TEXT = st.text(CHARACTERS, max_size=30)


def json_values(text: st.SearchStrategy[str] = TEXT) -> st.SearchStrategy[Any]:
    """Any JSON value (as json.loads makes them), its strings from ``text``."""
    scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), text)
    return st.recursive(
        scalars,
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(text, inner, max_size=4),
        max_leaves=20,
    )


JSON = json_values()
# Beyond JSON: what a caller of a key function might hand it (keys of several types, sets,
# bytes, objects without a JSON form).
ANYTHING = st.recursive(
    st.one_of(JSON, st.binary(max_size=20), st.builds(object), st.sets(st.integers(), max_size=3)),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.one_of(TEXT, st.integers(), st.none()), inner, max_size=3)
    ),
    max_leaves=10,
)


def deep(depth: int, opener: bytes = b"[", closer: bytes = b"]") -> bytes:
    return opener * depth + closer * depth


def json_bytes(value: st.SearchStrategy[Any]) -> st.SearchStrategy[bytes]:
    """``value`` as a JSON body (lone surrogates escaped as ``\\udXXX``, the way JSON carries
    them) or as UTF-8 with ``surrogatepass`` (the raw bytes json.loads also reads)."""
    return st.one_of(
        value.map(lambda v: json.dumps(v).encode()),
        value.map(lambda v: json.dumps(v, ensure_ascii=False).encode("utf-8", "surrogatepass")),
    )


BODIES = st.one_of(
    st.binary(max_size=200),
    json_bytes(JSON),
    st.integers(0, 200_000).map(deep),
    st.integers(0, 200_000).map(lambda n: deep(n, b'{"a":', b"}")),
)

# Records in each vendor's shape, their fields anything JSON.
RECORDS = st.one_of(
    JSON,
    st.fixed_dictionaries({"topic": JSON, "message": JSON}),
    st.fixed_dictionaries({"topic": TEXT, "message": JSON}),
    st.fixed_dictionaries({"notification": JSON}),
    st.fixed_dictionaries(
        {"notification": st.fixed_dictionaries({"notificationId": JSON, "notificationType": JSON})}
    ),
    st.fixed_dictionaries({"kind": JSON, "item": JSON, "payload_hex": JSON}),
    st.fixed_dictionaries(
        {"kind": TEXT, "item": st.fixed_dictionaries({"uid": JSON, "ep": JSON, "id": JSON})}
    ),
)
VENDORS = discover()
MODELS: dict[str, type[BaseModel]] = {n: v.observer_record_model() for n, v in VENDORS.items()}
HEX = st.binary(max_size=8).map(bytes.hex)
VALID_RECORDS = st.one_of(
    st.from_type(MODELS["apple"]),
    st.builds(MODELS["ivanti"], topic=TEXT, message=JSON),
    st.builds(MODELS["pelion"], kind=TEXT, item=JSON, payload_hex=st.none() | HEX),
).map(lambda record: record.model_dump(by_alias=True))


def is_unicode(value: Any) -> bool:
    try:
        json.dumps(value, ensure_ascii=False).encode()
    except UnicodeEncodeError:
        return False
    return True


# --- the observer -----------------------------------------------------------------------------


@given(record=st.one_of(RECORDS, VALID_RECORDS, ANYTHING))
@example(record={"topic": "t", "message": {"a": "\ud800"}})
@example(record={"topic": "t", "message": {1: "a", "b": 2}})
@example(record={"notification": {"notificationId": ["x"], "notificationType": "T"}})
@example(record={"kind": {"k": 1}, "item": "\udfff"})
def test_observer_keys_of_every_vendor_take_anything(record: Any) -> None:
    """conformance/vendors.py: ``observer_keys`` takes any input and answers a tuple of
    strings (the observer and the checks look them up)."""
    for name, plugin in VENDORS.items():
        keys = plugin.observer_keys(record)
        assert isinstance(keys, tuple) and all(isinstance(k, str) for k in keys), name
        hash(keys)


@given(topic=TEXT, message=ANYTHING)
@example(topic="t/\ud800", message={"eventType": "\udfff"})
@example(topic="t", message=[[[]]])
def test_event_key_takes_any_message(topic: str, message: Any) -> None:
    """simulators/ivanti/events.py: every message has a key, or none (""), never an error;
    a JSON message always has one."""
    key = event_key(topic, message)
    assert isinstance(key, str)
    try:
        json.dumps(message, sort_keys=True)
    except (TypeError, ValueError, RecursionError):
        return
    assert key.startswith("ivanti:")


def test_event_key_of_a_message_nested_too_deeply_is_none() -> None:
    nested: Any = []
    for _ in range(100_000):
        nested = [nested]
    assert event_key("t", nested) == ""


@given(raw=st.one_of(BODIES, json_bytes(RECORDS), json_bytes(st.lists(RECORDS, max_size=4))))
@example(raw=b'{"topic": "t", "message": {"a": "\\ud800"}}')
@example(raw=b'{"topic": "t", "message": "\xed\xa0\x80"}')
@example(raw=deep(100_000))
def test_the_observer_refuses_with_a_reason_or_keeps_unicode_records(raw: bytes) -> None:
    """conformance/observer.py: a body is records or a refusal ``(reason, 4xx, message)``;
    what it keeps is Unicode text that the vendor's keys and the evidence handle."""
    assert footprint(raw) >= len(raw)
    for name, model in MODELS.items():
        parsed = _parse(raw, model)
        if isinstance(parsed, tuple):
            reason, status, message = parsed
            assert 400 <= status < 500 and reason and message
            continue
        for record in parsed:
            assert isinstance(record, dict) and is_unicode(record)
            VENDORS[name].observer_keys(record)
            _short(record)


@given(record=st.one_of(RECORDS, VALID_RECORDS))
def test_record_models_raise_only_validation_errors(record: Any) -> None:
    for model in MODELS.values():
        with contextlib.suppress(ValidationError):
            model.model_validate(record)


# --- MQTT -------------------------------------------------------------------------------------

CLIENT_PACKETS = st.one_of(
    st.builds(Connect, client_id=TEXT, username=st.none() | TEXT, keepalive_s=st.integers(0, 9)),
    st.builds(Publish, topic=TEXT, payload=st.binary(max_size=20), qos=st.integers(0, 1)).map(
        lambda p: Publish(p.topic, p.payload, p.qos, packet_id=7 if p.qos else None)
    ),
    st.builds(
        Subscribe,
        st.integers(1, 5),
        st.lists(st.tuples(TEXT, st.integers(0, 2)), min_size=1).map(tuple),
    ),
    st.builds(Unsubscribe, st.integers(1, 5), st.lists(TEXT, min_size=1).map(tuple)),
    st.builds(Puback, st.integers(1, 9)),
    st.builds(Pubrec, st.integers(1, 9)),
    st.builds(Pubrel, st.integers(1, 9)),
    st.builds(Pubcomp, st.integers(1, 9)),
    st.just(Pingreq()),
    st.just(Disconnect()),
)


def encoded(packet: Any) -> bytes:
    try:
        return encode(packet)
    except ValueError:
        assume(False)
        raise


@given(
    stream=st.one_of(
        st.binary(max_size=300),
        st.lists(CLIENT_PACKETS.map(encoded), max_size=6).map(b"".join),
        st.tuples(
            st.lists(CLIENT_PACKETS.map(encoded), max_size=6).map(b"".join), st.binary(max_size=40)
        ).map(b"".join),
    ),
    side=st.sampled_from(["server", "client"]),
    split=st.integers(1, 64),
)
def test_the_mqtt_decoder_raises_only_malformed_packet(
    stream: bytes, side: Any, split: int
) -> None:
    """simulators/mqtt/codec.py: any bytes, in any pieces, are packets or MalformedPacket; a
    decoded packet can be sized, logged and summarized for the evidence."""
    decoder = Decoder(side, max_packet_size=256)
    log = ConnectionLog(1, "peer", None, 0.0, 0.0, deque(maxlen=5))
    try:
        for start in range(0, len(stream), split):
            for packet in decoder.feed(stream[start : start + split]):
                wire_size(packet)
                log.note(packet)
                _summary(_KINDS[type(packet)], packet)
                log.view()
    except MalformedPacket as exc:
        assert exc.reason


@given(
    stream=st.lists(CLIENT_PACKETS.map(encoded), max_size=8).map(b"".join),
    tail=st.binary(max_size=30),
    split=st.integers(1, 64),
)
def test_the_broker_core_takes_any_bytes_after_a_connect(
    stream: bytes, tail: bytes, split: int
) -> None:
    """simulators/mqtt/core.py: whatever a client sends after its CONNECT is handled or closes
    its connection; the core never raises."""
    core = BrokerCore()
    core.connection_made(1, Identity("tenant", "sut@example.invalid"), 0.0)
    data = encode(Connect("c", clean_session=False, keepalive_s=30)) + stream + tail
    for start in range(0, len(data), split):
        core.data_received(1, data[start : start + split], 1.0)
    core.connection_lost(1, 2.0)


# --- the CPS API --------------------------------------------------------------------------------


@given(
    header=st.one_of(
        TEXT,
        TEXT.map(lambda t: "Basic " + t),
        st.binary(max_size=40).map(lambda b: "Basic " + base64.b64encode(b).decode()),
    )
)
@example(header="Basic ñandú")
@example(header="Basic \udcff\udcfe")
def test_basic_credentials_are_an_email_none_or_unreadable(header: str) -> None:
    try:
        email = basic_email(header)
    except Unreadable as exc:
        assert "Basic" in str(exc)
        return
    assert email is None or (isinstance(email, str) and is_unicode(email))


@given(raw=st.one_of(BODIES, json_bytes(st.fixed_dictionaries({"identifiers": JSON}))))
def test_a_device_lookup_body_is_identifiers_or_unreadable(raw: bytes) -> None:
    try:
        identifiers = lookup_identifiers(raw)
    except Unreadable:
        return
    assert all(isinstance(i, str) for i in identifiers)


# --- the Pelion API -----------------------------------------------------------------------------


@given(
    value=st.one_of(st.none(), TEXT, TEXT.map(lambda t: "Bearer " + t)),
    values=st.lists(TEXT, max_size=4),
)
def test_pelion_header_readers_take_any_text(value: str | None, values: list[str]) -> None:
    token = bearer_token(value)
    assert token is None or isinstance(token, str)
    if value is not None:
        assert isinstance(_is_json(value), bool)
    assert all(isinstance(p, str) for p in offered_subprotocols(values))


WEBHOOKS = st.fixed_dictionaries(
    {
        "url": st.one_of(TEXT, TEXT.map(lambda t: "https://127.0.0.1/" + t), JSON),
        "headers": st.one_of(st.none(), st.dictionaries(TEXT, TEXT, max_size=3), JSON),
    },
    optional={"serialization": JSON},
)


@given(data=st.one_of(JSON, WEBHOOKS))
@example(data={"url": "https://127.0.0.1/\ud800"})
@example(data={"url": "https://127.0.0.1/", "headers": {"x-a": "\udcff"}})
def test_pelion_request_models_raise_only_validation_errors_and_keep_unicode(data: Any) -> None:
    for parse in (Webhook.model_validate, RegisterWebsocketChannel.model_validate):
        try:
            parsed = parse(data)
        except ValidationError:
            continue
        assert is_unicode(parsed.model_dump())
    with contextlib.suppress(ValueError):
        parse_presubscriptions(data)


@given(
    body=st.one_of(
        BODIES,
        json_bytes(
            st.fixed_dictionaries(
                {"method": JSON, "uri": JSON}, optional={"payload-b64": JSON, "accept": JSON}
            )
        ),
    ),
    mapping=st.dictionaries(TEXT, JSON, max_size=4),
)
@example(body=b'{"method": "GET", "uri": "/3/0/0\\ud800"}', mapping={})
def test_a_device_request_is_parsed_or_rejected(body: bytes, mapping: dict[str, Any]) -> None:
    for given_body in (body, mapping):
        try:
            request = Devices._parse_request(given_body)
        except RequestRejected as exc:
            assert exc.status == 400
            continue
        assert is_unicode(request.model_dump())


# --- the Apps and Books API ---------------------------------------------------------------------

APPLE_PATHS = st.sampled_from(
    ["assets/associate", "assets/disassociate", "assets/revoke", "users/create", "users/update",
     "users/retire", "nothing"]
)  # fmt: skip
APPLE_REQUESTS = st.one_of(
    JSON,
    st.fixed_dictionaries(
        {"notificationUrl": TEXT.map(lambda t: "https://127.0.0.1/" + t) | JSON,
         "notificationAuthToken": TEXT | JSON},
        optional={"notificationTypes": st.lists(st.sampled_from(SUBSCRIBABLE) | JSON, max_size=3) | JSON,
                  "mdmInfo": st.fixed_dictionaries({"id": TEXT, "name": TEXT, "metadata": TEXT}) | JSON},
    ),
    st.fixed_dictionaries(
        {},
        optional={
            "assets": st.lists(
                st.fixed_dictionaries({"adamId": st.sampled_from(["408709785", "1"]) | JSON,
                                       "pricingParam": st.just("STDQ") | JSON}), max_size=3
            ) | JSON,
            "clientUserIds": st.lists(TEXT, max_size=3) | JSON,
            "serialNumbers": st.lists(TEXT, max_size=3) | JSON,
            "users": st.lists(st.fixed_dictionaries({"clientUserId": TEXT | JSON},
                                                   optional={"email": TEXT | JSON}), max_size=3) | JSON,
        },
    ),
)  # fmt: skip


@given(path=APPLE_PATHS, request=APPLE_REQUESTS, header=st.none() | TEXT, event_id=st.none() | TEXT)
def test_the_apps_and_books_api_raises_only_api_errors(
    path: str, request: Any, header: str | None, event_id: str | None
) -> None:
    """simulators/apple/service.py: every request is answered or an ApiError (a documented
    error body); an accepted mutation's notifications can be sent (JSON, UTF-8)."""
    service = AppsAndBooks(stoken="s", processing_delay_s=1.0)
    service.store_client_config(
        {"notificationUrl": "https://127.0.0.1/n", "notificationAuthToken": "t",
         "notificationTypes": list(SUBSCRIBABLE)}
    )  # fmt: skip
    try:
        accepted = service.validate_client_config(request)
    except ApiError:
        pass
    else:  # kept and sent on: a URL, a header, every notification's mdmInfo
        assert is_unicode(service.store_client_config(accepted))
    for call in (
        lambda: service.check_authorization(header),
        lambda: service.status(event_id, 0.0),
        lambda: service.mutate(path, request, 0.0),
    ):
        with contextlib.suppress(ApiError):
            call()
    for notification in service.handle_timeout(5.0):
        json.dumps(notification.to_wire(), ensure_ascii=False).encode()
