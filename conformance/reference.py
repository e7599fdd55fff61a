"""The bundled reference SUT's manifest: ``fixtures/reference_sut/sut.toml`` plus each vendor's
part, ``fixtures/<vendor>/reference.toml`` (arguments for the command, variables for its
environment, and the vendor's section), so adding a vendor touches only its own folders."""

from __future__ import annotations

import importlib.util
import tomllib
from pathlib import Path
from typing import Any

from conformance.manifest import ManifestError, SutManifest, parse_manifest
from conformance.vendors import discover

__all__ = ["fixtures_dir", "reference_manifest"]


def fixtures_dir() -> Path:
    """Where the installed ``conformance_fixtures`` package (the repository's fixtures/) is."""
    spec = importlib.util.find_spec("conformance_fixtures")
    if spec is None or not spec.submodule_search_locations:
        raise ManifestError(
            "the bundled fixtures (conformance_fixtures) are not installed: "
            "pip install -e . from the repository, or give --sut"
        )
    return Path(next(iter(spec.submodule_search_locations)))


def reference_manifest() -> SutManifest:
    base = fixtures_dir() / "reference_sut" / "sut.toml"
    raw: dict[str, Any] = tomllib.loads(base.read_text("utf-8"))
    process = raw["process"]
    for name in discover():
        part_file = fixtures_dir() / name / "reference.toml"
        if not part_file.is_file():
            continue
        part = tomllib.loads(part_file.read_text("utf-8"))
        process["command"] = [*process["command"], *part.pop("args", [])]
        process["env"] = {**process.get("env", {}), **part.pop("env", {})}
        if set(part) != {name}:
            raise ManifestError(
                f"{part_file}: holds args, env and [{name}] only, not {sorted(part)}"
            )
        raw[name] = part[name]
    return parse_manifest(raw, base)
