"""The CI gate on real runs (docs/sut-contract.md §7): a waived broken SUT exits 0 and shows
``waived``; an expired waiver exits non-zero naming it; a baseline taken from a broken run
passes the same run again and fails a new regression; ``conformance-report diff`` and
``matrix`` over those reports. Four short runs of one vendor's suite, made once for the module
(the unit tests in tests/unit/test_gate.py cover the rest on synthetic reports)."""

from __future__ import annotations

import json
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from conformance.reference import fixtures_dir
from conformance.vendors import discover
from tests.selftest.test_selftest import JOBS, ROOT, Outcome, flaws_of, run_suite

# One vendor's two flaws that each fail one requirement, the other one's passing: a baseline
# from the first makes the second a regression and an improvement.
VENDOR = "apple"
KNOWN, OTHER = "rejects-refunds", "rejects-failure-results"
(KNOWN_ID,) = flaws_of(VENDOR)[KNOWN].fails if VENDOR in discover() else ("",)
(OTHER_ID,) = flaws_of(VENDOR)[OTHER].fails if VENDOR in discover() else ("",)
PASSING_ID = "GEN-LIVE-01"

pytestmark = pytest.mark.skipif(VENDOR not in discover(), reason=f"no {VENDOR} plug-in")


def manifest(flaw: str) -> str:
    return f"--sut={fixtures_dir() / VENDOR / 'broken' / f'{flaw}.toml'}"


def waivers(path: Path, expires: str) -> str:
    path.write_text(
        f'[[waiver]]\nid = "{KNOWN_ID}"\nreason = "refunds are handled next quarter"\n'
        f"expires = {expires}\n\n"
        f'[[waiver]]\nid = "{PASSING_ID}"\nreason = "was flaky"\nexpires = 2999-12-31\n'
    )
    return f"--waivers={path}"


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Outcome]]:
    tmp = tmp_path_factory.mktemp("gate")
    target = f"conformance/{VENDOR}"
    with ThreadPoolExecutor(max_workers=JOBS) as pool:
        waived = pool.submit(
            run_suite, tmp / "waived", manifest(KNOWN), waivers(tmp / "valid.toml", "2999-12-31"),
            f"--summary-md={tmp / 'summary.markdown'}", target=target,
        )  # fmt: skip
        expired = pool.submit(
            run_suite, tmp / "expired", manifest(KNOWN), waivers(tmp / "old.toml", "2020-01-31"),
            target=target,
        )  # fmt: skip
        outcomes = {"waived": waived.result(), "expired": expired.result()}
        baseline = f"--baseline={tmp / 'expired' / 'latest' / 'report.json'}"
        again = pool.submit(run_suite, tmp / "again", manifest(KNOWN), baseline, target=target)
        regressed = pool.submit(
            run_suite, tmp / "regressed", manifest(OTHER), baseline, target=target,
            env={"GITHUB_STEP_SUMMARY": str(tmp / "step-summary.markdown")},
        )  # fmt: skip
        outcomes |= {"again": again.result(), "regressed": regressed.result()}
    yield outcomes


def verdict(outcome: Outcome, rid: str) -> str:
    return next(str(r["verdict"]) for r in outcome.report["requirements"] if r["id"] == rid)


def test_a_waived_broken_sut_exits_0_and_shows_waived(runs: dict[str, Outcome]) -> None:
    outcome = runs["waived"]
    assert outcome.code == 0, outcome.stdout[-3000:]
    assert verdict(outcome, KNOWN_ID) == "waived"
    assert " failed" not in outcome.stdout.strip().splitlines()[-1]  # pytest agrees with the gate
    assert f"WAIVED        {KNOWN_ID}" in outcome.stdout and "next quarter" in outcome.stdout
    assert f"waiver {PASSING_ID}: the requirement passes now; remove the waiver" in outcome.stdout
    latest = outcome.report_dir / "latest"
    junit = ET.parse(latest / "junit.xml").getroot()
    skipped = [s.get("message", "") for s in junit.iter("skipped")]
    assert any("waived" in m and "next quarter" in m for m in skipped)
    assert [f for f in junit.iter("failure")] == []
    assert 'class="badge waived"' in (latest / "index.html").read_text()
    ctrf = json.loads((latest / "ctrf.json").read_text())
    assert ctrf["results"]["summary"]["failed"] == 0
    summary = (outcome.report_dir.parent / "summary.markdown").read_text()
    assert f"| {KNOWN_ID} | MUST | 🏳️ waived |" in summary and str(latest / "index.html") in summary
    run = outcome.report["run"]
    assert run["catalogue"]["digest"].startswith("sha256:") and run["sut_manifest"]["digest"]
    assert f"--{VENDOR}-retry-schedule" in run["options"] and run["ended_at"] >= run["started_at"]


def test_an_expired_waiver_fails_the_run_naming_it(runs: dict[str, Outcome]) -> None:
    outcome = runs["expired"]
    assert outcome.code == 1, outcome.stdout[-3000:]
    assert verdict(outcome, KNOWN_ID) == "fail"
    assert f"waiver {KNOWN_ID} expired on 2020-01-31" in outcome.stdout
    assert outcome.report["gate"]["expired_waivers"] == [KNOWN_ID]


def test_a_baseline_from_a_broken_run_passes_it_again(runs: dict[str, Outcome]) -> None:
    outcome = runs["again"]
    assert outcome.code == 0, outcome.stdout[-3000:]
    assert verdict(outcome, KNOWN_ID) == "fail"  # still failing, but known
    assert " failed" not in outcome.stdout.strip().splitlines()[-1]
    base = outcome.report["gate"]["baseline"]
    assert base["known_failures"] == [KNOWN_ID] and base["regressions"] == []
    assert base["same_catalogue"] is True


def test_a_baseline_fails_a_new_regression_and_lists_improvements(runs: dict[str, Outcome]) -> None:
    outcome = runs["regressed"]
    assert outcome.code == 1, outcome.stdout[-3000:]
    base = outcome.report["gate"]["baseline"]
    assert base["regressions"] == [OTHER_ID] and base["improvements"] == [KNOWN_ID]
    assert f"regressions: {OTHER_ID}" in outcome.stdout
    step = (outcome.report_dir.parent / "step-summary.markdown").read_text()
    assert f"**Fails the run:** {OTHER_ID}" in step and "Reproduce" in step


def report_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "conformance.report_cli", *args],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def test_diff_and_matrix_over_real_reports(runs: dict[str, Outcome], tmp_path: Path) -> None:
    report = {name: str(o.report_dir / "latest" / "report.json") for name, o in runs.items()}
    worse = report_cli("diff", report["expired"], report["regressed"])
    assert worse.returncode == 1, worse.stdout + worse.stderr
    assert (
        f"{OTHER_ID}: pass -> fail" in worse.stdout and f"{KNOWN_ID}: fail -> pass" in worse.stdout
    )
    same = report_cli("diff", report["expired"], report["again"], "--md")
    assert same.returncode == 0 and "no regression" in same.stdout, same.stdout + same.stderr
    page = tmp_path / "matrix.html"
    made = report_cli("matrix", *report.values(), "-o", str(page))
    assert made.returncode == 0, made.stderr
    html = page.read_text()
    assert html.count('class="v waived"') == 1 and page.stat().st_size < 200_000
