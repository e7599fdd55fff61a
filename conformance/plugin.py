"""The ``pytest conformance`` plugin (registered by the ``pytest11`` entry point).

It stays inert unless the run collects checks from the ``conformance/`` folder. Then it checks
the options and the SUT manifest before anything starts, starts the harness (simulators, the
observer and, when declared, the SUT), turns check outcomes into requirement verdicts, and writes
``report.json``, ``junit.xml`` and ``index.html`` (sut-contract.md §1, §5).
"""

from __future__ import annotations

import os
import secrets
import socket
import time
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import Any

import pytest

from conformance import report
from conformance.catalogue import RECEIVER_VENDORS, VENDORS, requirement
from conformance.harness import Harness, Settings
from conformance.launcher import LaunchError
from conformance.manifest import ManifestError, SutManifest, load_manifest, manifest_for_url
from conformance.verdicts import Check, CheckResult, NotVerified
from simulators.apple.delivery import RetrySchedule

SUITE_DIR = Path(__file__).resolve().parent
REFERENCE_MANIFEST = SUITE_DIR.parent / "fixtures" / "reference_sut" / "sut.toml"
STATE = pytest.StashKey["RunState"]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("conformance", "vendor notification conformance")
    group.addoption(
        "--sut",
        metavar="URL|FILE.toml",
        help="the system under test: a receiver URL, or a SUT manifest (default: the bundled "
        "reference SUT)",
    )
    group.addoption("--sut-token", metavar="SECRET", help="with --sut=URL: the token it expects")
    group.addoption("--sut-ca", metavar="PEM", help="with --sut=URL: CA of its certificate")
    group.addoption(
        "--vendor",
        metavar="LIST",
        help=f"restrict to these vendors, comma-separated ({','.join(VENDORS)})",
    )
    group.addoption("--report-dir", default="reports", metavar="DIR", help="default: reports/")
    # --strict (SHOULD failures fail the run too) is pytest's own flag since pytest 9: we read it
    # rather than redefine it. It also turns on pytest's strict modes, which this suite meets.
    group.addoption(
        "--slow",
        action="store_true",
        help="also run checks that wait for the SUT's own long real-time timers",
    )
    group.addoption(
        "--pki-dir",
        metavar="DIR",
        help="where the simulators' CA and certificates are written once and reused "
        "(default: <report-dir>/pki)",
    )
    group.addoption("--observer-port", type=int, default=0, help="pin the observer's port")
    group.addoption(
        "--apple-api-port", type=int, default=0, help="pin the Apps and Books API's port"
    )
    group.addoption(
        "--apple-stoken",
        metavar="TOKEN",
        help="the sToken the simulated Apps and Books API accepts (default: one kept in the "
        "PKI folder, the same from run to run)",
    )
    group.addoption(
        "--apple-retry-schedule",
        default="0,60,300",
        metavar="S,S,S",
        help="notification attempt offsets in simulated seconds (default 0,60,300)",
    )
    group.addoption(
        "--apple-timeout",
        type=float,
        default=5.0,
        metavar="S",
        help="seconds a receiver has to answer a notification (default 5)",
    )


class RunState:
    """Everything the plugin keeps for one ``pytest conformance`` run."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.run_id = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + secrets.token_hex(2)
        self.run_dir = settings.report_dir / self.run_id
        self.started_at = time.time()
        self.harness: Harness | None = None
        self.results: list[CheckResult] = []
        self.marks: dict[str, int] = {}
        self.report_paths: dict[str, Any] | None = None


def _arg_paths(config: pytest.Config) -> list[Path]:
    return [Path(arg.split("::")[0]).resolve() for arg in config.args]


def _selected_vendors(config: pytest.Config) -> list[str] | None:
    """Vendors selected by the paths given; None when no path is inside conformance/."""
    found: set[str] = set()
    any_suite = False
    for path in _arg_paths(config):
        if path == SUITE_DIR or SUITE_DIR in path.parents:
            any_suite = True
            rel = path.relative_to(SUITE_DIR).parts if path != SUITE_DIR else ()
            found.update(rel[:1] if rel and rel[0] in VENDORS else VENDORS)
    return sorted(found) if any_suite else None


def _settings(config: pytest.Config, by_path: list[str]) -> Settings:
    opt = config.getoption
    vendor_opt = opt("--vendor")
    wanted = set(by_path)
    if vendor_opt:
        named = {v.strip() for v in vendor_opt.split(",") if v.strip()}
        if unknown := named - set(VENDORS):
            raise pytest.UsageError(
                f"--vendor: unknown vendor(s) {sorted(unknown)}; choose from {','.join(VENDORS)}"
            )
        wanted &= named
    sut = opt("--sut")
    manifest: SutManifest
    try:
        if sut is None:
            # The bundled reference SUT listens where REFERENCE_SUT_PORT says; pick a free port
            # unless the user pinned one, so a newcomer's run never collides with a busy 9443.
            os.environ.setdefault("REFERENCE_SUT_PORT", str(_free_port()))
            manifest = load_manifest(REFERENCE_MANIFEST)
        elif "://" in sut:
            receivers = sorted(wanted & set(RECEIVER_VENDORS))
            if len(receivers) != 1:
                raise pytest.UsageError(
                    f"--sut=URL names one webhook receiver, but this run selects "
                    f"{receivers or 'no receiver vendor'}: run one vendor's folder (e.g. "
                    "pytest conformance/apple --sut=URL), add --vendor=apple, or describe the "
                    "SUT in a manifest: --sut=sut.toml"
                )
            ca = opt("--sut-ca")
            manifest = manifest_for_url(
                sut, receivers[0], token=opt("--sut-token"), ca=Path(ca) if ca else None
            )
        else:
            manifest = load_manifest(Path(sut))
    except ManifestError as exc:
        raise pytest.UsageError(str(exc)) from None
    vendors = tuple(v for v in VENDORS if v in wanted and v in manifest.vendors())
    if not vendors:
        raise pytest.UsageError(
            f"nothing to check: the SUT declares {manifest.vendors()} but this run selects "
            f"{sorted(wanted)}"
        )
    try:
        schedule = RetrySchedule.parse(opt("--apple-retry-schedule"))
    except ValueError as exc:
        raise pytest.UsageError(f"--apple-retry-schedule: {exc}") from None
    if not 0 < opt("--apple-timeout") <= 60:
        raise pytest.UsageError("--apple-timeout: give seconds between 0 and 60")
    report_dir = Path(opt("--report-dir")).resolve()
    pki_dir = Path(opt("--pki-dir")).resolve() if opt("--pki-dir") else report_dir / "pki"
    return Settings(
        manifest=manifest,
        vendors=vendors,
        report_dir=report_dir,
        pki_dir=pki_dir,
        apple_stoken=opt("--apple-stoken") or _stable_secret(pki_dir / "apple-stoken"),
        strict=bool(getattr(config.option, "strict", False)),
        slow=opt("--slow"),
        observer_port=opt("--observer-port"),
        apple_api_port=opt("--apple-api-port"),
        apple_schedule=schedule,
        apple_timeout_s=opt("--apple-timeout"),
    )


def _stable_secret(path: Path) -> str:
    """A secret made once and kept beside the PKI, so a deployed SUT can be configured with it."""
    if path.is_file() and (value := path.read_text().strip()):
        return value
    path.parent.mkdir(parents=True, exist_ok=True)
    value = secrets.token_urlsafe(24)
    path.write_text(value + "\n")
    return value


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    by_path = _selected_vendors(config)
    if by_path is None:
        return  # not a conformance run: stay out of the way
    config.stash[STATE] = RunState(_settings(config, by_path))
    # GEN requirements bind every SUT: when only vendor folders were named, judge them too.
    general = str(SUITE_DIR / "test_general.py")
    if not any(p == SUITE_DIR / "test_general.py" or p == SUITE_DIR for p in _arg_paths(config)):
        config.args.append(general)


def _state(config: pytest.Config) -> RunState | None:
    return config.stash.get(STATE, None)


def _requirement_ids(item: pytest.Item) -> list[str]:
    return [rid for m in item.iter_markers("requirement") for rid in m.args]


def pytest_collection_modifyitems(
    session: pytest.Session, config: pytest.Config, items: list[pytest.Item]
) -> None:
    state = _state(config)
    if state is None:
        return
    keep, drop = [], []
    for item in items:
        ids = _requirement_ids(item)
        if not ids:
            raise pytest.UsageError(f"{item.nodeid}: a conformance check needs @requirement(ID)")
        vendors = {requirement(rid).vendor for rid in ids}
        (keep if vendors <= {"gen", *state.settings.vendors} else drop).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
    keep.sort(key=_rank)
    items[:] = keep


def _rank(item: pytest.Item) -> int:
    marker = item.get_closest_marker("run_last")
    return 0 if marker is None else int(marker.args[0] if marker.args else 9)


@pytest.fixture(scope="session")
def harness(request: pytest.FixtureRequest) -> Iterator[Harness]:
    """The running simulators and SUT of this conformance run."""
    state = _state(request.config)
    if state is None:
        pytest.skip("not a conformance run")
    h = Harness(state.settings, state.run_dir)
    state.harness = h
    try:
        h.start()
    except (LaunchError, ManifestError) as exc:
        h.startup_error = str(exc)
        h.stop()
        pytest.exit(f"conformance: {exc}", returncode=4)
    except OSError as exc:  # e.g. a pinned --observer-port or --apple-api-port already in use
        h.startup_error = str(exc)
        h.stop()
        pytest.exit(
            f"conformance: could not start the simulators: {exc}. If you pinned "
            "--observer-port or --apple-api-port, choose a free port.",
            returncode=4,
        )
    yield h


@pytest.fixture
def check() -> Check:
    """Expected vs observed and reproduction notes for the report."""
    return Check()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item: pytest.Item) -> Generator[None, None, None]:
    state = _state(item.config)
    if state is not None and state.harness is not None:
        state.marks[item.nodeid] = state.harness.recorder.mark()
    return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    rep = yield
    state = _state(item.config)
    ids = _requirement_ids(item)
    if state is None or not ids:
        return rep
    if rep.when == "call" or (rep.when == "setup" and not rep.passed):
        _record(state, item, call, rep, ids)
    return rep


def _record(
    state: RunState,
    item: pytest.Item,
    call: pytest.CallInfo[None],
    rep: pytest.TestReport,
    ids: list[str],
) -> None:
    exc = call.excinfo
    if rep.passed:
        outcome, message = "pass", "as required"
    elif exc is not None and exc.errisinstance(NotVerified):
        outcome, message = "not-verified", str(exc.value)
        rep.outcome = "skipped"
        rep.longrepr = (str(item.path), item.location[1] or 0, f"not-verified: {message}")
    elif rep.skipped:
        outcome, message = "not-verified", _skip_reason(rep)
    elif exc is not None and exc.errisinstance((AssertionError, pytest.fail.Exception)):
        outcome, message = "fail", _first_line(str(exc.value))
        if all(requirement(r).level == "SHOULD" for r in ids) and not state.settings.strict:
            outcome = "warn"
            rep.outcome = "passed"
            rep.sections.append(("conformance warning", message))
    else:
        outcome = "error"
        message = _first_line(exc.exconly() if exc is not None else "harness error")
    check = item.funcargs.get("check") if hasattr(item, "funcargs") else None
    evidence: list[dict[str, Any]] = []
    if state.harness is not None:
        start = state.marks.get(item.nodeid, 0)
        actors = getattr(check, "history_actors", set())
        events = [
            e
            for e in state.harness.recorder.all()
            if e.seq >= start or e.actor in actors or e.peer in actors
        ]
        evidence = [e.to_json() for e in events][:400]
    state.results.append(
        CheckResult(
            name=item.nodeid,
            requirement_ids=ids,
            outcome=outcome,
            message=message,
            expected=getattr(check, "expected", None),
            observed=getattr(check, "observed", None),
            reproduce=list(getattr(check, "reproduce", [])),
            notes=list(getattr(check, "notes", [])),
            duration_s=round(rep.duration, 3),
            evidence=evidence,
        )
    )


def _skip_reason(rep: pytest.TestReport) -> str:
    if isinstance(rep.longrepr, tuple):
        return str(rep.longrepr[2]).removeprefix("Skipped: ")
    return str(rep.longrepr)


def _first_line(text: str, limit: int = 500) -> str:
    text = text.strip()
    line = text.split("\nassert ")[0].split("\n+")[0].strip()
    return line[:limit]


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    state = _state(session.config)
    if state is None:
        return
    harness = state.harness
    log_tail = ""
    if harness is not None:
        harness.stop()
        if harness.sut is not None:
            log_tail = harness.sut.log_tail()
    if harness is None or harness.startup_error:
        return  # nothing was judged; the startup error was printed
    data = report.build_report(
        state.settings,
        state.run_id,
        state.started_at,
        state.results,
        sut_log_tail=log_tail,
        simulated_s=harness.clock.now(),
    )
    paths = report.write_reports(data, state.run_dir, state.settings.report_dir)
    state.report_paths = paths


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    state = _state(config)
    paths = state.report_paths if state else None
    if not paths:
        return
    summary = paths["summary"]
    terminalreporter.section("conformance")
    terminalreporter.write_line(
        "requirements: " + ", ".join(f"{v} {n}" for v, n in summary.items())
    )
    for line in paths["lines"]:
        terminalreporter.write_line(line)
    terminalreporter.write_line(f"report: {paths['index']}")
    if os.environ.get("CONFORMANCE_PRINT_JSON"):
        terminalreporter.write_line(f"json: {paths['json']}")
