"""``conformance-sim serve``: standalone simulators print a shell environment, answer a SUT,
log what happens and stop cleanly on SIGTERM (docs/sut-contract.md §6)."""

from __future__ import annotations

import json
import shlex
import signal
import ssl
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from conformance.ports import spare_port
from conformance.vendors import discover


def _serve(tmp_path: Path, *args: str) -> tuple[subprocess.Popen[str], dict[str, str]]:
    env_file = tmp_path / "sim.env"
    proc = subprocess.Popen(
        [sys.executable, "-m", "conformance.cli", "serve", *args,
         f"--pki-dir={tmp_path / 'pki'}", f"--env-file={env_file}"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 30
    while not env_file.is_file() and proc.poll() is None and time.monotonic() < deadline:
        threading.Event().wait(0.05)  # a bounded poll of another process's output file
    assert env_file.is_file(), proc.communicate()[1] if proc.poll() is not None else "no env file"
    exports = {}
    for line in env_file.read_text().splitlines():
        key, _, value = line.removeprefix("export ").partition("=")
        exports[key] = shlex.split(value)[0]
    return proc, exports


def _stop(proc: subprocess.Popen[str]) -> tuple[int, str, str]:
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=15)
    return proc.returncode, out, err


def test_serve_prints_the_contract_environment_and_stops_on_sigterm(tmp_path: Path) -> None:
    vendors = list(discover())
    observer_port = spare_port()
    proc, env = _serve(tmp_path, *vendors, f"--port=observer={observer_port}")
    try:
        assert env["CONFORMANCE_CA_FILE"] == str(tmp_path / "pki" / "ca.pem")
        assert env["CONFORMANCE_OBSERVER_URL"] == f"http://127.0.0.1:{observer_port}"
        for vendor in vendors:
            assert any(k.startswith(f"CONFORMANCE_{vendor.upper()}_") for k in env), vendor
        # The observer answers each vendor's route: an empty record is judged (400 names what
        # is missing), not refused as an unknown route (404).
        for vendor in vendors:
            request = urllib.request.Request(
                f"{env['CONFORMANCE_OBSERVER_URL']}/{vendor}",
                data=b"{}",
                headers={"Content-Type": "application/json"},
                method="POST",
            )
            try:
                with urllib.request.urlopen(request, timeout=5) as answer:
                    status, body = answer.status, answer.read()
            except urllib.error.HTTPError as refused:
                status, body = refused.code, refused.read()
            assert status in (204, 400), (vendor, status, body)
            assert status == 204 or body, vendor
    finally:
        code, out, err = _stop(proc)
    assert code == 0, err
    assert out.count("export CONFORMANCE_") == len(env)
    assert "stopped" in err


@pytest.mark.skipif("apple" not in discover(), reason="the apple plug-in is not installed")
def test_serve_apple_answers_an_api_client_over_tls(tmp_path: Path) -> None:
    proc, env = _serve(tmp_path, "apple")
    try:
        context = ssl.create_default_context(cafile=env["CONFORMANCE_CA_FILE"])
        request = urllib.request.Request(
            f"{env['CONFORMANCE_APPLE_API_URL']}/assets",
            headers={"Authorization": f"Bearer {env['CONFORMANCE_APPLE_STOKEN']}"},
        )
        with urllib.request.urlopen(request, timeout=5, context=context) as answer:
            assets = json.loads(answer.read())["assets"]
    finally:
        code, _, err = _stop(proc)
    assert assets and code == 0
    assert "sut -> apple-api: GET /mdm/v2/assets" in err  # the log says what happened
    # The sToken is kept beside the PKI: the same one next time, for a deployed SUT.
    again, env2 = _serve(tmp_path, "apple")
    _stop(again)
    assert env2["CONFORMANCE_APPLE_STOKEN"] == env["CONFORMANCE_APPLE_STOKEN"]


def test_serve_refuses_unknown_vendors_and_ports(tmp_path: Path) -> None:
    for args, message in [
        (["nokia"], "invalid choice: 'nokia'"),
        ([*discover(), "--port=nope=1"], "no option --nope-port"),
        ([*discover(), "--port=observer=99999"], "port from 1 to 65535"),
        ([*discover(), "--listen=localhost"], "--listen='localhost': give an IP address"),
        ([*discover(), "--advertise=a b"], "--advertise='a b': give the host name"),
    ]:
        proc = subprocess.run(
            [sys.executable, "-m", "conformance.cli", "serve", *args],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=tmp_path,
        )
        assert proc.returncode == 2 and message in proc.stderr, proc.stderr
