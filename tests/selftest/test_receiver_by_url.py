"""Journey 2 of the SUT contract: an Apple receiver already running outside the harness, judged
by URL (``pytest conformance/apple --sut=https://… --sut-token=… --sut-ca=…``). The observer
port is pinned so the deployed SUT knows where to report."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

from conformance.launcher import probe
from conformance.ports import spare_port
from simulators.pki import PKI
from tests.selftest.test_selftest import ROOT, run_suite


def test_running_receiver_by_url_with_pinned_observer(tmp_path: Path) -> None:
    pki = PKI.load_or_create(tmp_path / "pki")
    port, observer_port = spare_port(), spare_port()
    env = {
        **os.environ,
        "REFERENCE_SUT_PORT": str(port),
        "REFERENCE_APPLE_TOKEN": "their-secret",
        "CONFORMANCE_SUT_CERT_FILE": str(pki.sut_server.cert),
        "CONFORMANCE_SUT_KEY_FILE": str(pki.sut_server.key),
        "CONFORMANCE_OBSERVER_URL": f"http://127.0.0.1:{observer_port}",
    }
    sut = subprocess.Popen(
        [sys.executable, "-m", "conformance_fixtures.reference_sut", "--vendor", "apple"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        context = pki.client_context()
        while probe(f"https://127.0.0.1:{port}/healthz", context) and time.monotonic() < deadline:
            threading.Event().wait(0.1)
        outcome = run_suite(
            tmp_path,
            f"--sut=https://127.0.0.1:{port}/apple/notify",
            "--sut-token=their-secret",
            f"--sut-ca={pki.ca}",
            f"--observer-port={observer_port}",
            target="conformance/apple",
        )
    finally:
        sut.terminate()
        sut.wait(10)
    assert outcome.code == 0, outcome.stdout[-3000:]
    assert outcome.report["sut"]["source"] == f"https://127.0.0.1:{port}/apple/notify"
    assert outcome.verdicts("fail") == set()
    assert outcome.verdicts("not-verified") == {
        "APL-API-01",
        "APL-API-02",
        "APL-API-03",
        "APL-API-04",
        "APL-REC-01",  # the harness did not launch it, so it cannot restart it
        "APL-SUB-02",  # a receiver only: no subscriptions API calls to judge
    }
    assert {"APL-OBS-01", "APL-OBS-02", "GEN-OBS-01", "GEN-LIVE-01"} <= outcome.verdicts("pass")
