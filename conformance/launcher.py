"""Launching the SUT from its manifest ``[process]`` section: environment, readiness, teardown.

The SUT's output goes to a log file kept for the report. A SUT that exits while the harness
waits for it to be ready is reported at once with the end of its log, not waited on. A restart
(a deploy: docs/sut-contract.md §2) starts a new process whose output continues the same log,
after a line that says which life begins.
"""

from __future__ import annotations

import contextlib
import ctypes
import http.client
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import IO
from urllib.parse import urlsplit

from conformance.manifest import ProcessSection
from conformance.supervisor import descendants
from conformance.text import printable
from simulators.problem import Problem

__all__ = ["LaunchError", "SutProcess", "probe"]


class LaunchError(Exception):
    """The SUT could not be started or never became ready."""


def probe(url: str, context: ssl.SSLContext | None = None, timeout: float = 2.0) -> Problem:
    """Check a readiness URL once; None when ready, else why not (never raises: a probe that
    answers garbage is a failed probe)."""
    parts = urlsplit(url)
    try:
        if parts.scheme == "tcp":
            with socket.create_connection((parts.hostname or "", parts.port or 0), timeout):
                return None
        request = urllib.request.Request(url, method="GET")
        with urllib.request.urlopen(request, timeout=timeout, context=context) as response:
            status = int(response.status)
            return None if 200 <= status < 300 else f"answered {status}"
    except urllib.error.HTTPError as exc:
        return f"answered {exc.code}"
    except (OSError, urllib.error.URLError, ssl.SSLError) as exc:
        return f"{type(exc).__name__}: {getattr(exc, 'reason', exc)}"
    except (http.client.HTTPException, ValueError) as exc:
        return f"not an HTTP answer ({type(exc).__name__}: {str(exc)[:200]!r})"


LOG_FILE_LIMIT = 8 * 1024 * 1024  # bytes of SUT output kept on disk; later output only counted
LOG_TAIL_BYTES = 64 * 1024  # the end of the SUT's output, always kept in memory


class _OutputCapture:
    """Drains the SUT's output (so it never blocks on a full pipe) into a capped log file and a
    ring buffer of its last bytes."""

    def __init__(
        self, pipe: IO[bytes], path: Path, *, after: _OutputCapture | None = None, banner: str = ""
    ) -> None:
        """``after``: the previous life's capture, whose log, cap and tail this one continues
        (its output ended: its process exited)."""
        self._pipe = pipe
        self._file = path.open("ab" if after is not None else "wb")
        self._tail = bytearray(after.tail_bytes() if after is not None else b"")
        self._lock = threading.Lock()
        self.written: int = after.written if after is not None else 0
        self.dropped = 0
        if banner:
            self._keep(banner.encode())
        self._thread = threading.Thread(target=self._drain, name="sut-output", daemon=True)
        self._thread.start()

    def _drain(self) -> None:
        while (
            chunk := self._pipe.read1(65536)
            if hasattr(self._pipe, "read1")
            else self._pipe.read(65536)
        ):
            self._keep(chunk)
        with self._lock:
            if self.dropped:
                self._file.write(
                    f"\n[... {self.dropped} bytes of output not kept; the last "
                    f"{len(self._tail)} follow ...]\n".encode()
                    + bytes(self._tail)
                )
            self._file.close()

    def _keep(self, chunk: bytes) -> None:
        with self._lock:
            self._tail += chunk
            del self._tail[:-LOG_TAIL_BYTES]
            room = max(0, LOG_FILE_LIMIT - self.written)
            if room:
                self._file.write(chunk[:room])
                self.written += min(room, len(chunk))
            self.dropped += max(0, len(chunk) - room)

    def tail_bytes(self) -> bytes:
        with self._lock:
            return bytes(self._tail)

    def tail(self, limit: int) -> str:
        with self._lock:
            if not self._file.closed:
                self._file.flush()
            return bytes(self._tail[-limit:]).decode("utf-8", "replace")

    def close(self, timeout: float = 5.0) -> None:
        self._thread.join(timeout)


STOP_GRACE_S = 5.0  # after SIGTERM, before SIGKILL
SUPERVISOR = str(Path(__file__).with_name("supervisor.py"))


def _not_runnable(program: str, cwd: Path, env: dict[str, str]) -> str | None:
    """Why ``program`` cannot be started from ``cwd`` (None when it can): said before the
    supervisor starts, as the error of the launch."""
    if os.sep in program:
        path = cwd / program
        return (
            None
            if os.access(path, os.X_OK) and path.is_file()
            else f"{path}: not an executable file"
        )
    if shutil.which(program, path=env.get("PATH", os.defpath)) is None:
        return f"{program!r} is not on the PATH"
    return None


class SutProcess:
    """One launched SUT process, and every process it starts.

    The SUT runs in its own session under a supervisor (:mod:`conformance.supervisor`, Linux):
    a child subreaper that ends every process the SUT started when the harness dies, even by
    SIGKILL, and when the SUT's own process exits. The harness is a subreaper too, so a
    descendant that daemonizes or calls ``setsid()`` stays in its tree; :meth:`stop` ends them
    all. ``proc`` is the supervisor: its exit status is the SUT's.

    ``after``: the process this one replaces (a restart); its output continues the same log."""

    def __init__(
        self,
        section: ProcessSection,
        env: dict[str, str],
        log_path: Path,
        *,
        after: SutProcess | None = None,
    ) -> None:
        self.section = section
        self.env = dict(env)  # what it was started with: a restart starts it the same way
        self.log_path = log_path
        self.life: int = after.life + 1 if after is not None else 1
        self.terminated_at: float | None = None  # monotonic time of the SIGTERM, once sent
        self.killed = False  # whether it needed SIGKILL (it outlived the grace after SIGTERM)
        log_path.parent.mkdir(parents=True, exist_ok=True)
        become_subreaper()
        environment = {**os.environ, **env, **section.env}
        if (problem := _not_runnable(section.command[0], section.cwd, environment)) is not None:
            raise LaunchError(f"[process] command {section.command!r} could not start: {problem}")
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-I", "-S", SUPERVISOR, str(os.getpid()), str(STOP_GRACE_S),
                 *section.command],
                cwd=section.cwd,
                env=environment,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )  # fmt: skip
        except OSError as exc:
            raise LaunchError(
                f"[process] command {section.command!r} could not start: {exc}"
            ) from None
        assert self.proc.stdout is not None
        banner = (
            f"\n[--- conformance harness: the SUT restarted (life {self.life}, pid "
            f"{self.proc.pid}) ---]\n"
            if after is not None
            else ""
        )
        self._output: _OutputCapture = _OutputCapture(
            self.proc.stdout, log_path, after=after._output if after else None, banner=banner
        )

    def restarted(self) -> SutProcess:
        """A new process started the same way (command, folder, environment), whose output
        continues this one's log. This one must have exited (:meth:`stop`)."""
        if self.proc.poll() is None:
            raise RuntimeError("restarted() before the SUT stopped")
        return SutProcess(self.section, self.env, self.log_path, after=self)

    def exited(self) -> int | None:
        return self.proc.poll()

    def log_tail(self, limit: int = 4000) -> str:
        """The end of the SUT's output (read from memory, however much it wrote)."""
        return self._output.tail(limit)

    def wait_ready(self, context: ssl.SSLContext | None) -> float:
        """Poll the readiness probe until it answers 2xx; return the seconds it took."""
        url = self.section.ready
        timeout = self.section.ready_timeout_s
        started = time.monotonic()
        pause = threading.Event()
        last = "not probed"
        while (waited := time.monotonic() - started) < timeout:
            code = self.exited()
            if code is not None:
                raise LaunchError(
                    f"the SUT exited with status {code} before it was ready.\n"
                    f"--- last lines of {self.log_path} ---\n{printable(self.log_tail())}"
                )
            if url is None:
                return waited
            last = probe(url, context, timeout=min(2.0, max(0.1, timeout - waited))) or ""
            if not last:
                return time.monotonic() - started
            pause.wait(0.1)  # a bounded poll of an external process; nothing to wait on
        raise LaunchError(
            f"the SUT was not ready after {timeout:g} s: {url} -> {last}. Raise "
            f"[process] ready_timeout_s or fix the probe.\n--- last lines of {self.log_path} "
            f"---\n{printable(self.log_tail())}"
        )

    def terminate(self) -> None:
        """Send SIGTERM to the SUT and every descendant, as a deploy's stop does, without
        waiting (:meth:`stop` waits, bounded)."""
        if self.terminated_at is None:
            self.terminated_at = time.monotonic()
        self._signal([self.proc.pid, *descendants(os.getpid())], signal.SIGTERM)

    def _signal(self, tree: list[int], sig: signal.Signals) -> None:
        for pid in tree:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                if pid == self.proc.pid:
                    os.killpg(pid, sig)
                os.kill(pid, sig)

    def stop(self, grace_s: float = STOP_GRACE_S) -> int | None:
        """End the SUT and every descendant: SIGTERM (unless :meth:`terminate` sent it), then
        SIGKILL when any is still there ``grace_s`` after the SIGTERM; :attr:`killed` says
        whether it took that. Returns the exit status."""
        if self.terminated_at is None:
            self.terminate()
        assert self.terminated_at is not None
        tree = [self.proc.pid, *descendants(os.getpid())]
        _wait_gone(tree, self.proc, self.terminated_at + grace_s)
        if _alive(tree, self.proc):
            self.killed = True
            tree = [self.proc.pid, *descendants(os.getpid())]
            self._signal(tree, signal.SIGKILL)
            _wait_gone(tree, self.proc, time.monotonic() + grace_s)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(grace_s)
        _reap(tree)
        self._output.close()
        return self.proc.returncode


_PR_SET_CHILD_SUBREAPER = 36
_LIBC: ctypes.CDLL | None = None


def become_subreaper() -> None:
    """Adopt orphaned descendants (Linux ``PR_SET_CHILD_SUBREAPER``), so a SUT that daemonizes
    cannot escape the cleanup. Elsewhere a no-op."""
    global _LIBC
    if sys.platform != "linux":
        return
    with contextlib.suppress(OSError, AttributeError):
        _LIBC = _LIBC or ctypes.CDLL(None, use_errno=True)
        _LIBC.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)


def _alive(pids: list[int], proc: subprocess.Popen[bytes]) -> bool:
    if proc.poll() is None:
        return True
    for pid in pids:
        if pid == proc.pid:
            continue
        with contextlib.suppress(OSError):
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
            if state != "Z":
                return True
    return False


def _wait_gone(pids: list[int], proc: subprocess.Popen[bytes], deadline: float) -> None:
    while time.monotonic() < deadline and _alive(pids, proc):
        threading.Event().wait(0.05)  # bounded: processes we signalled


def _reap(pids: list[int]) -> None:
    """Collect the exit status of adopted descendants (they are our children now)."""
    for pid in pids:
        with contextlib.suppress(ChildProcessError, OSError):
            os.waitpid(pid, os.WNOHANG)
