"""Launching the SUT from its manifest ``[process]`` section: environment, readiness, teardown.

The SUT's output goes to a log file kept for the report. A SUT that exits while the harness
waits for it to be ready is reported at once with the end of its log, not waited on.
"""

from __future__ import annotations

import http.client
import os
import signal
import socket
import ssl
import subprocess
import threading
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

from conformance.manifest import ProcessSection

__all__ = ["LaunchError", "SutProcess", "probe"]


class LaunchError(Exception):
    """The SUT could not be started or never became ready."""


def probe(url: str, context: ssl.SSLContext | None = None, timeout: float = 2.0) -> str | None:
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


class SutProcess:
    """One launched SUT process."""

    def __init__(self, section: ProcessSection, env: dict[str, str], log_path: Path) -> None:
        self.section = section
        self.log_path = log_path
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = log_path.open("wb")
        try:
            self.proc = subprocess.Popen(
                section.command,
                cwd=section.cwd,
                env={**os.environ, **env, **section.env},
                stdout=self._log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        except OSError as exc:
            self._log.close()
            raise LaunchError(
                f"[process] command {section.command!r} could not start: {exc}"
            ) from None

    def exited(self) -> int | None:
        return self.proc.poll()

    def log_tail(self, limit: int = 4000) -> str:
        if not self._log.closed:
            self._log.flush()
        try:
            data = self.log_path.read_bytes()
        except OSError:
            return ""
        return data[-limit:].decode("utf-8", "replace")

    def wait_ready(self, context: ssl.SSLContext | None) -> float:
        """Poll the readiness probe until it answers 2xx; return the seconds it took."""
        url = self.section.ready
        timeout = self.section.ready_timeout_s
        stop = threading.Event()
        waited = 0.0
        last = "not probed"
        step = 0.1
        while waited < timeout:
            code = self.exited()
            if code is not None:
                raise LaunchError(
                    f"the SUT exited with status {code} before it was ready.\n"
                    f"--- last lines of {self.log_path} ---\n{self.log_tail()}"
                )
            if url is None:
                return waited
            last = probe(url, context) or ""
            if not last:
                return waited
            stop.wait(step)  # a bounded poll of an external process; nothing to wait on
            waited += step
        raise LaunchError(
            f"the SUT was not ready after {timeout:g} s: {url} -> {last}. Raise "
            f"[process] ready_timeout_s or fix the probe.\n--- last lines of {self.log_path} "
            f"---\n{self.log_tail()}"
        )

    def stop(self, grace_s: float = 5.0) -> int | None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(grace_s)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(grace_s)
            except ProcessLookupError:
                pass
        self._log.close()
        return self.proc.returncode
