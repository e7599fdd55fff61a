"""conformance.restart: a deliberate restart is not the SUT going down, and a SUT that does not
come back fails the check that restarted it and is taken as down (docs/sut-contract.md §2)."""

from __future__ import annotations

import ssl
import sys
from pathlib import Path
from typing import Any, cast

import pytest

from conformance.harness import Harness
from conformance.launcher import SutProcess
from conformance.manifest import ProcessSection
from conformance.ports import spare_port
from conformance.restart import restarted_sut
from conformance.verdicts import Check, NotVerified
from simulators.clock import Clock
from simulators.evidence import Recorder

# The first life listens on the readiness port; every later life exits at once.
ONE_LIFE = """
import os, socket, sys, time
marker = sys.argv[0].replace("sut.py", "lived")
if os.path.exists(marker):
    print("second life: giving up", flush=True)
    sys.exit(3)
open(marker, "w").write("1")
server = socket.create_server(("127.0.0.1", int(os.environ["PORT"])))
while True:
    time.sleep(0.1)
"""


class _Harness:
    """The parts of :class:`Harness` a restart uses, with its own down-tracking methods."""

    mark_down = Harness.mark_down
    require_sut = Harness.require_sut
    sut_alive = Harness.sut_alive

    def __init__(self, section: ProcessSection, sut: SutProcess) -> None:
        self.manifest = type("Manifest", (), {"process": section})()
        self.sut = sut
        self.clock = Clock()
        self.recorder = Recorder(self.clock)
        self.cause = "tests/unit/test_restart.py::check"
        self.restarting: str | None = None
        self.sut_down: str | None = None
        self.down_in: str | None = None

    def probe_context(self) -> ssl.SSLContext | None:
        return None


def test_a_sut_that_does_not_come_back_fails_the_restart_and_is_down(tmp_path: Path) -> None:
    script = tmp_path / "sut.py"
    script.write_text(ONE_LIFE)
    port = spare_port()
    section = ProcessSection(
        command=[sys.executable, str(script)],
        cwd=tmp_path,
        ready=f"tcp://127.0.0.1:{port}",
        ready_timeout_s=20,
    )
    sut = SutProcess(section, {"PORT": str(port)}, tmp_path / "sut.log")
    fake = _Harness(section, sut)
    harness = cast(Harness, fake)
    check = Check()
    try:
        sut.wait_ready(None)
        with pytest.raises(AssertionError) as failed, restarted_sut(harness, check) as restart:
            restart.stop()
            # While the restart is under way, the SUT's absence is not the SUT going down.
            assert fake.restarting == fake.cause
            assert harness.mark_down("no connection") == "no connection"
            assert fake.sut_down is None
            restart.start()
    finally:
        assert fake.sut is not None
        fake.sut.stop(grace_s=1)
    assert "did not come back after a restart" in str(failed.value)
    assert "exited with status 3" in str(failed.value)
    assert fake.sut_down is not None and fake.down_in == fake.cause
    assert fake.restarting is None
    assert any("exited with status" in note for note in check.notes), check.notes
    log = (tmp_path / "sut.log").read_text()
    assert "restarted (life 2" in log and "second life: giving up" in log
    with pytest.raises(NotVerified, match="was down before"), restarted_sut(harness, Check()):
        pass


def test_a_sut_the_harness_did_not_launch_is_not_verified() -> None:
    fake: Any = type(
        "Unlaunched", (), {"manifest": type("M", (), {"process": None})(), "sut": None}
    )
    with pytest.raises(NotVerified, match="did not launch"), restarted_sut(fake, Check()):
        pass
