"""What produced a report (docs/sut-contract.md §7, the report's ``"run"``): the tool's version,
a digest of the requirement catalogue, every option that changes what the simulators do or how
hard the campaigns try, the SUT manifest's digest, and when the run started and ended.

Two reports with the same ``"run"`` (but for the times) come from the same tool, catalogue,
vendor variant and SUT description. Imported when a conformance run starts: the standard
library only.
"""

from __future__ import annotations

import datetime
import hashlib
import importlib.metadata
import platform
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

__all__ = ["DISTRIBUTION", "catalogue_digest", "manifest_digest", "run_options", "tool_version"]

DISTRIBUTION = "vendor-notification-conformance"
CATALOGUE = Path(__file__).resolve().parent / "requirements.toml"
# The plugin's own options that change the verdicts or the campaigns (ports and paths do not).
RUN_OPTIONS = ("--vendor", "--strict", "--slow", "--fuzz-profile", "--hypothesis-seed")


def _sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def tool_version() -> str:
    try:
        return importlib.metadata.version(DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        return "unknown (not installed)"


def catalogue_digest() -> str:
    """The catalogue file's digest: a baseline from another catalogue is compared with care."""
    return _sha256(CATALOGUE.read_bytes())


def manifest_digest(source: str, canonical: str) -> str:
    """The manifest file's digest when the SUT was described by one, else of ``canonical`` (the
    description the run built, e.g. from ``--sut=URL``)."""
    path = Path(source)
    if "://" not in source and path.is_file():
        return _sha256(path.read_bytes())
    return _sha256(canonical.encode())


def run_options(option: Callable[[str], Any], vendor_flags: Iterable[str]) -> dict[str, Any]:
    """Each option that changes the run, as given (``None``: the documented default)."""
    values: dict[str, Any] = {}
    for flag in (*RUN_OPTIONS, *vendor_flags):
        try:
            value = option(flag)
        except ValueError:  # an option of a pytest plugin that is not loaded
            continue
        values[flag] = (
            value if isinstance(value, (str, int, float, bool)) or value is None else str(value)
        )
    return values


def provenance(
    *,
    options: dict[str, Any],
    profiles: dict[str, list[str]],
    sut_source: str,
    sut_digest: str,
    started_at: float,
    ended_at: float,
) -> dict[str, Any]:
    """The report's ``"run"``."""
    import pytest

    from conformance.catalogue import catalogue

    def stamp(t: float) -> str:
        return datetime.datetime.fromtimestamp(t, datetime.UTC).isoformat(timespec="seconds")

    return {
        "tool": {"name": DISTRIBUTION, "version": tool_version()},
        "python": platform.python_version(),
        "pytest": pytest.__version__,
        "catalogue": {"digest": catalogue_digest(), "requirements": len(catalogue())},
        "options": options,
        "profiles": profiles,  # what each vendor section of the manifest claims
        "sut_manifest": {"source": sut_source, "digest": sut_digest},
        "started_at": stamp(started_at),
        "ended_at": stamp(ended_at),
    }
