"""Hypothesis strategies for Ivanti Event Notification Service payloads: public, so users can
fuzz their own message handler in-process::

    from hypothesis import given
    from conformance.ivanti.strategies import events, evolved_payloads, malformed_payloads

    @given(events())
    def test_my_handler_accepts(event):
        my_handler("tenant/device/check_in", event.to_wire())   # processes it

    @given(evolved_payloads())
    def test_my_handler_tolerates_evolution(payload):
        my_handler("tenant/device/check_in", payload)           # must not raise

    @given(malformed_payloads())
    def test_my_handler_survives_garbage(payload):
        my_handler("tenant/device/check_in", payload)           # must not raise

Valid events follow the vendor doc's one message format (``{"timestamp": <epoch ms>,
"eventType": "device.…", "devices": [Device, …]}``, every Device field optional;
``simulators.ivanti.events``). Evolved ones are what the vendor may send tomorrow: unknown
fields, optional fields missing, an unknown ``eventType``. Malformed ones are not a JSON object
at all, not UTF-8, of the wrong shape, deeply nested, or 256 KiB and more.
"""

from __future__ import annotations

import json
import string
from typing import Any

from hypothesis import strategies as st

from simulators.ivanti.events import EVENT_TYPES, Device, DeviceEvent, event_type_name

__all__ = [
    "LARGE_PAYLOAD_BYTES",
    "devices",
    "event_payloads",
    "events",
    "evolved_events",
    "evolved_payloads",
    "malformed_payloads",
]

LARGE_PAYLOAD_BYTES = 256 * 1024  # "256 KiB+" (IVT-PAY-02)
DEVICE_FIELDS = tuple(Device.model_fields)

_hex = st.text("0123456789abcdef", min_size=40, max_size=40)
_uuid = st.uuids().map(str)
_epoch_ms = st.integers(1_500_000_000_000, 2_100_000_000_000)
_words = st.text(
    st.characters(codec="utf-8", exclude_categories=["Cs", "Cc"]), min_size=1, max_size=24
)
_mac = st.lists(st.integers(0, 255), min_size=6, max_size=6).map(
    lambda b: ":".join(f"{x:02x}" for x in b)
)
_DEVICE_VALUES: dict[str, st.SearchStrategy[Any]] = {
    "compliant": st.booleans(),
    "quarantined": st.booleans(),
    "blocked": st.booleans(),
    "compromised": st.booleans(),
    "status": st.sampled_from(
        ["ACTIVE", "RETIRED", "WIPED", "BLOCKED", "RETIRE_PENDING", "WIPE_PENDING", "UNKNOWN"]
    ),
    "lastCheckInTime": _epoch_ms,
    "registrationTime": _epoch_ms,
    "identifier": _hex,
    "imei": st.text(string.digits, min_size=15, max_size=15),
    "imsi": st.text(string.digits, min_size=15, max_size=15),
    "macAddress": _mac,
    "manufacturer": st.sampled_from(["Apple Inc.", "samsung", "Google", "Zebra"]),
    "model": st.sampled_from(["iPad5,3", "iPhone14,2", "SM-G991B", "Pixel 8", "TC52"]),
    "os": st.sampled_from(["IOS", "OSX", "ANDROID", "WINDOWS"]),
    "osVersion": st.sampled_from(["12.2", "17.4", "14", "11"]),
    "phoneNumber": st.text(string.digits, min_size=8, max_size=14).map(lambda d: "+" + d),
    "serialNumber": st.text(string.ascii_uppercase + string.digits, min_size=10, max_size=14),
    "userId": st.emails(),
    "userUuid": _uuid,
    "ownership": st.sampled_from(["COMPANY", "EMPLOYEE"]),
    "iosUdid": _hex,
    "deviceGuid": _uuid,
}


@st.composite
def devices(draw: st.DrawFn) -> Device:
    """A Device with any subset of its documented fields (all are optional)."""
    shown = draw(st.sets(st.sampled_from(DEVICE_FIELDS)))
    return Device(**{name: draw(_DEVICE_VALUES[name]) for name in sorted(shown)})


def events(event_types: tuple[str, ...] = tuple(EVENT_TYPES)) -> st.SearchStrategy[DeviceEvent]:
    """A valid event of one of ``event_types`` (default: the nine documented ones)."""
    return st.builds(
        DeviceEvent,
        timestamp=_epoch_ms,
        eventType=st.sampled_from(event_types).map(event_type_name),
        devices=st.lists(devices(), min_size=1, max_size=4),
    )


def event_payloads(event_types: tuple[str, ...] = tuple(EVENT_TYPES)) -> st.SearchStrategy[bytes]:
    """:func:`events` as the bytes on the wire."""
    return events(event_types).map(lambda event: event.to_wire())


_json_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | _words
_json_values = st.recursive(
    _json_scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_words, inner, max_size=3),
    max_leaves=6,
)
_unknown_names = st.text("abcdefghijklmnopqrstuvwxyz", min_size=3, max_size=10).map(
    lambda s: "future" + s.capitalize()
)


@st.composite
def evolved_events(draw: st.DrawFn) -> dict[str, Any]:
    """A valid event the vendor may send tomorrow (IVT-PAY-01): unknown fields on the envelope
    and on devices, documented fields left out, or an ``eventType`` nobody documented yet."""
    event = draw(events()).model_dump(exclude_none=True)
    if draw(st.booleans()):
        event["eventType"] = "device." + draw(
            st.text("abcdefghijklmnopqrstuvwxyz_", min_size=3, max_size=20)
        )
    event.update(draw(st.dictionaries(_unknown_names, _json_values, max_size=3)))
    for device in event["devices"]:
        device.update(draw(st.dictionaries(_unknown_names, _json_values, max_size=2)))
    if draw(st.booleans()):  # an optional envelope field missing
        del event["timestamp"]
    return event


def evolved_payloads() -> st.SearchStrategy[bytes]:
    """:func:`evolved_events` as the bytes on the wire."""
    return evolved_events().map(lambda event: json.dumps(event).encode())


def _is_json(data: bytes) -> bool:
    try:
        json.loads(data)
    except (ValueError, RecursionError):
        return False
    return True


@st.composite
def _wrong_shape(draw: st.DrawFn) -> bytes:
    """JSON that is not an event: a field of the wrong type."""
    event = draw(events()).model_dump(exclude_none=True)
    key = draw(st.sampled_from(["timestamp", "eventType", "devices"]))
    wrong = {
        "timestamp": st.text(max_size=10) | st.lists(st.integers(), max_size=2),
        "eventType": st.integers() | st.none() | st.lists(_words, max_size=2),
        "devices": st.text(max_size=10) | st.integers() | st.dictionaries(_words, _words),
    }
    event[key] = draw(wrong[key])
    return json.dumps(event).encode()


def malformed_payloads() -> st.SearchStrategy[bytes]:
    """Payloads that are not an event (IVT-PAY-02): not JSON, invalid UTF-8, JSON that is not an
    object, an event with a field of the wrong type, deep nesting, 256 KiB and more."""
    return st.one_of(
        st.binary(max_size=64).filter(lambda b: not _is_json(b)),
        st.binary(min_size=1, max_size=32).map(lambda b: b'{"eventType": "' + b + b'\xff\xfe"}'),
        st.one_of(st.lists(st.integers(), max_size=5), st.integers(), st.text(max_size=10)).map(
            lambda value: json.dumps(value).encode()
        ),
        _wrong_shape(),
        st.integers(200, 5_000).map(lambda depth: b"[" * depth + b"]" * depth),
        st.integers(LARGE_PAYLOAD_BYTES, LARGE_PAYLOAD_BYTES + 64 * 1024).map(
            lambda size: b"\x00\xff" * (size // 2)
        ),
        st.integers(LARGE_PAYLOAD_BYTES, LARGE_PAYLOAD_BYTES + 64 * 1024).map(
            lambda size: b'{"eventType": "device.check_in", "devices": ["' + b"x" * size
        ),
    )
