"""The Apple Apps and Books vendor plug-in (conformance.vendors.Vendor).

Imported in every pytest run of a user's environment (options are declared at start-up), so it
imports nothing heavy at module level; the simulators load when a run starts them.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from conformance.options import port, read_text, stable_secret
from conformance.vendors import AddOption, GetOption, RunningVendor, VendorRun

if TYPE_CHECKING:
    from pydantic import BaseModel

    from conformance.exploration import Explorer
    from conformance.harness import Harness
    from simulators.apple.delivery import RetrySchedule

__all__ = ["VENDOR", "AppleSettings", "AppleVendor"]


@dataclass(frozen=True)
class AppleSettings:
    api_port: int = 0
    stoken: str = "conformance-stoken"
    retry_schedule: RetrySchedule | None = None  # None: the vendor's +0, +60, +300 s
    timeout_s: float = 5.0
    billing_period_s: float = 30 * 24 * 3600.0  # project assumption: a monthly subscription


class AppleVendor:
    name = "apple"
    title = "Apple Apps and Books notifications"
    receiver = True
    behaviour_options = ("--apple-retry-schedule", "--apple-timeout")

    def add_options(self, add: AddOption) -> None:
        add(
            "--apple-api-port",
            type=int,
            default=0,
            metavar="PORT",
            help="pin the simulated Apps and Books API's port (default: a free one)",
        )
        add(
            "--apple-stoken",
            metavar="TOKEN",
            help="the sToken the simulated Apps and Books API accepts (default: one kept in "
            "the PKI folder, the same from run to run)",
        )
        add(
            "--apple-retry-schedule",
            default="0,60,300",
            metavar="S,S,S",
            help="notification attempt offsets in simulated seconds (default 0,60,300)",
        )
        add("--apple-timeout", type=float, default=5.0, metavar="S",
            help="seconds a receiver has to answer a notification (default 5)")  # fmt: skip
        add(
            "--apple-billing-period",
            type=float,
            default=30.0,
            metavar="DAYS",
            help="length of a subscription billing period in simulated days: a deferred "
            "disassociation is notified at its end (default 30, a project assumption: Apple "
            "publishes none)",
        )

    def settings(self, option: GetOption, *, pki_dir: Path) -> AppleSettings:
        from simulators.apple.delivery import RetrySchedule

        try:
            schedule = RetrySchedule.parse(option("--apple-retry-schedule"))
        except ValueError as exc:
            raise ValueError(f"--apple-retry-schedule: {exc}") from None
        timeout = option("--apple-timeout")
        if not 0 < timeout <= 60:
            raise ValueError("--apple-timeout: give seconds between 0 and 60")
        period = option("--apple-billing-period")
        if not 0 < period <= 366:
            raise ValueError("--apple-billing-period: give simulated days between 0 and 366")
        return AppleSettings(
            api_port=port("--apple-api-port", option("--apple-api-port")),
            stoken=option("--apple-stoken")
            or stable_secret(pki_dir / "apple-stoken", lambda: secrets.token_urlsafe(24), bool),
            retry_schedule=schedule,
            timeout_s=timeout,
            billing_period_s=period * 24 * 3600.0,
        )

    def section_model(self) -> type[BaseModel]:
        from conformance.apple.section import AppleSection

        return AppleSection

    def section_for_url(self, url: str, *, token: str | None, ca: Path | None) -> BaseModel:
        from conformance.apple.section import AppleSection

        if not token:
            raise ValueError(
                "an Apple receiver needs --sut-token=TOKEN (the notificationAuthToken it expects)"
            )
        return AppleSection(webhook_url=url, auth_token=token, tls_ca=ca)

    def profiles(self, section: BaseModel) -> frozenset[str]:
        return frozenset({"api_client"}) if getattr(section, "api_client", False) else frozenset()

    def observer_record_model(self) -> type[BaseModel]:
        from conformance.apple.section import ObservedNotification

        return ObservedNotification

    def observer_keys(self, record: Any) -> tuple[str, ...]:
        """The reported notification's ``notificationId``."""
        inner = record.get("notification") if isinstance(record, dict) else None
        key = inner.get("notificationId") if isinstance(inner, dict) else None
        return (key,) if isinstance(key, str) else ()

    async def start(self, run: VendorRun) -> RunningVendor:
        from conformance.apple.running import start

        return await start(run)

    def sim_handle(self) -> Any:
        from conformance.apple.handle import AppleSim

        return AppleSim

    def operation_model(self) -> Any:
        from simulators.apple.operations import AppleOperation

        return AppleOperation

    def add_ctl_verbs(self, verbs: Any) -> None:
        receiver = verbs.add_parser("receiver", help="aim notifications at a receiver-only SUT")
        receiver.add_argument("url", metavar="URL", help="the receiver's https:// URL")
        receiver.add_argument("--token", required=True, help="its notificationAuthToken")
        receiver.add_argument("--ca", metavar="FILE", help="the CA of its certificate (PEM)")
        receiver.set_defaults(operation=lambda a: {
            "op": "register-receiver", "url": a.url, "token": a.token,
            **({"ca_pem": read_text(a.ca, "--ca")} if a.ca else {}),
        })  # fmt: skip
        notify = verbs.add_parser("notify", help="send a notification of any type")
        notify.add_argument("type", metavar="TYPE", help="a notificationType, e.g. ASSET_COUNT")
        notify.add_argument("--elements", type=int, default=1, metavar="N",
                            help="items in its element list (split into parts of 100)")  # fmt: skip
        notify.set_defaults(operation=lambda a: {
            "op": "notify", "notification_type": a.type, "elements": a.elements,
        })  # fmt: skip
        period = verbs.add_parser(
            "end-billing-period",
            help="jump to the end of the subscription billing period (deferred "
            "disassociations are released and notified)",
        )
        period.set_defaults(operation=lambda a: {"op": "end-billing-period"})

    def explorers(self, harness: Harness) -> list[Explorer]:
        """Deliveries, faults and simulated time interleaved (conformance/apple/explorer.py)."""
        from conformance.apple.driver import AppleDriver
        from conformance.apple.explorer import AppleExplorer
        from conformance.apple.running import RunningApple

        running = harness.running.get(self.name)
        if not isinstance(running, RunningApple) or running.notifier is None:
            return []
        return [AppleExplorer(AppleDriver(harness, running))]


VENDOR = AppleVendor()
