"""simulators.pelion.devices: registrations for every key, pre-subscriptions and manual
subscriptions per key, notifications only for subscribed resources (text and OMA-TLV),
device requests answered as async-responses, and the documented plain-text refusals."""

from __future__ import annotations

import base64
import json
import struct
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simulators.pelion.channels import ChannelRegistry
from simulators.pelion.devices import (
    DEFAULT_RESPONSE_DELAY_S,
    MAX_QUEUED_REQUESTS,
    TEXT_PLAIN,
    TLV,
    Device,
    Devices,
    MissingResource,
    RequestRejected,
    Resource,
    decode_tlv,
    encode_text,
    encode_tlv,
)
from simulators.pelion.models import (
    NotificationMessage,
    Outgoing,
    SerializationConfig,
    Webhook,
    parse_presubscriptions,
)

EP1 = "0172b9ba5409000000000001001117f5"
EP2 = "0165efa1a2df0000000000010010024f"
A, B = "ak_application_a", "ak_application_b"


def light(ep: str = EP1, ept: str = "Light", **kwargs: Any) -> Device:
    return Device.with_resources(
        ep,
        [
            Resource("/3200/0/5501", value=57),
            Resource("/3201/0/5853", value="on", obs=False),
            Resource("/3303/0/5700", value=21.5, ct=TLV),
            Resource("/3/0/0", value="ACME", obs=False),
        ],
        ept=ept,
        **kwargs,
    )


def registered(*devices: Device, now: float = 0.0) -> Devices:
    d = Devices()
    for device in devices:
        d.add(device)
        d.register(device.ep, now)
    return d


def body(out: Outgoing) -> dict[str, Any]:
    return dict(out.event.body)


def payload(out: Outgoing) -> bytes:
    return base64.b64decode(out.event.body["payload"])


# --- OMA-TLV -------------------------------------------------------------------------------


def sdk_style_decode(data: bytes) -> dict[int, bytes]:
    """An independent reading of a flat TLV, written from the LwM2M spec's bit layout."""
    out = {}
    while data:
        kind = data[0]
        assert kind >> 6 == 0b11
        id_len = 2 if kind & 0x20 else 1
        length_type = (kind >> 3) & 0b11
        ident = int.from_bytes(data[1 : 1 + id_len], "big")
        pos = 1 + id_len
        if length_type == 0:
            length = kind & 0b111
        else:
            length = int.from_bytes(data[pos : pos + length_type], "big")
            pos += length_type
        out[ident] = data[pos : pos + length]
        data = data[pos + length :]
    return out


@pytest.mark.parametrize(
    "resource_id, value, expected",
    [
        (5501, 57, "e1157d39"),  # 16-bit id, length 1 in the type byte
        (1, "value1", "c60176616c756531"),
        (0, -1, "c100ff"),
        (0, 128, "c2000080"),  # does not fit a signed byte
        (0, -129, "c200ff7f"),
        (0, 1 << 31, "c800080000000080000000"),  # needs 8 bytes: length in an 8-bit field
        (0, True, "c10001"),
        (7, 0.5, "c807083fe0000000000000"),  # a float is 8 bytes
        # LwM2M TS 1.0 §6.4.3.1: resource 0 "Open Mobile Alliance"
        (0, "Open Mobile Alliance", "c800144f70656e204d6f62696c6520416c6c69616e6365"),
    ],
)
def test_tlv_golden_vectors(resource_id: int, value: Any, expected: str) -> None:
    assert encode_tlv(resource_id, value).hex() == expected


def test_tlv_long_values_and_limits() -> None:
    data = encode_tlv(3, b"x" * 300)
    assert data[:4] == bytes([0b1101_0000, 3, 0x01, 0x2C])  # 16-bit length
    assert decode_tlv(data) == {3: b"x" * 300}
    assert encode_tlv(3, b"y" * 70_000)[0] == 0b1101_1000  # 24-bit length
    with pytest.raises(ValueError):
        encode_tlv(70_000, 1)
    with pytest.raises(ValueError):
        encode_tlv(1, 1 << 64)
    with pytest.raises(ValueError, match="truncated"):
        decode_tlv(bytes.fromhex("c5017661"))
    with pytest.raises(ValueError, match="not a resource with value"):
        decode_tlv(bytes.fromhex("0301"))


@settings(max_examples=100, deadline=None)
@given(
    resource_id=st.integers(0, 0xFFFF),
    value=st.one_of(
        st.integers(-(1 << 63), (1 << 63) - 1), st.text(max_size=300), st.binary(max_size=300)
    ),
)
def test_tlv_round_trips_through_an_independent_decoder(resource_id: int, value: Any) -> None:
    data = encode_tlv(resource_id, value)
    (raw,) = sdk_style_decode(data).values()
    assert decode_tlv(data) == {resource_id: raw}
    if isinstance(value, int):
        assert len(raw) in (1, 2, 4, 8) and int.from_bytes(raw, "big", signed=True) == value
    elif isinstance(value, str):
        assert raw.decode() == value
    else:
        assert raw == value


def test_text_encoding() -> None:
    assert [encode_text(v) for v in (57, 21.5, True, False, "on", b"\x00")] == [
        b"57",
        b"21.5",
        b"1",
        b"0",
        b"on",
        b"\x00",
    ]


# --- devices and registrations -------------------------------------------------------------


def test_device_ids_are_32_hex() -> None:
    with pytest.raises(ValueError, match="32 lowercase hex"):
        Device("node-001")
    device = Device(EP1)
    assert device.original_ep == EP1
    with pytest.raises(ValueError):
        Resource("/3200/0/x", ct=TLV)  # a TLV needs a numeric resource id
    with pytest.raises(ValueError):
        Resource("/3/0/0", ct="application/json")


def test_registration_goes_to_every_key() -> None:
    d = Devices()
    d.add(light())
    (out,) = d.register(EP1, 0.0)
    assert out.key is None  # every key's channel
    assert out.event.kind == "registrations"
    item = body(out)
    assert (item["ep"], item["ept"], item["q"]) == (EP1, "Light", False)
    assert "original-ep" not in item  # same as ep: only the v2 flag writes it
    assert out.event.original_ep == EP1
    assert item["resources"][0] == {"path": "/3200/0/5501", "ct": "text/plain", "obs": True}
    with pytest.raises(ValueError, match="exists"):
        d.add(light())


def test_self_named_device_carries_original_ep() -> None:
    d = Devices()
    d.add(Device(EP1, original_ep="my-device-123"))
    (out,) = d.register(EP1, 0.0)
    assert body(out)["original-ep"] == "my-device-123"


def test_update_deregister_and_expire_events() -> None:
    d = registered(light())
    (update,) = d.update_registration(EP1, 1.0, resources=[Resource("/5/0/1")])
    assert update.event.kind == "reg-updates" and len(body(update)["resources"]) == 1
    (gone,) = d.deregister(EP1, 2.0)
    assert (gone.key, gone.event.kind, body(gone)) == (None, "de-registrations", {"ep": EP1})
    with pytest.raises(LookupError, match="not registered"):
        d.deregister(EP1, 3.0)
    d.register(EP1, 4.0)
    (expired,) = d.expire(EP1, 5.0)
    assert expired.event.kind == "registrations-expired"
    with pytest.raises(LookupError, match="no device"):
        d.register(EP2, 6.0)


def test_registration_expires_at_the_end_of_its_lifetime() -> None:
    d = Devices()
    d.add(light(lifetime_s=3600.0))
    d.register(EP1, 100.0)
    assert d.next_deadline() == 3700.0
    d.update_registration(EP1, 1000.0)  # an update renews the lifetime
    assert d.handle_timeout(3700.0) == []
    (out,) = d.handle_timeout(4600.0)
    assert out.event.kind == "registrations-expired"
    assert not d.devices[EP1].registered and d.next_deadline() is None


# --- subscriptions -------------------------------------------------------------------------


def test_spec_presubscription_example() -> None:
    entries = parse_presubscriptions(
        [
            {"endpoint-name": "node-001", "resource-path": ["/dev"]},
            {"endpoint-type": "Light", "resource-path": ["/3200/*"]},
            {"endpoint-name": "0165*"},
            {"endpoint-type": "Sensor"},
            {"resource-path": ["/3303/0/5700"]},
        ]
    )
    d = Devices()
    d.set_presubscriptions(A, entries)
    d.add(light(EP1, "Light"))
    d.add(light(EP2, "Other"))
    d.add(light("0" * 32, "Sensor"))
    for ep in (EP1, EP2, "0" * 32):
        d.register(ep, 0.0)
    assert d.presubscriptions(A) == entries and d.presubscriptions(B) == ()
    # Light: /3200/* by type, /3303/0/5700 for all; never the non-observable ones
    assert d.subscriptions(A, EP1) == ["/3200/0/5501", "/3303/0/5700"]
    # name prefix 0165*: all observable resources
    assert d.subscriptions(A, EP2) == ["/3200/0/5501", "/3303/0/5700"]
    assert d.subscriptions(A, "0" * 32) == ["/3200/0/5501", "/3303/0/5700"]
    assert d.subscriptions(B, EP1) == []


def test_presubscriptions_apply_at_registration_and_update_only() -> None:
    d = registered(light())
    d.set_presubscriptions(A, parse_presubscriptions([{"resource-path": ["/3200/0/5501"]}]))
    assert d.set_value(EP1, "/3200/0/5501", 1, 1.0) == []  # not yet applied
    d.update_registration(EP1, 2.0)
    assert [o.key for o in d.set_value(EP1, "/3200/0/5501", 2, 3.0)] == [A]
    d.set_presubscriptions(A, [])  # "put an empty array" removes them...
    assert d.presubscriptions(A) == ()
    assert len(d.set_value(EP1, "/3200/0/5501", 3, 4.0)) == 1  # ...from the next update on
    d.update_registration(EP1, 5.0)
    assert d.set_value(EP1, "/3200/0/5501", 4, 6.0) == []


def test_notification_only_for_the_subscribing_key() -> None:
    d = registered(light())
    assert d.set_value(EP1, "/3200/0/5501", 58, 1.0) == []  # nobody subscribed
    d.subscribe(A, EP1, "3200/0/5501")  # the Python SDK strips the leading '/'
    (out,) = d.set_value(EP1, "/3200/0/5501", 59, 2.0)
    assert out.key == A and out.event.kind == "notifications"
    item = body(out)
    assert (item["ep"], item["path"], item["ct"], item["max-age"]) == (
        EP1,
        "/3200/0/5501",
        TEXT_PLAIN,
        60,
    )
    assert payload(out) == b"59"
    assert d.set_value(EP1, "/3201/0/5853", "off", 3.0) == []  # another resource


def test_object_level_subscription_covers_its_resources() -> None:
    d = registered(light())
    d.subscribe(B, EP1, "/3303")
    (out,) = d.set_value(EP1, "/3303/0/5700", 22.25, 1.0)
    assert out.key == B and out.event.body["ct"] == TLV
    assert sdk_style_decode(payload(out)) == {5700: struct.pack(">d", 22.25)}
    assert d.is_subscribed(B, EP1, "/3303/0/5700") and not d.is_subscribed(A, EP1, "/3303/0/5700")


def test_subscribe_refusals() -> None:
    d = registered(light())
    d.add(light(EP2))
    with pytest.raises(RequestRejected) as info:
        d.subscribe(A, "f" * 32, "/3200/0/5501")
    assert (info.value.status, info.value.reason) == (404, "DEVICE_NOT_FOUND")
    with pytest.raises(RequestRejected, match="DEVICE_NOT_FOUND"):
        d.subscribe(A, EP2, "/3200/0/5501")  # known but not registered
    for path in ("/9999/0/1", "/3200/1", "/", "/3200/0/5501?x"):
        with pytest.raises(RequestRejected) as info:
            d.subscribe(A, EP1, path)
        assert (info.value.status, info.value.reason) == (404, "URI_PATH_DOES_NOT_EXISTS")


def test_full_registration_wipes_manual_subscriptions_update_keeps_them() -> None:
    d = registered(light())
    d.subscribe(A, EP1, "/3200/0/5501")
    d.update_registration(EP1, 1.0)
    assert d.subscriptions(A, EP1) == ["/3200/0/5501"]
    d.deregister(EP1, 2.0)
    assert d.set_value(EP1, "/3200/0/5501", 1, 2.5) == []  # not registered: no notification
    d.register(EP1, 3.0)
    assert d.subscriptions(A, EP1) == []


def test_unsubscribe() -> None:
    d = registered(light())
    d.subscribe(A, EP1, "/3200/0/5501")
    d.subscribe(A, EP1, "/3303/0/5700")
    d.unsubscribe(A, EP1, "3200/0/5501")
    assert d.subscriptions(A, EP1) == ["/3303/0/5700"]
    d.unsubscribe(A, EP1)
    assert d.subscriptions(A, EP1) == []


# --- device requests -----------------------------------------------------------------------


def test_get_answers_after_the_device_delay_for_the_requesting_key() -> None:
    d = registered(light())
    due = d.device_request(
        A, EP1, "D3D8B52A-D962", b'{"method": "GET", "uri": "/3200/0/5501"}', 10.0
    )
    assert due == 10.0 + DEFAULT_RESPONSE_DELAY_S == d.next_deadline()
    assert d.handle_timeout(due - 0.01) == []
    (out,) = d.handle_timeout(due)
    assert out.key == A and out.event.kind == "async-responses"
    assert body(out) == {
        "id": "D3D8B52A-D962",
        "status": 200,
        "payload": base64.b64encode(b"57").decode(),
        "ct": TEXT_PLAIN,
        "max-age": 60,
    }


def test_get_with_tlv_accept() -> None:
    d = registered(light())
    d.device_request(A, EP1, "t1", {"method": "GET", "uri": "/3200/0/5501", "accept": TLV}, 0.0)
    d.device_request(A, EP1, "t2", {"method": "GET", "uri": "/3/0/0", "accept": "text/html"}, 0.0)
    first, second = d.handle_timeout(5.0)
    assert body(first)["ct"] == TLV and sdk_style_decode(payload(first)) == {5501: b"\x39"}
    assert body(second) == {"id": "t2", "status": 415}


@pytest.mark.parametrize(
    "async_id",
    [None, "", "x" * 41, "a b", "ä", "abc\n", "a/b", "a.b"],
)
def test_malformed_async_id(async_id: str | None) -> None:
    d = registered(light())
    with pytest.raises(RequestRejected) as info:
        d.device_request(A, EP1, async_id, {"method": "GET", "uri": "/3/0/0"}, 0.0)
    assert (info.value.status, info.value.reason) == (400, "MALFORMED_ASYNC_ID")


def test_async_id_may_be_40_word_characters_and_dashes() -> None:
    d = registered(light())
    d.device_request(A, EP1, "a" * 38 + "-_", {"method": "GET", "uri": "/3/0/0"}, 0.0)


@pytest.mark.parametrize(
    "raw",
    [b"{not json", b'{"uri": "/3/0/0"}', b'{"method": "GET"}', b"[]", "\xff".encode("latin-1")],
)
def test_malformed_json_content(raw: bytes) -> None:
    d = registered(light())
    with pytest.raises(RequestRejected) as info:
        d.device_request(A, EP1, "id1", raw, 0.0)
    assert (info.value.status, info.value.reason) == (400, "MALFORMED_JSON_CONTENT")


def test_unknown_device_is_404() -> None:
    d = registered(light())
    with pytest.raises(RequestRejected) as info:
        d.device_request(A, "f" * 32, "id1", {"method": "GET", "uri": "/3/0/0"}, 0.0)
    assert (info.value.status, info.value.reason) == (404, "DEVICE_NOT_FOUND")


def test_missing_resource_is_an_async_404_by_default() -> None:
    d = registered(light())
    d.device_request(A, EP1, "id1", {"method": "GET", "uri": "/9/9/9"}, 0.0)
    (out,) = d.handle_timeout(1.0)
    assert body(out) == {"id": "id1", "status": 404}


@pytest.mark.parametrize(
    "mode, status, reason",
    [
        (MissingResource.SYNC_404, 404, "URI_PATH_DOES_NOT_EXISTS"),
        (MissingResource.SYNC_400, 400, "RESOURCE_NOT_FOUND"),
    ],
)
def test_missing_resource_options(mode: MissingResource, status: int, reason: str) -> None:
    d = Devices(missing_resource=mode)
    d.add(light())
    d.register(EP1, 0.0)
    with pytest.raises(RequestRejected) as info:
        d.device_request(A, EP1, "id1", {"method": "GET", "uri": "/9/9/9"}, 0.0)
    assert (info.value.status, info.value.reason) == (status, reason)


def test_requests_queue_20_deep_and_run_one_at_a_time_in_order() -> None:
    d = registered(light(response_delay_s=2.0))
    dues = [
        d.device_request(A, EP1, f"r{i}", {"method": "GET", "uri": "/3/0/0"}, 0.0)
        for i in range(MAX_QUEUED_REQUESTS)
    ]
    assert dues == [2.0 * (i + 1) for i in range(MAX_QUEUED_REQUESTS)]
    with pytest.raises(RequestRejected) as info:
        d.device_request(A, EP1, "r20", {"method": "GET", "uri": "/3/0/0"}, 0.0)
    assert (info.value.status, info.value.reason) == (400, "QUEUE_IS_FULL")
    assert [body(o)["id"] for o in d.handle_timeout(7.0)] == ["r0", "r1", "r2"]
    assert d.pending_requests(EP1) == MAX_QUEUED_REQUESTS - 3


def test_put_writes_the_value_and_notifies_subscribers() -> None:
    d = registered(light())
    d.subscribe(B, EP1, "/3200/0/5501")
    write = {
        "method": "PUT",
        "uri": "/3200/0/5501",
        "content-type": "text/plain",
        "payload-b64": base64.b64encode(b"100").decode(),
    }
    d.device_request(A, EP1, "w1", write, 0.0)
    answer, notification = d.handle_timeout(1.0)
    assert (answer.key, body(answer)) == (A, {"id": "w1", "status": 200})
    assert notification.key == B and payload(notification) == b"100"
    d.device_request(A, EP1, "r1", {"method": "GET", "uri": "/3200/0/5501"}, 1.0)
    (read,) = d.handle_timeout(2.0)
    assert payload(read) == b"100"


def test_put_tlv_rules_and_bad_payloads() -> None:
    d = registered(light())
    tlv = base64.b64encode(encode_tlv(5501, 7)).decode()
    wrong_id = base64.b64encode(encode_tlv(1, 7)).decode()
    requests = [
        {"method": "PUT", "uri": "/3200/0/5501", "content-type": TLV, "payload-b64": tlv},
        {"method": "PUT", "uri": "/3200/0/5501?pmax=120"},  # notification rules
        {"method": "PUT", "uri": "/3200/0/5501", "content-type": TLV, "payload-b64": wrong_id},
        {"method": "PUT", "uri": "/3200/0/5501", "content-type": "a/b", "payload-b64": tlv},
    ]
    for i, request in enumerate(requests):
        d.device_request(A, EP1, f"p{i}", request, 0.0)
    statuses = [body(o)["status"] for o in d.handle_timeout(10.0)]
    assert statuses == [200, 200, 400, 415]
    assert d.devices[EP1].resources["/3200/0/5501"].value == b"\x07"


def test_post_executes_and_delete_removes() -> None:
    d = registered(light())
    d.device_request(A, EP1, "x1", {"method": "POST", "uri": "/3/0/0"}, 0.0)
    d.device_request(A, EP1, "x2", {"method": "DELETE", "uri": "/3/0/0"}, 0.0)
    d.device_request(A, EP1, "x3", {"method": "GET", "uri": "/3/0/0"}, 0.0)
    assert [body(o)["status"] for o in d.handle_timeout(10.0)] == [200, 200, 404]


def test_deregistration_and_expiry_end_queued_requests() -> None:
    d = registered(light(), light(EP2))
    d.device_request(A, EP1, "q1", {"method": "GET", "uri": "/3/0/0"}, 0.0)
    d.device_request(B, EP2, "q2", {"method": "GET", "uri": "/3/0/0"}, 0.0)
    failed, gone = d.deregister(EP1, 0.1)
    assert (failed.key, body(failed)) == (
        A,
        {"id": "q1", "status": 429, "error": "DEVICE_REMOVED_REGISTRATION"},
    )
    assert gone.event.kind == "de-registrations"
    failed, gone = d.expire(EP2, 0.2)
    assert (failed.key, body(failed)) == (B, {"id": "q2", "status": 503, "error": "NOT_CONNECTED"})
    assert d.handle_timeout(10.0) == [] and d.next_deadline() is None


# --- through the registry --------------------------------------------------------------------


def test_devices_to_callback_batch() -> None:
    """A device registers, is subscribed, changes a value and answers a request: the callback
    batch of key A carries every kind, in the v2 form it registered."""
    registry = ChannelRegistry()
    config = SerializationConfig.model_validate(
        {"cfg": {"include_uid": "true", "include_original_ep": "true"}}
    )
    registry.register_callback(A, Webhook(url="https://a.example/", serialization=config), 0.0)
    registry.register_websocket(B, None, 0.0)
    devices = Devices()
    devices.add(light())
    registry.dispatch(devices.register(EP1, 1.0), 1.0)
    devices.subscribe(A, EP1, "/3200/0/5501")
    registry.dispatch(devices.set_value(EP1, "/3200/0/5501", 60, 2.0), 2.0)
    devices.device_request(A, EP1, "req-1", {"method": "GET", "uri": "/3/0/0"}, 2.0)
    registry.dispatch(devices.handle_timeout(3.0), 3.0)
    registry.dispatch(devices.deregister(EP1, 4.0), 4.0)
    core = registry.callback(A)
    assert core is not None
    batch = core.next_batch(4.0)
    assert batch is not None
    raw = json.loads(batch.to_bytes())
    assert list(raw) == ["notifications", "registrations", "de-registrations", "async-responses"]
    assert raw["de-registrations"] == [EP1]
    assert raw["notifications"][0]["original-ep"] == EP1 and "uid" in raw["notifications"][0]
    message = NotificationMessage.model_validate(raw)
    assert message.async_responses is not None and message.async_responses[0].id == "req-1"
    stats = registry.queue_stats(B)  # B got the registration events only
    assert stats is not None and stats.queued == 2
