"""The suite proves itself: the reference SUT passes every requirement, and each broken SUT
(``fixtures/<vendor>/broken/<flaw>.toml``) fails exactly the IDs its flaw names
(``fixtures/<vendor>/flaws.py``), when its vendor's suite is run against it.

Each case runs ``pytest conformance[/<vendor>] --sut=<manifest>`` in a subprocess, as a user
would, and reads the report it writes. The runs are started together and executed
:data:`JOBS` at a time; each test waits for its own run. Three at a time on 2 cores: a run
spends most of its time waiting for the SUT's timers and the checks' windows (measured: about
a quarter of a core per run on average), and every timing a check judges keeps its margin
under that load.
"""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from conformance.catalogue import by_design_not_verified, for_vendors
from conformance.manifest import load_manifest
from conformance.ports import spare_port
from conformance.reference import fixtures_dir, reference_manifest
from conformance.vendors import discover
from conformance_fixtures.reference_sut.flaws import Flaw

ROOT = Path(__file__).resolve().parents[2]
JOBS = int(os.environ.get("SELFTEST_JOBS", "3"))
RUN_TIMEOUT_S = 900
PROGRESS_EVERY_S = 5.0  # how often a test waiting for its run says which runs ended


@dataclass(frozen=True)
class Case:
    vendor: str
    name: str
    flaw: Flaw

    @property
    def manifest(self) -> Path:
        return fixtures_dir() / self.vendor / "broken" / f"{self.name}.toml"

    @property
    def key(self) -> str:
        return f"{self.vendor}:{self.name}"


def flaws_of(vendor: str) -> dict[str, Flaw]:
    if not (fixtures_dir() / vendor / "flaws.py").is_file():
        return {}
    flaws: dict[str, Flaw] = importlib.import_module(f"conformance_fixtures.{vendor}.flaws").FLAWS
    return flaws


CASES = [Case(v, name, flaw) for v in discover() for name, flaw in sorted(flaws_of(v).items())]
# A flaw that only warns, run again with --strict: its SHOULD failures must fail the run.
STRICT = next((c for c in CASES if not c.flaw.fails and c.flaw.warns), None)


# Running the suite.


@dataclass(frozen=True)
class Outcome:
    code: int
    report: dict[str, Any]
    stdout: str
    report_dir: Path
    elapsed_s: float  # the run's real time, pytest's start included

    def verdicts(self, verdict: str) -> set[str]:
        return {r["id"] for r in self.report["requirements"] if r["verdict"] == verdict}


def run_suite(
    report_dir: Path, *args: str, target: str = "conformance", env: dict[str, str] | None = None
) -> Outcome:
    env = {**os.environ, **(env or {}), "REFERENCE_SUT_PORT": str(spare_port())}
    env.pop("PYTEST_ADDOPTS", None)
    cmd = [
        sys.executable, "-m", "pytest", target, "-q", "-p", "no:cacheprovider",
        f"--report-dir={report_dir}", f"--pki-dir={report_dir / 'pki'}", *args,
    ]  # fmt: skip
    started = time.monotonic()
    proc = subprocess.run(
        cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=RUN_TIMEOUT_S
    )
    elapsed = time.monotonic() - started
    report_file = report_dir / "latest" / "report.json"
    assert report_file.is_file(), (
        f"no report written:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    )
    report = json.loads(report_file.read_text())
    return Outcome(proc.returncode, report, proc.stdout, report_dir, elapsed)


class SuiteRuns:
    """Suite runs started at once, executed JOBS at a time, awaited by key. While a test waits
    for its run, ``say`` is told of every run that finishes (runs done / total), from pytest's
    own thread."""

    def __init__(
        self, tmp: pytest.TempPathFactory, say: Callable[[str], None] | None = None
    ) -> None:
        self._tmp = tmp
        self._say = say
        self._news: list[str] = []
        self._pool = ThreadPoolExecutor(max_workers=JOBS, thread_name_prefix="suite-run")
        self._runs: dict[str, Future[Outcome]] = {}
        self._lock = threading.Lock()
        self._done = 0

    def submit(self, key: str, *args: str, target: str = "conformance") -> None:
        if key not in self._runs:
            folder = self._tmp.mktemp(key.replace(":", "-").replace("/", "-"))
            self._runs[key] = self._pool.submit(run_suite, folder, *args, target=target)
            self._runs[key].add_done_callback(lambda run: self._progress(key, run))

    def _progress(self, key: str, run: Future[Outcome]) -> None:
        with self._lock:
            self._done += 1
            if run.cancelled():
                status = "cancelled"
            else:
                status = "no report" if run.exception() else f"exit {run.result().code}"
            self._news.append(
                f"self-test: {self._done}/{len(self._runs)} suite runs done ({key}: {status})"
            )

    def result(self, key: str) -> Outcome:
        """The run's outcome; while waiting, say each run that ends (the first test waits for
        many of them, for minutes)."""
        run = self._runs[key]
        while not run.done():
            wait([run], timeout=PROGRESS_EVERY_S)
            self._say_news()
        self._say_news()
        return run.result()

    def _say_news(self) -> None:
        with self._lock:
            news, self._news = self._news, []
        if news and self._say is not None:
            self._say("\n".join(news))

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


def _printer(config: pytest.Config) -> Callable[[str], None] | None:
    """Print past pytest's capture, on the terminal pytest writes to."""
    capture = config.pluginmanager.getplugin("capturemanager")
    terminal = config.pluginmanager.getplugin("terminalreporter")
    if capture is None or terminal is None:
        return None

    def say(text: str) -> None:
        with capture.global_and_fixture_disabled():
            terminal.write_line("")
            terminal.write_line(text)

    return say


def _case_args(case: Case, *extra: str) -> tuple[str, ...]:
    return (f"--sut={case.manifest}", *case.flaw.options, *case.flaw.explore_options, *extra)


# The reference SUT's run also explores: no generated scenario may fail it (a short budget with
# a fixed seed keeps CI time down; docs/exploration.md measures the long one).
REFERENCE_EXPLORE = ("--explore=15", "--explore-seed=1")
EXPLORED = [c for c in CASES if c.flaw.explore_fails]
ALSO_EXPLORED = [c for c in CASES if c.flaw.explore_finds]


@pytest.fixture(scope="module")
def runs(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SuiteRuns]:
    """Start every run the selected tests need, slowest first: the ``--slow`` ones, then the
    reference's (all vendors at once), so that no long run is left alone at the end."""
    runs = SuiteRuns(tmp_path_factory, _printer(request.config))
    names = {item.name for item in request.session.items}
    wanted = [c for c in CASES if f"test_broken_sut_fails_exactly_its_ids[{c.key}]" in names]
    slow = [c for c in wanted if "--slow" in c.flaw.options]
    for case in slow:
        runs.submit(case.key, *_case_args(case), target=f"conformance/{case.vendor}")
    if "test_reference_sut_passes_everything" in names:
        runs.submit("reference", *REFERENCE_EXPLORE)
    for case in wanted:  # submit skips the slow ones, already started
        runs.submit(case.key, *_case_args(case), target=f"conformance/{case.vendor}")
    if STRICT is not None and "test_strict_turns_should_failures_into_failures" in names:
        runs.submit(
            "strict", *_case_args(STRICT, "--strict"), target=f"conformance/{STRICT.vendor}"
        )
    yield runs
    runs.close()


# The cases.


def test_reference_sut_passes_everything(runs: SuiteRuns) -> None:
    outcome = runs.result("reference")
    tail = outcome.stdout[-3000:]
    manifest = reference_manifest()
    vendors = manifest.vendors()
    profiles = {v: discover()[v].profiles(manifest.section(v)) for v in vendors}  # type: ignore[arg-type]
    assert outcome.code == 0, tail
    assert outcome.verdicts("fail") == set(), tail
    assert outcome.verdicts("error") == set(), tail
    assert outcome.verdicts("warn") == set(), tail
    assert outcome.verdicts("not-verified") == set(by_design_not_verified(profiles, slow=False)), (
        tail
    )
    assert {r["id"] for r in outcome.report["requirements"]} == {r.id for r in for_vendors(vendors)}
    explored = [x for x in outcome.report["exploration"] if not x.get("unavailable")]
    assert explored and all(x["judged"] > 0 and not x["flaky"] for x in explored), explored
    run_id = outcome.report["run_id"]
    for name in ("report.json", "junit.xml", "index.html"):
        assert (outcome.report_dir / "latest" / name).is_file()
        assert (outcome.report_dir / run_id / name).is_file()


def test_every_flaw_has_a_manifest() -> None:
    for vendor in discover():
        manifests = {p.stem for p in (fixtures_dir() / vendor / "broken").glob("*.toml")}
        assert manifests == set(flaws_of(vendor)), vendor
        for name in manifests:
            text = (fixtures_dir() / vendor / "broken" / f"{name}.toml").read_text()
            assert f'"--vendor", "{vendor}", "--flaw", "{name}"' in text, name


@pytest.mark.parametrize("case", CASES, ids=[c.key for c in CASES])
def test_broken_sut_fails_exactly_its_ids(runs: SuiteRuns, case: Case) -> None:
    outcome = runs.result(case.key)
    tail = outcome.stdout[-4000:]
    manifest = load_manifest(case.manifest)
    section = manifest.section(case.vendor)
    assert section is not None
    by_design = by_design_not_verified(
        {case.vendor: discover()[case.vendor].profiles(section)},
        slow="--slow" in case.flaw.options,
    )
    assert outcome.verdicts("fail") == set(case.flaw.fails | case.flaw.explore_fails), tail
    if case.flaw.explore_fails:  # found by the exploration alone: every scripted check passed
        for r in outcome.report["requirements"]:
            if r["id"] in case.flaw.explore_fails:
                scripted = [c for c in r["checks"] if not c["name"].startswith("exploration::")]
                # None failed, one passed at least (a check of a profile the SUT does not
                # claim, e.g. a callback channel, is not-verified).
                outcomes = {c["outcome"] for c in scripted}
                assert "pass" in outcomes and outcomes <= {"pass", "not-verified"}, r["checks"]
    assert outcome.verdicts("error") == set(), tail
    assert outcome.verdicts("warn") == set(case.flaw.warns), tail
    assert outcome.verdicts("not-verified") == set(by_design) | case.flaw.not_verified, tail
    failing = case.flaw.fails | case.flaw.explore_fails
    assert (outcome.code != 0) == bool(failing), f"exit status {outcome.code}\n{tail}"
    if case.flaw.within_s is not None:
        assert outcome.elapsed_s < case.flaw.within_s, f"{outcome.elapsed_s:.0f} s\n{tail}"
    assert_reports_readable(outcome.report_dir / "latest")


@pytest.mark.parametrize("case", EXPLORED, ids=[c.key for c in EXPLORED])
def test_explored_failure_is_short_and_replays(runs: SuiteRuns, case: Case) -> None:
    """The exploration shrank what it found to at most four steps, saved it, and the saved
    scenario re-driven alone (``--replay``) fails the same requirement again."""
    outcome = runs.result(case.key)
    failures = [f for x in outcome.report["exploration"] for f in x.get("failures", [])]
    assert {f["requirement"] for f in failures} == set(case.flaw.explore_fails), failures
    for failure in failures:
        assert len(failure["steps"]) <= 4, failure["steps"]
        saved = outcome.report_dir / "latest" / failure["file"]
        replayed = run_suite(
            outcome.report_dir / "replay",
            f"--sut={case.manifest}",
            f"--replay={saved}",
            target=f"conformance/{case.vendor}",
        )
        assert replayed.verdicts("fail") == {failure["requirement"]}, replayed.stdout[-3000:]
        assert replayed.code != 0


@pytest.mark.parametrize("case", ALSO_EXPLORED, ids=[c.key for c in ALSO_EXPLORED])
def test_exploration_also_finds_what_the_scripted_checks_find(runs: SuiteRuns, case: Case) -> None:
    """An invariant an exploration judges besides "processed once" (an answer within its
    bound) can fail: the exploration of a SUT whose scripted run fails it finds it too,
    confirmed on replay."""
    outcome = runs.result(case.key)
    assert case.flaw.explore_finds <= case.flaw.fails
    failures = [f for x in outcome.report["exploration"] for f in x.get("failures", [])]
    assert case.flaw.explore_finds <= {f["requirement"] for f in failures}, outcome.report[
        "exploration"
    ]


def assert_reports_readable(folder: Path) -> None:
    """Every report file parses and stays under 1 MB, whatever the broken SUT sent."""
    for name in ("report.json", "junit.xml", "index.html"):
        assert (folder / name).stat().st_size < 1_000_000, name
    ET.parse(folder / "junit.xml")
    json.loads((folder / "report.json").read_text("utf-8"))
    (folder / "index.html").read_text("utf-8")


@pytest.mark.skipif(STRICT is None, reason="no flaw that only warns")
def test_strict_turns_should_failures_into_failures(runs: SuiteRuns) -> None:
    assert STRICT is not None
    outcome = runs.result("strict")
    assert outcome.verdicts("fail") == set(STRICT.flaw.warns), outcome.stdout[-3000:]
    assert outcome.code != 0


def test_every_requirement_has_a_demonstrated_failure() -> None:
    """Each vendor and GEN requirement is failed (or warned, for SHOULD) by some broken SUT."""
    demonstrated = set().union(*(c.flaw.fails | c.flaw.warns for c in CASES))
    wanted = {r.id for r in for_vendors(discover())}
    assert wanted - demonstrated == set()
