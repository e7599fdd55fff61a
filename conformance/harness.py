"""One run's moving parts: PKI, clock, evidence, observer, vendor simulators and the launched SUT.

The plugin builds a :class:`Harness` once per session from the checked options; checks reach
the simulators through it. Simulators run in a background event loop (:class:`LoopThread`);
checks are plain synchronous pytest functions that call :meth:`Harness.run`.

Startup order (generic): observer, each vendor's simulators, the SUT, each vendor's
after-ready hook, a reachability check of every SUT endpoint, then first contact: a TLS
handshake with each HTTPS endpoint, trusting what the run trusts for it, and each vendor's
first request (:meth:`RunningVendor.first_contact`). A setup mistake found there (a certificate
the run does not trust, a wrong path, a refused token) stops the run with one message naming
the fix, before 100 checks each repeat it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import hashlib
import socket
import ssl
from collections.abc import Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

from conformance.launcher import LaunchError, SutProcess, probe
from conformance.manifest import SutManifest
from conformance.observer import Observer, Route
from conformance.vendors import Endpoint, RunningVendor, VendorRun, vendor
from conformance.verdicts import NotVerified
from simulators.clock import Clock
from simulators.evidence import RUN, Recorder
from simulators.loop import LoopThread
from simulators.network import LOCAL, Reach
from simulators.pki import PKI
from simulators.problem import Problem

__all__ = ["Harness", "Settings"]

T = TypeVar("T")
_ALIVE = ("answered ", "not an HTTP answer")  # probe results that still show a live SUT
BODIES_LIMIT = 32 * 1024 * 1024  # bytes of reproducer bodies kept beside a report


@dataclass(frozen=True)
class Settings:
    """A conformance run's checked options (generic ones, and each vendor's own)."""

    manifest: SutManifest
    vendors: tuple[str, ...]
    report_dir: Path
    pki_dir: Path
    vendor_settings: dict[str, Any] = field(default_factory=dict)
    strict: bool = False
    slow: bool = False
    observer_port: int = 0
    reach: Reach = LOCAL  # --listen, --advertise
    fuzz_profile: str = "conformance"
    first_contact: bool = True  # --no-first-contact: run the checks whatever the probe finds


class Harness:
    def __init__(self, settings: Settings, run_dir: Path) -> None:
        self.settings = settings
        self.manifest = settings.manifest
        self.run_dir = run_dir
        self.pki = PKI.load_or_create(settings.pki_dir, settings.reach.certificate_names)
        self.clock = Clock()
        self.recorder = Recorder(self.clock)
        self.loop = LoopThread()
        routes = {
            name: Route(vendor(name).observer_record_model(), vendor(name).observer_keys)
            for name in settings.vendors
        }
        self.observer = Observer(
            self.clock, self.recorder, routes, port=settings.observer_port, reach=settings.reach
        )
        self.running: dict[str, RunningVendor] = {}
        self.sut: SutProcess | None = None
        self.sut_exit: int | None = None
        self.startup_error: str | None = None
        self.cause = RUN  # the check running now: simulator calls are attributed to it
        self.sut_down: str | None = None  # why the SUT is taken as unresponsive, once it is
        self.down_in: str | None = None  # the check during which it was, if any
        # The check restarting the SUT on purpose (conformance/restart.py), while it does: the
        # SUT's silence then is that restart's, not the SUT going down.
        self.restarting: str | None = None
        self._bodies_kept = 0

    # Life cycle.

    def start(self) -> None:
        """Start the observer, the simulators, the SUT; raise LaunchError with a clear message."""
        self.run(self.observer.start())
        for name in self.settings.vendors:
            run = VendorRun(
                clock=self.clock,
                recorder=self.recorder,
                pki=self.pki,
                observer_url=self.observer.base_url,
                run_dir=self.run_dir,
                settings=self.settings.vendor_settings.get(name),
                section=self.manifest.section(name),
                slow=self.settings.slow,
                reach=self.settings.reach,
            )
            self.running[name] = self.run(vendor(name).start(run))
        process = self.manifest.process
        if process is not None:
            self.sut = SutProcess(process, self.environment(), self.run_dir / "sut.log")
            self.recorder.record("harness", "--", "sut", "launch", f"started {process.command}")
            waited = self.sut.wait_ready(self.probe_context())
            self.recorder.record("harness", "--", "sut", "ready", f"ready after {waited:.1f} s")
        for running in self.running.values():
            self.run(running.after_ready())
        self._check_reachable()
        if self.settings.first_contact:
            self._first_contact()

    def stop(self, grace_s: float = 5.0) -> None:
        """End the SUT (SIGTERM, SIGKILL after ``grace_s``), the simulators and the loop. Called
        again after an interruption (a second Ctrl-C), it finishes what is left: the SUT first."""
        if self.sut is not None and self.sut_exit is None:
            self.sut_exit = self.sut.stop(grace_s)
        if self.loop.loop.is_closed():
            return
        try:
            for running in self.running.values():
                self.run(running.stop())
            self.run(self.observer.stop())
        finally:
            self.loop.stop()

    def run(
        self, coro: Coroutine[Any, Any, T], timeout: float = 120.0, *, autojump: bool = False
    ) -> T:
        """Run ``coro`` in the simulators' loop and wait for it. Its evidence is attributed to
        the running check; with ``autojump`` its waits on the simulated clock take no time."""
        return self.loop.run(self._attributed(coro, self.cause, autojump=autojump), timeout)

    def submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        """Start ``coro`` in the simulators' loop without waiting for it (its evidence is
        attributed to the running check; its waits on the simulated clock are real until the
        clock is advanced). The caller waits for the future, bounded."""
        return asyncio.run_coroutine_threadsafe(self._attributed(coro, self.cause), self.loop.loop)

    async def _attributed(
        self, coro: Coroutine[Any, Any, T], cause: str, *, autojump: bool = False
    ) -> T:
        with self.recorder.attributed(cause):
            if not autojump:
                return await coro
            with self.clock.autojump():
                return await coro

    def environment(self) -> dict[str, str]:
        """The CONFORMANCE_* variables a launched SUT receives (docs/sut-contract.md §3)."""
        env = {
            "CONFORMANCE_CA_FILE": str(self.pki.ca),
            "CONFORMANCE_OBSERVER_URL": self.observer.base_url,
            # Project extras: a server certificate for 127.0.0.1/localhost a launched SUT may use.
            "CONFORMANCE_SUT_CERT_FILE": str(self.pki.sut_server.cert),
            "CONFORMANCE_SUT_KEY_FILE": str(self.pki.sut_server.key),
            # A folder of the run that outlives a restart of the SUT (docs/sut-contract.md §2).
            "CONFORMANCE_SUT_STATE_DIR": str(self.state_dir()),
        }
        for running in self.running.values():
            env.update(running.environment())
        return env

    def state_dir(self) -> Path:
        """Where a launched SUT may keep files across its restarts within this run."""
        folder = self.run_dir / "sut-state"
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    def errors(self) -> list[str]:
        """Every background error of the simulators so far (harness faults)."""
        return [error for running in self.running.values() for error in running.errors()]

    # The SUT.

    def endpoints(self) -> list[Endpoint]:
        return [e for running in self.running.values() for e in running.endpoints()]

    def probe_context(self) -> ssl.SSLContext:
        """A TLS context for the readiness probe: the SUT's declared CAs, else the harness CA."""
        cafiles = {e.cafile for e in self.endpoints() if e.cafile is not None} or {self.pki.ca}
        context = ssl.create_default_context()
        for cafile in sorted(cafiles):
            context.load_verify_locations(cafile=str(cafile))
        return context

    def sut_alive(self) -> Problem:
        """None when the SUT is still up; else what is wrong (GEN-LIVE-01)."""
        if self.sut is not None and (code := self.sut.exited()) is not None:
            return f"the SUT process exited with status {code}"
        if self.manifest.process is not None and self.manifest.process.ready:
            problem = probe(self.manifest.process.ready, self.probe_context())
            if problem:
                return f"readiness probe {self.manifest.process.ready} -> {problem}"
        return None

    def confirm_unresponsive(self, symptom: str) -> Problem:
        """After the SUT failed to answer (``symptom``), probe it once: when the process has
        exited, the readiness probe fails, or no endpoint answers HTTP within a few seconds, the
        SUT is taken as down for the rest of the run (:attr:`sut_down`), so the checks that
        need it end at once (:meth:`require_sut`) instead of each waiting out its timeouts."""
        if self.sut_down is not None or self.restarting is not None:
            return self.sut_down
        problem = self.sut_alive()
        if problem is None:  # a listening socket is no proof of life: ask each endpoint
            answers = [
                probe(e.url, self._endpoint_context(e), timeout=3.0) for e in self.endpoints()
            ]
            dead = [a for a in answers if a is not None and not a.startswith(_ALIVE)]
            problem = dead[0] if dead and len(dead) == len(answers) else None
        if problem is not None:
            self.sut_down = f"{symptom}; then {problem} (first seen in {self.cause or 'the run'})"
            self.down_in = self.cause
            self.recorder.record("harness", "--", "sut", "unresponsive", self.sut_down)
        return self.sut_down

    def mark_down(self, cause: str) -> str:
        """Take the SUT as down for the rest of the run because of what a vendor's check saw on
        its own channel (e.g. a client that lost its connection and did not come back within a
        bound; a receiver whose probes answer but which leaves notification after notification
        unanswered; a dead receiver is confirmed by :meth:`confirm_unresponsive` instead): the
        checks that need the SUT then end at once (:meth:`require_sut`). Returns the cause kept
        (the first), for the check that saw it to fail with. While the SUT is restarted on
        purpose (:attr:`restarting`) nothing is recorded: its absence then is the restart's."""
        if self.restarting is not None:
            return cause
        if self.sut_down is None:
            problem = self.sut_alive()
            self.sut_down = (
                f"{cause}" + (f"; {problem}" if problem else "")
                + f" (first seen in {self.cause or 'the run'})"
            )  # fmt: skip
            self.down_in = self.cause
            self.recorder.record("harness", "--", "sut", "unresponsive", self.sut_down)
        return self.sut_down

    def body_file(self, data: bytes) -> str:
        """Keep a request body beside the report (``bodies/<hash>.bin``, at most
        :data:`BODIES_LIMIT` bytes in all) and return its path relative to the report folder."""
        name = f"bodies/{hashlib.sha256(data).hexdigest()[:16]}.bin"
        path = self.run_dir / name
        if not path.exists() and self._bodies_kept + len(data) <= BODIES_LIMIT:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
            self._bodies_kept += len(data)
        return name

    def script_file(self, name: str, text: str) -> str:
        """Keep a reproducer script beside the report (``reproducers/<name>``, counted with the
        bodies against :data:`BODIES_LIMIT`) and return its path relative to the report
        folder."""
        relative = f"reproducers/{name}"
        path = self.run_dir / relative
        data = text.encode()
        if not path.exists() and self._bodies_kept + len(data) <= BODIES_LIMIT:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
            path.chmod(0o755)
            self._bodies_kept += len(data)
        return relative

    def require_sut(self) -> None:
        """Once the SUT is down, a check that needs it cannot observe its requirement: it is
        ``not-verified`` at once, with the cause. The SUT's going down is not that
        requirement's failure: the check that saw it go fails on its own evidence, and
        GEN-LIVE-01 fails for it."""
        if self.sut_down is not None:
            raise NotVerified(
                f"the SUT was down before this check could observe it: {self.sut_down}"
            )

    def _endpoint_context(self, endpoint: Endpoint) -> ssl.SSLContext | None:
        if urlsplit(endpoint.url).scheme != "https":
            return None
        context = ssl.create_default_context(cafile=str(endpoint.cafile or self.pki.ca))
        if endpoint.client_cert is not None:
            context.load_cert_chain(str(endpoint.client_cert.cert), str(endpoint.client_cert.key))
        return context

    def unreachable(self, endpoint: Endpoint, timeout: float = 5.0) -> Problem:
        """None when ``endpoint`` accepts a connection; else why not."""
        parts = urlsplit(endpoint.url)
        port = parts.port or (443 if parts.scheme in ("https", "wss") else 80)
        try:
            with socket.create_connection((parts.hostname or "", port), timeout=timeout):
                return None
        except OSError as exc:
            return f"{endpoint.url} ({endpoint.what}) does not accept connections: {exc}"

    def _first_contact(self) -> None:
        """Stop with one clear message when the SUT's setup would make every check fail the
        same way (see the module docstring)."""
        for endpoint in self.endpoints():
            if problem := self.untrusted(endpoint):
                self._stop_at_first_contact(problem)
        for running in self.running.values():
            if problem := self.run(running.first_contact(), timeout=60):
                self._stop_at_first_contact(problem)
        self.recorder.record("harness", "--", "sut", "first-contact", "the SUT's setup looks right")

    def _stop_at_first_contact(self, problem: str) -> None:
        self.recorder.record("harness", "--", "sut", "first-contact", problem)
        raise LaunchError(
            f"first contact: {problem}. (To run the checks all the same: --no-first-contact.)"
        )

    def untrusted(self, endpoint: Endpoint, timeout: float = 5.0) -> Problem:
        """None unless ``endpoint`` is HTTPS and its certificate does not verify against what
        the run trusts for it (the system's CAs and the declared CA, else the harness CA); then
        why, and where to give the CA that signed it."""
        parts = urlsplit(endpoint.url)
        if parts.scheme != "https":
            return None
        context = ssl.create_default_context()
        context.load_verify_locations(cafile=str(endpoint.cafile or self.pki.ca))
        port = parts.port or 443
        try:
            with (
                socket.create_connection((parts.hostname or "", port), timeout=timeout) as raw,
                context.wrap_socket(raw, server_hostname=parts.hostname),
            ):
                return None
        except ssl.SSLCertVerificationError as exc:
            reason = exc.verify_message or str(exc)
        except (OSError, ssl.SSLError):
            return None  # not a certificate problem: the checks judge it
        trusted = (
            f"{endpoint.cafile} (declared)"
            if endpoint.cafile
            else f"{self.pki.ca} (the harness CA)"
        )
        where = (
            "--sut-ca=PEM"
            if "://" in str(self.manifest.source)
            else f'tls_ca = "PEM" in the {endpoint.what.split()[0]} section of the manifest'
        )
        return (
            f"the certificate of {endpoint.url} ({endpoint.what}) does not verify against "
            f"{trusted}: {reason}. Give the CA that signed it with {where}, or serve the "
            f"certificate the harness made for SUTs, {self.pki.sut_server.cert} with its key "
            f"{self.pki.sut_server.key} (signed by {self.pki.ca})"
        )

    def _check_reachable(self) -> None:
        """Fail fast with a clear message when a SUT endpoint does not accept connections."""
        for endpoint in self.endpoints():
            if problem := self.unreachable(endpoint):
                raise LaunchError(
                    f"cannot reach the SUT: {problem}. Start it first, or give a manifest with "
                    "a [process] section so the harness starts it."
                )
