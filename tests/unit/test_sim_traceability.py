"""Simulator fidelity traceability (tests/fidelity.py): every SIM-* requirement of the catalogue
has at least one test marked ``@pytest.mark.sim("SIM-…")`` in tests/sim or tests/unit, and
``--fidelity-report`` writes the report of what ran."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conformance.catalogue import catalogue
from tests.fidelity import status_of

ROOT = Path(__file__).resolve().parents[2]
TEST_DIRS = (ROOT / "tests" / "sim", ROOT / "tests" / "unit")


def _sim_marks(tree: ast.AST) -> set[str]:
    """The IDs of every ``pytest.mark.sim(...)`` call in a module (decorators, pytestmark)."""
    found: set[str] = set()
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "sim"
            and isinstance(node.func.value, ast.Attribute)
            and node.func.value.attr == "mark"
        ):
            found.update(
                a.value
                for a in node.args
                if isinstance(a, ast.Constant) and isinstance(a.value, str)
            )
    return found


def marked_ids() -> dict[str, list[str]]:
    """SIM ID → the test modules that mark a test with it."""
    by_id: dict[str, list[str]] = {}
    for folder in TEST_DIRS:
        for path in sorted(folder.glob("test_*.py")):
            for rid in _sim_marks(ast.parse(path.read_text(), str(path))):
                by_id.setdefault(rid, []).append(path.relative_to(ROOT).as_posix())
    return by_id


def test_every_sim_requirement_has_a_marked_test() -> None:
    """Only IDs in the catalogue without a marked test fail this (a mark whose catalogue entry
    is not merged yet does not)."""
    sims = sorted(rid for rid, r in catalogue().items() if r.vendor == "sim")
    assert "SIM-PEL-PULL" in sims
    marked = marked_ids()
    untested = [rid for rid in sims if rid not in marked]
    assert not untested, (
        f"SIM requirement(s) with no test marked @pytest.mark.sim(...): {', '.join(untested)}"
    )


def test_the_fidelity_report_lists_every_sim_id_with_its_tests(tmp_path: Path) -> None:
    """One marked unit test run with --fidelity-report: its SIM ID passed with that test, every
    other SIM ID flagged untested, in the JSON and the Markdown."""
    target = (
        "tests/unit/test_ivanti_events.py::test_metadata_matches_the_vendor_examples_in_both_styles"
    )
    out = tmp_path / "fidelity.json"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", target, "-q", "-p", "no:cacheprovider",
         f"--fidelity-report={out}"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    report = json.loads(out.read_text())
    assert report["schema"] == "fidelity-report/1"
    rows = {r["id"]: r for r in report["requirements"]}
    assert set(rows) == {rid for rid, r in catalogue().items() if r.vendor == "sim"}
    meta = rows.pop("SIM-IVT-META")
    assert meta["status"] == "passed"
    assert meta["tests"] == [{"test": target, "outcome": "passed"}]
    assert {r["status"] for r in rows.values()} == {"untested"}
    page = out.with_suffix(".md").read_text()
    assert "| SIM-IVT-META | passed |" in page and "| SIM-PEL-PULL | **untested** |" in page
    assert "fidelity report:" in proc.stdout


@pytest.mark.parametrize(
    ("outcomes", "status"),
    [([], "untested"), (["passed", "skipped"], "passed"), (["skipped"], "not-run"),
     (["passed", "failed"], "failed")],
)  # fmt: skip
def test_a_sim_id_status_follows_its_tests(outcomes: list[str], status: str) -> None:
    assert status_of(outcomes) == status
