"""Simulator fidelity traceability: the SIM-* requirements get what ``@requirement`` gives the SUT
checks.

A test of a simulator's fidelity names the SIM IDs it verifies with ``@pytest.mark.sim("SIM-…")``
(tests/sim, tests/unit). ``pytest tests/sim --fidelity-report=PATH`` writes ``PATH`` (JSON) and
``PATH`` with the suffix ``.md`` (Markdown): every SIM ID of ``conformance/requirements.toml``
with the outcome of each of its tests run, and a status per ID:

- ``passed``: every marked test that ran passed;
- ``failed``: a marked test failed (or errored);
- ``not-run``: marked tests were collected but none ran to a verdict (skipped, deselected);
- ``untested``: no collected test is marked with the ID (flagged).

Marks naming an ID that is not in the catalogue are listed as ``unknown`` (a typo, or a branch
whose catalogue entry is not merged yet). ``tests/unit/test_sim_traceability.py`` checks that
every SIM ID has at least one marked test in the repository.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pytest

from conformance.catalogue import catalogue

__all__ = ["FidelityReport", "sim_ids_of", "status_of"]

Outcome = Literal["passed", "failed", "skipped", "not-run"]
SCHEMA = "fidelity-report/1"


def sim_ids_of(item: pytest.Item) -> list[str]:
    """The SIM IDs ``item`` is marked with, in order, once each."""
    ids = [str(arg) for marker in item.iter_markers("sim") for arg in marker.args]
    return list(dict.fromkeys(ids))


@dataclass(eq=False)  # a plug-in: hashed by identity
class FidelityReport:
    """The ``--fidelity-report`` plug-in: collects marked tests' outcomes, writes the report."""

    path: Path
    marked: dict[str, list[str]] = field(default_factory=dict)  # node id → SIM IDs
    outcomes: dict[str, Outcome] = field(default_factory=dict)

    @pytest.hookimpl(trylast=True)
    def pytest_collection_finish(self, session: pytest.Session) -> None:
        for item in session.items:  # what runs, after -k / -m selection
            if ids := sim_ids_of(item):
                self.marked[item.nodeid] = ids

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.nodeid not in self.marked:
            return
        if report.failed:
            self.outcomes[report.nodeid] = "failed"
        elif report.skipped and self.outcomes.get(report.nodeid) != "failed":
            self.outcomes[report.nodeid] = "skipped"
        elif report.when == "call" and report.passed:
            self.outcomes.setdefault(report.nodeid, "passed")

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        report = self.build()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(json.dumps(report, indent=2) + "\n")
        self.path.with_suffix(".md").write_text(markdown(report))

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        report = self.build()
        untested = [r["id"] for r in report["requirements"] if r["status"] == "untested"]
        terminalreporter.write_line(
            f"fidelity report: {self.path} ({report['summary']})"
            + (f"; untested: {', '.join(untested)}" if untested else "")
        )

    def build(self) -> dict[str, Any]:
        """The report as JSON data (see the module docstring)."""
        sims = {rid: r for rid, r in catalogue().items() if r.vendor == "sim"}
        by_id: dict[str, list[dict[str, str]]] = {}
        for nodeid, ids in self.marked.items():
            for rid in ids:
                outcome = self.outcomes.get(nodeid, "not-run")
                by_id.setdefault(rid, []).append({"test": nodeid, "outcome": outcome})
        requirements: list[dict[str, Any]] = []
        for rid, req in sims.items():
            tests = by_id.get(rid, [])
            requirements.append(
                {
                    "id": rid,
                    "statement": req.statement,
                    "status": status_of([t["outcome"] for t in tests]),
                    "tests": tests,
                }
            )
        counts: dict[str, int] = {}
        for entry in requirements:
            counts[entry["status"]] = counts.get(entry["status"], 0) + 1
        unknown = {rid: tests for rid, tests in by_id.items() if rid not in sims}
        return {
            "schema": SCHEMA,
            "summary": ", ".join(f"{n} {status}" for status, n in sorted(counts.items())),
            "counts": counts,
            "requirements": requirements,
            "unknown": [{"id": rid, "tests": tests} for rid, tests in sorted(unknown.items())],
        }


def status_of(outcomes: list[str]) -> str:
    if not outcomes:
        return "untested"
    if "failed" in outcomes:
        return "failed"
    if "passed" not in outcomes:
        return "not-run"
    return "passed"


def markdown(report: dict[str, Any]) -> str:
    """A short Markdown page of the report: one row per SIM ID, the untested ones flagged."""
    lines = [
        "# Simulator fidelity",
        "",
        f"{report['summary']}.",
        "",
        "| SIM ID | status | tests (outcome) |",
        "|---|---|---|",
    ]
    for entry in report["requirements"]:
        status = entry["status"]
        flag = f"**{status}**" if status in ("untested", "failed") else status
        tests = "<br>".join(f"`{t['test']}` ({t['outcome']})" for t in entry["tests"]) or "—"
        lines.append(f"| {entry['id']} | {flag} | {tests} |")
    if report["unknown"]:
        lines += ["", "Marked with IDs not in the catalogue:", ""]
        lines += [f"- {u['id']}: {len(u['tests'])} test(s)" for u in report["unknown"]]
    return "\n".join(lines) + "\n"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--fidelity-report",
        metavar="PATH",
        default=None,
        help="write the simulator fidelity report (SIM-* IDs and their marked tests' outcomes) "
        "to PATH (JSON) and PATH with the suffix .md (Markdown)",
    )


def pytest_configure(config: pytest.Config) -> None:
    path = config.getoption("--fidelity-report")
    if path:
        config.pluginmanager.register(FidelityReport(Path(path)), "fidelity-report")
