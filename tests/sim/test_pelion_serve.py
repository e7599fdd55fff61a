"""``conformance-sim serve pelion`` standalone, and the official Pelion SDKs against it
(clients nobody here wrote): subscribe, receive resource notifications by long poll and by
callback, read a resource through a device request and its async response, register and
delete a callback (SIM-PEL-PULL, SIM-PEL-VERIFY, SIM-PEL-BATCH).

The SDKs live in their own environments under ``.peers/`` (``.ci/install-peers``): the Python
SDK's venv runs ``peers/pelion_sdk.py``, node runs ``peers/pelion_sdk.js``.
"""

from __future__ import annotations

import json
import os
import ssl
import subprocess
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from simulators.pelion.traffic import DEMO_DEVICES
from tests.sim.test_serve import _serve, _stop

ROOT = Path(__file__).resolve().parents[2]
PEERS = Path(__file__).resolve().parent / "peers"
PYTHON_SDK = ".peers/pelion-sdk-venv/bin/python"
NODE_SDK = ".peers/node/node_modules/mbed-cloud-sdk/package.json"
RATE = "--pelion-events-per-s=10"  # the demo devices act ten times a second


def test_serve_pelion_answers_with_a_key_kept_in_the_pki_folder(tmp_path: Path) -> None:
    """Standalone: the API answers the printed key over TLS with the printed CA, the log says
    what the devices and the client did, and the key is the same at the next start."""
    proc, env = _serve(tmp_path, "pelion", RATE)
    try:
        assert set(env) >= {"CONFORMANCE_PELION_API_URL", "CONFORMANCE_PELION_API_KEY"}
        caller_ca = Path(env["CONFORMANCE_PELION_CALLER_CA"])  # SIM-PEL-CLIENTCERT
        assert caller_ca.read_text().startswith("-----BEGIN CERTIFICATE-----")
        assert env["CONFORMANCE_PELION_API_URL"].startswith("https://127.0.0.1:")
        context = ssl.create_default_context(cafile=env["CONFORMANCE_CA_FILE"])
        request = urllib.request.Request(
            env["CONFORMANCE_PELION_API_URL"] + "/v2/notification/channel",
            headers={"Authorization": f"Bearer {env['CONFORMANCE_PELION_API_KEY']}"},
        )
        with pytest.raises(urllib.error.HTTPError) as answer:
            urllib.request.urlopen(request, timeout=5, context=context)
        assert answer.value.code == 404 and json.loads(answer.value.read())["object"] == "error"
    finally:
        code, _, err = _stop(proc)
    assert code == 0, err
    assert DEMO_DEVICES[0] in err and "sut -> pelion: GET /v2/notification/channel" in err
    again, env2 = _serve(tmp_path, "pelion")
    _stop(again)
    assert env2["CONFORMANCE_PELION_API_KEY"] == env["CONFORMANCE_PELION_API_KEY"]
    assert env2["CONFORMANCE_PELION_CALLER_CA"] == env["CONFORMANCE_PELION_CALLER_CA"]
    assert (tmp_path / "pki" / "pelion-api-key").read_text().strip() == env2[
        "CONFORMANCE_PELION_API_KEY"
    ]


def _run(command: list[str], env: dict[str, str], **extra: str) -> dict[str, Any]:
    result = subprocess.run(
        command,
        env={**os.environ, **env, "PELION_DEVICE": DEMO_DEVICES[0], **extra},
        capture_output=True,
        text=True,
        timeout=90,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    seen: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return seen


def _check_callback(seen: dict[str, Any], err: str) -> None:
    headers = {k.lower(): v for k, v in seen["callback_headers"].items()}
    assert headers["x-callback-secret"] == "sdk-secret"  # the verification PUT carried it
    assert seen["webhook_url"].startswith("https://127.0.0.1:") and seen["callback_bodies"] >= 1
    assert "verification answered 204" in err
    assert "204 for PUT /v2/notification/callback" in err
    assert "204 for DELETE /v2/notification/callback" in err


@pytest.mark.sim("SIM-PEL-PULL", "SIM-PEL-VERIFY")
@pytest.mark.external_tool(PYTHON_SDK)
def test_python_sdk_pull_device_request_and_callback(tmp_path: Path) -> None:
    """SIM-PEL-PULL, SIM-PEL-VERIFY: ``mbed-cloud-sdk`` 2.2.0 (PyPI) long-polls a notification
    and an async response, then (after ``DELETE /v2/notification/pull``, which it needs
    answered 200) registers a callback, receives a notification there and deletes it."""
    proc, env = _serve(tmp_path, "pelion", RATE)
    try:
        seen = _run([str(ROOT / PYTHON_SDK), str(PEERS / "pelion_sdk.py")], env)
    finally:
        code, _, err = _stop(proc)
    assert code == 0, err
    assert int(seen["pull_notification"]) >= 0  # the counter, decoded from base64
    assert seen["pull_read"] == "Conformance Ltd"
    float(seen["callback_notification"])  # the temperature, through the callback
    _check_callback(seen, err)
    # It stops long polling with DELETE (a poll still waiting is answered 410), and sends it
    # again before registering its callback, when no pull channel is left (200 all the same).
    assert err.count("200 for DELETE /v2/notification/pull") == 2, err


@pytest.mark.sim("SIM-PEL-PULL", "SIM-PEL-VERIFY")
@pytest.mark.external_tool("node", NODE_SDK)
def test_javascript_sdk_pull_device_request_and_callback(tmp_path: Path) -> None:
    """SIM-PEL-PULL, SIM-PEL-VERIFY: ``mbed-cloud-sdk`` 2.6.10 (npm) checks ``GET
    /v2/notification/callback`` (404) before long-polling a notification and an async
    response; a second process registers a callback, receives a notification there and
    deletes it. (Text payloads only: the SDK crashes on TLV.)"""
    proc, env = _serve(tmp_path, "pelion", RATE)
    node = {
        "NODE_PATH": str(ROOT / ".peers/node/node_modules"),
        "NODE_EXTRA_CA_CERTS": env["CONFORMANCE_CA_FILE"],
    }
    try:
        pulled = _run(["node", str(PEERS / "pelion_sdk.js"), "pull"], env, **node)
        called = _run(["node", str(PEERS / "pelion_sdk.js"), "callback"], env, **node)
    finally:
        code, _, err = _stop(proc)
    assert code == 0, err
    assert int(pulled["pull_notification"]) >= 0 and pulled["pull_read"] == "Conformance Ltd"
    assert int(called["callback_notification"]) >= 0
    _check_callback(called, err)
    assert "404 for GET /v2/notification/callback" in err
