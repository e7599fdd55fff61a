"""Hypothesis settings of the malformed-input campaigns, defined once for every vendor suite.

Two profiles, chosen with ``--fuzz-profile``: ``conformance`` (the default: a few examples, the
same ones every run, so verdicts are reproducible) and ``conformance-long`` (many more,
randomized and remembered in Hypothesis' example database, for a user fuzzing their parser).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from hypothesis import HealthCheck, given, settings

__all__ = ["campaign_settings", "negative_bodies", "register_profiles"]

_PROFILES = {
    "conformance": settings(
        max_examples=25,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
    ),
    "conformance-long": settings(
        max_examples=2_000,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    ),
}


def register_profiles() -> None:
    for name, profile in _PROFILES.items():
        settings.register_profile(name, profile)


def campaign_settings(profile: str, *, max_examples: int | None = None) -> settings:
    """The settings of one campaign; ``max_examples`` scales the profile's budget down for a
    campaign whose examples are expensive."""
    base = _PROFILES[profile]
    if max_examples is None:
        return base
    scale = base.max_examples / _PROFILES["conformance"].max_examples
    return settings(base, max_examples=max(1, int(max_examples * scale)))


def negative_bodies(
    openapi: dict[str, Any],
    path: str,
    method: str,
    *,
    keep: Callable[[Any], bool],
    campaign: settings | None = None,
) -> list[bytes]:
    """Schemathesis's schema-violating JSON request bodies for ``method path`` of ``openapi``
    (deterministic from run to run by default), without repeats; ``keep`` drops the ones that
    are valid after all (a schema cannot say everything the models check)."""
    import schemathesis  # a heavy import, only for the campaigns that use it
    from schemathesis import GenerationMode

    schema = schemathesis.openapi.from_dict(openapi)
    strategy = schema[path][method].as_strategy(generation_mode=GenerationMode.NEGATIVE)
    bodies: list[bytes] = []

    @(campaign or campaign_settings("conformance", max_examples=30))
    @given(strategy)
    def collect(case: Any) -> None:
        body = case.body
        is_json = isinstance(body, (dict, list, str, int, float, bool)) or body is None
        if is_json and keep(body):
            bodies.append(json.dumps(body).encode())

    collect()
    return list(dict.fromkeys(bodies))
