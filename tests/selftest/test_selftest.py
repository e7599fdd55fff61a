"""The suite proves itself: the reference SUT passes every requirement, and each broken SUT in
fixtures/broken/ fails exactly the requirement IDs its flaw names (fixtures/reference_sut/flaws.py).

Each case runs ``pytest conformance --sut=<manifest>`` in a subprocess, as a user would, and
reads the report it writes.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from conformance.catalogue import for_vendors
from conformance.launcher import probe
from fixtures.reference_sut.flaws import FLAWS
from simulators.pki import PKI

ROOT = Path(__file__).resolve().parents[2]
BROKEN = ROOT / "fixtures" / "broken"
SLOW_ONLY = {"APL-API-03"}  # not-verified without --slow, by design


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run_suite(
    tmp_path: Path, *args: str, target: str = "conformance"
) -> tuple[int, dict[str, Any], str]:
    env = {**os.environ, "REFERENCE_SUT_PORT": str(_free_port())}
    env.pop("PYTEST_ADDOPTS", None)
    cmd = [
        sys.executable,
        "-m",
        "pytest",
        target,
        "-q",
        "-p",
        "no:cacheprovider",
        f"--report-dir={tmp_path}",
        f"--pki-dir={tmp_path / 'pki'}",
        *args,
    ]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    report_file = tmp_path / "latest" / "report.json"
    assert report_file.is_file(), (
        f"no report written:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    )
    return proc.returncode, json.loads(report_file.read_text()), proc.stdout


def verdicts(report: dict[str, Any], verdict: str) -> set[str]:
    return {r["id"] for r in report["requirements"] if r["verdict"] == verdict}


def test_reference_sut_passes_everything(tmp_path: Path) -> None:
    code, report, out = run_suite(tmp_path)
    assert code == 0, out[-3000:]
    assert verdicts(report, "fail") == set(), out[-3000:]
    assert verdicts(report, "error") == set()
    assert verdicts(report, "warn") == set()
    assert verdicts(report, "not-verified") == SLOW_ONLY
    ids = {r["id"] for r in report["requirements"]}
    assert {"GEN-LIVE-01", "GEN-OBS-01", "APL-TLS-01", "APL-API-04"} <= ids
    assert not any(i.startswith(("IVT-", "PEL-", "SIM-")) for i in ids)
    for name in ("report.json", "junit.xml", "index.html"):
        assert (tmp_path / "latest" / name).is_file()
        assert (tmp_path / report["run_id"] / name).is_file()


def test_every_flaw_has_a_manifest() -> None:
    manifests = {p.stem for p in BROKEN.glob("*.toml")}
    assert manifests == set(FLAWS)
    for name in FLAWS:
        assert f'"--flaw", "{name}"' in (BROKEN / f"{name}.toml").read_text()


@pytest.mark.parametrize("flaw", sorted(FLAWS))
def test_broken_sut_fails_exactly_its_ids(tmp_path: Path, flaw: str) -> None:
    expected = FLAWS[flaw]
    code, report, out = run_suite(tmp_path, f"--sut={BROKEN / flaw}.toml", *expected.options)
    tail = out[-4000:]
    assert verdicts(report, "fail") == set(expected.fails), tail
    assert verdicts(report, "error") == set(), tail
    assert verdicts(report, "warn") == set(expected.warns), tail
    slow_only = set() if "--slow" in expected.options else SLOW_ONLY
    assert verdicts(report, "not-verified") == slow_only | expected.not_verified | (
        set() if expected.api_client else {"APL-API-01", "APL-API-02", "APL-API-04"}
    ), tail
    assert (code != 0) == bool(expected.fails), f"exit status {code}\n{tail}"


def test_strict_turns_should_failures_into_failures(tmp_path: Path) -> None:
    code, report, out = run_suite(tmp_path, f"--sut={BROKEN / 'sluggish'}.toml", "--strict")
    assert verdicts(report, "fail") == {"APL-LAT-02"}, out[-3000:]
    assert code != 0


def test_running_receiver_by_url_with_pinned_observer(tmp_path: Path) -> None:
    """Journey 2: a receiver already running outside the harness, judged by URL. The observer
    port is pinned so the deployed SUT knows where to report."""
    pki = PKI.load_or_create(tmp_path / "pki")
    port, observer_port = _free_port(), _free_port()
    env = {
        **os.environ,
        "REFERENCE_SUT_PORT": str(port),
        "REFERENCE_SUT_TOKEN": "their-secret",
        "CONFORMANCE_SUT_CERT_FILE": str(pki.sut_server.cert),
        "CONFORMANCE_SUT_KEY_FILE": str(pki.sut_server.key),
        "CONFORMANCE_OBSERVER_URL": f"http://127.0.0.1:{observer_port}",
    }
    sut = subprocess.Popen(
        [sys.executable, "-m", "fixtures.reference_sut"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while probe(f"https://127.0.0.1:{port}/healthz", pki.ca) and time.monotonic() < deadline:
            threading.Event().wait(0.1)
        code, report, out = run_suite(
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
    assert code == 0, out[-3000:]
    assert report["sut"]["source"] == f"https://127.0.0.1:{port}/apple/notify"
    assert verdicts(report, "fail") == set()
    assert verdicts(report, "not-verified") == {
        "APL-API-01",
        "APL-API-02",
        "APL-API-03",
        "APL-API-04",
    }
    assert {"APL-OBS-01", "APL-OBS-02", "GEN-OBS-01", "GEN-LIVE-01"} <= verdicts(report, "pass")


def test_every_requirement_has_a_demonstrated_failure() -> None:
    """Each APL and GEN requirement is failed (or warned, for SHOULD) by some broken SUT."""
    demonstrated = set().union(*(f.fails | f.warns for f in FLAWS.values()))
    wanted = {r.id for r in for_vendors(["apple"])}
    assert wanted - demonstrated == set()
