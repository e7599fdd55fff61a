"""The requirement catalogue, loaded from ``requirements.toml`` (explained in
docs/requirements.md)."""

from __future__ import annotations

import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path

__all__ = ["Requirement", "by_design_not_verified", "catalogue", "for_vendors", "requirement"]


@dataclass(frozen=True)
class Requirement:
    id: str
    level: str  # MUST | SHOULD
    vendor: str  # gen | sim | a vendor plug-in's name
    statement: str
    source: str
    profile: str | None = None  # judged only when the SUT's section claims this profile
    slow: bool = False  # judged only with --slow


@cache
def catalogue() -> dict[str, Requirement]:
    data = tomllib.loads((Path(__file__).parent / "requirements.toml").read_text("utf-8"))
    return {r["id"]: Requirement(**r) for r in data["requirement"]}


def requirement(rid: str) -> Requirement:
    try:
        return catalogue()[rid]
    except KeyError:
        raise KeyError(f"{rid} is not in conformance/requirements.toml") from None


def for_vendors(vendors: Iterable[str]) -> list[Requirement]:
    """Every SUT requirement of these vendors, GEN first, in catalogue order."""
    wanted = {"gen", *vendors}
    ordered = sorted(catalogue().values(), key=lambda r: r.vendor != "gen")
    return [r for r in ordered if r.vendor in wanted]


def by_design_not_verified(profiles: Mapping[str, frozenset[str]], *, slow: bool) -> dict[str, str]:
    """The requirements of these vendors that a run cannot observe, with the reason: a profile
    the SUT does not claim (``profiles``: vendor -> claimed profiles), or a slow check without
    ``--slow``."""
    reasons: dict[str, str] = {}
    for req in for_vendors(profiles):
        if req.profile is not None and req.profile not in profiles.get(req.vendor, frozenset()):
            reasons[req.id] = (
                f"profile not declared: the SUT's [{req.vendor}] claims no {req.profile}"
            )
        elif req.slow and not slow:
            reasons[req.id] = (
                "slow check (waits for a long real-time timer of the SUT): run with --slow"
            )
    return reasons
