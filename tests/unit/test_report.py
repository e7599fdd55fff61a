"""conformance.verdicts and conformance.report: verdict rules and the three report files."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from conformance.catalogue import catalogue, for_vendors, requirement
from conformance.plugin import RunState
from conformance.report import RunInfo, build_report, write_reports
from conformance.results import record_result
from conformance.verdicts import NO_REPRODUCER, Check, CheckResult, requirement_verdict


def result(outcome: str, *ids: str, message: str = "m") -> CheckResult:
    return CheckResult(
        name=f"conformance/x.py::t_{outcome}",
        requirement_ids=list(ids),
        outcome=outcome,
        message=message,
    )


def test_catalogue_matches_the_agreed_ids() -> None:
    ids = set(catalogue())
    assert {
        "GEN-LIVE-01",
        "GEN-OBS-01",
        "APL-API-04",
        "IVT-PUB-01",
        "PEL-WS-07",
        "SIM-PEL-WS",
    } <= ids
    assert requirement("APL-LAT-02").level == "SHOULD"
    assert [r.vendor for r in for_vendors(["apple"])][:2] == ["gen", "gen"]
    assert all(r.vendor in ("gen", "apple") for r in for_vendors(["apple"]))


@pytest.mark.parametrize(
    "outcomes, verdict",
    [
        ([], "not-verified"),  # never passes by default
        (["pass"], "pass"),
        (["pass", "fail"], "fail"),
        (["pass", "not-verified"], "pass"),
        (["not-verified", "not-verified"], "not-verified"),
        (["warn", "pass"], "warn"),
        (["fail", "error"], "error"),
    ],
)
def test_requirement_verdict(outcomes: list[str], verdict: str) -> None:
    req = requirement("APL-DUP-01")
    assert requirement_verdict(req, [result(o, req.id) for o in outcomes])[0] == verdict


def run_info(**overrides: Any) -> RunInfo:
    fields: dict[str, Any] = {
        "run_id": "run-1",
        "started_at": 0.0,
        "sut_name": "https://127.0.0.1:1/n",
        "sut_source": "https://127.0.0.1:1/n",
        "vendors": ("apple",),
        "titles": {"apple": "Apple Apps and Books notifications"},
        "simulated_s": 360.0,
    }
    return RunInfo(**{**fields, **overrides})


def test_report_files(tmp_path: Path) -> None:
    results = [
        result("pass", "APL-AUTH-01"),
        result("fail", "APL-AUTH-02", message="accepted <script>alert(1)</script> with no token"),
        result("not-verified", "APL-OBS-01", message="the SUT reported nothing"),
        result("warn", "APL-LAT-02"),
    ]
    data = build_report(run_info(), results)
    write_reports(data, tmp_path / "run-1", tmp_path)
    data = json.loads((tmp_path / "latest" / "report.json").read_text())
    assert data["schema"] == "conformance-report/2" and data["run_id"] == "run-1"
    by_id = {r["id"]: r for r in data["requirements"]}
    assert set(by_id) == {r.id for r in for_vendors(["apple"])}
    assert by_id["APL-AUTH-02"]["verdict"] == "fail"
    assert by_id["APL-TYPE-01"]["verdict"] == "not-verified"
    assert data["summary"]["pass"] == 1 and data["summary"]["warn"] == 1
    assert data["summary"]["not-verified"] == len(by_id) - 3

    suite = ET.parse(tmp_path / "latest" / "junit.xml").getroot()
    cases = {c.get("name"): c for c in suite.iter("testcase")}
    assert cases["APL-AUTH-02 t_fail"].find("failure") is not None  # the ID in the case name
    assert cases["APL-OBS-01 t_not-verified"].find("skipped") is not None
    props = {p.get("name"): p.get("value") for p in cases["APL-AUTH-02 t_fail"].iter("property")}
    assert props["requirement"] == "APL-AUTH-02" and props["verdict"] == "fail"

    html = (tmp_path / "latest" / "index.html").read_text()
    assert "&lt;script&gt;alert(1)" in html and "<script>alert" not in html  # escaped
    assert not re.search(r"""(src|href)=["']?(https?:)?//|@import|url\(""", html)  # self-contained
    assert (tmp_path / "run-1" / "index.html").read_text() == html


def test_a_harness_fault_during_a_check_is_an_error_not_the_suts_failure() -> None:
    from conformance.verdicts import blame_harness

    assert blame_harness("fail", "answered 500", []) == ("fail", "answered 500")
    outcome, message = blame_harness("fail", "answered 500", ["apple-api: GET /x: KeyError: 'k'"])
    assert outcome == "error" and "harness broke" in message and "KeyError" in message
    assert blame_harness("pass", "ok", ["a", "b"])[0] == "error"


HOSTILE_TEXT = "answered \x14\x1b[31mred\x00 \ud800 & <b>bold</b> \x7f\x85 \ufffe" * 3


def test_reports_stay_valid_and_small_whatever_the_sut_sent(tmp_path: Path) -> None:
    """Control characters, NUL, lone surrogates and markup from a SUT; thousands of evidence
    events: junit.xml parses as XML 1.0, report.json as JSON, the HTML escapes everything, and
    every file stays under 1 MB."""
    event = {
        "seq": 0,
        "real_s": 1.0,
        "sim_s": 2.0,
        "actor": "sut",
        "direction": "->",
        "peer": "observer",
        "kind": "observed",
        "summary": HOSTILE_TEXT * 20,
        "detail": {"body": HOSTILE_TEXT * 100, "status": 500, "nested": {"x": [HOSTILE_TEXT]}},
    }
    results = [
        CheckResult(
            name=f"conformance/x.py::t_{i}[{HOSTILE_TEXT}]",
            requirement_ids=["APL-BAD-01"],
            outcome="fail" if i % 2 else "pass",
            message=HOSTILE_TEXT,
            expected=HOSTILE_TEXT,
            observed=HOSTILE_TEXT,
            reproduce=[f"curl --data-binary '{HOSTILE_TEXT}'"],
            notes=[HOSTILE_TEXT],
            evidence=[{**event, "seq": n} for n in range(300)],
        )
        for i in range(120)
    ]
    info = run_info(sut_log_tail=HOSTILE_TEXT * 50, run_events=[event] * 2000)
    write_reports(build_report(info, results), tmp_path / "run-1", tmp_path)
    for name in ("report.json", "junit.xml", "index.html"):
        path = tmp_path / "latest" / name
        assert path.stat().st_size < 1_000_000, (name, path.stat().st_size)
        text = path.read_text("utf-8")  # encodable: no lone surrogate survived
        assert "\x14" not in text and "\x00" not in text and "\x1b" not in text
    ET.parse(tmp_path / "latest" / "junit.xml")
    data = json.loads((tmp_path / "latest" / "report.json").read_text())
    bad = next(r for r in data["requirements"] if r["id"] == "APL-BAD-01")
    check = next(c for c in bad["checks"] if c["outcome"] == "fail")
    shown = check["message"]
    assert "\\x14" in shown and "\\x1b" in shown and "\\ud800" in shown  # visible escapes
    html = (tmp_path / "latest" / "index.html").read_text()
    assert "<b>bold</b>" not in html and "&lt;b&gt;bold&lt;/b&gt;" in html
    assert check["evidence_cut"] > 0 and len(check["evidence"]) < 300


def test_a_64_kb_client_id_in_every_event_keeps_the_reports_small(tmp_path: Path) -> None:
    """An MQTT client ID of 64 KB is the actor or peer of every event the broker records: it is
    cut in the report like any text the SUT had a hand in (3.3 MB of report.json before)."""
    client_id = "c" * 65_535
    event = {
        "seq": 0, "real_s": 1.0, "sim_s": 2.0, "actor": "ivanti-broker", "direction": "<-",
        "peer": client_id, "kind": "CONNECT", "summary": "CONNECT", "detail": {client_id: 1},
    }  # fmt: skip
    results = [
        CheckResult(
            name=f"conformance/x.py::t_{i}",
            requirement_ids=["IVT-CONN-01"],
            outcome="fail" if i % 3 == 0 else "pass",
            message="m",
            evidence=[{**event, "seq": n, "actor": client_id} for n in range(40)],
        )
        for i in range(172)
    ]
    info = run_info(vendors=("ivanti",), run_events=[event] * 400)
    write_reports(build_report(info, results), tmp_path / "run-1", tmp_path)
    for name in ("report.json", "junit.xml", "index.html"):
        assert (tmp_path / "latest" / name).stat().st_size < 1_000_000, name
    data = json.loads((tmp_path / "latest" / "report.json").read_text())
    checks = [c for r in data["requirements"] for c in r["checks"]]
    kept = [e for c in checks for e in c["evidence"]] + data["run_timeline"]["events"]
    assert kept, "the evidence was dropped instead of cut"
    assert all(len(e["actor"]) < 1_000 and len(e["peer"]) < 1_000 for e in kept)


def test_the_last_fallback_always_fits(tmp_path: Path) -> None:
    """A run so large that even the smallest evidence does not fit (thousands of checks with
    long names, messages and reproducers) still writes files under 1 MB that parse, each
    requirement with its verdict, and says what it left out."""
    long = "x" * 5_000
    results = [
        CheckResult(
            name=f"conformance/x.py::t_{i}[{long}]",
            requirement_ids=["APL-BAD-01"],
            outcome="fail",
            message=long,
            expected=long,
            observed=long,
            reproduce=[f"curl {long}"] * 3,
            notes=[long] * 3,
        )
        for i in range(3_000)
    ]
    write_reports(build_report(run_info(), results), tmp_path / "run-1", tmp_path)
    for name in ("report.json", "junit.xml", "index.html"):
        assert (tmp_path / "latest" / name).stat().st_size < 1_000_000, name
    ET.parse(tmp_path / "latest" / "junit.xml")
    data = json.loads((tmp_path / "latest" / "report.json").read_text())
    assert data["evidence_cut_to_fit"] is True
    bad = next(r for r in data["requirements"] if r["id"] == "APL-BAD-01")
    assert bad["verdict"] == "fail"
    assert {r["id"] for r in data["requirements"]} == {r.id for r in for_vendors(["apple"])}


def test_a_long_reproducer_is_written_to_a_file_the_terminal_names(tmp_path: Path) -> None:
    """A terminal line is pasteable: a command too long to print is never cut with "…"."""
    command = "curl -X PUT --data-binary '" + "x" * 3_000 + "' https://127.0.0.1:1/n"
    failing = result("fail", "APL-AUTH-02")
    failing.reproduce = [command]
    paths = write_reports(build_report(run_info(), [failing]), tmp_path / "run-1", tmp_path)
    (line,) = [x for x in paths["lines"] if "reproduce:" in x]
    assert "…" not in line
    assert line.endswith("sh reproducers/APL-AUTH-02.sh)")
    for folder in (tmp_path / "run-1", tmp_path / "latest"):
        assert command in (folder / "reproducers" / "APL-AUTH-02.sh").read_text()


def _record(check: Check, raised: BaseException, tmp_path: Path) -> CheckResult:
    """One check's result as the plugin records it, for a check that raised ``raised``."""

    def body() -> None:
        raise raised

    call = pytest.CallInfo.from_call(body, "call")
    rep = pytest.TestReport("t.py::t", ("t.py", 1, "t"), {}, "failed", "x", "call")
    item = SimpleNamespace(
        funcargs={"check": check}, nodeid="t.py::t", path=tmp_path, location=("t.py", 1, "t")
    )
    state = RunState(tmp_path, ("apple",))
    record_result(state, item, call, rep, ["APL-AUTH-02"])  # type: ignore[arg-type]
    return state.results[-1]


def test_a_failure_without_a_reproducer_says_why(tmp_path: Path) -> None:
    check = Check()
    assert NO_REPRODUCER in _record(check, AssertionError("no"), tmp_path).notes
    check.no_reproducer("judged over the socket's life")
    assert "no reproducer: judged over the socket's life" in (
        _record(check, AssertionError("no"), tmp_path).notes
    )
    check.reproducer("curl https://127.0.0.1:1/n")
    assert not any(
        "no reproducer" in n for n in _record(check, AssertionError("no"), tmp_path).notes
    )
