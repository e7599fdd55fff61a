"""The typed simulator operations (docs/architecture.md, "Operations"): values a front door
builds from any input, refused with a message naming the field, said in plain words."""

from __future__ import annotations

import pytest
from pydantic import TypeAdapter, ValidationError

from simulators.apple.operations import AppleOperation, EndBillingPeriod, FailDeliveries
from simulators.faults import FaultKind
from simulators.ivanti.events import EVENT_TYPES
from simulators.ivanti.operations import HoldOffline, IvantiOperation, Publish
from simulators.operations import AdvanceClock, Operation
from simulators.pelion.operations import CloseSocket, PelionOperation


def test_an_unknown_event_type_lists_the_known_ones() -> None:
    with pytest.raises(ValidationError) as info:
        Publish(event_type="device_exploded")
    assert "device_exploded" in str(info.value) and next(iter(EVENT_TYPES)) in str(info.value)


@pytest.mark.parametrize(
    ("make", "field"),
    [
        (lambda: HoldOffline(client_id="c", duration_sim_s=-1), "duration_sim_s"),
        (lambda: HoldOffline(client_id="", duration_sim_s=1), "client_id"),
        (lambda: AdvanceClock(seconds=0), "seconds"),
        (lambda: CloseSocket(code=99), "code"),
        (lambda: FailDeliveries(kind=FaultKind.TIMEOUT), "kind"),  # not an Apple delivery fault
    ],
)
def test_bad_values_are_refused_naming_the_field(make: object, field: str) -> None:
    with pytest.raises(ValidationError) as info:
        make()  # type: ignore[operator]
    assert field in str(info.value)


@pytest.mark.parametrize(
    ("union", "wire", "expected"),
    [
        (IvantiOperation, {"op": "publish", "event_type": "device_check_in"}, Publish),
        (AppleOperation, {"op": "fail-deliveries", "kind": "drop-before-ack"}, FailDeliveries),
        (AppleOperation, {"op": "end-billing-period"}, EndBillingPeriod),
        (PelionOperation, {"op": "close-socket", "code": 1011}, CloseSocket),
        (PelionOperation, {"op": "advance-clock", "seconds": 3600}, AdvanceClock),
    ],
)
def test_a_vendors_operations_parse_from_json_by_their_op(
    union: object, wire: dict[str, object], expected: type
) -> None:
    operation: Operation = TypeAdapter(union).validate_python(wire)
    assert isinstance(operation, expected)
    assert operation.describe()  # plain words for a step of a scenario


def test_unknown_fields_are_refused() -> None:
    with pytest.raises(ValidationError, match="extra"):
        TypeAdapter(IvantiOperation).validate_python({"op": "release", "client_id": "c", "x": 1})


def test_operations_are_frozen_values() -> None:
    first = HoldOffline(client_id="c", duration_sim_s=60)
    assert first == HoldOffline(client_id="c", duration_sim_s=60) and hash(first)
    with pytest.raises(ValidationError):
        first.client_id = "d"  # type: ignore[misc]
