"""Every requirement names where it comes from (docs/requirements.md §6), and the report shows it.

A source reads ``<kind>: <quote or reference>``: a quoted sentence of the vendor doc or of a
later vendor document, a protocol rule (MQTT 3.1.1, an RFC), or ``project assumption:`` with
the reason, for a number or rule no vendor published.
"""

from __future__ import annotations

import html
import json
import re
from pathlib import Path

import pytest

from conformance.catalogue import catalogue, requirement
from conformance.report import RunInfo, build_report, write_reports
from conformance.verdicts import CheckResult

KIND = re.compile(r"^(vendor doc|later vendor doc|MQTT 3\.1\.1|RFC \d+|project assumption): \S")
LIMIT = 320  # "about 300" characters: the report shows every source beside its verdict


@pytest.mark.parametrize("rid", sorted(catalogue()))
def test_every_requirement_names_its_source(rid: str) -> None:
    source = requirement(rid).source
    assert source.strip(), f"{rid}: no source"
    assert source != "docs/requirements.md", f"{rid}: the catalogue is not a source"
    assert KIND.match(source), f"{rid}: the source starts with none of the kinds: {source!r}"
    assert len(source) <= LIMIT, f"{rid}: {len(source)} characters (keep it short)"
    assert source.count('"') % 2 == 0, f"{rid}: an unclosed quotation: {source!r}"
    if source.startswith("project assumption:"):
        reason = source.removeprefix("project assumption:").strip()
        assert len(reason.split()) >= 5, f"{rid}: a project assumption says why: {source!r}"


def test_an_answer_time_apple_never_published_is_a_should_and_says_so() -> None:
    req = requirement("APL-LAT-01")
    assert req.level == "SHOULD"
    assert req.source.startswith("project assumption:")
    assert "5 s" in req.source and "assumption" in req.statement


def test_the_report_shows_each_requirement_source(tmp_path: Path) -> None:
    results = [
        CheckResult(
            name="conformance/apple/x.py::t",
            requirement_ids=["APL-AUTH-01"],
            outcome="pass",
            message="as required",
        )
    ]
    info = RunInfo(
        run_id="run-1",
        started_at=0.0,
        sut_name="https://127.0.0.1:1/n",
        sut_source="https://127.0.0.1:1/n",
        vendors=("apple",),
    )
    write_reports(build_report(info, results), tmp_path / "run-1", tmp_path)

    data = json.loads((tmp_path / "latest" / "report.json").read_text("utf-8"))
    by_id = {r["id"]: r for r in data["requirements"]}
    assert by_id["APL-AUTH-01"]["source"] == requirement("APL-AUTH-01").source
    assert all(r["source"] == requirement(r["id"]).source for r in data["requirements"])

    page = (tmp_path / "latest" / "index.html").read_text("utf-8")
    source = requirement("APL-AUTH-01").source
    assert '"' in source and source not in page  # its quotation marks arrive escaped
    assert source in html.unescape(page)
    row = re.search(r'<a href="#APL-AUTH-01">.*?</tr>', page, re.S)
    assert row is not None and source in html.unescape(row.group())  # beside its verdict
