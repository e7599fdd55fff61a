"""The Apple suite's fixture: its driver, or a skip when the SUT declares no ``[apple]``."""

import pytest

from conformance.apple.driver import AppleDriver
from conformance.apple.running import RunningApple
from conformance.driver import running_vendor
from conformance.harness import Harness


@pytest.fixture(scope="session")
def apple(harness: Harness) -> AppleDriver:
    return AppleDriver(harness, running_vendor(harness, "apple", RunningApple))
