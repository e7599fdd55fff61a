"""conformance.launcher against hostile SUT processes: no process outlives the run, output is
capped on disk and read from its end, a readiness endpoint that answers garbage is a failed
probe with a clear message."""

from __future__ import annotations

import os
import socket
import sys
import threading
import time
from pathlib import Path

from conformance.launcher import LaunchError, SutProcess, probe
from conformance.manifest import ProcessSection
from conformance.supervisor import descendants


def _sut(tmp_path: Path, code: str, ready: str | None = None) -> SutProcess:
    script = tmp_path / "sut.py"
    script.write_text(code)
    section = ProcessSection(command=[sys.executable, str(script)], cwd=tmp_path, ready=ready)
    return SutProcess(section, {}, tmp_path / "sut.log")


def _wait_for_file(path: Path, timeout: float = 10.0) -> str:
    deadline = time.monotonic() + timeout
    while not (path.is_file() and path.read_text().strip()) and time.monotonic() < deadline:
        threading.Event().wait(0.05)  # bounded poll of another process's output
    return path.read_text().strip()


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


ESCAPES = """
import os, sys, time
pids = sys.argv[0].replace("sut.py", "pids")
if os.fork() == 0:          # a grandchild that leaves the SUT's session
    os.setsid()
    if os.fork() == 0:      # and daemonizes (double fork)
        open(pids, "a").write(f"{os.getpid()}\\n")
        while True:
            time.sleep(1)
    os._exit(0)
open(pids, "a").write(f"{os.getpid()}\\n")
while True:
    time.sleep(1)
"""


def test_a_descendant_that_calls_setsid_and_daemonizes_is_ended(tmp_path: Path) -> None:
    sut = _sut(tmp_path, ESCAPES)
    deadline = time.monotonic() + 10
    while len(_wait_for_file(tmp_path / "pids").split()) < 2 and time.monotonic() < deadline:
        threading.Event().wait(0.05)
    pids = [int(p) for p in (tmp_path / "pids").read_text().split()]
    assert len(pids) == 2 and all(_running(p) for p in pids)
    assert set(pids) <= set(descendants(os.getpid()))  # adopted: we are a subreaper
    sut.stop(grace_s=2)
    assert not any(_running(p) for p in pids)


def test_output_is_capped_on_disk_and_its_end_kept(tmp_path: Path) -> None:
    flood = (
        "import sys\n"
        "line = b'x' * 1023 + b'\\n'\n"
        "for _ in range(20 * 1024):\n"
        "    sys.stdout.buffer.write(line)\n"
        "print('the last line', flush=True)\n"
    )
    sut = _sut(tmp_path, flood)
    sut.proc.wait(60)
    code = sut.stop()
    assert code == 0
    assert "the last line" in sut.log_tail()
    assert (tmp_path / "sut.log").stat().st_size < 9 * 1024 * 1024  # 20 MiB written


def test_readiness_probe_that_answers_garbage_is_a_failed_probe() -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]

        def garbage() -> None:
            conn, _ = server.accept()
            conn.recv(1024)
            conn.sendall(b"\x14\x1b[31m\x00NOT HTTP AT ALL\r\n\r\n")
            conn.close()

        threading.Thread(target=garbage, daemon=True).start()
        answer = probe(f"http://127.0.0.1:{port}/healthz", timeout=5)
    assert answer is not None and answer.startswith("not an HTTP answer"), answer


def test_a_sut_that_never_gets_ready_is_reported_within_its_timeout(tmp_path: Path) -> None:
    with socket.socket() as silent:  # accepts connections and never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        port = silent.getsockname()[1]
        sut = _sut(tmp_path, "import time\ntime.sleep(60)\n", ready=f"http://127.0.0.1:{port}/")
        sut.section = sut.section.model_copy(update={"ready_timeout_s": 1.5})
        started = time.monotonic()
        try:
            sut.wait_ready(None)
        except LaunchError as exc:
            message = str(exc)
        finally:
            sut.stop(grace_s=1)
    assert "was not ready after 1.5 s" in message
    assert time.monotonic() - started < 6


IGNORES_SIGTERM = """
import os, signal, sys, time
signal.signal(signal.SIGTERM, lambda *_: print("SIGTERM ignored", flush=True))
print(f"life of pid {os.getpid()} with {os.environ['RESTART_MARK']}", flush=True)
open(sys.argv[0].replace("sut.py", "started"), "a").write("x")
while True:
    time.sleep(0.1)
"""


def test_a_restart_keeps_environment_and_log_and_kills_a_sut_that_ignores_sigterm(
    tmp_path: Path,
) -> None:
    """A deploy's restart (docs/sut-contract.md §2): SIGTERM, a bounded wait, SIGKILL for a SUT
    that ignores it; the new process gets the same environment, and its output continues the
    same log after a line marking the new life."""
    script = tmp_path / "sut.py"
    script.write_text(IGNORES_SIGTERM)
    section = ProcessSection(command=[sys.executable, str(script)], cwd=tmp_path)
    first = SutProcess(section, {"RESTART_MARK": "mark-1"}, tmp_path / "sut.log")
    _wait_for_file(tmp_path / "started")
    started = time.monotonic()
    first.terminate()
    code = first.stop(grace_s=1.0)
    assert first.killed and code == -9
    assert time.monotonic() - started < 5  # bounded: 1 s of grace, then SIGKILL
    second = first.restarted()
    try:
        assert second.life == 2
        deadline = time.monotonic() + 10
        while second.log_tail().count("with mark-1") < 2 and time.monotonic() < deadline:
            threading.Event().wait(0.05)  # bounded poll of another process's output
    finally:
        second.stop(grace_s=1.0)
    log = (tmp_path / "sut.log").read_text()
    assert log.count("with mark-1") == 2, log  # both lives, the same environment
    assert "SIGTERM ignored" in log
    assert log.index("SIGTERM ignored") < log.index("restarted (life 2") < log.rindex("mark-1")
