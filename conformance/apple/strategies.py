"""Hypothesis strategies for Apple Apps and Books notifications: public, so users can fuzz their
own parser in-process::

    from hypothesis import given
    from conformance.apple.strategies import notifications, malformed_bodies

    @given(notifications())
    def test_my_parser_accepts(n):
        my_parser.handle(n.to_wire())          # must not raise

    @given(malformed_bodies())
    def test_my_parser_rejects_cleanly(body):
        assert my_endpoint(body).status < 500

Valid notifications follow the vendor doc's shapes (``simulators.apple.models``); malformed
bodies are never a valid notification envelope.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from hypothesis import strategies as st

from simulators.apple.models import (
    AssetCount,
    AssetManagement,
    Assignment,
    AssociatedUser,
    Notification,
    NotificationError,
    SubscriptionAssignment,
    SubscriptionCount,
    SubscriptionCounts,
    SubscriptionCountsBlock,
    SubscriptionManagement,
    TestNotification,
    User,
    UserAssociated,
    UserManagement,
)

__all__ = [
    "forward_compatible_notifications",
    "malformed_bodies",
    "notification_bodies",
    "notifications",
]

_ids = st.text("0123456789", min_size=6, max_size=12)
_words = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), min_size=1, max_size=20)
_uuids = st.uuids().map(str)
_pricing = st.sampled_from(["STDQ", "PLUS"])
_result: st.SearchStrategy[Literal["SUCCESS", "FAILURE"]] = st.sampled_from(["SUCCESS", "FAILURE"])
_errors = st.builds(NotificationError, errorNumber=st.integers(9600, 9899), errorMessage=_words)


@st.composite
def _assignment(draw: st.DrawFn) -> Assignment:
    target = draw(st.sampled_from(["serialNumber", "clientUserId"]))
    return Assignment(adamId=draw(_ids), pricingParam=draw(_pricing), **{target: draw(_words)})


@st.composite
def _asset_management(draw: st.DrawFn) -> AssetManagement:
    result = draw(_result)
    return AssetManagement(
        assignments=draw(st.lists(_assignment(), min_size=1, max_size=100)),
        eventId=draw(_uuids),
        result=result,
        type=draw(st.sampled_from(["ASSOCIATE", "DISASSOCIATE", "REVOKE"])),
        error=draw(_errors) if result == "FAILURE" else None,
    )


_counts = st.builds(
    SubscriptionCounts, renewing=st.integers(0, 10**6), expiring=st.integers(0, 10**6)
)
_users = st.builds(
    User,
    clientUserId=_words,
    email=st.none() | st.emails(),
    inviteCode=st.none() | st.text("0123456789abcdef", min_size=32, max_size=32),
    status=st.sampled_from(["Registered", "Associated", "Retired"]),
)


def notification_bodies() -> st.SearchStrategy[Any]:
    """A typed body of any of the seven documented notification types."""
    return st.one_of(
        st.just(TestNotification()),
        st.builds(
            AssetCount, adamId=_ids, countDelta=st.integers(-(10**6), 10**6), pricingParam=_pricing
        ),
        _asset_management(),
        st.builds(
            SubscriptionCount,
            parentAdamId=st.integers(1, 10**10),
            adamId=st.integers(1, 10**10),
            counts=st.builds(SubscriptionCountsBlock, available=_counts, total=_counts),
        ),
        st.builds(
            SubscriptionManagement,
            assignments=st.lists(
                st.builds(
                    SubscriptionAssignment,
                    adamId=st.integers(1, 10**10),
                    clientUserId=_words,
                    renewing=st.booleans(),
                ),
                min_size=1,
                max_size=100,
            ),
            eventId=_uuids,
            result=_result,
            type=st.sampled_from(["ASSOCIATE", "DISASSOCIATE"]),
        ),
        st.builds(
            UserManagement,
            eventId=_uuids,
            result=_result,
            type=st.sampled_from(["CREATE", "UPDATE", "RETIRE"]),
            users=st.lists(_users, min_size=1, max_size=100),
        ),
        st.builds(
            UserAssociated,
            associatedUsers=st.lists(
                st.builds(
                    AssociatedUser,
                    clientUserId=_words,
                    email=st.none() | st.emails(),
                    idHash=st.none() | _words,
                    status=st.just("Associated"),
                ),
                min_size=1,
                max_size=100,
            ),
        ),
    )


def notifications() -> st.SearchStrategy[Notification]:
    """A valid notification envelope around any documented body, with a fresh id."""
    return st.builds(
        lambda body, uid, nid: Notification.of(body, uid=uid).model_copy(
            update={"notificationId": nid}
        ),
        notification_bodies(),
        _ids,
        _uuids,
    )


_json_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | _words


def forward_compatible_notifications() -> st.SearchStrategy[dict[str, Any]]:
    """Valid notifications that a receiver must still accept (APL-TYPE-06): unknown extra fields
    on the envelope and the body, or an unknown ``notificationType``."""

    def extend(n: Notification, extra: dict[str, Any], unknown_type: str | None) -> dict[str, Any]:
        wire = n.to_wire()
        wire["notification"] = {**wire["notification"], **extra}
        wire.update({f"x{k}": v for k, v in extra.items()})
        if unknown_type:
            wire["notificationType"] = unknown_type
        return wire

    return st.builds(
        extend,
        notifications(),
        st.dictionaries(
            st.text("abcdefghij", min_size=3, max_size=8).map(lambda s: "future" + s),
            _json_scalars,
            max_size=3,
        ),
        st.none()
        | st.text("ABCDEFGHIJKLMNOPQRSTUVWXYZ_", min_size=4, max_size=24).map(
            lambda s: "FUTURE_" + s
        ),
    )


def _dumps(value: Any) -> bytes:
    return json.dumps(value).encode()


@st.composite
def _broken_envelope(draw: st.DrawFn) -> bytes:
    """A JSON object that is not a valid envelope: a field missing or of the wrong type."""
    wire = draw(notifications()).to_wire()
    key = draw(st.sampled_from(["notificationId", "notificationType", "notification"]))
    if draw(st.booleans()):
        del wire[key]
    else:
        wrong = {
            "notificationId": st.integers() | st.none() | st.lists(_ids, max_size=2),
            "notificationType": st.integers() | st.none() | st.booleans(),
            "notification": st.text(max_size=10)
            | st.integers()
            | st.lists(st.integers(), max_size=3),
        }
        wire[key] = draw(wrong[key])
    return _dumps(wire)


def malformed_bodies() -> st.SearchStrategy[bytes]:
    """Bodies that are not a valid notification: not JSON, invalid UTF-8, not an object, a broken
    envelope, huge arrays and deep nesting (APL-BAD-01)."""
    return st.one_of(
        st.binary(max_size=64).filter(lambda b: not _is_json(b)),
        st.binary(min_size=1, max_size=32).map(lambda b: b'{"notificationId": "' + b + b'\xff"}'),
        st.one_of(st.lists(st.integers(), max_size=5), st.integers(), st.text(max_size=10)).map(
            _dumps
        ),
        _broken_envelope(),
        st.integers(1_000, 50_000).map(
            lambda n: _dumps(
                {
                    "notificationId": "x",
                    "notificationType": "ASSET_MANAGEMENT",
                    "notification": "x",
                    "uId": [0] * n,
                }
            )
        ),
        st.integers(200, 5_000).map(lambda depth: b"[" * depth + b"]" * depth),
    )


def _is_json(data: bytes) -> bool:
    try:
        json.loads(data)
    except (ValueError, RecursionError):
        return False
    return True
