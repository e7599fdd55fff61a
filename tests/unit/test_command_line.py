"""`pytest conformance` refuses bad input with one clear message, before anything starts."""

from __future__ import annotations

import importlib.util
import json
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from conformance.vendors import discover

ROOT = Path(__file__).resolve().parents[2]


def run(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pytest", *args, "-p", "no:cacheprovider"],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _two_receivers() -> bool:
    return sum(v.receiver for v in discover().values()) >= 2


USAGE_ERRORS = [
    pytest.param(
        ["conformance", "--sut=https://127.0.0.1:1/x", "--sut-token=t"],
        "names one webhook receiver",
        id="url-needs-one-receiver",
        marks=pytest.mark.skipif(not _two_receivers(), reason="one receiver vendor installed"),
    ),
    (["conformance/apple", "--sut=https://127.0.0.1:1/x"], "needs --sut-token"),
    (["conformance", "--sut=missing.toml"], "missing.toml: no such file"),
    (["conformance", "--vendor=apple,nokia"], "unknown vendor(s) ['nokia']"),
    (["conformance", "--apple-retry-schedule=0,400"], "--apple-retry-schedule"),
    (["conformance", "--apple-billing-period=0"], "--apple-billing-period: give simulated days"),
    (
        ["conformance/apple", "--sut=https://127.0.0.1:9/x", "--sut-token=t", "--sut-ca=no.pem"],
        "--sut-ca=no.pem: no such file",
    ),
    (["conformance/apple", "--sut=https://127.0.0.1:99999/x", "--sut-token=t"], "port must be"),
    (["conformance", "--sut-ca=ca.pem"], "--sut-ca only go with --sut=URL"),
    (["conformance", "--observer-port=70000"], "--observer-port=70000"),
    (["conformance", "--apple-api-port=-1"], "--apple-api-port=-1"),
    (["conformance", "--listen=my-host"], "--listen='my-host': give an IP address"),
    (["conformance", "--listen=0.0.0.0", "--advertise=::"], "--advertise=::: a SUT cannot"),
    (["conformance", "--explore=-1"], "--explore: give seconds"),
    (["conformance", "--explore-seed=3"], "--explore-seed goes with --explore"),
    (["conformance", "--replay=nowhere.json"], "--replay: no file nowhere.json"),
    (["conformance", "--replay=pyproject.toml"], "is not JSON"),
    pytest.param(
        ["conformance", "-n", "2"],
        "pytest-xdist (-n) cannot run a conformance suite",
        id="xdist",
        marks=pytest.mark.skipif(
            importlib.util.find_spec("xdist") is None, reason="pytest-xdist not installed"
        ),
    ),
]


@pytest.mark.parametrize("args, message", USAGE_ERRORS)
def test_usage_errors(tmp_path: Path, args: list[str], message: str) -> None:
    proc = run(*args, f"--report-dir={tmp_path}")
    assert proc.returncode == 4, proc.stdout + proc.stderr
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr


def test_non_boolean_api_client_is_a_usage_error(tmp_path: Path) -> None:
    manifest = tmp_path / "sut.toml"
    manifest.write_text(
        '[apple]\nwebhook_url = "https://127.0.0.1:9/n"\nauth_token = "t"\napi_client = "yes"\n'
    )
    proc = run("conformance", f"--sut={manifest}", f"--report-dir={tmp_path}")
    assert proc.returncode == 4, proc.stdout + proc.stderr
    assert "[apple] api_client: Input should be a valid boolean" in proc.stderr


def test_a_run_that_cannot_start_still_writes_a_report(tmp_path: Path) -> None:
    """Every requirement `error` with the startup message, and `latest` moved to it."""
    stale = tmp_path / "latest" / "report.json"
    stale.parent.mkdir()
    stale.write_text('{"summary": {"pass": 23}}')
    proc = run("conformance", "--sut=missing.toml", f"--report-dir={tmp_path}")
    assert proc.returncode == 4
    data = json.loads(stale.read_text())
    assert data["startup_error"] and "missing.toml: no such file" in data["startup_error"]
    assert {r["verdict"] for r in data["requirements"]} == {"error"}
    assert {r["id"] for r in data["requirements"]} >= {"GEN-LIVE-01", "APL-AUTH-01"}


def test_a_huge_startup_error_is_one_short_message_and_a_small_report(tmp_path: Path) -> None:
    """A manifest of 2 MB of unknown keys: the terminal and the reports get the first errors and
    a count, not the whole text once per requirement."""
    manifest = tmp_path / "sut.toml"
    keys = "".join(f"unknown_{n:06d} = {n}\n" for n in range(100_000))
    manifest.write_text(f'[apple]\nwebhook_url = "https://127.0.0.1:9/n"\nauth_token = "t"\n{keys}')
    proc = run("conformance", f"--sut={manifest}", f"--report-dir={tmp_path}")
    out = proc.stdout + proc.stderr
    assert proc.returncode == 4, out[-2000:]
    assert len(out) < 50_000 and "unknown_000000" in out
    report = tmp_path / "latest" / "report.json"
    assert report.stat().st_size < 1_000_000
    data = json.loads(report.read_text())
    assert all(len(r["reason"]) < 1_000 for r in data["requirements"])


def test_raw_sut_output_is_escaped_in_the_exit_message(tmp_path: Path) -> None:
    """ESC and NUL from a SUT that exits before it is ready are shown as \\xNN, never sent to
    the terminal as they are."""
    (tmp_path / "noisy.py").write_text("print('\\x1b[2Jboom\\x00'); raise SystemExit(3)\n")
    manifest = tmp_path / "sut.toml"
    manifest.write_text(
        '[process]\ncommand = ["${PYTHON}", "${MANIFEST_DIR}/noisy.py"]\n'
        'ready = "tcp://127.0.0.1:9"\n'
        '[apple]\nwebhook_url = "https://127.0.0.1:9/n"\nauth_token = "t"\n'
    )
    proc = run("conformance", f"--sut={manifest}", f"--report-dir={tmp_path}")
    out = proc.stdout + proc.stderr
    assert proc.returncode == 4, out[-2000:]
    assert "\\x1b[2Jboom\\x00" in out and "\x1b" not in out and "\x00" not in out


def test_project_tests_and_conformance_in_one_run(tmp_path: Path) -> None:
    """Only items under conformance/ need @requirement."""
    proc = run("tests/unit/test_clock.py", "conformance", "--collect-only", "-q",
               f"--report-dir={tmp_path}")  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "tests/unit/test_clock.py::" in proc.stdout
    assert "conformance/apple/test_receiver.py::" in proc.stdout


def test_k_selects_a_requirements_checks(tmp_path: Path) -> None:
    proc = run("conformance", "-k", "APL-AUTH-03", "--collect-only", "-q",
               f"--report-dir={tmp_path}")  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    selected = [line for line in proc.stdout.splitlines() if "::" in line]
    assert selected and all("test_rejects_wrong_authorization" in line for line in selected)


def test_unreachable_sut_is_reported_before_checks(tmp_path: Path) -> None:
    started = time.monotonic()
    proc = run(
        "conformance/apple",
        "--sut=https://127.0.0.1:9/notify",
        "--sut-token=t",
        f"--report-dir={tmp_path}",
    )
    assert proc.returncode == 4, proc.stdout[-2000:]
    assert "https://127.0.0.1:9/notify ([apple] webhook_url) does not accept" in (
        proc.stdout + proc.stderr
    )
    assert time.monotonic() - started < 60


def test_sut_that_exits_early_is_reported(tmp_path: Path) -> None:
    manifest = tmp_path / "sut.toml"
    manifest.write_text(
        '[process]\ncommand = ["${PYTHON}", "-c", "print(\'boom\'); raise SystemExit(3)"]\n'
        'ready = "tcp://127.0.0.1:9"\n'
        '[apple]\nwebhook_url = "https://127.0.0.1:9/n"\nauth_token = "t"\n'
    )
    proc = run("conformance", f"--sut={manifest}", f"--report-dir={tmp_path}")
    out = proc.stdout + proc.stderr
    assert proc.returncode == 4, out[-2000:]
    assert "exited with status 3 before it was ready" in out and "boom" in out


def test_busy_pinned_port_is_one_clear_message(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        proc = run("conformance", f"--observer-port={port}", f"--report-dir={tmp_path}")
    out = proc.stdout + proc.stderr
    assert proc.returncode == 4, out[-2000:]
    assert "could not start the simulators" in out and "choose a free one" in out


SILENT_SUT = """
import os, socket, sys, time
port, pids = int(sys.argv[1]), sys.argv[2]
if os.fork() == 0:  # a daemon the SUT leaves behind
    os.setsid()
    if os.fork() == 0:
        open(pids, "a").write(f"{os.getpid()}\\n")
        while True:
            time.sleep(1)
    os._exit(0)
server = socket.socket()
server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
server.bind(("127.0.0.1", port))
server.listen()
open(pids, "a").write(f"{os.getpid()}\\n")
conns = []
while True:
    conns.append(server.accept()[0])  # accepts, never answers
"""


def _pytest_with_a_forking_sut(tmp_path: Path) -> tuple[subprocess.Popen[str], list[int]]:
    """``pytest conformance`` against :data:`SILENT_SUT` (which starts a grandchild that leaves
    its session); the pytest process and the two SUT pids, once both are written."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    (tmp_path / "sut.py").write_text(SILENT_SUT)
    pids = tmp_path / "pids"
    manifest = tmp_path / "sut.toml"
    manifest.write_text(
        f'[process]\ncommand = ["${{PYTHON}}", "sut.py", "{port}", "{pids}"]\n'
        f'ready = "tcp://127.0.0.1:{port}"\n'
        f'[apple]\nwebhook_url = "https://127.0.0.1:{port}/n"\nauth_token = "t"\n'
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "pytest", "conformance", f"--sut={manifest}",
         f"--report-dir={tmp_path}", "-p", "no:cacheprovider", "-q"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while (
        time.monotonic() < deadline and len(pids.read_text().split() if pids.is_file() else []) < 2
    ):
        threading.Event().wait(0.1)  # bounded poll of the SUT's own pid file
    return proc, [int(p) for p in pids.read_text().split()]


def test_sigterm_to_pytest_leaves_no_sut_process_behind(tmp_path: Path) -> None:
    import signal

    proc, started = _pytest_with_a_forking_sut(tmp_path)
    threading.Event().wait(1.0)  # let a check begin (waiting on the silent receiver)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=60)
    alive = [p for p in started if _running(p)]
    assert len(started) == 2
    assert alive == [], out[-2000:]
    assert (tmp_path / "latest" / "report.json").is_file(), out[-2000:]


def _running(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


@pytest.mark.parametrize(
    "option, text, message",
    [
        ("--waivers", '[[waiver]]\nid = "APL-AUTH-1"\nreason = "r"\nexpires = 2027-01-01\n', "did you mean APL-AUTH-01"),
        ("--waivers", '[[waiver]]\nid = "APL-AUTH-01"\nexpires = 2027-01-01\n', "give the reason"),
        ("--baseline", '{"results": {"tool": {"name": "x"}}}', "not a conformance report"),
    ],
)  # fmt: skip
def test_a_bad_waiver_or_baseline_file_stops_the_run_before_it_starts(
    tmp_path: Path, option: str, text: str, message: str
) -> None:
    bad = tmp_path / "bad-file"
    bad.write_text(text)
    proc = run("conformance", f"{option}={bad}", f"--report-dir={tmp_path}")
    assert proc.returncode == 4, proc.stdout + proc.stderr
    assert message in proc.stderr and str(bad) in proc.stderr
    assert "Traceback" not in proc.stderr


def test_sigkill_to_pytest_leaves_no_sut_process_behind(tmp_path: Path) -> None:
    """pytest cannot clean up after SIGKILL (or the OOM killer): the SUT's supervisor, told by
    the kernel that its parent died, ends the SUT and the grandchild that left its session."""
    import signal

    proc, started = _pytest_with_a_forking_sut(tmp_path)
    assert len(started) == 2 and all(_running(p) for p in started)
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and any(_running(p) for p in started):
        threading.Event().wait(0.1)  # bounded poll: processes the supervisor ends
    assert not any(_running(p) for p in started), "the SUT outlived pytest"
