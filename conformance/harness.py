"""One run's moving parts: PKI, clock, evidence, observer, simulators and the launched SUT.

The plugin builds a :class:`Harness` once per session from the checked options; checks reach
the simulators through it. Simulators run in a background event loop (:class:`LoopThread`);
checks are plain synchronous pytest functions that call :meth:`Harness.run`.
"""

from __future__ import annotations

import socket
from collections.abc import Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

from conformance.launcher import LaunchError, SutProcess, probe
from conformance.manifest import SutManifest
from conformance.observer import Observer
from simulators.apple.api import AppsAndBooksServer
from simulators.apple.delivery import RetrySchedule
from simulators.apple.notifier import Notifier, Receiver
from simulators.apple.service import AppsAndBooks
from simulators.clock import Clock
from simulators.evidence import Recorder
from simulators.loop import LoopThread
from simulators.pki import PKI

__all__ = ["AppleSim", "Harness", "Settings"]

T = TypeVar("T")

# API mode (APL-API-02/04): the first two API calls the SUT makes after configuring
# notifications are answered 503 + Retry-After, then 429/9646; its first event is held PENDING.
API_RETRY_AFTER_S = 2


@dataclass(frozen=True)
class Settings:
    manifest: SutManifest
    vendors: tuple[str, ...]
    report_dir: Path
    pki_dir: Path
    strict: bool = False
    slow: bool = False
    observer_port: int = 0
    apple_api_port: int = 0
    apple_schedule: RetrySchedule = field(default_factory=RetrySchedule)
    apple_timeout_s: float = 5.0
    apple_stoken: str = "conformance-stoken"


@dataclass
class AppleSim:
    """The Apple side of a run: the notifier aimed at the SUT and the Apps and Books API."""

    notifier: Notifier
    service: AppsAndBooks
    api: AppsAndBooksServer
    receiver: Receiver


class Harness:
    def __init__(self, settings: Settings, run_dir: Path) -> None:
        self.settings = settings
        self.manifest = settings.manifest
        self.run_dir = run_dir
        self.pki = PKI.load_or_create(settings.pki_dir)
        self.clock = Clock()
        self.recorder = Recorder(self.clock)
        self.loop = LoopThread()
        self.observer = Observer(self.clock, self.recorder, port=settings.observer_port)
        self.apple: AppleSim | None = None
        self.sut: SutProcess | None = None
        self.sut_exit: int | None = None
        self.startup_error: str | None = None

    # Life cycle.

    def start(self) -> None:
        """Start the simulators, then the SUT; raise LaunchError with a clear message."""
        self.run(self.observer.start())
        if "apple" in self.settings.vendors:
            self.apple = self.run(self._start_apple())
        process = self.manifest.process
        if process is not None:
            self.sut = SutProcess(process, self.environment(), self.run_dir / "sut.log")
            self.recorder.record("harness", "--", "sut", "launch", f"started {process.command}")
            waited = self.sut.wait_ready(self._probe_ca())
            self.recorder.record("harness", "--", "sut", "ready", f"ready after {waited:.1f} s")
        self._check_reachable()

    def stop(self) -> None:
        if self.loop.loop.is_closed():
            return
        try:
            if self.sut is not None:
                self.sut_exit = self.sut.stop()
            if self.apple is not None:
                self.run(self.apple.api.stop())
                self.run(self.apple.notifier.close())
            self.run(self.observer.stop())
        finally:
            self.loop.stop()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 120.0) -> T:
        return self.loop.run(coro, timeout)

    def environment(self) -> dict[str, str]:
        """The CONFORMANCE_* variables a launched SUT receives (sut-contract.md §3)."""
        env = {
            "CONFORMANCE_CA_FILE": str(self.pki.ca),
            "CONFORMANCE_OBSERVER_URL": self.observer.base_url,
            # Project extras: a server certificate for 127.0.0.1/localhost a launched SUT may use.
            "CONFORMANCE_SUT_CERT_FILE": str(self.pki.sut_server.cert),
            "CONFORMANCE_SUT_KEY_FILE": str(self.pki.sut_server.key),
        }
        if self.apple is not None:
            env["CONFORMANCE_APPLE_API_URL"] = self.apple.api.base_url
            env["CONFORMANCE_APPLE_STOKEN"] = self.apple.service.stoken
        return env

    # Apple.

    def sut_cafiles(self, tls_ca: Path | None) -> tuple[str, ...]:
        """CAs trusted for the SUT's certificate: its declared CA, else ours (plus the system's)."""
        return (str(tls_ca),) if tls_ca is not None else (str(self.pki.ca),)

    async def _start_apple(self) -> AppleSim:
        section = self.manifest.apple
        assert section is not None
        cafiles = self.sut_cafiles(section.tls_ca)
        receiver = Receiver(section.webhook_url, section.auth_token, cafiles)

        def notifier_for(target: Receiver) -> Notifier:
            return Notifier(
                Receiver(target.url, target.token, cafiles),
                self.clock,
                self.recorder,
                schedule=self.settings.apple_schedule,
                timeout_s=self.settings.apple_timeout_s,
                autojump=True,
            )

        notifier = notifier_for(receiver)
        await notifier.start()
        service = AppsAndBooks(stoken=self.settings.apple_stoken)
        api = AppsAndBooksServer(
            service,
            self.clock,
            self.recorder,
            self.pki,
            notifier_for,
            port=self.settings.apple_api_port,
        )
        if section.api_client:
            service.hold_events = 1
            api.faults.add("api", "status", status=503, error=9729, retry_after=API_RETRY_AFTER_S)
            api.faults.add("api", "status", status=429, error=9646)
        await api.start()
        return AppleSim(notifier, service, api, receiver)

    # Checks on the SUT.

    def sut_alive(self) -> str | None:
        """None when the SUT is still up; else what is wrong (GEN-LIVE-01)."""
        if self.sut is not None and (code := self.sut.exited()) is not None:
            return f"the SUT process exited with status {code}"
        if self.manifest.process is not None and self.manifest.process.ready:
            problem = probe(self.manifest.process.ready, self._probe_ca())
            if problem:
                return f"readiness probe {self.manifest.process.ready} -> {problem}"
        return None

    def _probe_ca(self) -> Path | None:
        apple = self.manifest.apple
        if apple is not None and apple.tls_ca is not None:
            return apple.tls_ca
        return self.pki.ca

    def _check_reachable(self) -> None:
        """Fail fast with a clear message when a receiver URL does not accept connections."""
        urls = []
        if self.manifest.apple is not None:
            urls.append(("[apple] webhook_url", self.manifest.apple.webhook_url))
        for what, url in urls:
            parts = urlsplit(url)
            port = parts.port or (443 if parts.scheme == "https" else 80)
            try:
                with socket.create_connection((parts.hostname or "", port), timeout=5):
                    pass
            except OSError as exc:
                raise LaunchError(
                    f"cannot reach the SUT at {url} ({what}): {exc}. Start the receiver first, "
                    "or give a manifest with a [process] section so the harness starts it."
                ) from None
