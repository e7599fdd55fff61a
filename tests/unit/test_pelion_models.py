"""simulators.pelion.models: the vendor's and the research notes' examples parse, serialization
v2 config in both the schema's and the vendor example's forms, unknown keys kept, bad bodies
rejected with clear messages, and serialize() output that the models read back."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from simulators.pelion.error_bodies import (
    ErrorBody,
    bad_request,
    forbidden,
    not_found,
    unauthorized,
)
from simulators.pelion.models import (
    KINDS,
    AsyncIDResponse,
    ChannelMetadata,
    DeregistrationData,
    DeviceRequest,
    EndpointData,
    Event,
    Kind,
    NotificationData,
    NotificationMessage,
    QueuedItem,
    RegisterWebsocketChannel,
    ResourceData,
    SerializationConfig,
    Webhook,
    WebsocketChannel,
    parse_presubscriptions,
    serialize,
)

EP = "0172b9ba5409000000000001001117f5"

# docs/vendors/pelion.md §7, "Real, WebSocket (MAC)"
REAL_WEBSOCKET = (
    '{"notifications":[{"ep":"0172b9ba5409000000000001001117f5","path":"/3200/0/5501",'
    '"ct":"text/plain","payload":"NTc=","max-age":0}]}'
)
# docs/vendors/pelion.md §7, "Real, long-poll (LOG)"
REAL_LONG_POLL = (
    '{"notifications":[{"ep":"0165efa1a2df0000000000010010024f","path":"/3200/0/5501",'
    '"ct":"text/plain","payload":"MjI3MA==","max-age":60}],"async-responses":[{"id":'
    '"D3D8B52A-D962-471C-B4A0-9FD834F42FC0","status":200,"payload":"MjI2OQ==","ct":"text/plain",'
    '"max-age":60}]}'
)
# SPEC20/21 device-requests examples
SPEC_ASYNC_OK = (
    '{"async-responses":[{"id":"123e4567-e89b-12d3-a456-426655440000","status":200,'
    '"payload":"dmFsdWUxCg==","ct":"text/plain","max-age":600}]}'
)
SPEC_ASYNC_TIMEOUT = (
    '{"async-responses":[{"id":"123e4567-e89b-12d3-a456-426655440000","status":504,'
    '"error":"TIMEOUT"}]}'
)
# KAFKA fixture, v2 registration (timestamp as a string there)
KAFKA_REGISTRATION = (
    '{"registrations":[{"ep":"01767982c9250000000000010011579e","original-ep":'
    '"01767982c9250000000000010011579e","ept":"default","resources":[{"path":"/10255/0/4",'
    '"rt":"Class","ct":"application/vnd.oma.lwm2m+tlv","obs":true},{"path":"/10255/0/3",'
    '"rt":"Vendor","obs":true}],"timestamp":"1614584011482"}]}'
)
# SPEC20/21 PUT /v2/notification/callback example: config values as strings
SPEC_WEBHOOK = {
    "url": "https://example.com/callback",
    "headers": {"authorization": "f4b93d6e-4652-4874-82e4-41a3ced0cd56"},
    "serialization": {
        "type": "v2",
        "max_chunk_size": "100",
        "cfg": {
            "deregistrations_as_object": "true",
            "include_uid": "true",
            "include_timestamp": "true",
            "include_original_ep": "true",
        },
    },
}
# KAFKA's PUT /v2/notification/websocket: the schema's own types
KAFKA_WEBSOCKET = {
    "serialization": {
        "type": "v2",
        "max_chunk_size": 10000,
        "cfg": {
            "deregistrations_as_object": True,
            "include_uid": True,
            "include_timestamp": True,
            "include_original_ep": True,
        },
    }
}


# --- examples parse -------------------------------------------------------------------------


def test_real_websocket_message_parses_with_numeric_max_age() -> None:
    message = NotificationMessage.model_validate_json(REAL_WEBSOCKET)
    assert message.notifications is not None
    item = message.notifications[0]
    assert (item.ep, item.path, item.ct, item.max_age) == (EP, "/3200/0/5501", "text/plain", 0)
    assert item.payload_bytes() == b"57"
    assert message.count() == 1


def test_real_long_poll_message_carries_two_kinds() -> None:
    message = NotificationMessage.model_validate_json(REAL_LONG_POLL)
    assert message.count() == 2
    (response,) = message.items_of("async-responses")
    assert response.id == "D3D8B52A-D962-471C-B4A0-9FD834F42FC0"
    assert response.status == 200
    assert base64.b64decode(response.payload) == b"2269"


@pytest.mark.parametrize("raw", [SPEC_ASYNC_OK, SPEC_ASYNC_TIMEOUT])
def test_spec_async_responses_parse(raw: str) -> None:
    message = NotificationMessage.model_validate_json(raw)
    assert message.async_responses is not None
    assert message.async_responses[0].id == "123e4567-e89b-12d3-a456-426655440000"


def test_async_status_must_be_a_json_integer() -> None:
    """The Python SDK compares ``status`` as an int: a string status is malformed."""
    with pytest.raises(ValidationError, match="status"):
        AsyncIDResponse.model_validate({"id": "a", "status": "200"})


def test_kafka_v2_registration_parses_string_timestamp_and_resources() -> None:
    message = NotificationMessage.model_validate_json(KAFKA_REGISTRATION)
    assert message.registrations is not None
    registration = message.registrations[0]
    assert registration.timestamp == "1614584011482"
    assert registration.original_ep == registration.ep
    assert [r.path for r in registration.resources] == ["/10255/0/4", "/10255/0/3"]
    assert registration.resources[0].obs is True


def test_de_registrations_in_both_forms() -> None:
    bare = NotificationMessage.model_validate({"de-registrations": [EP]})
    assert bare.de_registrations == [EP]
    as_object = NotificationMessage.model_validate(
        {"registrations-expired": [{"ep": EP, "uid": "u", "timestamp": 1, "original-ep": "dev"}]}
    )
    assert as_object.registrations_expired is not None
    item = as_object.registrations_expired[0]
    assert isinstance(item, DeregistrationData)
    assert item.original_ep == "dev"


def test_unknown_keys_are_kept_on_items_and_message() -> None:
    raw = {
        "notifications": [{"ep": EP, "path": "/3/0/0", "payload": "", "future": {"x": 1}}],
        "something-new": [1, 2],
    }
    message = NotificationMessage.model_validate(raw)
    assert message.model_extra == {"something-new": [1, 2]}
    assert message.notifications is not None
    assert message.notifications[0].model_extra == {"future": {"x": 1}}
    assert message.to_wire()["notifications"][0]["future"] == {"x": 1}


def test_resource_if_field_uses_its_alias() -> None:
    resource = ResourceData.model_validate({"path": "/3/0/0", "if": "core.s"})
    assert resource.if_ == "core.s"
    assert resource.to_wire() == {"path": "/3/0/0", "if": "core.s"}


def test_payload_must_be_base64() -> None:
    with pytest.raises(ValidationError, match="not valid base64"):
        NotificationData.model_validate({"ep": EP, "path": "/3/0/0", "payload": "not base64!"})


# --- serialization config -------------------------------------------------------------------


def test_vendor_example_strings_and_schema_types_read_the_same() -> None:
    from_strings = Webhook.model_validate(SPEC_WEBHOOK).serialization
    from_types = RegisterWebsocketChannel.model_validate(KAFKA_WEBSOCKET).serialization
    assert from_strings is not None and from_types is not None
    assert from_strings.max_chunk_size == 100
    assert from_types.max_chunk_size == 10000
    assert from_strings.cfg == from_types.cfg
    assert all(from_strings.cfg.model_dump().values())


def test_serialization_defaults() -> None:
    config = SerializationConfig.model_validate({})
    assert (config.type, config.max_chunk_size) == ("v2", 10000)
    assert not any(config.cfg.model_dump().values())
    assert (
        SerializationConfig.model_validate({"cfg": {"include_uid": "FALSE"}}).cfg.include_uid
        is False
    )


@pytest.mark.parametrize(
    "body, problem",
    [
        ({"max_chunk_size": 99}, "max_chunk_size must be an integer from 100 to 10000"),
        ({"max_chunk_size": 10001}, "from 100 to 10000"),
        ({"max_chunk_size": "1e3"}, "got '1e3'"),
        ({"max_chunk_size": 500.0}, "got 500.0"),
        ({"max_chunk_size": True}, "got True"),
        ({"max_chunk_size": None}, "got None"),
        ({"type": "v1"}, "Input should be 'v2'"),
        ({"cfg": {"include_uid": "yes"}}, "include_uid must be true or false"),
        ({"cfg": {"include_timestamp": 1}}, "include_timestamp must be true or false"),
        ({"cfg": {"deregistrations_as_object": None}}, "deregistrations_as_object must be"),
        ({"cfg": "true"}, "cfg"),
    ],
)
def test_bad_serialization_config_is_rejected_clearly(body: dict[str, Any], problem: str) -> None:
    with pytest.raises(ValidationError, match=problem):
        SerializationConfig.model_validate(body)


def test_chunk_size_limits_are_inclusive() -> None:
    assert SerializationConfig.model_validate({"max_chunk_size": "100"}).max_chunk_size == 100
    assert SerializationConfig.model_validate({"max_chunk_size": 10000}).max_chunk_size == 10000


# --- channel REST bodies ----------------------------------------------------------------------


def test_webhook_url_and_headers_share_400_characters() -> None:
    url = "https://example.com/"
    headers = {"authorization": "x" * (400 - len(url) - len("authorization"))}
    assert Webhook(url=url, headers=headers).headers == headers
    headers["authorization"] += "x"
    with pytest.raises(ValidationError, match="at most 400 characters, got 401"):
        Webhook(url=url, headers=headers)


@pytest.mark.parametrize("url", ["ftp://example.com/x", "example.com/x", "/relative", "https://"])
def test_webhook_url_is_absolute_http_or_https(url: str) -> None:
    with pytest.raises(ValidationError, match="absolute http:// or https:// URL"):
        Webhook(url=url)


def test_webhook_header_values_are_strings_and_unknown_keys_ignored() -> None:
    with pytest.raises(ValidationError):
        Webhook.model_validate({"url": "http://a/", "headers": {"n": 1}})
    webhook = Webhook.model_validate({"url": "http://a/", "extra": True})
    assert webhook.to_wire() == {"url": "http://a/"}


def test_websocket_status_body_is_snake_case() -> None:
    body = WebsocketChannel(queue_size=3, status="connected")
    assert body.to_wire() == {"queue_size": 3, "status": "connected"}
    spec21 = WebsocketChannel.model_validate({"queue_size": -1, "status": "unknown"})
    assert spec21.status == "unknown"


def test_channel_metadata_mechanisms() -> None:
    for mechanism in ("CALLBACK", "LONG_POLLING", "WEB_SOCKET"):
        assert ChannelMetadata.model_validate({"delivery_mechanism": mechanism})
    with pytest.raises(ValidationError):
        ChannelMetadata.model_validate({"delivery_mechanism": "PULL"})


def test_spec_presubscription_example_parses() -> None:
    entries = parse_presubscriptions(
        [
            {"endpoint-name": "node-001", "resource-path": ["/dev"]},
            {"endpoint-type": "Light", "resource-path": ["/sen/*"]},
            {"endpoint-name": "node*"},
            {"endpoint-type": "Sensor"},
            {"resource-path": ["/dev/temp", "/dev/hum"]},
        ]
    )
    assert entries[1].endpoint_type == "Light"
    assert entries[2].resource_path is None
    assert entries[0].to_wire() == {"endpoint-name": "node-001", "resource-path": ["/dev"]}
    assert parse_presubscriptions([]) == ()


@pytest.mark.parametrize(
    "body, problem",
    [
        ([{"resource-path": []}], "at least one path"),
        ([{"endpoint-name": "no*de"}], "only as its last character"),
        ([{"endpoint-type": "t" * 65}], "at most 64 characters"),
        ([{"resource-path": ["/" + "p" * 128]}], "at most 128 characters"),
        ([{}] * 1025, "at most 1024 pre-subscriptions"),
        ([{"resource-path": [f"/{i}" for i in range(257)]}], "at most 256 distinct"),
        ({"endpoint-name": "x"}, "list"),
    ],
)
def test_bad_presubscriptions_are_rejected(body: Any, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        parse_presubscriptions(body)


def test_device_request_examples_parse() -> None:
    read = DeviceRequest.model_validate({"method": "GET", "uri": "/3200/0/5501"})
    assert read.accept is None
    write = DeviceRequest.model_validate(
        {
            "method": "PUT",
            "uri": "/5/0/1?k1=v1&k2=v2",
            "accept": "text/plain",
            "content-type": "text/plain",
            "payload-b64": "dmFsdWUxCg==",
        }
    )
    assert (write.content_type, write.payload_b64) == ("text/plain", "dmFsdWUxCg==")
    for bad in (
        {"method": "PATCH", "uri": "/5/0/1"},
        {"method": "GET", "uri": "5/0/1"},
        {"method": "PUT", "uri": "/5/0/1", "payload-b64": "***"},
        {"uri": "/5/0/1"},
    ):
        with pytest.raises(ValidationError):
            DeviceRequest.model_validate(bad)


def test_error_bodies() -> None:
    body = unauthorized(request_id="015fee4431fd38c98640fbfb00000000")
    # FOUND's 401 example, with SPEC20's UnauthorizedErrorResponse type
    assert body.to_wire() == {
        "object": "error",
        "code": 401,
        "type": "unauthorized",
        "message": "Invalid access token.",
        "request_id": "015fee4431fd38c98640fbfb00000000",
    }
    assert bad_request("bad body").fields is not None
    assert (forbidden().code, forbidden().type) == (403, "forbidden")
    missing = not_found("Callback URL does not exist")
    assert (missing.code, missing.type, len(missing.request_id)) == (404, "not_found", 32)
    assert ErrorBody.model_validate_json(missing.model_dump_json()) == missing


# --- events and serialize() -----------------------------------------------------------------


def _notification(n: int = 0) -> Event:
    data = NotificationData(ep=EP, path="/3200/0/5501", ct="text/plain", payload="NTc=", max_age=n)
    return Event.of("notifications", data, original_ep="my-device")


def _deregistration(kind: Kind = "de-registrations") -> Event:
    return Event.of(kind, DeregistrationData(ep=EP), original_ep="my-device")


def _queued(events: list[Event], start: float = 10.0) -> list[QueuedItem]:
    return [QueuedItem(i, e, f"uid-{i}", start + i) for i, e in enumerate(events)]


def test_event_checks_its_body() -> None:
    with pytest.raises(TypeError, match="carries NotificationData"):
        Event.of("notifications", DeregistrationData(ep=EP))
    with pytest.raises(ValueError, match="needs 'ep'"):
        Event("registrations", {"ept": "x"})
    with pytest.raises(ValueError, match="needs 'id'"):
        Event("async-responses", {"status": 200})


def test_serialize_default_form_groups_kinds_in_order() -> None:
    registration = Event.of("registrations", EndpointData(ep=EP, ept="default"))
    response = Event.of("async-responses", AsyncIDResponse(id="a1", status=200))
    items = _queued([response, _notification(1), _deregistration(), registration, _notification(2)])
    body = serialize(items)
    raw = json.loads(body)
    assert list(raw) == ["notifications", "registrations", "de-registrations", "async-responses"]
    assert [n["max-age"] for n in raw["notifications"]] == [1, 2]
    assert raw["de-registrations"] == [EP]  # bare strings by default
    assert "uid" not in raw["notifications"][0] and "original-ep" not in raw["notifications"][0]
    assert NotificationMessage.model_validate_json(body).count() == 5
    assert b" " not in body  # compact


def test_serialize_one_kind_fast_and_with_kinds_given() -> None:
    """One kind (the usual batch) is joined from the events' texts; the kinds a caller already
    counted give the same bytes; de-registrations stay bare strings."""
    items = _queued([_notification(1), _notification(2)])
    body = serialize(items)
    assert json.loads(body) == {"notifications": [items[0].event.body, items[1].event.body]}
    assert serialize(items, kinds={"notifications"}) == body
    assert serialize(iter(items)) == body
    deregistrations = _queued([_deregistration(), _deregistration()])
    assert json.loads(serialize(deregistrations, kinds=["de-registrations"])) == {
        "de-registrations": [EP, EP]
    }


def test_serialize_v2_flags() -> None:
    config = SerializationConfig.model_validate(SPEC_WEBHOOK["serialization"])
    items = _queued([_notification(), _deregistration("registrations-expired")], start=1.5)
    raw = json.loads(serialize(items, config, epoch_s=1_614_180_565.0))
    notification, expired = raw["notifications"][0], raw["registrations-expired"][0]
    assert notification["uid"] == "uid-0"
    assert notification["timestamp"] == 1_614_180_566_500  # epoch milliseconds
    assert notification["original-ep"] == "my-device"
    assert expired == {
        "ep": EP,
        "uid": "uid-1",
        "timestamp": 1_614_180_567_500,
        "original-ep": "my-device",
    }
    message = NotificationMessage.model_validate(raw)
    assert message.notifications is not None and message.notifications[0].uid == "uid-0"


def test_serialize_original_ep_written_by_the_registration_itself_is_kept() -> None:
    registration = Event.of(
        "registrations", EndpointData(ep=EP, original_ep="self-named"), original_ep="self-named"
    )
    (item,) = _queued([registration])
    plain = json.loads(serialize([item]))
    assert plain["registrations"][0]["original-ep"] == "self-named"
    config = SerializationConfig.model_validate({"cfg": {"include_original_ep": True}})
    assert json.loads(serialize([item], config))["registrations"][0]["original-ep"] == "self-named"


def test_serialize_escapes_non_ascii_text() -> None:
    event = Event.of("registrations", EndpointData(ep=EP, ept='Lämpö"x'), original_ep="é")
    config = SerializationConfig.model_validate({"cfg": {"include_original_ep": True}})
    body = serialize(_queued([event]), config)
    assert body.isascii()
    assert json.loads(body)["registrations"][0]["ept"] == 'Lämpö"x'


def test_serialize_nothing_is_an_empty_message() -> None:
    assert serialize([]) == b"{}"


# A reference serializer built from dicts and json.dumps, to check the string-joining one.
def _reference(items: list[QueuedItem], config: SerializationConfig, epoch_s: float) -> Any:
    cfg = config.cfg
    out: dict[str, list[Any]] = {}
    for item in items:
        kind, body = item.event.kind, dict(item.event.body)
        if (
            kind in ("de-registrations", "registrations-expired")
            and not cfg.deregistrations_as_object
        ):
            out.setdefault(kind, []).append(body["ep"])
            continue
        if cfg.include_uid:
            body["uid"] = item.uid
        if cfg.include_timestamp:
            body["timestamp"] = round((epoch_s + item.queued_at) * 1000)
        if cfg.include_original_ep and item.event.original_ep is not None:
            body.setdefault("original-ep", item.event.original_ep)
        out.setdefault(kind, []).append(body)
    return {kind: out[kind] for kind in KINDS if kind in out}


_texts = st.text(max_size=8)
_events = st.one_of(
    st.builds(
        lambda t, n: Event.of(
            "notifications",
            NotificationData(ep=EP, path=f"/3/0/{n}", ct=t, payload="", max_age=n),
            original_ep=t or None,
        ),
        _texts,
        st.integers(0, 1000),
    ),
    st.builds(
        lambda kind, t: Event.of(kind, EndpointData(ep=EP, ept=t), original_ep=t),
        st.sampled_from(["registrations", "reg-updates"]),
        _texts,
    ),
    st.builds(
        lambda kind, t: Event.of(kind, DeregistrationData(ep=EP + t), original_ep=None),
        st.sampled_from(["de-registrations", "registrations-expired"]),
        _texts,
    ),
    st.builds(
        lambda s, t: Event.of("async-responses", AsyncIDResponse(id=t or "x", status=s)),
        st.sampled_from([200, 404, 504]),
        _texts,
    ),
)
_configs = st.builds(
    lambda flags: SerializationConfig.model_validate(
        {
            "cfg": dict(
                zip(
                    [
                        "deregistrations_as_object",
                        "include_uid",
                        "include_timestamp",
                        "include_original_ep",
                    ],
                    flags,
                    strict=True,
                )
            )
        }
    ),
    st.tuples(st.booleans(), st.booleans(), st.booleans(), st.booleans()),
)


@settings(max_examples=150, deadline=None)
@given(
    events=st.lists(_events, max_size=12),
    config=_configs,
    times=st.floats(0, 1e6),
)
def test_serialize_matches_the_reference_and_the_models(
    events: list[Event], config: SerializationConfig, times: float
) -> None:
    items = _queued(events, start=times)
    body = serialize(items, config, epoch_s=1.6e9)
    assert json.loads(body) == _reference(items, config, 1.6e9)
    assert NotificationMessage.model_validate_json(body).count() == len(items)
