"""``conformance-sim serve ivanti``: the broker standalone, generating device events, seen by
mosquitto_sub as an integrator would run it from the printed environment
(docs/sut-contract.md §6)."""

from __future__ import annotations

import json
import shlex
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest


def _serve(tmp_path: Path, *args: str) -> tuple[subprocess.Popen[str], dict[str, str]]:
    env_file = tmp_path / "sim.env"
    proc = subprocess.Popen(
        [sys.executable, "-m", "conformance.cli", "serve", "ivanti", *args,
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


@pytest.mark.sim("SIM-IVT-META", "SIM-IVT-QOS1")
@pytest.mark.external_tool("mosquitto_sub", "curl")
def test_serve_ivanti_streams_events_to_mosquitto_sub(tmp_path: Path) -> None:
    """SIM-IVT-META, SIM-IVT-QOS1: the printed environment is all mosquitto_sub needs (TLS 1.2,
    the identity certificate, the login email, the topics from the metadata call); generated
    device events arrive at QoS 1, and the serve log shows them; SIGTERM stops it cleanly."""
    proc, env = _serve(tmp_path, "--ivanti-events-per-s=20")
    try:
        assert set(k for k in env if k.startswith("CONFORMANCE_IVANTI_")) == {
            "CONFORMANCE_IVANTI_BROKER_HOST",
            "CONFORMANCE_IVANTI_BROKER_PORT",
            "CONFORMANCE_IVANTI_CLIENT_CERT",
            "CONFORMANCE_IVANTI_CLIENT_KEY",
            "CONFORMANCE_IVANTI_USERNAME",
            "CONFORMANCE_IVANTI_CPS_URL",
        }
        tls = ["--cacert", env["CONFORMANCE_CA_FILE"], "--cert",
               env["CONFORMANCE_IVANTI_CLIENT_CERT"], "--key", env["CONFORMANCE_IVANTI_CLIENT_KEY"]]  # fmt: skip
        metadata = json.loads(
            subprocess.run(
                ["curl", "-sS", *tls, env["CONFORMANCE_IVANTI_CPS_URL"] + "/event/$metadata"],
                capture_output=True, text=True, timeout=20, check=True,
            ).stdout
        )  # fmt: skip
        topics = [value for value in metadata["topics"].values()]
        args = [
            "mosquitto_sub", "-h", env["CONFORMANCE_IVANTI_BROKER_HOST"],
            "-p", env["CONFORMANCE_IVANTI_BROKER_PORT"], "--cafile", env["CONFORMANCE_CA_FILE"],
            "--cert", env["CONFORMANCE_IVANTI_CLIENT_CERT"],
            "--key", env["CONFORMANCE_IVANTI_CLIENT_KEY"], "-u", env["CONFORMANCE_IVANTI_USERNAME"],
            "--tls-version", "tlsv1.2", "-V", "mqttv311", "-i", "integrator", "-c", "-q", "1",
            "-C", "3", "-W", "20", "-F", "%q %t %p",
        ]  # fmt: skip
        for topic in topics:
            args += ["-t", topic]
        done = subprocess.run(args, capture_output=True, text=True, timeout=30, check=False)
        assert done.returncode == 0, done.stderr
        lines = done.stdout.splitlines()
        assert len(lines) == 3
        for line in lines:
            qos, topic, payload = line.split(" ", 2)
            message = json.loads(payload)
            assert qos == "1" and topic in topics
            assert message["eventType"] == topic.rsplit("/", 2)[-2] + "." + topic.rsplit("/", 1)[-1]
            assert isinstance(message["timestamp"], int) and message["devices"]
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=15)
    assert proc.returncode == 0, err
    assert "ivanti-broker -> integrator: PUBLISH" in err
    assert (
        "integrator -> ivanti-broker: PUBACK" in err
        or "ivanti-broker <- integrator" in err
        or "PUBACK" in err
    )
