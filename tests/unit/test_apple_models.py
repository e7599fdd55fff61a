"""simulators.apple.models against every vendor-doc example in fixtures/apple/examples."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given

from conformance.apple.strategies import (
    forward_compatible_notifications,
    malformed_bodies,
    notifications,
)
from simulators.apple.models import BODY_MODELS, Notification

EXAMPLES = sorted((Path(__file__).resolve().parents[2] / "fixtures/apple/examples").glob("*.json"))


def test_every_type_has_an_example() -> None:
    types = {json.loads(p.read_text())["notificationType"] for p in EXAMPLES}
    assert types == set(BODY_MODELS)


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_vendor_examples_validate_and_round_trip(path: Path) -> None:
    wire = json.loads(path.read_text())
    n = Notification.model_validate(wire)
    assert n.body() is not None
    assert n.to_wire() == wire


def test_a_body_of_the_wrong_shape_is_refused() -> None:
    n = Notification(notification={"adamId": "1"}, notificationType="ASSET_COUNT")
    with pytest.raises(ValueError):
        n.body()


@given(notifications())
def test_generated_notifications_are_valid(n: Notification) -> None:
    again = Notification.model_validate(json.loads(json.dumps(n.to_wire())))
    assert again.body() is not None


@given(forward_compatible_notifications())
def test_forward_compatible_ones_keep_a_valid_envelope(wire: dict[str, object]) -> None:
    assert isinstance(wire["notificationId"], str) and isinstance(wire["notification"], dict)


def _valid_envelope(body: bytes) -> bool:
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        return False
    return (
        isinstance(data, dict)
        and isinstance(data.get("notificationId"), str)
        and isinstance(data.get("notificationType"), str)
        and isinstance(data.get("notification"), dict)
    )


@given(malformed_bodies())
def test_malformed_bodies_are_never_a_valid_envelope(body: bytes) -> None:
    assert not _valid_envelope(body)
