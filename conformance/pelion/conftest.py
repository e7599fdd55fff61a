"""The Pelion suite's fixture: its driver, or a skip when the SUT declares no ``[pelion]``."""

import pytest

from conformance.driver import running_vendor
from conformance.harness import Harness
from conformance.pelion.driver import PelionDriver
from conformance.pelion.running import RunningPelion


@pytest.fixture(scope="session")
def pelion(harness: Harness) -> PelionDriver:
    return PelionDriver(harness, running_vendor(harness, "pelion", RunningPelion))
