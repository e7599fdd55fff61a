"""Hypothesis strategies for Pelion NotificationMessages: public, so users can fuzz their own
parser in-process::

    from hypothesis import given
    from conformance.pelion.strategies import notification_messages, malformed_bodies

    @given(notification_messages())
    def test_my_parser_accepts(message):
        my_parser.handle(message)              # a dict, as json.loads gives it: must not raise

    @given(malformed_bodies())
    def test_my_parser_rejects_cleanly(body):
        assert my_endpoint(body).status < 500

Valid messages follow the vendor's shapes (``simulators.pelion.models``): every kind, several
kinds in one message, serialization v2 (``uid``, ``timestamp``, ``original-ep``,
de-registrations as objects) and unknown keys a receiver must tolerate. Malformed bodies are
never a valid NotificationMessage.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from hypothesis import strategies as st

from simulators.pelion.models import NotificationMessage

__all__ = [
    "async_responses",
    "deregistrations",
    "endpoints",
    "malformed_bodies",
    "notification_messages",
    "notifications",
]

_ep = st.text("0123456789abcdef", min_size=32, max_size=32)
_path = st.builds(
    lambda o, i, r: f"/{o}/{i}/{r}",
    st.integers(0, 32768),
    st.integers(0, 65535),
    st.integers(0, 65535),
)
_uid = st.uuids().map(str)
_timestamp = st.integers(1_500_000_000_000, 2_500_000_000_000) | st.integers(
    1_500_000_000_000, 2_500_000_000_000
).map(str)
_text = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=20)
_unknown = st.dictionaries(
    st.text("abcdefghij", min_size=3, max_size=8).map(lambda k: "future-" + k),
    st.none() | st.booleans() | st.integers() | _text,
    max_size=2,
)


def _v2(with_v2: bool) -> st.SearchStrategy[dict[str, Any]]:
    """The serialization v2 fields (``uid``, ``timestamp``, ``original-ep``), or none."""
    if not with_v2:
        return st.just({})
    return st.fixed_dictionaries(
        {},
        optional={"uid": _uid, "timestamp": _timestamp, "original-ep": _ep},
    )


@st.composite
def notifications(draw: st.DrawFn, *, v2: bool = True) -> dict[str, Any]:
    """A ``notifications`` item: a subscribed resource's new value, base64 encoded."""
    value = draw(st.binary(max_size=64) | _text.map(str.encode))
    item: dict[str, Any] = {
        "ep": draw(_ep),
        "path": draw(_path),
        "ct": draw(
            st.sampled_from(
                ["text/plain", "application/vnd.oma.lwm2m+tlv", "application/octet-stream"]
            )
        ),
        "payload": base64.b64encode(value).decode(),
        "max-age": draw(st.sampled_from([0, 60, "60"])),
    }
    return {**item, **draw(_v2(v2)), **draw(_unknown)}


@st.composite
def endpoints(draw: st.DrawFn, *, v2: bool = True) -> dict[str, Any]:
    """A ``registrations`` or ``reg-updates`` item with its resources."""
    resources = draw(
        st.lists(
            st.fixed_dictionaries(
                {"path": _path},
                optional={
                    "rt": _text,
                    "ct": st.just("text/plain"),
                    "obs": st.booleans(),
                    "if": _text,
                },
            ),
            max_size=4,
        )
    )
    item: dict[str, Any] = {"ep": draw(_ep), "ept": draw(_text), "resources": resources}
    if draw(st.booleans()):
        item["q"] = draw(st.booleans())
    return {**item, **draw(_v2(v2)), **draw(_unknown)}


@st.composite
def deregistrations(draw: st.DrawFn, *, as_object: bool | None = None) -> Any:
    """A ``de-registrations`` / ``registrations-expired`` item: a bare ep, or an object
    (``deregistrations_as_object``)."""
    objects = draw(st.booleans()) if as_object is None else as_object
    ep = draw(_ep)
    if not objects:
        return ep
    return {"ep": ep, **draw(_v2(True)), **draw(_unknown)}


@st.composite
def async_responses(draw: st.DrawFn, *, v2: bool = True) -> dict[str, Any]:
    """An ``async-responses`` item: a device request's result (``status`` is an integer)."""
    status = draw(st.sampled_from([200, 204, 400, 404, 412, 413, 415, 429, 502, 503, 504]))
    item: dict[str, Any] = {
        "id": draw(st.from_regex(r"[\w\-]{1,40}", fullmatch=True)),
        "status": status,
    }
    if status < 300:
        item["payload"] = base64.b64encode(draw(st.binary(max_size=32))).decode()
        item["ct"] = "text/plain"
        item["max-age"] = 0
    else:
        item["error"] = draw(
            st.sampled_from(["TIMEOUT", "NOT_CONNECTED", "REQUEST_EXPIRED", "FAILED"])
        )
    return {**item, **draw(_v2(v2)), **draw(_unknown)}


_KINDS: dict[str, st.SearchStrategy[Any]] = {
    "notifications": notifications(),
    "registrations": endpoints(),
    "reg-updates": endpoints(),
    "de-registrations": deregistrations(),
    "registrations-expired": deregistrations(),
    "async-responses": async_responses(),
}


@st.composite
def notification_messages(draw: st.DrawFn, *, max_items: int = 20) -> dict[str, Any]:
    """A valid NotificationMessage (as a JSON object): one or several kinds, items of every
    documented shape, unknown keys at both levels."""
    kinds = draw(st.lists(st.sampled_from(list(_KINDS)), min_size=1, max_size=6, unique=True))
    message: dict[str, Any] = {
        kind: draw(st.lists(_KINDS[kind], min_size=1, max_size=max(1, max_items // len(kinds))))
        for kind in kinds
    }
    message.update(draw(_unknown))
    NotificationMessage.model_validate(message)  # the strategy's own promise
    return message


def _dumps(value: Any) -> bytes:
    return json.dumps(value).encode()


def _is_message(body: bytes) -> bool:
    try:
        NotificationMessage.model_validate_json(body)
    except ValueError:
        return False
    return True


def malformed_bodies() -> st.SearchStrategy[bytes]:
    """Bodies that are not a valid NotificationMessage: not JSON, invalid UTF-8, not an object,
    items of the wrong type or missing fields, bad base64, huge arrays, deep nesting
    (PEL-MSG-03)."""
    broken_item = st.one_of(
        st.just({"notifications": [{"path": "/3/0/0"}]}),  # no ep
        st.just({"notifications": [{"ep": 7, "path": []}]}),
        st.just({"notifications": [{"ep": "e", "path": "/1/0/1", "payload": "%%%not base64"}]}),
        st.just({"async-responses": [{"id": "x", "status": "200"}]}),  # status must be a number
        st.just({"registrations": "not a list"}),
        st.just({"de-registrations": [{"not-ep": 1}]}),
    )
    return st.one_of(
        st.binary(max_size=64).filter(lambda b: not _is_message(b)),
        st.binary(min_size=1, max_size=32).map(
            lambda b: b'{"notifications": [{"ep": "' + b + b'\xff"}]}'
        ),
        st.one_of(st.lists(st.integers(), max_size=5), st.integers(), st.text(max_size=10)).map(
            _dumps
        ),
        broken_item.map(_dumps),
        st.integers(1_000, 50_000).map(lambda n: _dumps({"notifications": [[0]] * n})),
        st.integers(200, 5_000).map(
            lambda depth: b'{"notifications": ' + b"[" * depth + b"]" * depth + b"}"
        ),
    ).filter(lambda b: not _is_message(b))
