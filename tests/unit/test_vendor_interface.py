"""The vendor plug-in interface: generic modules name no vendor, the plugin stays lean, and every
vendor plug-in keeps to the interface."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

from conformance.catalogue import catalogue
from conformance.vendors import discover

ROOT = Path(__file__).resolve().parents[2]
# The modules every vendor goes through: they must not know any vendor.
GENERIC = sorted(
    {
        *(ROOT / "conformance").glob("*.py"),
        *(ROOT / "simulators").glob("*.py"),
        *(ROOT / "fixtures" / "reference_sut").glob("*.py"),
        ROOT / "tests" / "selftest" / "test_selftest.py",
    }
)
VENDOR_NAMES = sorted({r.vendor for r in catalogue().values()} - {"gen", "sim"} | set(discover()))
NAMED = re.compile(r"\b(" + "|".join(VENDOR_NAMES) + r")\b", re.IGNORECASE)


@pytest.mark.parametrize("path", GENERIC, ids=lambda p: str(p.relative_to(ROOT)))
def test_generic_module_names_no_vendor(path: Path) -> None:
    source = path.read_text()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom | ast.Import):
            modules = [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            modules += [alias.name for alias in node.names]
            for module in modules:
                parts = module.split(".")
                assert not set(parts) & set(VENDOR_NAMES), f"line {node.lineno} imports {module}"
    code_lines = [
        (number, line)
        for number, line in enumerate(source.splitlines(), 1)
        if not line.lstrip().startswith("#")
    ]
    named = [f"{number}: {line.strip()}" for number, line in code_lines if NAMED.search(line)]
    assert named == [], "a generic module names a vendor:\n" + "\n".join(named)


def test_the_plugin_imports_nothing_heavy() -> None:
    """pytest loads the plugin in every run of a user's environment: importing it (and
    declaring the options of every vendor) must not load the simulators or heavy libraries."""
    heavy = ["aiohttp", "pydantic", "jinja2", "hypothesis", "schemathesis", "simulators", "trustme"]
    code = (
        "import sys, pytest, conformance.plugin as p\n"
        "parser = pytest.Parser(_ispytest=True)\n"
        "p.pytest_addoption(parser)\n"
        f"print(sorted({{m.split('.')[0] for m in sys.modules}} & {set(heavy)!r}))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    ).stdout
    assert out.strip() == "[]", out


@pytest.mark.parametrize("name", list(discover()))
def test_vendor_plugin_keeps_to_the_interface(name: str) -> None:
    plugin = discover()[name]
    assert plugin.name == name and plugin.title
    options: list[str] = []
    plugin.add_options(lambda flag, **kwargs: options.append(flag))
    assert all(flag.startswith(f"--{name}-") for flag in options), options
    assert plugin.section_model().model_config.get("extra") == "forbid"
    assert any(r.vendor == name for r in catalogue().values()), "no requirement in the catalogue"
    assert (ROOT / "conformance" / name).is_dir() and (ROOT / "fixtures" / name).is_dir()


def test_installing_the_project_adds_no_top_level_fixtures_package(tmp_path: Path) -> None:
    """testing-cabal's `fixtures` is an established distribution: ours installs as
    `conformance_fixtures`, so nothing shadows it (run away from the repository's folder)."""
    code = "import importlib.util as u; print(u.find_spec('fixtures'), u.find_spec('conformance_fixtures') is not None)"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=tmp_path
    ).stdout.split()
    assert out == ["None", "True"], out
