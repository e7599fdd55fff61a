"""The three report files (sut-contract.md §5): ``report.json``, ``junit.xml``, ``index.html``.

Each run writes ``<report-dir>/<run-id>/`` and refreshes ``<report-dir>/latest/`` with copies.
"""

from __future__ import annotations

import datetime
import json
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
from conformance.verdicts import OUTCOMES, CheckResult, requirement_verdict

__all__ = ["RunInfo", "build_report", "write_reports"]

SCHEMA = "conformance-report/1"


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
    run_events: list[dict[str, Any]] = field(default_factory=list)
    run_events_cut: int = 0
    evidence_dropped: int = 0
    observer_refused: dict[str, dict[str, int]] = field(default_factory=dict)


def build_report(info: RunInfo, results: list[CheckResult]) -> dict[str, Any]:
    requirements = []
    for req in for_vendors(info.vendors):
        checks = [r for r in results if req.id in r.requirement_ids]
        if info.startup_error is not None:
            verdict, reason = "error", f"the run could not start: {info.startup_error}"
        else:
            verdict, reason = requirement_verdict(req, checks)
        requirements.append(
            {
                "id": req.id,
                "level": req.level,
                "vendor": req.vendor,
                "verdict": verdict,
                "reason": reason,
                "statement": req.statement,
                "checks": [c.to_json() for c in checks],
            }
        )
    summary = Counter({o: 0 for o in OUTCOMES})
    summary.update(str(r["verdict"]) for r in requirements)
    return {
        "schema": SCHEMA,
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
        "startup_error": info.startup_error,
        "summary": dict(summary),
        "requirements": requirements,
        "run_timeline": {"events": info.run_events, "cut": info.run_events_cut},
        "evidence_dropped": info.evidence_dropped,
        "observer_refused": info.observer_refused,
    }


def write_reports(data: dict[str, Any], run_dir: Path, report_dir: Path) -> dict[str, Any]:
    """Write a report built by :func:`build_report`; refresh ``<report_dir>/latest``."""
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "report.json").write_text(json.dumps(data, indent=2) + "\n", "utf-8")
    (run_dir / "junit.xml").write_bytes(_junit(data))
    (run_dir / "index.html").write_text(_html(data), "utf-8")
    latest = report_dir / "latest"
    latest.mkdir(parents=True, exist_ok=True)
    for name in ("report.json", "junit.xml", "index.html"):
        shutil.copyfile(run_dir / name, latest / name)
    if data.get("startup_error"):
        first = str(data["startup_error"]).strip().splitlines()[0]
        lines = [f"  the run could not start, so every requirement is error: {first}"]
    else:
        lines = [
            f"  {r['verdict'].upper():13} {r['id']} ({r['level']}): {r['reason']}"
            for r in data["requirements"]
            if r["verdict"] != "pass"
        ]
    return {
        "summary": data["summary"],
        "lines": lines,
        "index": latest / "index.html",
        "json": latest / "report.json",
    }


def _junit(data: dict[str, Any]) -> bytes:
    checks = [(req, c) for req in data["requirements"] for c in req["checks"]]
    by_name: dict[str, tuple[list[dict[str, Any]], dict[str, Any]]] = {}
    for req, c in checks:
        by_name.setdefault(c["name"], ([], c))[0].append(req)
    counts = Counter(c["outcome"] for _, c in by_name.values())
    suite = ET.Element(
        "testsuite",
        name="conformance",
        tests=str(len(by_name)),
        failures=str(counts["fail"]),
        errors=str(counts["error"]),
        skipped=str(counts["not-verified"]),
        time=str(data["duration_s"]),
        timestamp=data["started_at"],
    )
    props = ET.SubElement(suite, "properties")
    ET.SubElement(props, "property", name="run_id", value=data["run_id"])
    ET.SubElement(props, "property", name="sut", value=str(data["sut"]["source"]))
    for name, (reqs, c) in by_name.items():
        classname, _, test = name.rpartition("::")
        case = ET.SubElement(
            suite,
            "testcase",
            classname=classname.replace("/", ".").removesuffix(".py"),
            name=test,
            time=str(c["duration_s"]),
        )
        cprops = ET.SubElement(case, "properties")
        for req in reqs:
            ET.SubElement(cprops, "property", name="requirement", value=req["id"])
            ET.SubElement(cprops, "property", name=f"level:{req['id']}", value=req["level"])
        ET.SubElement(cprops, "property", name="verdict", value=c["outcome"])
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
        if c["outcome"] == "fail":
            ET.SubElement(case, "failure", message=c["message"]).text = text
        elif c["outcome"] == "error":
            ET.SubElement(case, "error", message=c["message"]).text = text
        elif c["outcome"] == "not-verified":
            ET.SubElement(case, "skipped", message=f"not-verified: {c['message']}")
        elif c["outcome"] == "warn":
            ET.SubElement(case, "system-out").text = f"warning (SHOULD): {text}"
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
