"""The Apple side of a run: the manifest section, the observer record, and the simulators
(the notifier aimed at the SUT's receiver and the Apps and Books API) behind the plug-in."""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field, StrictBool

from conformance.apple.vendor import AppleSettings
from conformance.manifest import ManifestFile, Section, WebUrl
from conformance.vendors import Endpoint, VendorRun
from simulators.apple.api import AppsAndBooksServer
from simulators.apple.delivery import RetrySchedule
from simulators.apple.notifier import AttemptLog, Notifier, Receiver
from simulators.apple.service import AppsAndBooks

__all__ = ["API_RETRY_AFTER_S", "AppleSection", "AppleSim", "ObservedNotification", "start"]

# API mode (APL-API-02/04): the first two API calls the SUT makes after configuring
# notifications are answered 503 + Retry-After, then 429/9646; its first event is held PENDING.
API_RETRY_AFTER_S = 2


class AppleSection(Section):
    """``[apple]``: the SUT receives Apple Apps and Books notifications
    (docs/sut-contract.md §2)."""

    webhook_url: WebUrl
    auth_token: str = Field(min_length=1)
    tls_ca: ManifestFile | None = None
    api_client: StrictBool = False  # "yes" or 1 is an error, not true


class ReportedEnvelope(BaseModel):
    """The notification as received: at least its ``notificationId`` and ``notificationType``."""

    model_config = ConfigDict(extra="allow")
    notificationId: str
    notificationType: str


class ObservedNotification(BaseModel):
    """``POST {observer}/apple``: ``{"notification": <the notification body as received>}``."""

    model_config = ConfigDict(extra="allow")
    notification: ReportedEnvelope


@dataclass
class AppleSim:
    """The Apple simulators of one run."""

    service: AppsAndBooks
    api: AppsAndBooksServer
    attempts: AttemptLog  # every notification attempt of the run, from every notifier
    settings: AppleSettings
    section: AppleSection | None
    notifier: Notifier | None = None  # aimed at the SUT's declared receiver (None standalone)

    @property
    def receiver(self) -> Receiver:
        assert self.notifier is not None, "no receiver declared"
        return self.notifier.receiver

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

    def errors(self) -> list[str]:
        return self.api.fault_log.errors()

    async def stop(self) -> None:
        await self.api.stop()
        if self.notifier is not None:
            await self.notifier.close()


async def start(run: VendorRun) -> AppleSim:
    settings: AppleSettings = run.settings or AppleSettings()
    section = run.section if isinstance(run.section, AppleSection) else None
    cafiles = (str(section.tls_ca),) if section and section.tls_ca else (str(run.pki.ca),)
    attempts = AttemptLog()
    schedule = settings.retry_schedule or RetrySchedule()

    def notifier_for(target: Receiver) -> Notifier:
        return Notifier(
            Receiver(target.url, target.token, cafiles),
            run.clock,
            run.recorder,
            schedule=schedule,
            timeout_s=settings.timeout_s,
            log=attempts,
        )

    service = AppsAndBooks(stoken=settings.stoken)
    api = AppsAndBooksServer(
        service, run.clock, run.recorder, run.pki, notifier_for, port=settings.api_port
    )
    if section is not None and section.api_client:
        service.hold_events = 1
        api.faults.add("api", "status", status=503, error=9729, retry_after=API_RETRY_AFTER_S)
        api.faults.add("api", "status", status=429, error=9646)
    await api.start()
    sim = AppleSim(service, api, attempts, settings, section)
    if section is not None:
        sim.notifier = notifier_for(Receiver(section.webhook_url, section.auth_token))
        await sim.notifier.start()
    return sim
