"""Repository-wide pytest wiring for the project's own tests (tests/).

Hypothesis profiles: ``dev`` (the default: quick, random, remembers failures in .hypothesis/)
and ``ci`` (chosen when CI=true: deterministic, no database, so a CI failure is reproducible
from its printed seed). Pick one with ``--hypothesis-profile``. The conformance suite's own
campaign settings belong to the plugin (``conformance/fuzzing.py``), not here.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

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
