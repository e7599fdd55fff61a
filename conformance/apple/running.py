"""The Apple simulators of one run, composed: the notifier aimed at the SUT's receiver and the
Apps and Books API (the plug-in's running object)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from conformance.apple.section import AppleSection
from conformance.apple.vendor import AppleSettings
from conformance.vendors import FIRST_CONTACT_TIMEOUT_S, Endpoint, VendorRun, setup_mistake
from simulators.apple.api import AppsAndBooksServer
from simulators.apple.delivery import RetrySchedule
from simulators.apple.models import sample
from simulators.apple.notifier import AttemptLog, Notifier, Receiver
from simulators.apple.operations import AppleTarget, FailApiCalls
from simulators.apple.service import SUBSCRIBABLE, AppsAndBooks
from simulators.operations import Applies

__all__ = ["API_RETRY_AFTER_S", "RunningApple", "start"]

R = TypeVar("R")

# API mode (APL-API-02/04): the first two API calls the SUT makes after configuring
# notifications are answered 503 + Retry-After, then 429/9646; its first event is held PENDING.
API_RETRY_AFTER_S = 2


@dataclass
class RunningApple:
    """The Apple simulators of one run."""

    service: AppsAndBooks
    api: AppsAndBooksServer
    attempts: AttemptLog  # every notification attempt of the run, from every notifier
    settings: AppleSettings
    section: AppleSection | None
    notifier: Notifier | None = None  # aimed at the SUT's declared receiver (None standalone)
    # Standalone: makes the notifier a receiver registered over the control plane gets.
    notifier_for: Callable[[Receiver], Notifier] | None = None

    @property
    def receiver(self) -> Receiver:
        assert self.notifier is not None, "no receiver declared"
        return self.notifier.receiver

    @property
    def target(self) -> AppleTarget:
        """What operations act on: the notifier aimed at the SUT and the API."""
        aim = self._aim if self.section is None and self.notifier_for is not None else None
        return AppleTarget(self.notifier, self.api, self.attempts, self.api.clock, aim)

    async def _aim(self, receiver: Receiver | None) -> Receiver | None:
        """Aim the notifier at ``receiver`` (None: at none); the one it replaces closes once
        its deliveries under way have ended."""
        old = self.notifier
        self.notifier = None
        if receiver is not None:
            assert self.notifier_for is not None
            self.notifier = self.notifier_for(receiver)
            await self.notifier.start()
        if old is not None:
            self.api.tasks.spawn(old.close_when_idle(), "replaced receiver")
        return None if old is None else old.receiver

    async def perform(self, operation: Applies[AppleTarget, R]) -> R:
        """Carry out one operation (:mod:`simulators.apple.operations`)."""
        return await operation.apply(self.target)

    def environment(self) -> dict[str, str]:
        return {
            "CONFORMANCE_APPLE_API_URL": self.api.base_url,
            "CONFORMANCE_APPLE_STOKEN": self.service.stoken,
        }

    def endpoints(self) -> list[Endpoint]:
        if self.section is None:
            return []
        return [Endpoint("[apple] webhook_url", self.section.webhook_url, self.section.tls_ca)]

    async def after_ready(self) -> None:
        return None

    async def first_contact(self) -> str | None:
        """The TEST_NOTIFICATION Apple sends when a notification URL is configured, with the
        vendor's headers, from the notifier's client but outside its attempt log (the checks
        judge the attempts they make)."""
        if self.section is None or self.notifier is None:
            return None
        receiver = self.notifier.receiver
        exchange = await self.notifier.sender.send(
            "POST",
            receiver.url,
            sample("TEST_NOTIFICATION").to_bytes(),
            self.notifier.headers(),
            timeout_s=FIRST_CONTACT_TIMEOUT_S,
        )
        return setup_mistake(
            exchange.answered,
            sent=(
                f"POST {receiver.url} (the TEST_NOTIFICATION Apple sends when the URL is set "
                "up, with Authorization: Bearer <the token given>)"
            ),
            path_fix=(
                "Give the URL it serves notifications at: --sut=URL (in a manifest, "
                "webhook_url in [apple])"
            ),
            credentials_fix=(
                "Give the token it expects: --sut-token=SECRET (in a manifest, auth_token in "
                "[apple]); if that is the one, it must accept 'Authorization: Bearer <token>' "
                "(APL-AUTH-01)"
            ),
        )

    def errors(self) -> list[str]:
        return self.api.fault_log.errors()

    async def stop(self) -> None:
        await self.api.stop()
        if self.notifier is not None:
            await self.notifier.close()


async def start(run: VendorRun) -> RunningApple:
    settings: AppleSettings = run.settings or AppleSettings()
    section = run.section if isinstance(run.section, AppleSection) else None
    cafiles = (str(section.tls_ca),) if section and section.tls_ca else (str(run.pki.ca),)
    attempts = AttemptLog()
    schedule = settings.retry_schedule or RetrySchedule()

    def notifier_for(target: Receiver) -> Notifier:
        return Notifier(
            Receiver(target.url, target.token, (*cafiles, *target.cafiles)),
            run.clock,
            run.recorder,
            schedule=schedule,
            timeout_s=settings.timeout_s,
            log=attempts,
        )

    service = AppsAndBooks(stoken=settings.stoken, billing_period_s=settings.billing_period_s)
    api = AppsAndBooksServer(
        service,
        run.clock,
        run.recorder,
        run.pki,
        notifier_for,
        port=settings.api_port,
        reach=run.reach,
    )
    sim = RunningApple(service, api, attempts, settings, section, notifier_for=notifier_for)
    if section is not None and section.api_client:
        service.hold_events = 1
        await sim.perform(FailApiCalls(status=503, error=9729, retry_after_s=API_RETRY_AFTER_S))
        await sim.perform(FailApiCalls(status=429, error=9646))
    await api.start()
    if section is not None:
        receiver = Receiver(section.webhook_url, section.auth_token)
        sim.notifier = notifier_for(receiver)
        await sim.notifier.start()
        if not section.api_client:
            await _configured_outside_the_run(api, receiver, notifier_for)
    return sim


async def _configured_outside_the_run(
    api: AppsAndBooksServer, receiver: Receiver, notifier_for: Callable[[Receiver], Notifier]
) -> None:
    """A receiver-only SUT's notifications were configured outside the run: the API sends what
    its events produce (a deferred disassociation's release, say) to the declared receiver, for
    every type."""
    api.service.client_config = {
        "notificationUrl": receiver.url,
        "notificationAuthToken": receiver.token,
        "subscribedNotificationTypes": [t for t in SUBSCRIBABLE if t != "TEST_NOTIFICATION"],
    }
    api.notifier = notifier_for(receiver)
    await api.notifier.start()
