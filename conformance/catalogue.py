"""The requirement catalogue, loaded from ``requirements.toml`` (the project's copy of
shared/spec/requirements.md)."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from functools import cache
from pathlib import Path

__all__ = ["RECEIVER_VENDORS", "VENDORS", "Requirement", "catalogue", "requirement"]

VENDORS = ("ivanti", "apple", "pelion")
RECEIVER_VENDORS = ("apple", "pelion")  # vendors whose SUT is a webhook receiver (--sut=URL)


@dataclass(frozen=True)
class Requirement:
    id: str
    level: str  # MUST | SHOULD
    vendor: str  # gen | ivanti | apple | pelion | sim
    statement: str
    source: str


@cache
def catalogue() -> dict[str, Requirement]:
    data = tomllib.loads((Path(__file__).parent / "requirements.toml").read_text("utf-8"))
    return {r["id"]: Requirement(**r) for r in data["requirement"]}


def requirement(rid: str) -> Requirement:
    try:
        return catalogue()[rid]
    except KeyError:
        raise KeyError(f"{rid} is not in conformance/requirements.toml") from None


def for_vendors(vendors: tuple[str, ...] | list[str]) -> list[Requirement]:
    """Every SUT requirement of these vendors, GEN first, in catalogue order."""
    wanted = {"gen", *vendors}
    return [r for r in catalogue().values() if r.vendor in wanted]
