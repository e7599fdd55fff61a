"""The ``pytest conformance`` plugin (registered by the ``pytest11`` entry point).

pytest loads this module in every run of the user's environment, so it imports only pytest and
the standard library at module level; the harness, simulators and report code load when a
conformance run starts. It stays inert unless the run collects checks from the
``conformance/`` folder. Then it checks the options and the SUT manifest before anything
starts, starts the harness (the observer, every vendor's simulators and, when declared, the
SUT), turns check outcomes into requirement verdicts, and writes ``report.json``,
``junit.xml`` and ``index.html`` (docs/sut-contract.md §1, §5).
"""

from __future__ import annotations

import contextlib
import datetime
import importlib.util
import os
import secrets
import time
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from conformance.options import ADVERTISE_HELP, LISTEN_HELP, port
from conformance.ports import spare_port
from conformance.text import brief
from conformance.vendors import discover

MESSAGE_LIMIT = 4_000  # characters of a startup or usage error shown in the terminal

if TYPE_CHECKING:
    from conformance.gate import Baseline, Waiver
    from conformance.harness import Harness, Settings
    from conformance.manifest import SutManifest
    from conformance.verdicts import Check, CheckResult

SUITE_DIR = Path(__file__).resolve().parent
STATE = pytest.StashKey["RunState"]()
FUZZ_PROFILES = ("conformance", "conformance-long")


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("conformance", "vendor notification conformance")
    add = group.addoption
    add(
        "--sut",
        metavar="URL|FILE.toml",
        help="the system under test: a receiver URL, or a SUT manifest (default: the bundled "
        "reference SUT)",
    )
    add("--sut-token", metavar="SECRET", help="with --sut=URL: the token it expects")
    add("--sut-ca", metavar="PEM", help="with --sut=URL: CA of its certificate")
    add(
        "--vendor",
        metavar="LIST",
        help=f"restrict to these vendors, comma-separated ({','.join(discover())})",
    )
    add("--report-dir", default="reports", metavar="DIR", help="default: reports/")
    # --strict (SHOULD failures fail the run too) is pytest's own flag since pytest 9: we read it
    # rather than redefine it. It also turns on pytest's strict modes, which this suite meets.
    add(
        "--slow",
        action="store_true",
        help="also run checks that wait for the SUT's own long real-time timers",
    )
    add(
        "--pki-dir",
        metavar="DIR",
        help="where the simulators' CA and certificates are written once and reused "
        "(default: <report-dir>/pki)",
    )
    add("--observer-port", type=int, default=0, help="pin the observer's port")
    add(
        "--no-first-contact",
        action="store_true",
        help="run the checks even when the first-contact probe finds a setup mistake (an "
        "untrusted certificate, a 404, a 401/403 to the correct token), which otherwise stops "
        "the run with one message (exit 4)",
    )
    add("--listen", metavar="ADDR", help=LISTEN_HELP)
    add("--advertise", metavar="HOST", help=ADVERTISE_HELP)
    add("--fuzz-profile", default="conformance", choices=FUZZ_PROFILES,
        help="how hard the malformed-input campaigns try: conformance (quick, the same "
        "examples every run) or conformance-long (many more, randomized)")  # fmt: skip
    add("--waivers", metavar="FILE.toml",
        help="[[waiver]] tables (id, reason, expires): a waived failure does not fail the run")  # fmt: skip
    add("--baseline", metavar="report.json",
        help="an earlier run's report: only regressions against it fail the run")  # fmt: skip
    add("--summary-md", metavar="PATH",
        help="append a Markdown summary there (also to $GITHUB_STEP_SUMMARY when set)")  # fmt: skip
    add("--keep-reports", type=int, default=0, metavar="N",
        help="keep only the last N run folders in the report folder (default 0: keep all)")  # fmt: skip
    add("--explore", type=float, default=0.0, metavar="SECONDS",
        help="after the scripted checks, spend this long exploring generated scenarios of "
        "events, faults and simulated time (docs/exploration.md)")  # fmt: skip
    add("--explore-seed", type=int, default=None, metavar="N",
        help="with --explore: make the exploration repeat itself (default: random, with "
        "failing scenarios carried over in <report-dir>/hypothesis)")  # fmt: skip
    add("--replay", metavar="FILE",
        help="re-drive a scenario an exploration saved (<report>/scenarios/*.json) and "
        "re-judge it, instead of the scripted checks")  # fmt: skip
    for plugin in discover().values():
        plugin.add_options(add)


class RunState:
    """Everything the plugin keeps for one ``pytest conformance`` run."""

    def __init__(self, report_dir: Path, vendors: tuple[str, ...]) -> None:
        self.run_id = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + secrets.token_hex(2)
        self.report_dir = report_dir
        self.run_dir = report_dir / self.run_id
        self.vendors = vendors
        self.started_at = time.time()
        self.settings: Settings | None = None
        self.harness: Harness | None = None
        self.results: list[CheckResult] = []
        self.errors_seen = 0
        self.report_paths: dict[str, Any] | None = None
        self.startup_error: str | None = None
        self.waivers: tuple[Waiver, ...] = ()
        self.baseline: Baseline | None = None
        self.options: dict[str, Any] = {}  # the run's options, for the report's provenance
        self.summary_targets: list[Path] = []  # --summary-md, $GITHUB_STEP_SUMMARY
        self.keep_reports = 0  # --keep-reports: run folders kept (0: all)
        self.other_failures = 0  # failing pytest reports the requirement verdicts do not cover
        self.planned: list[str] = []  # the checks selected, in order
        self.interrupted: str | None = None  # how the run was stopped, if it was
        self.explore_s = 0.0  # --explore
        self.explore_seed: int | None = None
        self.replay: Path | None = None
        self.exploration: list[dict[str, Any]] = []  # the report's "Exploration" section


def _arg_paths(config: pytest.Config) -> list[Path]:
    return [Path(arg.split("::")[0]).resolve() for arg in config.args]


def _is_suite_path(path: Path) -> bool:
    return path == SUITE_DIR or SUITE_DIR in path.parents


def _selected_vendors(config: pytest.Config) -> list[str] | None:
    """Vendors selected by the paths given; None when no path is inside conformance/."""
    vendors = list(discover())
    found: set[str] = set()
    any_suite = False
    for path in _arg_paths(config):
        if _is_suite_path(path):
            any_suite = True
            rel = path.relative_to(SUITE_DIR).parts if path != SUITE_DIR else ()
            found.update(rel[:1] if rel and rel[0] in vendors else vendors)
    return [v for v in vendors if v in found] if any_suite else None


def _wanted(config: pytest.Config, by_path: list[str]) -> tuple[str, ...]:
    wanted = set(by_path)
    vendor_opt = config.getoption("--vendor")
    if vendor_opt:
        named = {v.strip() for v in vendor_opt.split(",") if v.strip()}
        if unknown := named - set(discover()):
            raise pytest.UsageError(
                f"--vendor: unknown vendor(s) {sorted(unknown)}; choose from {','.join(discover())}"
            )
        wanted &= named
    return tuple(v for v in discover() if v in wanted)


def _load_sut(config: pytest.Config, wanted: tuple[str, ...]) -> SutManifest:
    from conformance.manifest import ManifestError, load_manifest, manifest_for_url
    from conformance.reference import reference_manifest

    sut = config.getoption("--sut")
    url_only = {
        "--sut-token": config.getoption("--sut-token"),
        "--sut-ca": config.getoption("--sut-ca"),
    }
    try:
        if (sut is None or "://" not in sut) and (
            given := [name for name, value in url_only.items() if value]
        ):
            raise pytest.UsageError(
                f"{', '.join(given)} only go with --sut=URL; in a manifest, write the token "
                "and CA in the vendor's section"
            )
        if sut is None:
            # The bundled reference SUT listens where REFERENCE_SUT_PORT says; pick a free port
            # unless the user pinned one, so a newcomer's run never collides with a busy 9443.
            os.environ.setdefault("REFERENCE_SUT_PORT", str(spare_port()))
            return reference_manifest()
        if "://" in sut:
            receivers = [v for v in wanted if discover()[v].receiver]
            if len(receivers) != 1:
                raise pytest.UsageError(
                    f"--sut=URL names one webhook receiver, but this run selects "
                    f"{receivers or 'no receiver vendor'}: run one vendor's folder (e.g. "
                    f"pytest conformance/{next(n for n, v in discover().items() if v.receiver)} "
                    "--sut=URL), add --vendor=NAME, or describe the SUT in a manifest: "
                    "--sut=sut.toml"
                )
            ca = config.getoption("--sut-ca")
            return manifest_for_url(
                sut, receivers[0], token=config.getoption("--sut-token"),
                ca=Path(ca) if ca else None,
            )  # fmt: skip
        return load_manifest(Path(sut))
    except ManifestError as exc:
        raise pytest.UsageError(str(exc)) from None


def _settings(config: pytest.Config, wanted: tuple[str, ...], report_dir: Path) -> Settings:
    from conformance.harness import Settings
    from simulators.network import Reach

    manifest = _load_sut(config, wanted)
    vendors = tuple(v for v in wanted if v in manifest.vendors())
    if not vendors:
        raise pytest.UsageError(
            f"nothing to check: the SUT declares {manifest.vendors()} but this run selects "
            f"{list(wanted)}"
        )
    pki_option = config.getoption("--pki-dir") or report_dir / "pki"
    try:
        pki_dir = Path(pki_option).resolve()
    except (OSError, RuntimeError) as exc:  # RuntimeError: a symlink loop (Python < 3.13)
        raise pytest.UsageError(
            f"--pki-dir={pki_option}: not a usable folder ({exc}); give a folder this user can "
            "write"
        ) from None
    if pki_dir.exists() and not pki_dir.is_dir():
        raise pytest.UsageError(
            f"--pki-dir={pki_option}: {pki_dir} is not a folder; give a folder (the "
            "simulators' CA and certificates are written there once and reused)"
        )
    try:
        observer_port = port("--observer-port", config.getoption("--observer-port"))
        reach = Reach.of(config.getoption("--listen"), config.getoption("--advertise"))
    except ValueError as exc:
        raise pytest.UsageError(str(exc)) from None
    vendor_settings = {}
    for name in vendors:
        try:
            vendor_settings[name] = discover()[name].settings(config.getoption, pki_dir=pki_dir)
        except ValueError as exc:
            raise pytest.UsageError(str(exc)) from None
    return Settings(
        manifest=manifest,
        vendors=vendors,
        report_dir=report_dir,
        pki_dir=pki_dir,
        vendor_settings=vendor_settings,
        strict=bool(getattr(config.option, "strict", False)),
        slow=config.getoption("--slow"),
        observer_port=observer_port,
        reach=reach,
        fuzz_profile=config.getoption("--fuzz-profile"),
        first_contact=not config.getoption("--no-first-contact"),
    )


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    by_path = _selected_vendors(config)
    if by_path is None:
        return  # not a conformance run: stay out of the way
    if getattr(config.option, "numprocesses", None) or hasattr(config, "workerinput"):
        raise pytest.UsageError(
            "pytest-xdist (-n) cannot run a conformance suite: every worker would start its own "
            "SUT and simulators on the same ports. Run without -n (the suite runs its checks "
            "in order)."
        )
    report_dir = _writable_report_dir(config.getoption("--report-dir"))
    wanted = _wanted(config, by_path)
    state = RunState(report_dir, wanted)
    try:
        keep = config.getoption("--keep-reports")
        if keep < 0:
            raise pytest.UsageError(
                f"--keep-reports={keep}: give how many run folders to keep (0: all)"
            )
        state.keep_reports = keep
        _load_gate(config, state)
        state.settings = _settings(config, wanted, report_dir)
    except pytest.UsageError as exc:  # one clear message, however large what it quotes
        _write_startup_report(state, f"usage error: {exc}")
        raise pytest.UsageError(brief(str(exc), MESSAGE_LIMIT)) from None
    state.vendors = state.settings.vendors
    try:
        _exploration_options(config, state)
    except pytest.UsageError as exc:
        _write_startup_report(state, f"usage error: {exc}")
        raise
    config.stash[STATE] = state
    from conformance.fuzzing import register_profiles

    register_profiles()
    # GEN requirements bind every SUT: when only vendor folders were named, judge them too.
    general = SUITE_DIR / "test_general.py"
    if not any(p in (general, SUITE_DIR) for p in _arg_paths(config)):
        config.args.append(str(general))


def _load_gate(config: pytest.Config, state: RunState) -> None:
    """Waivers and the baseline, read before anything starts: a bad file is a usage error."""
    from conformance.catalogue import catalogue
    from conformance.gate import GateFileError, load_baseline, load_waivers
    from conformance.provenance import run_options

    try:
        if waivers := config.getoption("--waivers"):
            state.waivers = load_waivers(Path(waivers), catalogue())
        if baseline := config.getoption("--baseline"):
            state.baseline = load_baseline(Path(baseline))
    except GateFileError as exc:
        raise pytest.UsageError(str(exc)) from None
    from conformance.summaries import summary_targets

    state.summary_targets = summary_targets(config.getoption("--summary-md"))
    flags = [f for p in discover().values() if p.name in state.vendors for f in p.behaviour_options]
    state.options = run_options(config.getoption, flags)
    state.options["--strict"] = bool(getattr(config.option, "strict", False))  # pytest's flag


def _writable_report_dir(option: str) -> Path:
    """``--report-dir`` made and checked before anything starts: one clear message when no
    report can be written there (docs/sut-contract.md §5)."""
    try:
        report_dir = Path(option).resolve()
        report_dir.mkdir(parents=True, exist_ok=True)
        probe = report_dir / f".write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except (OSError, RuntimeError) as exc:  # RuntimeError: a symlink loop (Python < 3.13)
        what = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        raise pytest.UsageError(
            f"--report-dir={option}: no report can be written there ({what}); give a folder "
            "this user can create and write"
        ) from None
    return report_dir


MAX_EXPLORE_S = 24 * 3600.0


def _exploration_options(config: pytest.Config, state: RunState) -> None:
    """--explore, --explore-seed and --replay, checked before anything starts."""
    explore = float(config.getoption("--explore") or 0.0)
    seed = config.getoption("--explore-seed")
    replay = config.getoption("--replay")
    if not 0 <= explore <= MAX_EXPLORE_S:
        raise pytest.UsageError(f"--explore: give seconds between 1 and {MAX_EXPLORE_S:.0f}")
    if seed is not None and not explore:
        raise pytest.UsageError("--explore-seed goes with --explore=SECONDS")
    if replay and explore:
        raise pytest.UsageError("--replay re-drives one saved scenario: drop --explore")
    if replay:
        from conformance.exploration import load_scenario

        try:
            saved = load_scenario(Path(replay))
        except ValueError as exc:
            raise pytest.UsageError(str(exc)) from None
        if saved.vendor not in state.vendors:
            raise pytest.UsageError(
                f"--replay: the scenario is for {saved.vendor!r}, which this run does not "
                f"check ({', '.join(state.vendors)}): run pytest conformance/{saved.vendor}"
            )
        state.replay = Path(replay).resolve()
    state.explore_s, state.explore_seed = explore, seed


def _state(config: pytest.Config) -> RunState | None:
    return config.stash.get(STATE, None)


def _requirement_ids(item: pytest.Item) -> list[str]:
    return [rid for m in item.iter_markers("requirement") for rid in m.args]


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(
    session: pytest.Session, config: pytest.Config, items: list[pytest.Item]
) -> None:
    state = _state(config)
    if state is None:
        return
    from conformance.catalogue import requirement

    keep: list[pytest.Item] = []
    drop: list[pytest.Item] = []
    checks: list[pytest.Item] = []
    for item in items:
        if not _is_suite_path(Path(str(item.path))):
            keep.append(item)  # not a conformance check (e.g. the user's own tests)
            continue
        ids = _requirement_ids(item)
        if not ids:
            raise pytest.UsageError(f"{item.nodeid}: a conformance check needs @requirement(ID)")
        for rid in ids:
            requirement(rid)  # unknown IDs are an error here, not at report time
            item.extra_keyword_matches.add(rid)  # pytest -k APL-AUTH-01 selects its checks
        vendors = {requirement(rid).vendor for rid in ids}
        wanted = vendors <= {"gen", *state.vendors} and state.replay is None
        (checks if wanted else drop).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
    checks.sort(key=_rank)
    items[:] = keep + checks
    state.planned = [item.nodeid for item in checks]


# The checks that restart the launched SUT (conformance/restart.py) run after every other
# vendor check, so its absence disturbs none of them, and before the run-wide GEN checks
# (run_last(14)), which judge the SUT as the restarts left it.
RESTART_RANK = 13


def _rank(item: pytest.Item) -> int:
    if item.get_closest_marker("restarts_sut") is not None:
        return RESTART_RANK
    marker = item.get_closest_marker("run_last")
    rank = 0 if marker is None else int(marker.args[0] if marker.args else 9)
    if rank >= RESTART_RANK and not _is_run_wide(item):
        raise pytest.UsageError(
            f"{item.nodeid}: run_last({rank}) would run after the restart checks; vendor checks "
            f"use a rank below {RESTART_RANK}"
        )
    return rank


def _is_run_wide(item: pytest.Item) -> bool:
    from conformance.catalogue import requirement

    return all(requirement(rid).vendor == "gen" for rid in _requirement_ids(item))


@pytest.fixture(scope="session")
def harness(request: pytest.FixtureRequest) -> Iterator[Harness]:
    """The running simulators and SUT of this conformance run."""
    state = _state(request.config)
    if state is None or state.settings is None:
        pytest.skip("not a conformance run")
    from conformance.harness import Harness
    from conformance.launcher import LaunchError
    from simulators.pki import PKIError

    try:
        h = Harness(state.settings, state.run_dir)
    except PKIError as exc:
        state.startup_error = f"conformance: {exc}"
        pytest.exit(brief(state.startup_error, MESSAGE_LIMIT), returncode=4)
    state.harness = h
    _stop_on_termination(h)
    try:
        h.start()
    except LaunchError as exc:
        message = f"conformance: {exc}"
    except OSError as exc:  # e.g. a pinned port already in use
        message = (
            f"conformance: could not start the simulators: {exc}. If you pinned a port "
            "(--observer-port, --<vendor>-…-port), choose a free one."
        )
    else:
        yield h
        return
    state.startup_error = message
    h.stop()
    pytest.exit(brief(message, MESSAGE_LIMIT), returncode=4)


def _stop_on_termination(h: Harness) -> None:
    """SIGTERM ends the run like Ctrl-C (pytest finishes, reports, stops the SUT); whatever
    happens, the SUT and its descendants do not outlive this process."""
    import atexit
    import signal
    import threading

    if threading.current_thread() is threading.main_thread():

        def interrupt(signum: int, frame: object) -> None:
            raise KeyboardInterrupt(f"signal {signum}")

        signal.signal(signal.SIGTERM, interrupt)
    atexit.register(h.stop)


@pytest.fixture
def check() -> Check:
    """Expected vs observed and reproduction notes for the report."""
    from conformance.verdicts import Check

    return Check()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(
    item: pytest.Item, nextitem: pytest.Item | None
) -> Generator[None, object, object]:
    state = _state(item.config)
    if state is not None and state.harness is not None:
        state.harness.cause = item.nodeid
        state.errors_seen = len(state.harness.errors())
    try:
        return (yield)
    finally:
        if state is not None and state.harness is not None:
            from simulators.evidence import RUN

            state.harness.cause = RUN


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    rep = yield
    state = _state(item.config)
    if state is None:
        return rep
    if not _is_suite_path(Path(str(item.path))):
        state.other_failures += rep.failed  # the user's own tests fail the run, whatever the gate
        return rep
    ids = _requirement_ids(item)
    if rep.when == "call" or (rep.when == "setup" and not rep.passed):
        from conformance.results import record_result

        record_result(state, item, call, rep, ids)
        _show_waived(state, rep, ids)
    elif rep.failed:  # a teardown fault: no requirement verdict shows it, the exit status does
        state.other_failures += 1
    return rep


def _show_waived(state: RunState, rep: pytest.TestReport, ids: list[str]) -> None:
    """A failing check whose requirements are all waived, or all failed in the baseline too,
    shows as passed with the reason, as a SHOULD failure does: it does not fail the run (the
    requirement's verdict, ``waived`` or ``fail``, is in the reports)."""
    if not (rep.when == "call" and rep.failed and state.results and ids):
        return
    if state.results[-1].outcome not in ("fail", "error"):
        return
    started = datetime.datetime.fromtimestamp(state.started_at, datetime.UTC).date()
    valid = {w.id: w for w in state.waivers if not w.expired(started)}
    if state.results[-1].outcome == "fail" and all(rid in valid for rid in ids):
        reasons = "; ".join(f"{rid}: {valid[rid].reason}" for rid in ids)
        rep.sections.append(("conformance waived", reasons))
        rep.outcome = "passed"
        return
    from conformance.gate import failing

    known = state.baseline.verdicts if state.baseline is not None else {}
    if known and all(failing(known.get(rid, "pass")) for rid in ids):
        rep.sections.append(
            ("conformance known failure", f"{' '.join(ids)} failed in the baseline too")
        )
        rep.outcome = "passed"


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    state = _state(session.config)
    if state is None:
        return
    if exitstatus == pytest.ExitCode.INTERRUPTED:
        ran = len({r.name for r in state.results})
        state.interrupted = (
            f"interrupted (Ctrl-C or SIGTERM) after {ran} of {len(state.planned)} checks"
        )
    if (state.explore_s or state.replay) and state.startup_error is None and not state.interrupted:
        from conformance.exploring import run_exploration

        if run_exploration(state):
            session.exitstatus = pytest.ExitCode.TESTS_FAILED
        elif state.replay and session.exitstatus == pytest.ExitCode.NO_TESTS_COLLECTED:
            session.exitstatus = pytest.ExitCode.OK  # --replay runs no scripted check
    harness = state.harness
    if harness is not None:
        try:
            harness.stop()
        except KeyboardInterrupt:  # a second Ctrl-C while stopping: end everything now
            state.interrupted = (
                f"{state.interrupted or 'interrupted'}; interrupted again while stopping the "
                "SUT and the simulators, which were then killed"
            )
            with _signals_held():
                harness.stop(grace_s=0.5)
    with _signals_held():  # the report and `latest` are written whole, whatever comes
        if state.startup_error is not None:
            _write_startup_report(state, state.startup_error)
            return
        if harness is None:
            return  # no check ran
        from conformance.results import write_run_report

        state.report_paths = write_run_report(state)
        if session.exitstatus in (pytest.ExitCode.OK, pytest.ExitCode.TESTS_FAILED):
            # The gate decides (docs/sut-contract.md §7): waived and known failures pass it, an
            # expired waiver or a regression fails it; a failing non-conformance test fails.
            passed = state.report_paths["gate"]["passed"] and not state.other_failures
            session.exitstatus = pytest.ExitCode.OK if passed else pytest.ExitCode.TESTS_FAILED


@contextlib.contextmanager
def _signals_held() -> Iterator[None]:
    """SIGINT and SIGTERM wait until the block is done (on the main thread; elsewhere a
    no-op): a report is never left half written."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    held: list[int] = []
    previous = {
        sig: signal.signal(sig, lambda signum, frame: held.append(signum))
        for sig in (signal.SIGINT, signal.SIGTERM)
    }
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _write_startup_report(state: RunState, message: str) -> None:
    """A run that cannot start still writes a report (every requirement ``error``) and moves
    ``latest`` to it, so CI never publishes a stale result."""
    if importlib.util.find_spec("jinja2") is None:  # pragma: no cover - installed with us
        return
    from conformance.results import write_startup_report

    state.report_paths = write_startup_report(state, message)


def _exploration_line(explored: dict[str, Any]) -> str:
    """One line per explored vendor: what ran, what failed."""
    name = " ".join(filter(None, (explored.get("vendor"), explored.get("part")))) or "exploration"
    if explored.get("unavailable"):
        return f"exploration {name}: not explored: {explored['unavailable']}"
    failed = ", ".join(f["requirement"] for f in explored["failures"]) or "no failure"
    flaky = f", {len(explored['flaky'])} flaky" if explored["flaky"] else ""
    return (
        f"exploration {name}: {explored['scenarios']} scenario(s), {explored['steps']} steps in "
        f"{explored['spent_s']:.0f} s: {failed}{flaky}"
    )


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
    for explored in state.exploration if state else []:
        terminalreporter.write_line(_exploration_line(explored))
    terminalreporter.write_line(f"report: {paths['index']}")
    if os.environ.get("CONFORMANCE_PRINT_JSON"):
        terminalreporter.write_line(f"json: {paths['json']}")
