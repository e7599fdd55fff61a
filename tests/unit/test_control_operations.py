"""The operations made for the front doors (control plane, ``ctl``, fixtures) and ``ctl``'s own
parsing: refused with the field and the fix before anything is sent; bounded."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Annotated, Any

import pytest
from pydantic import Field, TypeAdapter, ValidationError

from conformance.cli import duration_s
from simulators.apple.models import ELEMENT_FIELDS, NOTIFICATION_TYPES, sample
from simulators.apple.operations import AppleOperation, Notify, RegisterReceiver
from simulators.faults import FaultKind
from simulators.ivanti.operations import IvantiOperation
from simulators.pelion.operations import Notify as PelionNotify
from simulators.pelion.operations import PelionOperation

ROOT = Path(__file__).resolve().parents[2]


def wire(union: Any) -> TypeAdapter[Any]:
    """A vendor's operations as the control plane parses them (told apart by ``op``)."""
    return TypeAdapter(Annotated[union, Field(discriminator="op")])


@pytest.mark.parametrize("kind", NOTIFICATION_TYPES)
def test_every_notification_type_has_a_sample_of_its_documented_shape(kind: str) -> None:
    count = 3 if kind in ELEMENT_FIELDS else 1
    made = sample(kind, count)
    assert made.notificationType == kind and made.body() is not None
    assert len(made.elements()) == (count if kind in ELEMENT_FIELDS else 0)


@pytest.mark.parametrize(
    ("data", "named"),
    [
        ({"notification_type": "ASSET_MANAGEMENT", "elements": 1_000_000}, "10000"),
        ({"notification_type": "ASSET_COUNT", "elements": 5}, "carries no element list"),
        ({"notification_type": "ASSET_EXPLODED"}, "USER_ASSOCIATED"),  # lists the known ones
    ],
)
def test_apple_notify_refuses_naming_the_limit_or_the_known_types(
    data: dict[str, Any], named: str
) -> None:
    with pytest.raises(ValidationError) as info:
        Notify(**data)
    assert named in str(info.value)


def test_a_receiver_needs_an_http_url_and_a_pem_ca() -> None:
    with pytest.raises(ValidationError, match="https"):
        RegisterReceiver(url="ftp://example.test/x", token="t")
    with pytest.raises(ValidationError, match="PEM"):
        RegisterReceiver(url="https://example.test/x", token="t", ca_pem="not a certificate")


@pytest.mark.parametrize(
    ("union", "kind", "ok"),
    [
        (AppleOperation, FaultKind.DROP_BEFORE_ACK, True),
        (AppleOperation, FaultKind.TIMEOUT, False),
        (PelionOperation, FaultKind.STATUS, True),
        (PelionOperation, FaultKind.DUPLICATE, False),
        (IvantiOperation, FaultKind.DROP_BEFORE_ACK, True),
        (IvantiOperation, FaultKind.STALL, False),
    ],
)
def test_fault_kinds_are_the_shared_vocabulary_as_far_as_each_vendor_shows_it(
    union: Any, kind: FaultKind, ok: bool
) -> None:
    data = {"op": "fault", "kind": kind.value, "times": 2}
    if ok:
        assert wire(union).validate_python(data).times == 2
    else:
        with pytest.raises(ValidationError, match="kinds: "):
            wire(union).validate_python(data)


def test_an_ivanti_fault_on_one_client_needs_its_client_id() -> None:
    with pytest.raises(ValidationError, match="client_id"):
        wire(IvantiOperation).validate_python({"op": "fault", "kind": "duplicate"})


def test_an_unknown_op_lists_the_known_ones() -> None:
    with pytest.raises(ValidationError) as info:
        wire(PelionOperation).validate_python({"op": "explode"})
    assert "'notify'" in str(info.value) and "'reset'" in str(info.value)


def test_a_pelion_burst_is_bounded_and_a_path_is_a_resource_path() -> None:
    with pytest.raises(ValidationError, match="10000"):
        PelionNotify(count=1_000_000)
    with pytest.raises(ValidationError, match="/3200/0/5501"):
        PelionNotify(path="3200/0/5501")


@pytest.mark.parametrize(
    ("text", "seconds"), [("90s", 90), ("5m", 300), ("3h", 10_800), ("24h", 86_400), ("45", 45)]
)
def test_ctl_durations(text: str, seconds: float) -> None:
    assert duration_s(text) == seconds


@pytest.mark.parametrize("text", ["soon", "5x", "-3h", "0s"])
def test_a_bad_duration_is_refused_with_the_format(text: str) -> None:
    with pytest.raises(ValueError, match=r"90s|positive"):
        duration_s(text)


def test_ctl_without_a_control_plane_says_what_to_set() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "conformance.cli", "ctl", "reset"],
        capture_output=True, text=True, timeout=60, cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    assert done.returncode == 2 and done.stdout == ""
    assert "CONFORMANCE_CONTROL_URL" in done.stderr and "--env-file" in done.stderr


def test_loading_the_fixtures_plugin_imports_nothing_heavy() -> None:
    """The fixtures' plugin loads in every pytest run where the project is installed."""
    heavy = ["aiohttp", "pydantic", "jinja2", "hypothesis", "schemathesis", "simulators", "trustme"]
    code = (
        "import sys, conformance.sim_fixtures\n"
        f"print(sorted({{m.split('.')[0] for m in sys.modules}} & {set(heavy)!r}))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    ).stdout
    assert out.strip() == "[]", out
