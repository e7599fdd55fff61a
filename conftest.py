"""Repository-wide pytest wiring for the project's own tests (tests/).

Hypothesis profiles: ``dev`` (the default: quick, random, remembers failures in .hypothesis/)
and ``ci`` (chosen when CI=true: deterministic, no database, so a CI failure is reproducible
from its printed seed). Pick one with ``--hypothesis-profile``. The conformance suite's own
campaign settings belong to the plugin (``conformance/fuzzing.py``), not here.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

ROOT = Path(__file__).resolve().parent
# pytester: tests that build a user's project (tests/sim/test_sim_fixtures.py).
# ``@pytest.mark.sim("SIM-…")`` and ``--fidelity-report=PATH``: simulator fidelity traceability.
pytest_plugins = ["pytester", "tests.fidelity"]

settings.register_profile("dev", max_examples=100, deadline=None)
settings.register_profile(
    "ci",
    max_examples=100,
    deadline=None,
    derandomize=True,
    database=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile("ci" if os.environ.get("CI") == "true" else "dev")


def _missing(tool: str) -> bool:
    """A command on PATH, or a path (relative to the repository) that must exist."""
    if "/" in tool:
        return not (ROOT / tool).exists()
    return shutil.which(tool) is None


def pytest_runtest_setup(item: pytest.Item) -> None:
    """``@pytest.mark.external_tool("mosquitto_sub")``: a test that needs a program outside
    Python (installed by ``.ci/install-peers``). Missing, it is skipped on a developer's
    machine and fails under CI=true: CI never passes a test by not running it."""
    for marker in item.iter_markers("external_tool"):
        missing = [tool for tool in marker.args if _missing(tool)]
        if not missing:
            continue
        message = f"needs {', '.join(missing)}: run .ci/install-peers"
        if os.environ.get("CI") == "true":
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
