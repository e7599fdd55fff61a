"""The ``[apple]`` manifest section a SUT declares, and the record it reports to the observer."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, StrictBool

from conformance.manifest import ManifestFile, Section, WebUrl

__all__ = ["AppleSection", "ObservedNotification"]


class AppleSection(Section):
    """``[apple]``: the SUT receives Apple Apps and Books notifications (docs/sut-contract.md §2)."""

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
