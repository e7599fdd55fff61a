"""The distribution's layout (setup.py, pyproject.toml): every folder that ships files is a
listed package, so setuptools has no "Package would be ignored" warning to print, and every data
file under conformance/ and fixtures/ is matched by a package-data glob, so the wheel has it.

Reads setuptools' configuration without building anything (a wheel build takes a build
environment and writes build/ and *.egg-info)."""

from __future__ import annotations

import glob
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SOURCES = ("simulators", "conformance", "fixtures")

CONFIG = """
import json, setuptools
from distutils.core import run_setup
dist = run_setup("setup.py", stop_after="config")
print(json.dumps([dist.packages, dist.package_dir, dist.package_data]))
"""


def configuration() -> tuple[list[str], dict[str, str], dict[str, list[str]]]:
    out = subprocess.run(
        [sys.executable, "-c", CONFIG], capture_output=True, text=True, check=True, cwd=ROOT
    ).stdout
    packages, package_dir, package_data = json.loads(out.splitlines()[-1])
    return packages, package_dir, package_data


def folder(package: str, package_dir: dict[str, str]) -> Path:
    """Where setuptools takes `package` from (the longest package_dir prefix wins)."""
    parts = package.split(".")
    for n in range(len(parts), 0, -1):
        if (prefix := ".".join(parts[:n])) in package_dir:
            return ROOT / package_dir[prefix] / Path(*parts[n:])
    return ROOT / Path(*parts)


def folders() -> set[Path]:
    return {
        path
        for source in SOURCES
        for path in [ROOT / source, *(ROOT / source).rglob("*")]
        if path.is_dir()
        # what setuptools can ship: every part a package name (no __pycache__, .ruff_cache…)
        and all(part.isidentifier() for part in path.relative_to(ROOT).parts)
        and "__pycache__" not in path.parts
    }


def test_every_folder_is_a_listed_package() -> None:
    """A folder without __init__.py is still importable (a namespace package); unless listed,
    setuptools warns that it "would be ignored" when it ships files (templates/, broken/ ...)."""
    packages, package_dir, _ = configuration()
    listed = {folder(package, package_dir) for package in packages}
    unlisted = sorted(str(path.relative_to(ROOT)) for path in folders() - listed)
    assert not unlisted, unlisted
    assert not any(package.split(".")[0] == "fixtures" for package in packages), packages


def test_every_data_file_is_matched_by_package_data() -> None:
    packages, package_dir, package_data = configuration()
    shipped = {
        Path(match)
        for package, patterns in package_data.items()
        if package in packages
        for pattern in patterns
        for match in glob.glob(str(folder(package, package_dir) / pattern), recursive=True)
    }
    data = {
        path
        for source in ("conformance", "fixtures")
        for path in (ROOT / source).rglob("*")
        if path.is_file() and path.suffix not in {".py", ".pyc"}
    }
    assert data, "no data file found: the test looks in the wrong place"
    left_out = sorted(str(path.relative_to(ROOT)) for path in data - shipped)
    assert not left_out, left_out
