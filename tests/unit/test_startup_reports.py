"""Every run that starts or stops writes its report (docs/sut-contract.md §5): a run that cannot
start (a hostile manifest, an unusable PKI folder) has every requirement `error` with one clear
message and moves `latest`; an interrupted run (Ctrl-C, twice) says so in every file. Each case
runs ``pytest conformance`` in a subprocess, as a user would."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path
from typing import IO

import pytest

from conformance.ports import spare_port
from simulators.pki import PKI

ROOT = Path(__file__).resolve().parents[2]
APPLE = '[apple]\nwebhook_url = "{url}"\nauth_token = "t"\n'


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pytest", "conformance", *args, "-p", "no:cacheprovider", "-q"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def stale_latest(report_dir: Path) -> Path:
    """A report left by an earlier run: the run under test must replace it."""
    stale = report_dir / "latest" / "report.json"
    stale.parent.mkdir(parents=True)
    stale.write_text('{"run_id": "stale", "summary": {"pass": 23}}')
    return stale


def deep_defaults(tmp: Path) -> list[str]:
    """A ``${…:-…}`` default nested 100,000 deep (a RecursionError, and quadratic, before)."""
    depth = 100_000
    url = "${CONFORMANCE_UNSET_X:-" * depth + "https://127.0.0.1:9/n" + "}" * depth
    (tmp / "sut.toml").write_text(APPLE.format(url=url))
    return [f"--sut={tmp / 'sut.toml'}"]


def pki_dir_is_a_file(tmp: Path) -> list[str]:
    (tmp / "pki").write_text("not a folder")
    return [f"--pki-dir={tmp / 'pki'}"]


def pki_dir_is_a_symlink_loop(tmp: Path) -> list[str]:
    (tmp / "loop-a").symlink_to(tmp / "loop-b")
    (tmp / "loop-b").symlink_to(tmp / "loop-a")
    return [f"--pki-dir={tmp / 'loop-a'}"]


def manifest_name_too_long(tmp: Path) -> list[str]:
    return [f"--sut={tmp / ('m' * 300)}.toml"]


def pki_file_does_not_decode(tmp: Path) -> list[str]:
    pki = PKI.load_or_create(tmp / "pki")
    pki.server.cert.write_text("-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n")
    return [f"--pki-dir={tmp / 'pki'}"]


CANNOT_START: list[tuple[Callable[[Path], list[str]], str]] = [
    (deep_defaults, "defaults nest more than 32 deep"),
    (pki_dir_is_a_file, "is not a folder"),
    (pki_dir_is_a_symlink_loop, "--pki-dir="),
    (manifest_name_too_long, "cannot read the manifest: File name too long"),
    (pki_file_does_not_decode, "server.pem is not a PEM certificate"),
]


@pytest.mark.parametrize("make, message", CANNOT_START, ids=[m.__name__ for m, _ in CANNOT_START])
def test_a_run_that_cannot_start_writes_its_report(
    tmp_path: Path, make: Callable[[Path], list[str]], message: str
) -> None:
    reports = tmp_path / "reports"
    stale = stale_latest(reports)
    started = time.monotonic()
    proc = run(*make(tmp_path), f"--report-dir={reports}")
    out = proc.stdout + proc.stderr
    assert time.monotonic() - started < 60
    assert proc.returncode == 4, out[-3000:]
    assert message in out and "INTERNALERROR" not in out and "Traceback" not in out, out[-3000:]
    data = json.loads(stale.read_text())
    assert data["run_id"] != "stale" and message in data["startup_error"]
    assert {r["verdict"] for r in data["requirements"]} == {"error"}


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads a file whatever its mode")
def test_an_unreadable_manifest_writes_its_report(tmp_path: Path) -> None:
    manifest = tmp_path / "sut.toml"
    manifest.write_text(APPLE.format(url="https://127.0.0.1:9/n"))
    manifest.chmod(0)
    stale = stale_latest(tmp_path / "reports")
    proc = run(f"--sut={manifest}", f"--report-dir={tmp_path / 'reports'}")
    assert proc.returncode == 4 and "cannot read the manifest" in proc.stderr
    assert json.loads(stale.read_text())["run_id"] != "stale"


def test_an_unwritable_report_dir_is_one_clear_message(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    proc = run(f"--report-dir={tmp_path / 'file' / 'reports'}")
    assert proc.returncode == 4, proc.stdout + proc.stderr
    assert "--report-dir=" in proc.stderr and "no report can be written there" in proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr


# Interrupted runs.

STUBBORN_SUT = """
import os, signal, socket, sys
port, marks = int(sys.argv[1]), sys.argv[2]
open(marks + ".pid", "w").write(str(os.getpid()))
def term(signum, frame):  # slow to stop: the harness waits out its grace period
    open(marks, "a").write("SIGTERM\\n")
signal.signal(signal.SIGTERM, term)
server = socket.socket()
server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
server.bind(("127.0.0.1", port))
server.listen()
conns = []
while True:
    conns.append(server.accept()[0])  # accepts, never answers
"""


def _wait_for_line(stream: IO[str], wanted: Callable[[str], bool], seen: list[str]) -> None:
    """Read ``stream`` until a line satisfies ``wanted`` (the caller bounds the wait)."""
    for line in stream:
        seen.append(line)
        if wanted(line):
            return


@pytest.mark.parametrize("twice", [False, True], ids=["ctrl-c", "ctrl-c-twice"])
def test_an_interrupted_run_says_so(tmp_path: Path, twice: bool) -> None:
    """SIGINT while a check runs (and again while the SUT is being stopped): report.json and
    index.html say "interrupted", junit.xml counts an error instead of claiming no failure for
    what never ran, and `latest` is this run's."""
    port = spare_port()
    marks = tmp_path / "marks"
    (tmp_path / "sut.py").write_text(STUBBORN_SUT)
    manifest = tmp_path / "sut.toml"
    manifest.write_text(
        f'[process]\ncommand = ["${{PYTHON}}", "sut.py", "{port}", "{marks}"]\n'
        f'ready = "tcp://127.0.0.1:{port}"\n' + APPLE.format(url=f"https://127.0.0.1:{port}/n")
    )
    reports = tmp_path / "reports"
    stale = stale_latest(reports)
    proc = subprocess.Popen(
        [sys.executable, "-m", "pytest", "conformance/apple", f"--sut={manifest}",
         f"--report-dir={reports}", "-p", "no:cacheprovider", "-v"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    assert proc.stdout is not None
    seen: list[str] = []
    reader = threading.Thread(
        target=_wait_for_line, args=(proc.stdout, lambda line: "::" in line, seen), daemon=True
    )
    reader.start()
    reader.join(90)  # the first check has started
    assert seen and "::" in seen[-1], "".join(seen)[-3000:]
    proc.send_signal(signal.SIGINT)
    if twice:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not marks.is_file():  # the SUT is being stopped
            threading.Event().wait(0.05)  # bounded poll of a file the SUT writes
        assert marks.is_file(), "the SUT never got SIGTERM"
        proc.send_signal(signal.SIGINT)
    rest, _ = proc.communicate(timeout=60)
    out = "".join(seen) + rest
    assert proc.returncode != 0, out[-3000:]
    data = json.loads(stale.read_text())
    assert data["run_id"] != "stale", out[-3000:]
    assert data["interrupted"].startswith("interrupted"), data["interrupted"]
    if twice:
        assert "interrupted again" in data["interrupted"]
    assert data["not_run"]["count"] > 0
    suite = ET.parse(reports / "latest" / "junit.xml").getroot()
    assert int(suite.get("errors") or 0) >= 1
    sut = Path(f"{marks}.pid").read_text()
    assert not Path(f"/proc/{sut}").exists() or " Z " in Path(f"/proc/{sut}/stat").read_text(), (
        "the SUT outlived the interrupted run"
    )
    assert "interrupted" in (reports / "latest" / "index.html").read_text()
