"""Hypothesis settings of the malformed-input campaigns, defined once for every vendor suite.

Two profiles, chosen with ``--fuzz-profile``: ``conformance`` (the default: a few examples, the
same ones every run, so verdicts are reproducible) and ``conformance-long`` (many more,
randomized and remembered in Hypothesis' example database, for a user fuzzing their parser).
"""

from __future__ import annotations

from hypothesis import HealthCheck, settings

__all__ = ["campaign_settings", "register_profiles"]

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
