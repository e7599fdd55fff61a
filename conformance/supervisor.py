"""The SUT's supervisor: a small process between the harness and the SUT that ends every process
the SUT started, even when the harness itself cannot (it was sent SIGKILL, or the OOM killer
took it).

``python -I supervisor.py HARNESS_PID GRACE_S COMMAND [ARG…]`` (the standard library only). On Linux it
makes itself a child subreaper (``PR_SET_CHILD_SUBREAPER``), so every orphaned descendant of the
SUT (a daemon, one that called ``setsid()``) is re-parented to it rather than to PID 1, and asks
for SIGUSR1 when its parent dies (``PR_SET_PDEATHSIG``, checked against ``HARNESS_PID`` for a
parent that died before). It then starts COMMAND and waits. When its parent dies, when the
harness sends it SIGTERM, SIGINT or SIGHUP, and when the SUT's own process exits, it ends all
its descendants (SIGTERM, then SIGKILL after GRACE_S seconds) and exits with the SUT's status
(its signal, when a signal ended it).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys
import threading
import time
from pathlib import Path

__all__ = ["descendants", "running"]

_PR_SET_PDEATHSIG = 1
_PR_SET_CHILD_SUBREAPER = 36
_STOPS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1)


def descendants(root: int) -> list[int]:
    """Every process below ``root`` (from /proc; empty where there is none)."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").glob("[0-9]*"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            stat = (entry / "stat").read_text()
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            parents.setdefault(ppid, []).append(int(entry.name))
    found: list[int] = []
    todo = list(parents.get(root, []))
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(parents.get(pid, []))
    return found


def running(pid: int) -> bool:
    """The process exists and is not a zombie."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


class _Signalled(Exception):
    """A signal arrived while the supervisor waited."""


def _reap() -> list[tuple[int, int]]:
    """Collect every child that has exited (adopted ones too): (pid, wait status) pairs."""
    done: list[tuple[int, int]] = []
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return done
        if pid == 0:
            return done
        done.append((pid, status))


def end_all(grace_s: float) -> list[tuple[int, int]]:
    """SIGTERM every descendant, SIGKILL those left after ``grace_s``; return what was reaped."""
    reaped: list[tuple[int, int]] = []
    for sig in (signal.SIGTERM, signal.SIGKILL):
        pids = descendants(os.getpid())
        for pid in pids:
            with contextlib.suppress(OSError):
                os.kill(pid, sig)
        deadline = time.monotonic() + grace_s
        while True:
            reaped += _reap()
            if not any(running(p) for p in descendants(os.getpid())):
                return reaped + _reap()
            if time.monotonic() >= deadline:
                break
            threading.Event().wait(0.05)  # bounded: processes we signalled
    return reaped + _reap()


def _exit_like(status: int) -> None:
    """Exit as the SUT did: its code, or the signal that ended it."""
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        signal.signal(sig, signal.SIG_DFL)
        os.kill(os.getpid(), sig)
        sys.exit(128 + sig)
    sys.exit(os.WEXITSTATUS(status) if os.WIFEXITED(status) else 1)


def main(argv: list[str]) -> None:
    harness, grace_s, command = int(argv[0]), float(argv[1]), argv[2:]

    def on_signal(signum: int, frame: object) -> None:
        raise _Signalled(signum)

    for sig in _STOPS:
        signal.signal(sig, on_signal)
    if sys.platform == "linux":
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGUSR1, 0, 0, 0)
    sut, status = -1, None
    try:
        if os.getppid() != harness:  # the harness died before we asked to be told
            raise _Signalled(signal.SIGUSR1)
        try:
            sut = os.posix_spawnp(command[0], command, os.environ)
        except OSError as exc:
            print(f"conformance supervisor: cannot start {command[0]!r}: {exc}", file=sys.stderr)
            sys.exit(127)
        while status is None:
            pid, code = os.waitpid(-1, 0)  # the SUT, or an orphan it left
            if pid == sut:
                status = code
    except _Signalled:
        pass  # the harness stops the SUT, or it died: either way everything ends now
    for sig in _STOPS:
        signal.signal(sig, signal.SIG_IGN)
    for pid, code in end_all(grace_s):
        if pid == sut:
            status = code
    _exit_like(status if status is not None else 1 << 8)


if __name__ == "__main__":
    main(sys.argv[1:])
