"""An Ivanti subscriber running elsewhere (not launched by the harness) is judged too: it is
configured once from ``conformance-sim serve ivanti`` (pinned ports, a PKI folder kept), started
on its own, and ``pytest conformance/ivanti --sut=manifest.toml`` with the same pins judges it.
The manifest also narrows what it consumes and picks the EPMM topic style."""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from conformance.ports import spare_port

ROOT = Path(__file__).resolve().parents[2]
CONSUMES = ["device_enrolled", "device_check_in", "device_retired"]


def _serve_environment(pki: Path, pins: dict[str, int], env_file: Path) -> dict[str, str]:
    """Run ``conformance-sim serve ivanti`` once with the pins; the environment it prints."""
    ports = [f"--port={name}={port}" for name, port in pins.items()]
    serve = subprocess.Popen(
        [sys.executable, "-m", "conformance.cli", "serve", "ivanti", f"--pki-dir={pki}",
         *ports, "--ivanti-topic-style=epmm", "--ivanti-events-per-s=0",
         f"--env-file={env_file}", "-q"],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = threading.Event()
        for _ in range(300):
            if env_file.is_file() or serve.poll() is not None:
                break
            deadline.wait(0.1)
        assert env_file.is_file(), serve.stderr.read() if serve.stderr else "no env file"
    finally:
        serve.send_signal(signal.SIGTERM)
        serve.wait(timeout=30)
    environment = {}
    for line in env_file.read_text().splitlines():
        name, _, value = line.removeprefix("export ").partition("=")
        environment[name] = shlex.split(value)[0]
    return environment


@pytest.fixture
def subscriber(tmp_path: Path) -> Iterator[tuple[Path, dict[str, int]]]:
    """The reference SUT's Ivanti subscriber, configured from the printed environment and
    started before the run (it waits for the broker, backing off)."""
    pki = tmp_path / "pki"
    pins = {"ivanti-broker": spare_port(), "ivanti-cps": spare_port(), "observer": spare_port()}
    environment = _serve_environment(pki, pins, tmp_path / "sim.env")
    assert environment["CONFORMANCE_IVANTI_BROKER_PORT"] == str(pins["ivanti-broker"])
    log = (tmp_path / "sut.log").open("w")
    sut = subprocess.Popen(
        [sys.executable, "-m", "conformance_fixtures.reference_sut", "--vendor", "ivanti"],
        cwd=ROOT,
        env={
            **os.environ,
            **environment,
            "REFERENCE_SUT_PORT": str(spare_port()),
            "REFERENCE_IVANTI_CONSUMES": ",".join(CONSUMES),
            "REFERENCE_IVANTI_CLIENT_ID": "subscriber-elsewhere",
        },
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        yield pki, pins
    finally:
        sut.send_signal(signal.SIGTERM)
        try:
            sut.wait(timeout=30)
        except subprocess.TimeoutExpired:
            sut.kill()
        log.close()


def test_a_subscriber_running_elsewhere_is_judged(
    tmp_path: Path, subscriber: tuple[Path, dict[str, int]]
) -> None:
    pki, pins = subscriber
    manifest = tmp_path / "sut.toml"
    manifest.write_text(
        'name = "subscriber-elsewhere"\n\n[ivanti]\n'
        f'consumes = {json.dumps(CONSUMES)}\ntopic_style = "epmm"\n'
    )
    reports = tmp_path / "reports"
    env = {k: v for k, v in os.environ.items() if k != "PYTEST_ADDOPTS"}
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "conformance/ivanti", "-q", "-p", "no:cacheprovider",
         f"--sut={manifest}", f"--report-dir={reports}", f"--pki-dir={pki}",
         f"--ivanti-broker-port={pins['ivanti-broker']}",
         f"--ivanti-cps-port={pins['ivanti-cps']}", f"--observer-port={pins['observer']}"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    report = json.loads((reports / "latest" / "report.json").read_text())
    verdicts = {r["id"]: r["verdict"] for r in report["requirements"]}
    tail = run.stdout[-3000:]
    assert run.returncode == 0, tail
    # Nothing was launched and an MQTT client serves no endpoint: liveness is not observable.
    assert verdicts.pop("GEN-LIVE-01") == "not-verified", tail
    # Nor can the harness restart a SUT it did not launch (IVT-SESS-03).
    assert verdicts.pop("IVT-SESS-03") == "not-verified", tail
    assert set(verdicts.values()) == {"pass"}, {k: v for k, v in verdicts.items() if v != "pass"}
    sub01 = next(r for r in report["requirements"] if r["id"] == "IVT-SUB-01")
    assert f"{len(CONSUMES)} of {len(CONSUMES)} consumed topics" in sub01["reason"]
