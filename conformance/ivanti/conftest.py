"""The Ivanti suite's fixtures: its driver (or a skip when the SUT declares no ``[ivanti]``), and
the check each of the SUT's own packets is evidence for."""

from collections.abc import Iterator

import pytest

from conformance.driver import running_vendor
from conformance.harness import Harness
from conformance.ivanti.driver import IvantiDriver
from conformance.ivanti.running import RunningIvanti


@pytest.fixture(scope="session")
def ivanti(harness: Harness) -> IvantiDriver:
    return IvantiDriver(harness, running_vendor(harness, "ivanti", RunningIvanti))


@pytest.fixture(autouse=True)
def _watching(request: pytest.FixtureRequest, harness: Harness) -> Iterator[None]:
    """The SUT's own packets (CONNECT, SUBSCRIBE, PINGREQ…) during a check are its evidence."""
    if not harness.cause:  # the run's first check: the plugin could not name it before
        harness.cause = request.node.nodeid
    sim = harness.running.get("ivanti")
    servers = []
    if isinstance(sim, RunningIvanti):
        servers = [sim.broker.server, *(i.server for i in sim.impostors.values())]
    for server in servers:
        server.ambient_cause = request.node.nodeid
    try:
        yield
    finally:
        for server in servers:
            server.ambient_cause = None
