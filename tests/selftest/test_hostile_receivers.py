"""Receivers nobody would ship, judged through the Apple suite: the run ends in bounded time
with the cause named, and its report is valid and small."""

from __future__ import annotations

import json
import time
import xml.etree.ElementTree as ET
from pathlib import Path

from conformance.ports import spare_port
from tests.selftest.test_selftest import run_suite

HANGS = """
import socket, sys
server = socket.socket()
server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
server.bind(("127.0.0.1", int(sys.argv[1])))
server.listen(64)
held = []
while True:
    held.append(server.accept()[0])  # accepts every connection, never answers a byte
"""


def test_a_receiver_that_never_answers_ends_the_run_quickly(tmp_path: Path) -> None:
    """Target: a dead receiver's run ends within 4 minutes, saying why in the first failing
    check; the checks after it, which could observe nothing, are not-verified at once with
    that cause, and GEN-LIVE-01 fails for it."""
    port = spare_port()
    (tmp_path / "hangs.py").write_text(HANGS)
    manifest = tmp_path / "sut.toml"
    manifest.write_text(
        f'name = "never-answers"\n[process]\ncommand = ["${{PYTHON}}", "hangs.py", "{port}"]\n'
        f'ready = "tcp://127.0.0.1:{port}"\n'
        f'[apple]\nwebhook_url = "https://127.0.0.1:{port}/notify"\nauth_token = "t"\n'
    )
    started = time.monotonic()
    outcome = run_suite(tmp_path / "report", f"--sut={manifest}", target="conformance/apple")
    elapsed = time.monotonic() - started
    assert elapsed < 240, elapsed
    assert outcome.code != 0
    # The first check to meet it (the HTTPS handshake) fails saying so; GEN-LIVE-01 fails.
    assert {"APL-TLS-01", "GEN-LIVE-01"} <= outcome.verdicts("fail")
    assert "APL-LAT-01" in outcome.verdicts("warn")  # a SHOULD: the 5 s is the project's
    down = [
        r["id"]
        for r in outcome.report["requirements"]
        if r["verdict"] == "not-verified" and "was down before this check" in r["reason"]
    ]
    assert len(down) >= 5, outcome.report["requirements"]
    assert {"APL-AUTH-01", "APL-BAD-02"} <= set(down)  # nothing of theirs was observed
    for name in ("report.json", "junit.xml", "index.html"):
        assert (tmp_path / "report" / "latest" / name).stat().st_size < 1_000_000
    ET.parse(tmp_path / "report" / "latest" / "junit.xml")
    json.loads((tmp_path / "report" / "latest" / "report.json").read_text())
