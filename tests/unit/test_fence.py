"""The fence (conformance/driver.py, VendorDriver.fence_with) over a real observer on loopback:
not-verified only when its evidence cannot exist (no marker taken, nothing ever reported); a
SUT that reported during the run but not the marker fails, since a missing report is evidence."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, ClassVar, cast

import pytest

import conformance.driver
from conformance.driver import MarkerRefused, VendorDriver
from conformance.harness import Harness
from conformance.observer import Observer, Route
from conformance.vendors import vendor
from simulators.clock import Clock
from simulators.evidence import Recorder
from simulators.loop import LoopThread

APPLE = vendor("apple")


@dataclass
class _HarnessView:
    """What the fence reads of a harness: its observer."""

    observer: Observer


@dataclass(repr=False)
class AppleLike(VendorDriver):
    vendor_name: ClassVar[str] = "apple"
    record_shape: ClassVar[str] = '{"notification": {...}}'


@pytest.fixture
def driver(monkeypatch: pytest.MonkeyPatch) -> Iterator[AppleLike]:
    monkeypatch.setattr(conformance.driver, "OBSERVER_WAIT_S", 0.3)  # keep the test fast
    monkeypatch.setattr(conformance.driver, "SILENT_OBSERVER_WAIT_S", 0.3)
    clock = Clock()
    loop = LoopThread("fence-test")
    route = Route(APPLE.observer_record_model(), APPLE.observer_keys)
    observer = Observer(clock, Recorder(clock), {"apple": route})
    loop.run(observer.start())
    try:
        yield AppleLike(cast(Harness, _HarnessView(observer)))
    finally:
        loop.run(observer.stop())
        loop.stop()


def report(driver: AppleLike, *ids: str) -> None:
    records: list[dict[str, Any]] = [
        {"notification": {"notificationId": i, "notificationType": "ASSET_COUNT"}} for i in ids
    ]
    observer = driver.harness.observer
    request = urllib.request.Request(
        f"{observer.base_url}/apple",
        data=json.dumps(records).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=5) as answer:
        assert answer.status == 204


def test_fenced_when_the_marker_is_reported(driver: AppleLike) -> None:
    def marker() -> dict[str, str]:
        report(driver, "judged", "marker")
        return {"marker": "marker"}

    assert driver.fence_with({"judged": "judged"}, marker) is None


def test_not_verified_when_the_sut_never_reported_or_took_no_marker(driver: AppleLike) -> None:
    assert driver.fence_with({}, lambda: {"marker": "marker"}) == (
        "the SUT reported nothing to the observer"
    )

    def refused() -> dict[str, str]:
        raise MarkerRefused("the SUT did not acknowledge a marker")

    assert driver.fence_with({}, refused) == "the SUT did not acknowledge a marker"


def test_a_sut_that_reported_before_fails_when_the_marker_goes_unreported(
    driver: AppleLike,
) -> None:
    report(driver, "earlier")
    with pytest.raises(AssertionError, match=r"reported 1 record.*nor 1 of the judged items"):
        driver.fence_with({"judged": "judged"}, lambda: {"marker": "marker"})
