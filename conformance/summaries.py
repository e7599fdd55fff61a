"""What a CI system shows of a run (docs/sut-contract.md §7): a Markdown summary (the requirement
matrix, each failure with its first reproducer, the report's path) appended to
``--summary-md`` and to ``$GITHUB_STEP_SUMMARY``, and ``ctrf.json`` (the Common Test Report
Format, https://ctrf.io) beside ``junit.xml``. Also the pruning of old run folders
(``--keep-reports=N``).

Every file is built from the report's data, already made safe and small.
"""

from __future__ import annotations

import datetime
import json
import os
import re
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Any

__all__ = ["ctrf", "markdown_summary", "prune_runs", "summary_targets", "write_summaries"]

CTRF_STATUS = {
    "pass": "passed",
    "fail": "failed",
    "error": "failed",
    "warn": "other",
    "not-verified": "skipped",
    "waived": "skipped",
}
MARK = {"pass": "✅", "fail": "❌", "error": "💥", "warn": "⚠️", "not-verified": "➖", "waived": "🏳️"}
SUMMARY_LIMIT = 60_000  # characters: GitHub shows at most 1 MiB of step summaries per step
_RUN_FOLDER = re.compile(r"^\d{8}T\d{6}Z-[0-9a-f]{4}$")


def summary_targets(option: str | None) -> list[Path]:
    """Where the Markdown summary goes: ``--summary-md`` and ``$GITHUB_STEP_SUMMARY``."""
    targets = [Path(option)] if option else []
    if step := os.environ.get("GITHUB_STEP_SUMMARY"):
        targets.append(Path(step))
    return list(dict.fromkeys(targets))


def _cell(text: object, limit: int = 160) -> str:
    """Text made safe in a Markdown table cell: one line, no pipes or HTML, bounded."""
    flat = " ".join(str(text).split())
    flat = flat if len(flat) <= limit else flat[:limit] + "…"
    return flat.replace("\\", "\\\\").replace("|", "\\|").replace("<", "&lt;").replace(">", "&gt;")


def _fence(text: str) -> str:
    longest = max((len(m) for m in re.findall(r"`+", text)), default=0)
    ticks = "`" * max(3, longest + 1)
    return f"{ticks}sh\n{text}\n{ticks}"


def markdown_summary(data: dict[str, Any], report_path: str | Path) -> str:
    """The run in Markdown: the decision, the counts, the matrix, the failures."""
    gate = data.get("gate") or {}
    sut = data.get("sut", {})
    passed = gate.get(
        "passed", not any(r["verdict"] in ("fail", "error") for r in data["requirements"])
    )
    lines = [
        f"## Conformance: {_cell(sut.get('name', 'sut'))} — {'pass' if passed else 'FAIL'}",
        "",
        " · ".join(f"{MARK.get(v, '')} {v} {n}" for v, n in data.get("summary", {}).items()),
        "",
    ]
    if data.get("startup_error"):
        lines += ["The run could not start:", "", _fence(str(data["startup_error"])[:2000]), ""]
    if gate.get("blocking"):
        lines.append(f"**Fails the run:** {', '.join(gate['blocking'])}")
    if gate.get("expired_waivers"):
        lines.append(f"**Expired waivers (renew or remove):** {', '.join(gate['expired_waivers'])}")
    base = gate.get("baseline")
    if base:
        lines.append(f"Baseline run {_cell(base['run_id'])}: {_cell(base['note'], 300)}.")
        for key, label in (("regressions", "Regressions"), ("improvements", "Improvements"),
                           ("known_failures", "Known failures")):  # fmt: skip
            if base.get(key):
                lines.append(f"- {label}: {', '.join(base[key])}")
    for w in gate.get("waivers", []):
        if w["status"] != "applied":
            lines.append(f"- Waiver {w['id']} (until {w['expires']}): {_cell(w['status'])}")
    lines += ["", "| Requirement | Level | Verdict | Why |", "|---|---|---|---|"]
    for r in data["requirements"]:
        lines.append(
            f"| {_cell(r['id'])} | {_cell(r['level'])} | {MARK.get(r['verdict'], '')} "
            f"{_cell(r['verdict'])} | {_cell(r['reason'])} |"
        )
    failures = [r for r in data["requirements"] if r["verdict"] in ("fail", "error", "waived")]
    if failures:
        lines += ["", "### Failures"]
    for r in failures:
        lines += ["", f"**{_cell(r['id'])}** ({_cell(r['verdict'])}): {_cell(r['reason'], 500)}"]
        repro = next(
            (
                c["reproduce"][0]
                for c in r["checks"]
                if c["outcome"] in ("fail", "error") and c["reproduce"]
            ),
            None,
        )
        if repro:
            lines += ["", "Reproduce (from the report's folder):", "", _fence(repro[:4000])]
    lines += ["", f"Report: `{_cell(report_path, 500)}`", ""]
    text = "\n".join(lines)
    if len(text) > SUMMARY_LIMIT:
        text = text[:SUMMARY_LIMIT] + f"\n\n… summary cut; the full report: `{report_path}`\n"
    return text


def ctrf(data: dict[str, Any]) -> dict[str, Any]:
    """The run as a CTRF document: one test per requirement, its verdict mapped to a status
    (``waived`` and ``not-verified`` are ``skipped``, ``warn`` is ``other``; ``rawStatus``
    keeps the verdict)."""
    start = datetime.datetime.fromisoformat(data["started_at"])
    start_ms = int(start.timestamp() * 1000)
    tests = []
    for r in data["requirements"]:
        test: dict[str, Any] = {
            "name": f"{r['id']} {r['statement']}"[:300],
            "status": CTRF_STATUS.get(r["verdict"], "other"),
            "rawStatus": r["verdict"],
            "duration": int(sum(c.get("duration_s", 0) for c in r["checks"]) * 1000),
            "suite": [r["vendor"]],
            "labels": {"requirement": r["id"], "level": r["level"]},
        }
        if r["verdict"] != "pass":
            test["message"] = str(r["reason"])[:2000]
        tests.append(test)
    counts = {
        s: sum(t["status"] == s for t in tests)
        for s in ("passed", "failed", "skipped", "pending", "other")
    }
    duration_ms = int(float(data.get("duration_s") or 0) * 1000)
    run = data.get("run") or {}
    tool = run.get("tool", {})
    return {
        "reportFormat": "CTRF",
        "specVersion": "0.0.0",
        "generatedBy": str(tool.get("name", "conformance")),
        "results": {
            "tool": {"name": "pytest conformance", "version": str(tool.get("version", "unknown"))},
            "summary": {
                "tests": len(tests),
                **counts,
                "start": start_ms,
                "stop": start_ms + duration_ms,
                "duration": duration_ms,
            },
            "tests": tests,
            "extra": {"run_id": data["run_id"], "schema": data["schema"], "gate": data.get("gate")},
        },
    }


def write_summaries(data: dict[str, Any], paths: dict[str, Any], targets: Iterable[Path]) -> None:
    """``ctrf.json`` beside ``junit.xml`` (the run's folder and ``latest``), and the Markdown
    summary appended to each target."""
    latest = Path(paths["json"]).parent
    document = (json.dumps(ctrf(data), indent=1) + "\n").encode()
    for folder in {latest, Path(paths["run_dir"])}:
        (folder / "ctrf.json").write_bytes(document)
    text = markdown_summary(data, paths["index"])
    for target in targets:
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            with target.open("a", encoding="utf-8") as out:
                out.write(text + "\n")
        except OSError as exc:  # the run's verdicts stand; say why the summary is missing
            paths["lines"].append(f"  summary not written to {target}: {exc.strerror}")


def prune_runs(report_dir: Path, keep: int, *, current: Path) -> list[Path]:
    """Remove all but the newest ``keep`` run folders (never ``current``, ``latest`` or
    anything that is not a run folder); return what was removed."""
    runs = sorted(
        (
            p
            for p in report_dir.iterdir()
            if p.is_dir() and not p.is_symlink() and _RUN_FOLDER.match(p.name)
        ),
        key=lambda p: p.name,
        reverse=True,
    )
    removed = [p for p in runs[keep:] if p.resolve() != current.resolve()]
    for folder in removed:
        shutil.rmtree(folder, ignore_errors=True)
    return removed
