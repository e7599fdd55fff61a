"""Every failing Pelion check carries a reproducer, and the reproducer replays the failure: the
``curl`` line of a callback check, run against the broken SUT still running, gets the same
wrong answer; the WebSocket script, served to a fresh broken SUT, sees it end its socket the
same way. One suite run per channel, each limited to the checks that matter (``-k``)."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from conformance.launcher import probe
from conformance.ports import spare_port
from simulators.pki import PKI
from tests.selftest.test_selftest import ROOT, Outcome, run_suite

WAIT_S = 60.0


def _failing_checks(outcome: Outcome) -> list[dict[str, object]]:
    return [
        c
        for r in outcome.report["requirements"]
        for c in r["checks"]
        if c["outcome"] in ("fail", "warn")
    ]


def _start_sut(pki: PKI, flaw: str, channel: str, **env: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "conformance_fixtures.reference_sut", "--vendor", "pelion",
         "--flaw", flaw, f"--pelion-{channel}"],
        cwd=ROOT,
        env={
            **os.environ,
            "REFERENCE_PELION_SECRET": "cb-secret",
            "CONFORMANCE_CA_FILE": str(pki.ca),
            "CONFORMANCE_SUT_CERT_FILE": str(pki.sut_server.cert),
            "CONFORMANCE_SUT_KEY_FILE": str(pki.sut_server.key),
            **env,
        },
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip


def _lines(process: subprocess.Popen[str]) -> Iterator[str]:
    assert process.stdout is not None
    yield from process.stdout


@pytest.mark.external_tool("curl")
def test_a_callback_failure_replays_with_its_curl_line(tmp_path: Path) -> None:
    """rejects-mixed-kinds answers 400 to a batch of several kinds (PEL-MSG-01): the report's
    curl line, run from the report's folder against the same SUT, gets 400 again."""
    pki = PKI.load_or_create(tmp_path / "pki")
    port = spare_port()
    sut = _start_sut(pki, "rejects-mixed-kinds", "callback", REFERENCE_SUT_PORT=str(port))
    manifest = tmp_path / "sut.toml"
    manifest.write_text(
        'name = "rejects-mixed-kinds, running"\n[pelion]\nchannel = "callback"\n'
        f'callback_url = "https://127.0.0.1:{port}/pelion/callback"\n'
        'callback_headers = { x-callback-secret = "cb-secret" }\n'
    )
    try:
        deadline = time.monotonic() + WAIT_S
        while probe(f"https://127.0.0.1:{port}/healthz", pki.client_context()):
            assert time.monotonic() < deadline, "the broken SUT never came up"
            threading.Event().wait(0.1)
        outcome = run_suite(
            tmp_path, f"--sut={manifest}", "-k", "accepts_each_kind", target="conformance/pelion"
        )
        failing = _failing_checks(outcome)
        assert {c["name"] for c in failing} == {
            "conformance/pelion/test_messages.py::test_accepts_each_kind[callback-several-kinds]"
        }, outcome.stdout[-3000:]
        (check,) = failing
        assert "answered 400" in str(check["message"])
        command = check["reproduce"][0]  # type: ignore[index]
        assert (
            command.startswith("curl ") and "-X PUT" in command and "x-callback-secret" in command
        )
        # The terminal names a file for a command too long to print whole, never cuts it.
        shown = re.search(r"reproduce: (.*)", outcome.stdout.split("= conformance =")[-1])
        assert shown is not None and "…" not in shown.group(1), outcome.stdout[-3000:]
        replay = subprocess.run(
            shown.group(1), shell=True, capture_output=True, text=True, timeout=30
        )
        assert replay.stdout.strip() == "400", replay.stderr
        again = subprocess.run(
            shlex.split(command),
            cwd=tmp_path / "latest",
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert again.stdout.strip() == "400", again.stderr
    finally:
        sut.terminate()
        sut.wait(10)


def test_a_websocket_failure_replays_with_its_script(tmp_path: Path) -> None:
    """small-max-message loses its socket on a 10,000-item frame (PEL-WS-07): the script named
    in the check, run from the report's folder, serves a fresh broken SUT the same frame and
    sees its socket end again; the session checks that replay nothing
    say why."""
    outcome = run_suite(
        tmp_path,
        "--sut=fixtures/pelion/broken/small-max-message.toml",
        "-k",
        "10000_item_frame",
        target="conformance/pelion",
    )
    (check,) = _failing_checks(outcome)
    # Its aiohttp client ends the socket with 1009, or loses it before the close frame leaves.
    ended = ("(client-close, close code 1009)", "(lost, close code None)")
    assert any(e in str(check["message"]) for e in ended), check["message"]
    command = check["reproduce"][0]  # type: ignore[index]
    match = re.match(r"python3 (reproducers/\S+\.py)", command)
    assert match, command
    report = tmp_path / "latest"
    script_text = (report / match.group(1)).read_text()
    key = re.search(r"^API_KEY = '(.*)'$", script_text, re.M)
    assert key is not None
    replay = subprocess.Popen(
        [sys.executable, match.group(1)],
        cwd=report,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    pki = PKI.load_or_create(tmp_path / "pki")
    sut = None
    try:
        lines = _lines(replay)
        url = next(lines).strip().removeprefix("CONFORMANCE_PELION_API_URL=")
        sut = _start_sut(
            pki,
            "small-max-message",
            "websocket",
            REFERENCE_SUT_PORT=str(spare_port()),
            CONFORMANCE_PELION_API_URL=url,
            CONFORMANCE_PELION_API_KEY=key.group(1),
        )
        rest, _ = replay.communicate(timeout=WAIT_S)
        said = rest.strip().splitlines()
    finally:
        replay.kill()
        if sut is not None:
            sut.terminate()
            sut.wait(10)
    assert said == ["sent 1 of 1 frame(s)", "the SUT's socket was lost (1006: no close frame)"], (
        said
    )
