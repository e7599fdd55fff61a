"""The three report files (docs/sut-contract.md §5): ``report.json``, ``junit.xml``,
``index.html``.

Each run writes ``<report-dir>/<run-id>/`` and refreshes ``<report-dir>/latest/`` with copies
(and ``bodies/``, the request bodies reproducers send). Whatever the SUT sent, every file is
valid and small: text is made safe once, before any file is written (characters XML 1.0 and
HTML forbid, and lone surrogates, become visible ``\\xNN`` escapes), and evidence is kept within
a byte budget, failing checks first.
"""

from __future__ import annotations

import datetime
import json
import re
import shlex
import shutil
import time
import xml.etree.ElementTree as ET
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2
import markupsafe

from conformance.catalogue import for_vendors
from conformance.gate import Baseline, Waiver, apply_gate, gate_lines
from conformance.text import brief, printable
from conformance.verdicts import NO_CHECK_RAN, OUTCOMES, CheckResult, requirement_verdict

__all__ = ["RunInfo", "build_report", "write_reports"]

# /2 adds the verdict ``waived``, ``"run"`` (provenance) and ``"gate"``; readers take both.
SCHEMA = "conformance-report/2"
VERDICTS = (*OUTCOMES, "waived")
FILE_LIMIT_BYTES = 900_000  # each report file, whatever the SUT did
TEXT_LIMIT = 300  # characters of an evidence summary or detail value
REPRODUCER_LIMIT = 16_000  # characters of a reproducer command kept in a report
TERMINAL_COMMAND_LIMIT = 240  # characters of a reproducer the terminal prints as it is
_ALLOWANCE = {"error": 60, "fail": 60, "warn": 30, "not-verified": 20, "pass": 12}
_CUT = re.compile(r"… \((\d+) characters\)$")  # what _short leaves of a long text
STARTUP_ERROR_LIMIT = 8_000  # characters of why a run could not start, kept once


@dataclass(frozen=True)
class RunInfo:
    """What the report says about the run itself."""

    run_id: str
    started_at: float  # wall-clock epoch seconds
    sut_name: str
    sut_source: str
    vendors: tuple[str, ...]
    titles: dict[str, str] = field(default_factory=dict)  # vendor -> report title
    launched: bool = False
    strict: bool = False
    slow: bool = False
    simulated_s: float | None = None
    sut_log_tail: str = ""
    startup_error: str | None = None  # the run could not start: every requirement is `error`
    interrupted: str | None = None  # the run was stopped (Ctrl-C, SIGTERM): how far it got
    not_run: list[str] = field(default_factory=list)  # the checks an interruption kept from running
    run_events: list[dict[str, Any]] = field(default_factory=list)
    run_events_cut: int = 0
    evidence_dropped: int = 0
    observer_refused: dict[str, dict[str, int]] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)  # the report's "run"
    waivers: tuple[Waiver, ...] = ()
    baseline: Baseline | None = None
    exploration: list[dict[str, Any]] = field(default_factory=list)  # --explore, --replay


def build_report(info: RunInfo, results: list[CheckResult]) -> dict[str, Any]:
    """The report's data: every requirement of the run's vendors with one verdict, text made
    safe, evidence within budget."""
    data: dict[str, Any] = _safe(_fitted(_build(info, results), 1.0))
    return data


def _build(info: RunInfo, results: list[CheckResult]) -> dict[str, Any]:
    requirements = []
    for req in for_vendors(info.vendors):
        checks = [r for r in results if req.id in r.requirement_ids]
        if info.startup_error is not None:  # its whole text once, below; its start here
            first = info.startup_error.strip().splitlines()[0] if info.startup_error.strip() else ""
            verdict, reason = "error", f"the run could not start: {brief(first, TEXT_LIMIT)}"
        else:
            verdict, reason = requirement_verdict(req, checks)
            if not checks and info.interrupted is not None:
                reason = "the run was interrupted before any check of this requirement ran"
            if verdict == "pass":
                observed = [c.observed for c in checks if c.outcome == "pass" and c.observed]
                reason = observed[0] if len(observed) == 1 else reason
                if len(observed) > 1:
                    reason = f"{len(checks)} checks; e.g. {observed[0]}"
        requirements.append(
            {
                "id": req.id,
                "level": req.level,
                "vendor": req.vendor,
                "verdict": verdict,
                "reason": reason,
                "statement": req.statement,
                "source": req.source,  # where it comes from (docs/requirements.md §6)
                "checks": [c.to_json() for c in checks],
            }
        )
    gate = apply_gate(
        requirements,
        waivers=info.waivers,
        baseline=info.baseline,
        catalogue_digest=info.provenance.get("catalogue", {}).get("digest"),
        today=datetime.datetime.fromtimestamp(info.started_at, datetime.UTC).date(),
    )
    summary = Counter({o: 0 for o in VERDICTS})
    summary.update(str(r["verdict"]) for r in requirements)
    return {
        "schema": SCHEMA,
        "run": info.provenance,
        "gate": gate,
        "run_id": info.run_id,
        "started_at": datetime.datetime.fromtimestamp(info.started_at, datetime.UTC).isoformat(),
        "duration_s": round(time.time() - info.started_at, 3),
        "simulated_s": None if info.simulated_s is None else round(info.simulated_s, 3),
        "sut": {
            "name": info.sut_name,
            "source": info.sut_source,
            "vendors": list(info.vendors),
            "launched": info.launched,
            "log_tail": info.sut_log_tail,
        },
        "vendors": {v: info.titles.get(v, v) for v in info.vendors},
        "options": {"strict": info.strict, "slow": info.slow},
        "startup_error": (
            brief(info.startup_error, STARTUP_ERROR_LIMIT)
            if info.startup_error is not None
            else None
        ),
        "interrupted": info.interrupted,
        "not_run": {
            "count": len(info.not_run),
            "first": [brief(n, 200) for n in info.not_run[:20]],
        },
        "summary": dict(summary),
        "requirements": requirements,
        "run_timeline": {"events": info.run_events, "cut": info.run_events_cut},
        "evidence_dropped": info.evidence_dropped,
        "observer_refused": info.observer_refused,
        "exploration": info.exploration,
    }


def _safe(value: Any) -> Any:
    """Every string made printable and encodable: forbidden characters become ``\\xNN``."""
    if isinstance(value, str):
        return printable(value)
    if isinstance(value, dict):
        return {_safe(k): _safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_safe(v) for v in value]
    return value


def _fitted(data: dict[str, Any], scale: float) -> dict[str, Any]:
    """A copy of ``data`` whose evidence keeps each check's first and last events (more for
    failing checks, ``scale`` times the usual allowance) and whose long texts are trimmed;
    what was left out is counted."""
    data = {**data, "requirements": [dict(r) for r in data["requirements"]]}
    data["run_timeline"] = dict(data["run_timeline"])
    limit = max(60, int(TEXT_LIMIT * min(1.0, scale * 2)))
    for req in data["requirements"]:
        req["checks"] = [dict(c) for c in req["checks"]]
        for c in req["checks"]:
            full = c["evidence"]
            allowance = max(2, int(_ALLOWANCE[c["outcome"]] * scale))
            kept = [_trim_event(e, limit) for e in _ends(full, allowance)]
            c["evidence_cut"] = c.get("evidence_cut", 0) + len(full) - len(kept)
            c["evidence"] = kept
            for key in ("message", "expected", "observed"):
                if isinstance(c.get(key), str):
                    c[key] = _short(c[key], limit * 4)
            c["notes"] = [_short(n, limit * 2) for n in c["notes"]]
            # Whole, so they can be pasted (the harness keeps them short: a large body goes to
            # bodies/); only a runaway one is cut.
            c["reproduce"] = [_short(r, REPRODUCER_LIMIT) for r in c["reproduce"]]
    timeline = data["run_timeline"]
    events = timeline["events"]
    timeline["events"] = [_trim_event(e, limit) for e in _ends(events, max(10, int(200 * scale)))]
    timeline["cut"] += len(events) - len(timeline["events"])
    return data


def _ends(events: list[dict[str, Any]], keep: int) -> list[dict[str, Any]]:
    if len(events) <= keep:
        return events
    head = keep // 2
    return [*events[:head], *events[len(events) - (keep - head) :]]


def _trim_event(event: dict[str, Any], limit: int = TEXT_LIMIT) -> dict[str, Any]:
    """Every text of an event within ``limit`` characters: the SUT has a hand in its actor and
    peer (an MQTT client ID of 64 KB), its summary and every detail."""

    def trimmed(value: Any) -> Any:
        if isinstance(value, (int, float, bool, type(None))):
            return value
        return _short(value if isinstance(value, str) else json.dumps(value), limit)

    detail = event.get("detail")
    trimmed_event = {k: trimmed(v) for k, v in event.items() if k != "detail"}
    trimmed_event["summary"] = _short(str(event.get("summary", "")), limit)
    trimmed_event["detail"] = {_short(str(k), limit): trimmed(v) for k, v in (detail or {}).items()}
    return trimmed_event


def _short(text: str, limit: int = TEXT_LIMIT) -> str:
    return text if len(text) <= limit else text[:limit] + f"… ({len(text)} characters)"


def _render(data: dict[str, Any]) -> dict[str, bytes]:
    """The three files, each under :data:`FILE_LIMIT_BYTES`: evidence and long texts shrink
    until they fit."""
    scale = 1.0
    while True:
        fitted = _fitted(data, scale)
        files = {
            "report.json": (json.dumps(fitted, indent=1) + "\n").encode(),
            "junit.xml": _junit(fitted),
            "index.html": _html(fitted).encode(),
        }
        if max(map(len, files.values())) <= FILE_LIMIT_BYTES:
            return files
        if scale < 0.01:
            break
        scale /= 2
    for keep_checks in (True, False):  # still too large: the skeleton always fits
        bare = _bare(_fitted(data, scale), keep_checks)
        files = {
            "report.json": (json.dumps(bare, indent=1) + "\n").encode(),
            "junit.xml": _junit(bare),
            "index.html": _html(bare).encode(),
        }
        if max(map(len, files.values())) <= FILE_LIMIT_BYTES:
            break
    return files


def _bare(data: dict[str, Any], keep_checks: bool) -> dict[str, Any]:
    """The report when even the smallest evidence does not fit: no evidence, no timeline, every
    text of a check short; without ``keep_checks`` no check either, only the requirements'
    verdicts and reasons (a run of thousands of checks). What was cut is counted."""
    data = {**data, "requirements": [dict(r) for r in data["requirements"]]}
    cut = len(data["run_timeline"]["events"]) + data["run_timeline"]["cut"]
    data["run_timeline"] = {"events": [], "cut": cut}
    data["sut"] = {**data["sut"], "log_tail": _short(str(data["sut"]["log_tail"]), 2_000)}
    if isinstance(data.get("startup_error"), str):
        data["startup_error"] = _short(data["startup_error"], 2_000)
    data["evidence_cut_to_fit"] = True
    for req in data["requirements"]:
        req["reason"] = _short(str(req["reason"]), TEXT_LIMIT)
        if not keep_checks:
            req["checks_cut"] = len(req["checks"])
            req["checks"] = []
            continue
        checks = []
        for c in req["checks"]:
            c = {k: _short(v, 120) if isinstance(v, str) else v for k, v in c.items()}
            c["evidence_cut"] = c.get("evidence_cut", 0) + len(c["evidence"])
            c.update(evidence=[], notes=[], reproduce=c["reproduce"][:1])
            c["reproduce"] = [_short(r, 500) for r in c["reproduce"]]
            checks.append(c)
        req["checks"] = checks
    return data


def write_reports(data: dict[str, Any], run_dir: Path, report_dir: Path) -> dict[str, Any]:
    """Write a report built by :func:`build_report`; refresh ``<report_dir>/latest``."""
    run_dir.mkdir(parents=True, exist_ok=True)
    for name, content in _render(data).items():
        (run_dir / name).write_bytes(content)
    latest = report_dir / "latest"
    latest.mkdir(parents=True, exist_ok=True)
    for name in ("report.json", "junit.xml", "index.html"):
        shutil.copyfile(run_dir / name, latest / name)
    for folder in ("bodies", "reproducers", "scenarios"):  # `curl … @bodies/…`, scripts, replays
        shutil.rmtree(latest / folder, ignore_errors=True)
        if (run_dir / folder).is_dir():
            shutil.copytree(run_dir / folder, latest / folder)
    interrupted = data.get("interrupted")
    lines = [f"  INTERRUPTED: {_line(interrupted)}"] if interrupted else []
    if data.get("startup_error"):
        first = brief((str(data["startup_error"]).strip().splitlines() or [""])[0], TEXT_LIMIT)
        lines = [f"  the run could not start, so every requirement is error: {first}"]
    else:
        unselected = [r["id"] for r in data["requirements"] if r["reason"] == NO_CHECK_RAN]
        for r in data["requirements"]:
            if r["verdict"] == "pass" or r["reason"] == NO_CHECK_RAN:
                continue
            lines.append(
                f"  {r['verdict'].upper():13} {r['id']} ({r['level']}): {_line(r['reason'])}"
            )
            failing = [
                c for c in r["checks"] if c["outcome"] in ("fail", "error") and c["reproduce"]
            ]
            if failing and r["verdict"] in ("fail", "error"):
                command = _pasteable(failing[0]["reproduce"][0], r["id"], run_dir, latest)
                lines.append(f"                reproduce: {command}")
        if unselected:  # e.g. -k APL-AUTH-01: one line, not one per requirement
            lines.append(
                f"  NOT-VERIFIED  {len(unselected)} requirement(s) had no check in this run "
                f"(not selected, e.g. by -k): {_line(', '.join(unselected), 160)}"
            )
    lines += gate_lines(data["gate"])
    return {
        "summary": data["summary"],
        "gate": data["gate"],
        "run_dir": run_dir,
        "lines": lines,
        "index": latest / "index.html",
        "json": latest / "report.json",
    }


def _pasteable(command: str, requirement_id: str, run_dir: Path, latest: Path) -> str:
    """A reproducer as the terminal shows it, never cut: a long or multi-line one is written to
    ``reproducers/<id>.sh`` beside the report (and in ``latest``) and the terminal names it; one
    the report itself had to cut is pointed to on the report's page."""
    if cut := _CUT.search(command):
        return f"(a command of {cut.group(1)} characters, too long to keep: see the report's page)"
    if len(command) <= TERMINAL_COMMAND_LIMIT and "\n" not in command:
        return command
    name = f"reproducers/{requirement_id}.sh"
    script = f"#!/bin/sh\n# {requirement_id}: run from the report's folder\n{command}\n"
    for folder in (run_dir, latest):
        (folder / "reproducers").mkdir(exist_ok=True)
        (folder / name).write_text(script)
    return f"(cd {shlex.quote(str(run_dir))} && sh {name})"


def _line(text: str, limit: int = 240) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[:limit] + "…"


def _junit(data: dict[str, Any]) -> bytes:
    checks = [(req, c) for req in data["requirements"] for c in req["checks"]]
    by_name: dict[str, tuple[list[dict[str, Any]], dict[str, Any]]] = {}
    for req, c in checks:
        by_name.setdefault(c["name"], ([], c))[0].append(req)
    counts = Counter(c["outcome"] for _, c in by_name.values())
    waived_checks = sum(
        c["outcome"] == "fail" and all(r["verdict"] == "waived" for r in reqs)
        for reqs, c in by_name.values()
    )
    interrupted = data.get("interrupted")
    suite = ET.Element(
        "testsuite",
        name="conformance",
        tests=str(len(by_name) + bool(interrupted)),
        failures=str(counts["fail"] - waived_checks),
        errors=str(counts["error"] + bool(interrupted)),
        skipped=str(counts["not-verified"] + waived_checks),
        time=str(data["duration_s"]),
        timestamp=data["started_at"],
    )
    props = ET.SubElement(suite, "properties")
    ET.SubElement(props, "property", name="run_id", value=data["run_id"])
    ET.SubElement(props, "property", name="sut", value=str(data["sut"]["source"]))
    for name, (reqs, c) in by_name.items():
        waived = c["outcome"] == "fail" and all(r["verdict"] == "waived" for r in reqs)
        classname, _, test = name.rpartition("::")
        case = ET.SubElement(
            suite,
            "testcase",
            classname=classname.replace("/", ".").removesuffix(".py"),
            name=f"{' '.join(r['id'] for r in reqs)} {test}",  # CI lists show the IDs
            time=str(c["duration_s"]),
        )
        cprops = ET.SubElement(case, "properties")
        for req in reqs:
            ET.SubElement(cprops, "property", name="requirement", value=req["id"])
            ET.SubElement(cprops, "property", name=f"level:{req['id']}", value=req["level"])
        ET.SubElement(
            cprops, "property", name="verdict", value="waived" if waived else c["outcome"]
        )
        text = "\n".join(
            x
            for x in (
                c["message"],
                c["expected"] and f"expected: {c['expected']}",
                c["observed"] and f"observed: {c['observed']}",
                *c["reproduce"],
            )
            if x
        )
        if waived:  # the team knows: not a failure of this run, the reason shown
            reasons = "; ".join(
                f"{r['id']} until {r['waiver']['expires']}: {r['waiver']['reason']}" for r in reqs
            )
            ET.SubElement(case, "skipped", message=f"waived: {reasons}").text = text
        elif c["outcome"] == "fail":
            ET.SubElement(case, "failure", message=c["message"]).text = text
        elif c["outcome"] == "error":
            ET.SubElement(case, "error", message=c["message"]).text = text
        elif c["outcome"] == "not-verified":
            ET.SubElement(case, "skipped", message=f"not-verified: {c['message']}")
        elif c["outcome"] == "warn":
            ET.SubElement(case, "system-out").text = f"warning (SHOULD): {text}"
    if interrupted:  # what did not run is not a pass: the run itself is an error
        not_run = data.get("not_run") or {"count": 0, "first": []}
        case = ET.SubElement(suite, "testcase", classname="conformance", name="run", time="0")
        ET.SubElement(case, "error", message=f"interrupted: {interrupted}").text = "\n".join(
            [f"{not_run['count']} check(s) did not run", *not_run["first"]]
        )
    ET.indent(suite)
    return bytes(ET.tostring(suite, encoding="utf-8", xml_declaration=True))


def _html(data: dict[str, Any]) -> str:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"),
        autoescape=jinja2.select_autoescape(["html", "j2"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["code"] = _backticks_to_code
    return env.get_template("report.html.j2").render(report=data)


def _backticks_to_code(text: str) -> markupsafe.Markup:
    """Catalogue statements quote wire names in `backticks`: show them as code."""
    parts = str(markupsafe.escape(text)).split("`")
    return markupsafe.Markup(
        "".join(f"<code>{p}</code>" if i % 2 else p for i, p in enumerate(parts))
    )
