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

import importlib.util
import os
import secrets
import socket
import time
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from conformance.options import port
from conformance.text import brief
from conformance.vendors import discover

MESSAGE_LIMIT = 4_000  # characters of a startup or usage error shown in the terminal

if TYPE_CHECKING:
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
    add("--fuzz-profile", default="conformance", choices=FUZZ_PROFILES,
        help="how hard the malformed-input campaigns try: conformance (quick, the same "
        "examples every run) or conformance-long (many more, randomized)")  # fmt: skip
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
            os.environ.setdefault("REFERENCE_SUT_PORT", str(_free_port()))
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

    manifest = _load_sut(config, wanted)
    vendors = tuple(v for v in wanted if v in manifest.vendors())
    if not vendors:
        raise pytest.UsageError(
            f"nothing to check: the SUT declares {manifest.vendors()} but this run selects "
            f"{list(wanted)}"
        )
    pki_dir = Path(config.getoption("--pki-dir") or report_dir / "pki").resolve()
    try:
        observer_port = port("--observer-port", config.getoption("--observer-port"))
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
        fuzz_profile=config.getoption("--fuzz-profile"),
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


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
    report_dir = Path(config.getoption("--report-dir")).resolve()
    wanted = _wanted(config, by_path)
    state = RunState(report_dir, wanted)
    try:
        state.settings = _settings(config, wanted, report_dir)
    except pytest.UsageError as exc:  # one clear message, however large what it quotes
        _write_startup_report(state, f"usage error: {exc}")
        raise pytest.UsageError(brief(str(exc), MESSAGE_LIMIT)) from None
    state.vendors = state.settings.vendors
    config.stash[STATE] = state
    from conformance.fuzzing import register_profiles

    register_profiles()
    # GEN requirements bind every SUT: when only vendor folders were named, judge them too.
    general = SUITE_DIR / "test_general.py"
    if not any(p in (general, SUITE_DIR) for p in _arg_paths(config)):
        config.args.append(str(general))


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
        (checks if vendors <= {"gen", *state.vendors} else drop).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
    checks.sort(key=_rank)
    items[:] = keep + checks


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

    h = Harness(state.settings, state.run_dir)
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
    if state is None or not _is_suite_path(Path(str(item.path))):
        return rep
    ids = _requirement_ids(item)
    if rep.when == "call" or (rep.when == "setup" and not rep.passed):
        from conformance.results import record_result

        record_result(state, item, call, rep, ids)
    return rep


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    state = _state(session.config)
    if state is None:
        return
    harness = state.harness
    if harness is not None:
        harness.stop()
    if state.startup_error is not None:
        _write_startup_report(state, state.startup_error)
        return
    if harness is None:
        return  # no check ran
    from conformance.results import write_run_report

    state.report_paths = write_run_report(state)


def _write_startup_report(state: RunState, message: str) -> None:
    """A run that cannot start still writes a report (every requirement ``error``) and moves
    ``latest`` to it, so CI never publishes a stale result."""
    if importlib.util.find_spec("jinja2") is None:  # pragma: no cover - installed with us
        return
    from conformance.results import write_startup_report

    state.report_paths = write_startup_report(state, message)


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
