"""The simulators as pytest fixtures for a team's own tests (docs/sut-contract.md §6,
"Simulators in your own tests"): ``<vendor>_sim`` for every vendor plug-in.

Registered through the ``pytest11`` entry point wherever the project is installed. Importing
this module loads nothing heavy: a test that requests a fixture starts that vendor's simulators
for the session (in one background event loop, one simulated clock, a PKI in a temporary
folder); each test gets them reset afterwards. No catalogue, verdicts or reports are involved.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, TypeVar

import pytest

from conformance.vendors import discover

if TYPE_CHECKING:
    from conformance.simulation import Simulation
    from simulators.loop import LoopThread
    from simulators.operations import Operation

__all__ = ["SimClock", "SimHandle", "Simulators"]

T = TypeVar("T")
WAIT_S = 10.0  # the default bound of a wait for what the simulator saw


class Simulators:
    """The session's simulators: started vendor by vendor, on first request."""

    def __init__(self, factory: pytest.TempPathFactory) -> None:
        self._factory = factory
        self._loop: LoopThread | None = None
        self._simulation: Simulation | None = None

    def start(self, name: str) -> Simulation:
        from conformance.simulation import Simulation
        from simulators.loop import LoopThread

        if self._simulation is None:
            self._loop = LoopThread("conformance-sims")
            self._simulation = Simulation(self._factory.mktemp("conformance-sims"))
        if name not in self._simulation.running:
            self.run(
                self._simulation.start([name], {name: _quiet_settings(name, self._simulation)})
            )
        return self._simulation

    def run(self, coro: Any, timeout: float = 120.0) -> Any:
        assert self._loop is not None
        return self._loop.run(coro, timeout)

    def stop(self) -> None:
        if self._simulation is not None and self._loop is not None:
            try:
                self.run(self._simulation.stop())
            finally:
                self._loop.stop()


def _quiet_settings(name: str, simulation: Simulation) -> Any:
    """The vendor's default settings, without the standalone simulator's own traffic (a test
    says what happens)."""
    parser = argparse.ArgumentParser()
    discover()[name].add_options(parser.add_argument)
    options = vars(parser.parse_args([]))
    options.update({key: 0.0 for key in options if key.endswith("events_per_s")})

    def option(flag: str) -> Any:
        return options[flag.lstrip("-").replace("-", "_")]

    return discover()[name].settings(option, pki_dir=simulation.pki_dir)


class SimClock:
    """The simulated clock every simulator reads."""

    def __init__(self, handle: SimHandle) -> None:
        self._handle = handle

    def now(self) -> float:
        """Simulated seconds now."""
        return self._handle.simulation.clock.now()

    def advance(self, seconds: float) -> float:
        """Advance simulated time (retries, back-off, retention fall due); the new time."""
        handle = self._handle
        now: float = handle.simulators.run(handle.simulation.advance(seconds))
        return now


class SimHandle:
    """One vendor's simulators in a test: ``env``, ``clock``, ``perform(operation)`` (any of
    the vendor's operations, the control plane's powers), ``fault(kind, …)``, ``reset()`` and
    ``wait_for(look)``, a bounded wait for what the simulator saw. A vendor's handle adds its
    own verbs (``conformance/<vendor>/handle.py``)."""

    def __init__(self, name: str, simulators: Simulators, simulation: Simulation) -> None:
        self.name = name
        self.simulators = simulators
        self.simulation = simulation
        self.clock = SimClock(self)

    @property
    def env(self) -> dict[str, str]:
        """The ``CONFORMANCE_*`` variables a SUT needs: the shared ones and this vendor's."""
        prefix = f"CONFORMANCE_{self.name.upper()}_"
        others = [f"CONFORMANCE_{n.upper()}_" for n in discover() if n != self.name]
        return {
            key: value
            for key, value in self.simulation.environment().items()
            if key.startswith(prefix) or not key.startswith(tuple(others))
        }

    def perform(self, operation: Operation | dict[str, Any]) -> Any:
        """Carry out one operation (a model, or its JSON as a dict); what the simulator did."""
        sim = self.simulation
        parsed = sim.parse(self.name, operation) if isinstance(operation, dict) else operation
        return self.simulators.run(sim.perform(self.name, parsed))

    def fault(self, kind: str, *, times: int = 1, **params: Any) -> Any:
        """Arm a fault of the shared vocabulary (``status``, ``drop-before-ack``…)."""
        return self.perform({"op": "fault", "kind": kind, "times": times, **params})

    def reset(self) -> Any:
        return self.perform({"op": "reset"})

    def wait_for(self, look: Callable[[], T], timeout: float = WAIT_S) -> T:
        """Look again each time the simulators record evidence, until ``look()`` gives a
        true value or ``timeout`` real seconds pass; its last value (AssertionError naming the
        wait when it never held)."""
        feed = self.simulation.feed
        deadline = self.simulation.clock.real() + timeout
        while True:
            seq = feed.next_seq
            value = look()
            if value:
                return value
            left = deadline - self.simulation.clock.real()
            if left <= 0:
                raise AssertionError(f"{self.name}: not seen within {timeout:g} s: {look!r}")
            feed.wait_any(seq, min(left, 1.0))


@pytest.fixture(scope="session")
def conformance_simulators(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Simulators]:
    """The session's simulators (none started until a ``<vendor>_sim`` fixture asks)."""
    simulators = Simulators(tmp_path_factory)
    yield simulators
    simulators.stop()


def _fixture(name: str) -> Callable[..., Iterator[SimHandle]]:
    def fixture(conformance_simulators: Simulators) -> Iterator[SimHandle]:
        simulation = conformance_simulators.start(name)
        handle: SimHandle = discover()[name].sim_handle()(name, conformance_simulators, simulation)
        yield handle
        handle.reset()

    fixture.__doc__ = f"The {discover()[name].title} simulators, reset after the test."
    return pytest.fixture(name=f"{name}_sim")(fixture)


for _name in discover():
    globals()[f"_{_name}_sim"] = _fixture(_name)
