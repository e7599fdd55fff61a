"""`pytest conformance` refuses bad input with one clear message, before anything starts."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def run(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pytest", *args, "-p", "no:cacheprovider"],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize(
    "args, message",
    [
        (
            ["conformance", "--sut=https://127.0.0.1:1/x", "--sut-token=t"],
            "names one webhook receiver",
        ),
        (["conformance/apple", "--sut=https://127.0.0.1:1/x"], "needs --sut-token"),
        (["conformance", "--sut=missing.toml"], "missing.toml: no such file"),
        (["conformance", "--vendor=apple,nokia"], "unknown vendor(s) ['nokia']"),
        (["conformance", "--apple-retry-schedule=0,400"], "--apple-retry-schedule"),
        (
            [
                "conformance/apple",
                "--sut=https://127.0.0.1:9/x",
                "--sut-token=t",
                "--sut-ca=no.pem",
            ],
            "--sut-ca=no.pem: no such file",
        ),
    ],
)
def test_usage_errors(args: list[str], message: str) -> None:
    proc = run(*args)
    assert proc.returncode == 4, proc.stdout + proc.stderr
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr


def test_unreachable_sut_is_reported_before_checks(tmp_path: Path) -> None:
    started = time.monotonic()
    proc = run(
        "conformance/apple",
        "--sut=https://127.0.0.1:9/notify",
        "--sut-token=t",
        f"--report-dir={tmp_path}",
    )
    assert proc.returncode == 4, proc.stdout[-2000:]
    assert "cannot reach the SUT at https://127.0.0.1:9/notify" in proc.stdout + proc.stderr
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
    assert "could not start the simulators" in out and "choose a free port" in out
