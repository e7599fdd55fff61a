"""The bundled reference SUT starts whatever vendors a run selects: ``pytest
conformance/apple`` launches it with every vendor's arguments but only Apple's
``CONFORMANCE_*`` variables, so no component may require another vendor's."""

from __future__ import annotations

import os
import ssl
import subprocess
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from conformance.ports import spare_port
from conformance.reference import reference_manifest
from simulators.pki import PKI


@pytest.mark.parametrize("only", ["none", "CONFORMANCE_APPLE_", "CONFORMANCE_PELION_"])
def test_the_reference_sut_starts_without_other_vendors_variables(
    tmp_path: Path, only: str
) -> None:
    pki = PKI.load_or_create(tmp_path / "pki")
    process = reference_manifest().process
    assert process is not None
    port = spare_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONFORMANCE_")}
    env.update(process.env)
    env.update(
        REFERENCE_SUT_PORT=str(port),
        CONFORMANCE_CA_FILE=str(pki.ca),
        CONFORMANCE_SUT_CERT_FILE=str(pki.sut_server.cert),
        CONFORMANCE_SUT_KEY_FILE=str(pki.sut_server.key),
    )
    if only == "CONFORMANCE_APPLE_":  # unreachable API: the component must still serve
        env.update(CONFORMANCE_APPLE_API_URL="https://127.0.0.1:9/mdm/v2",
                   CONFORMANCE_APPLE_STOKEN="x")  # fmt: skip
    elif only == "CONFORMANCE_PELION_":
        env.update(CONFORMANCE_PELION_API_URL="https://127.0.0.1:9",
                   CONFORMANCE_PELION_API_KEY="ak_x",
                   CONFORMANCE_PELION_CALLER_CA=str(pki.ca))  # fmt: skip
    sut = subprocess.Popen(
        process.command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    try:
        context = ssl.create_default_context(cafile=str(pki.ca))
        deadline = time.monotonic() + 30
        while True:
            assert sut.poll() is None, sut.stderr.read() if sut.stderr else "exited"
            try:
                with urllib.request.urlopen(
                    f"https://127.0.0.1:{port}/healthz", context=context, timeout=2
                ) as answer:
                    assert answer.status == 200
                    break
            except OSError:
                assert time.monotonic() < deadline, "not ready within 30 s"
                threading.Event().wait(0.1)  # bounded poll of another process's port
    finally:
        sut.terminate()
        sut.wait(timeout=20)
