"""The CI gate over synthetic reports (docs/sut-contract.md §7): waiver and baseline files,
the gate's decision, ``conformance-report diff`` and ``matrix``, the Markdown summary, CTRF and
the pruning of old runs. The same behaviours on real runs: tests/selftest/test_gate.py."""

from __future__ import annotations

import datetime
import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from conformance.catalogue import catalogue
from conformance.gate import (
    Baseline,
    GateFileError,
    Waiver,
    apply_gate,
    load_baseline,
    load_waivers,
    read_report,
)
from conformance.report import RunInfo, build_report, write_reports
from conformance.report_cli import main as report_main
from conformance.summaries import ctrf, markdown_summary, prune_runs
from conformance.verdicts import CheckResult

TODAY = datetime.date(2027, 1, 15)
LATER = datetime.date(2027, 6, 30)


def requirements(**verdicts: str) -> list[dict[str, Any]]:
    return [
        {"id": rid.replace("_", "-"), "verdict": v, "reason": f"why {v}", "level": "MUST",
         "vendor": "apple", "statement": "s", "checks": []}
        for rid, v in verdicts.items()
    ]  # fmt: skip


def report(**verdicts: str) -> dict[str, Any]:
    return {
        "schema": "conformance-report/2",
        "run_id": "r",
        "requirements": requirements(**verdicts),
        "run": {"catalogue": {"digest": "sha256:same"}},
    }


# Waiver files.


@pytest.mark.parametrize(
    "text, message",
    [
        ('[[waiver]]\nid = "APL-AUTH-99"\nreason = "r"\nexpires = 2027-03-31\n', "did you mean"),
        ('[[waiver]]\nid = "APL-AUTH-01"\nexpires = 2027-03-31\n', "give the reason"),
        (
            '[[waiver]]\nid = "APL-AUTH-01"\nreason = "  "\nexpires = 2027-03-31\n',
            "give the reason",
        ),
        ('[[waiver]]\nid = "APL-AUTH-01"\nreason = "r"\nexpires = "next year"\n', "is not a date"),
        (
            '[[waiver]]\nid = "APL-AUTH-01"\nexpires = 2027-03-31\nreason = "' + "r" * 1001 + '"\n',
            "keep it under",
        ),
        (
            '[[waiver]]\nid = "APL-AUTH-01"\nreason = "r"\nexpires = 2027-03-31T10:00:00\n',
            "not a date",
        ),
        ('[[waiver]]\nid = "APL-AUTH-01"\nreason = "r"\n', "give the last day"),
        ('[[waiver]]\nreason = "r"\nexpires = 2027-03-31\n', "give the requirement"),
        (
            '[[waiver]]\nid = "APL-AUTH-01"\nreason = "r"\nexpires = 2027-03-31\nowner = "x"\n',
            "unknown key",
        ),
        ('[waiver]\nid = "APL-AUTH-01"\n', "[[waiver]] table"),
        ('[[waivers]]\nid = "APL-AUTH-01"\n', "unknown top-level key"),
        ('[[waiver]]\nid = "APL-AUTH-01\n', "not valid TOML"),
        ("a = " + "[" * 100_000, "nested too deeply"),
        ('[[waiver]]\nid="APL-AUTH-01"\nreason="r"\nexpires=2027-01-01\n' * 2, "waived twice"),
    ],
)
def test_a_bad_waiver_file_is_one_clear_error(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "w.toml"
    path.write_text(text)
    with pytest.raises(GateFileError) as caught:
        load_waivers(path, catalogue())
    assert message in str(caught.value) and str(path) in str(caught.value)


def test_waiver_file_problems_before_reading(tmp_path: Path) -> None:
    with pytest.raises(GateFileError, match="no such file"):
        load_waivers(tmp_path / "missing.toml", catalogue())
    with pytest.raises(GateFileError, match="a folder"):
        load_waivers(tmp_path, catalogue())
    (tmp_path / "bin.toml").write_bytes(b"\xff\xfe\x00")
    with pytest.raises(GateFileError, match="not UTF-8"):
        load_waivers(tmp_path / "bin.toml", catalogue())


def test_waivers_load(tmp_path: Path) -> None:
    path = tmp_path / "w.toml"
    path.write_text(
        '[[waiver]]\nid = "APL-AUTH-01"\nreason = "observer hook\\n next quarter"\n'
        "expires = 2027-03-31\n"
        '[[waiver]]\nid = "GEN-OBS-01"\nreason = "r"\nexpires = "2027-01-15"\n'
    )
    first, second = load_waivers(path, catalogue())
    assert first == Waiver("APL-AUTH-01", "observer hook next quarter", datetime.date(2027, 3, 31))
    assert not second.expired(TODAY) and second.expired(TODAY + datetime.timedelta(days=1))


# The gate's decision.


def test_a_valid_waiver_turns_a_failure_into_waived_and_the_gate_passes() -> None:
    reqs = requirements(A_1="fail", B_1="pass", C_1="error", D_1="not-verified")
    waivers = tuple(Waiver(rid, "known", LATER) for rid in ("A-1", "B-1", "C-1", "D-1", "E-1"))
    gate = apply_gate(reqs, waivers=waivers, today=TODAY)
    assert reqs[0]["verdict"] == "waived" and reqs[0]["waiver"]["reason"] == "known"
    assert reqs[0]["waived_verdict"] == "fail" and "known" in reqs[0]["reason"]
    status = {w["id"]: w["status"] for w in gate["waivers"]}
    assert status["A-1"] == "applied"
    assert status["B-1"].startswith("passes now")
    assert "harness error is never waived" in status["C-1"]  # an error stays an error
    assert status["E-1"] == "not in this run"
    assert gate["blocking"] == ["C-1"] and not gate["passed"]


def test_an_expired_waiver_fails_the_run_and_waives_nothing() -> None:
    reqs = requirements(A_1="fail", B_1="pass")
    waivers = (
        Waiver("A-1", "r", TODAY - datetime.timedelta(days=1)),
        Waiver("B-1", "r", TODAY - datetime.timedelta(days=1)),
    )
    gate = apply_gate(reqs, waivers=waivers, today=TODAY)
    assert reqs[0]["verdict"] == "fail"
    assert gate["expired_waivers"] == ["A-1", "B-1"] and not gate["passed"]
    reqs = requirements(A_1="fail")
    assert apply_gate(reqs, waivers=(Waiver("A-1", "r", TODAY),), today=TODAY)["passed"]  # last day


def test_a_baseline_fails_the_run_only_on_regressions() -> None:
    base = Baseline(
        "b.json",
        "b",
        "sha256:same",
        {"A-1": "fail", "B-1": "pass", "C-1": "error", "D-1": "not-verified", "OLD-1": "pass"},
    )
    reqs = requirements(A_1="fail", B_1="pass", C_1="pass", D_1="pass", NEW_1="pass")
    gate = apply_gate(reqs, baseline=base, catalogue_digest="sha256:same", today=TODAY)
    assert gate["passed"] and gate["baseline"]["known_failures"] == ["A-1"]
    assert gate["baseline"]["improvements"] == ["C-1"]
    assert gate["baseline"]["same_catalogue"] is True
    # A requirement that passed (or was not judged) there and fails now; a new one that fails.
    reqs = requirements(A_1="error", B_1="fail", C_1="pass", D_1="fail", NEW_1="fail")
    gate = apply_gate(reqs, baseline=base, catalogue_digest="sha256:other", today=TODAY)
    assert gate["blocking"] == ["B-1", "D-1", "NEW-1"] and not gate["passed"]
    assert gate["baseline"]["same_catalogue"] is False
    assert "another catalogue version" in gate["baseline"]["note"]
    assert "1 only in this run, 1 only in the baseline" in gate["baseline"]["note"]
    # A waived regression does not fail the run.
    reqs = requirements(B_1="fail")
    gate = apply_gate(reqs, waivers=(Waiver("B-1", "r", LATER),), baseline=base, today=TODAY)
    assert gate["passed"] and gate["baseline"]["regressions"] == ["B-1"]


def write_json(path: Path, data: object) -> Path:
    path.write_text(json.dumps(data))
    return path


def test_a_corrupt_or_foreign_baseline_is_one_clear_error(tmp_path: Path) -> None:
    cases = {
        "corrupt": "{not json",
        "foreign": json.dumps({"schema": "ctrf", "requirements": []}),
        "list": json.dumps([1, 2]),
        "damaged": json.dumps({"schema": "conformance-report/2", "requirements": [{"id": 1}]}),
        "startup": json.dumps({**report(A_1="error"), "startup_error": "could not start"}),
        "deep": "[" * 100_000,
    }
    messages = {"corrupt": "not a JSON report", "foreign": "not a conformance report",
                "list": "not a conformance report", "damaged": "damaged", "startup": "could not start",
                "deep": "nested too deeply"}  # fmt: skip
    for name, text in cases.items():
        (tmp_path / name).write_text(text)
        with pytest.raises(GateFileError, match=messages[name]):
            load_baseline(tmp_path / name)
    old = write_json(
        tmp_path / "v1.json", {**report(A_1="pass"), "schema": "conformance-report/1", "run": None}
    )
    base = load_baseline(old)  # the first schema version reads too, without a digest
    assert base.verdicts == {"A-1": "pass"} and base.catalogue_digest is None


# Reports: waived in JSON, JUnit, HTML; provenance in the header.


def test_waived_shows_in_every_report_file(tmp_path: Path) -> None:
    info = RunInfo(
        run_id="run-1", started_at=datetime.datetime(2027, 1, 15, tzinfo=datetime.UTC).timestamp(),
        sut_name="s", sut_source="s.toml", vendors=("apple",),
        waivers=(Waiver("APL-AUTH-02", "token check <ships> in Q3", LATER),),
        provenance={"tool": {"name": "t", "version": "9"}, "python": "3", "pytest": "9",
                    "catalogue": {"digest": "sha256:abc", "requirements": 1}, "options": {"--apple-timeout": 5.0},
                    "profiles": {}, "sut_manifest": {"source": "s.toml", "digest": "sha256:def"},
                    "started_at": "a", "ended_at": "b"},
    )  # fmt: skip
    results = [
        CheckResult("conformance/x.py::t_a", ["APL-AUTH-02"], "fail", "accepted no token"),
        CheckResult("conformance/x.py::t_b", ["APL-AUTH-01"], "pass", "ok"),
    ]
    data = build_report(info, results)
    paths = write_reports(data, tmp_path / "run-1", tmp_path)
    saved = json.loads((tmp_path / "latest" / "report.json").read_text())
    waived = next(r for r in saved["requirements"] if r["id"] == "APL-AUTH-02")
    assert waived["verdict"] == "waived" and "ships" in waived["reason"]
    assert saved["summary"]["waived"] == 1 and saved["gate"]["passed"]
    assert saved["run"]["catalogue"]["digest"] == "sha256:abc"
    case = next(
        c
        for c in ET.parse(tmp_path / "latest" / "junit.xml").getroot().iter("testcase")
        if "APL-AUTH-02" in c.get("name", "")
    )
    skipped = case.find("skipped")
    assert (
        skipped is not None
        and "waived" in skipped.get("message", "")
        and "Q3" in skipped.get("message", "")
    )
    assert case.find("failure") is None
    html = (tmp_path / "latest" / "index.html").read_text()
    assert 'class="badge waived"' in html and "token check &lt;ships&gt; in Q3" in html
    assert "sha256:def" in html and "--apple-timeout" in html  # provenance in the header
    assert any("WAIVED" in line and "APL-AUTH-02" in line for line in paths["lines"])


def test_requirements_not_selected_are_one_line(tmp_path: Path) -> None:
    info = RunInfo(run_id="run-1", started_at=0.0, sut_name="s", sut_source="s", vendors=("apple",))
    data = build_report(info, [CheckResult("conformance/x.py::t", ["APL-AUTH-01"], "pass", "ok")])
    lines = write_reports(data, tmp_path / "run-1", tmp_path)["lines"]
    not_selected = [line for line in lines if "had no check in this run" in line]
    assert len(not_selected) == 1 and len(lines) < 5, lines


# conformance-report.


def test_diff_says_what_changed_and_exits_1_on_a_regression(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a = write_json(tmp_path / "a.json", report(A_1="pass", B_1="fail", C_1="pass", OLD_1="pass"))
    b = write_json(
        tmp_path / "b.json", report(A_1="fail", B_1="pass", C_1="not-verified", NEW_1="pass")
    )
    assert report_main(["diff", str(a), str(b)]) == 1
    out = capsys.readouterr().out
    assert "Regressions (1):\n  A-1: pass -> fail  why fail" in out
    assert "Improvements (1):\n  B-1: fail -> pass" in out
    assert "Other changes (1):\n  C-1: pass -> not-verified" in out
    assert "Only in A (1):\n  OLD-1" in out and "Only in B (1):\n  NEW-1" in out
    assert report_main(["diff", str(b), str(b), "--md"]) == 0
    assert "## Conformance diff: no regression" in capsys.readouterr().out
    assert report_main(["diff", str(b), str(a), "--md"]) == 1  # the other way, B-1 regresses
    assert "### Regressions (1)\n\n| Requirement | A | B | B's reason |" in capsys.readouterr().out


def test_diff_md_escapes_what_a_sut_wrote(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = report(A_1="pass")
    after = report(A_1="fail")
    after["requirements"][0]["reason"] = "answered | <img src=x>\n# heading \x1b[31m"
    a, b = write_json(tmp_path / "a.json", before), write_json(tmp_path / "b.json", after)
    assert report_main(["diff", str(a), str(b), "--md"]) == 1
    out = capsys.readouterr().out
    assert "\\| &lt;img src=x&gt; # heading \\\\x1b[31m" in out and "\x1b" not in out


def test_report_cli_refuses_what_is_not_a_report(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    junk = tmp_path / "junk.json"
    junk.write_text("<html>")
    assert report_main(["diff", str(junk), str(junk)]) == 2
    assert report_main(["matrix", str(tmp_path / "none.json"), "-o", str(tmp_path / "m.html")]) == 2
    err = capsys.readouterr().err
    assert "not a JSON report" in err and "no such file" in err and "Traceback" not in err


def big_report(verdict: str, run_id: str) -> dict[str, Any]:
    """A report near the 1 MB limit, with markup in its texts."""
    reqs = []
    for rid in catalogue():
        reqs.append({"id": rid, "level": "MUST", "vendor": "v", "verdict": verdict,
                     "statement": "<script>alert(1)</script>" * 20, "reason": "<b>x</b>" * 400,
                     "checks": [{"name": "c", "outcome": verdict, "message": "m" * 10_000}]})  # fmt: skip
    return {"schema": "conformance-report/2", "run_id": run_id, "requirements": reqs,
            "summary": {verdict: len(reqs)}, "sut": {"name": "<i>sut</i>"},
            "run": {"options": {"--pelion-delete-close-code": run_id}}}  # fmt: skip


def test_matrix_of_two_big_reports_is_small_escaped_and_self_contained(tmp_path: Path) -> None:
    a = write_json(tmp_path / "a.json", big_report("pass", "1000"))
    b = write_json(
        tmp_path / "b.json", {**big_report("fail", "1001"), "schema": "conformance-report/1"}
    )
    assert a.stat().st_size > 800_000
    out = tmp_path / "matrix.html"
    assert report_main(["matrix", str(a), str(b), "-o", str(out)]) == 0
    html = out.read_text()
    assert out.stat().st_size < 250_000
    assert "<script>" not in html and "<i>sut</i>" not in html and "&lt;i&gt;sut&lt;/i&gt;" in html
    assert not re.search(r"""(src|href)=["']?(https?:)?//|@import|url\(""", html)
    assert "--pelion-delete-close-code=1000" in html  # the option that tells the runs apart
    assert "1 of 2" in html and 'class="v fail"' in html


def test_read_report_accepts_both_schema_versions(tmp_path: Path) -> None:
    for schema in ("conformance-report/1", "conformance-report/2"):
        path = write_json(tmp_path / "r.json", {**report(A_1="pass"), "schema": schema})
        assert read_report(path)["schema"] == schema


# CI summaries and pruning.


def test_markdown_summary_lists_the_matrix_and_each_failure_with_its_reproducer() -> None:
    data = report(A_1="pass", B_1="fail", C_1="waived")
    data["summary"] = {"pass": 1, "fail": 1, "waived": 1}
    data["sut"] = {"name": "my | sut"}
    data["requirements"][1]["checks"] = [
        {"outcome": "fail", "reproduce": ["curl -d '```' https://x"]}
    ]
    data["gate"] = apply_gate([], today=TODAY) | {"blocking": ["B-1"], "passed": False}
    text = markdown_summary(data, "reports/latest/index.html")
    assert "## Conformance: my \\| sut — FAIL" in text
    assert "| B-1 | MUST | ❌ fail | why fail |" in text
    assert "````sh\ncurl -d '```' https://x\n````" in text  # a fence longer than any in the command
    assert "**Fails the run:** B-1" in text and "reports/latest/index.html" in text


def test_ctrf_has_the_required_fields() -> None:
    data = report(A_1="pass", B_1="fail", C_1="waived", D_1="warn", E_1="not-verified")
    data |= {"started_at": "2027-01-15T00:00:00+00:00", "duration_s": 2.5}
    data["requirements"][0]["checks"] = [{"duration_s": 0.25}]
    doc = ctrf(data)
    assert doc["reportFormat"] == "CTRF" and re.fullmatch(r"\d+\.\d+\.\d+", doc["specVersion"])
    results = doc["results"]
    assert results["tool"]["name"]
    assert {k: results["summary"][k] for k in ("tests", "passed", "failed", "skipped", "pending", "other")} == {
        "tests": 5, "passed": 1, "failed": 1, "skipped": 2, "pending": 0, "other": 1}  # fmt: skip
    assert results["summary"]["stop"] - results["summary"]["start"] == 2500
    assert [t["status"] for t in results["tests"]] == [
        "passed",
        "failed",
        "skipped",
        "other",
        "skipped",
    ]
    assert results["tests"][0]["duration"] == 250 and results["tests"][2]["rawStatus"] == "waived"
    assert all(isinstance(t["name"], str) and t["name"] for t in results["tests"])


def test_keep_reports_prunes_old_run_folders_only(tmp_path: Path) -> None:
    names = [f"2027011{d}T000000Z-abc{d}" for d in range(5)]
    for name in [*names, "latest", "pki", "notes"]:
        (tmp_path / name).mkdir()
    removed = prune_runs(tmp_path, 2, current=tmp_path / names[0])
    assert sorted(p.name for p in removed) == names[1:3]  # the current run is never removed
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [names[0], *names[3:], "latest", "pki", "notes"]
    )


def test_the_html_opens_with_the_failures_and_never_draws_a_failing_answer_in_green(
    tmp_path: Path,
) -> None:
    answer = {"seq": 1, "real_s": 0.1, "sim_s": 0.0, "actor": "sut", "direction": "->",
              "peer": "notifier", "kind": "response", "summary": "200 OK", "detail": {}}  # fmt: skip
    results = [
        CheckResult("conformance/x.py::t_a", ["APL-AUTH-02"], "fail", "accepted no token",
                    evidence=[answer]),
        CheckResult("conformance/x.py::t_b", ["APL-AUTH-01"], "pass", "ok", evidence=[answer]),
    ]  # fmt: skip
    info = RunInfo(run_id="run-1", started_at=0.0, sut_name="s", sut_source="s", vendors=("apple",))
    write_reports(build_report(info, results), tmp_path / "run-1", tmp_path)
    html = (tmp_path / "latest" / "index.html").read_text()
    strip = html.index("Failures first")
    assert strip < html.index("Requirement matrix")
    assert 'href="#APL-AUTH-02"' in html[strip : html.index("Requirement matrix")]
    assert '<div class="check fail">' in html and '<div class="check pass">' in html
    assert ".check.fail table.timeline tr.response td.what" in html  # not the colour of a pass


def test_the_terminal_prints_a_reproducer_whole_so_it_can_be_pasted(tmp_path: Path) -> None:
    """Short commands are printed as they are; longer ones go whole to a script beside the
    report, which the terminal names: never a command cut with "…"."""
    short = "curl -X POST https://127.0.0.1:1/n"
    command = "curl -X POST --data-binary '" + "x" * 600 + "' https://127.0.0.1:1/n"
    results = [
        CheckResult("conformance/x.py::t_a", ["APL-AUTH-02"], "fail", "m", reproduce=[short]),
        CheckResult("conformance/x.py::t_b", ["APL-AUTH-03"], "fail", "m", reproduce=[command]),
    ]
    info = RunInfo(run_id="run-1", started_at=0.0, sut_name="s", sut_source="s", vendors=("apple",))
    lines = write_reports(build_report(info, results), tmp_path / "run-1", tmp_path)["lines"]
    assert f"                reproduce: {short}" in lines
    assert any(line.endswith("sh reproducers/APL-AUTH-03.sh)") for line in lines)
    assert command in (tmp_path / "latest" / "reproducers" / "APL-AUTH-03.sh").read_text()
    assert not any("…" in line for line in lines if "reproduce:" in line)
