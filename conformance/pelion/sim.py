"""The Pelion side of a run: the manifest section, the observer record, and the simulated
Device Management service behind the plug-in.

For check writers: ``pel = harness.running["pelion"]`` is a :class:`PelionSim`, i.e. a
:class:`simulators.pelion.simulator.PelionSimulator` (see its module for the whole API) plus
what the run declared (``pel.section``). A check typically::

    ep = pel.add_device().ep                          # any thread
    harness.run(pel.register(ep))                     # devices act in the loop
    pel.subscribe(ep, "/3200/0/5501")
    queued = harness.run(pel.set_value(ep, "/3200/0/5501", 42))
    uid = queued[0].item.uid                          # the item's v2 message id
    pel.fail_deliveries(1, status=503)                # faults are armed before they apply
    assert harness.run(pel.drive(lambda: pel.channel_state().queue.queued == 0,
                                 max_sim_s=600), autojump=True)
    tries = [a for a in pel.attempts() if a.uids and uid in a.uids]   # every batch carrying it

Everything the simulator saw is kept, bounded: ``pel.attempts()`` (each batch: size, uids,
status or error, real-time elapsed, the simulated back-off wait that followed),
``pel.verifications()``, ``pel.connections()`` (WebSocket handshakes: auth, subprotocol,
pings and pong latencies, frames, close codes both ways, connect times), ``pel.calls()`` (the
SUT's REST calls), ``pel.channel_state()`` and ``pel.removed_channels()``.
"""

from __future__ import annotations

import re
import time
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictStr, model_validator

from conformance.manifest import ManifestFile, Section, WebUrl
from conformance.pelion.vendor import PelionSettings
from conformance.vendors import Endpoint, VendorRun
from simulators.pelion.channels import ChannelConflict
from simulators.pelion.delivery import CloseCode
from simulators.pelion.models import MAX_WEBHOOK_CHARS
from simulators.pelion.simulator import PelionConfig, PelionSimulator, VerificationFailed
from simulators.pelion.traffic import DEMO_DEVICES, DemoTraffic

__all__ = ["ObservedItem", "PelionSection", "PelionSim", "start"]

Channel = Literal["callback", "websocket"]
# The serialization the harness registers a SUT's callback with: serialization v2 with a uid
# (so the SUT can deduplicate a resent batch), the timestamp and the original endpoint name.
HARNESS_SERIALIZATION: dict[str, Any] = {
    "type": "v2",
    "cfg": {"include_uid": True, "include_timestamp": True, "include_original_ep": True},
}
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_RESERVED = frozenset({"content-length", "host", "transfer-encoding", "connection"})


class PelionSection(Section):
    """``[pelion]``: the SUT receives Pelion notifications (sut-contract.md §2).

    ``channel = "callback"``: the SUT serves ``callback_url``; the harness registers it with
    ``callback_headers`` once the SUT is ready, unless ``registers_itself = true`` (the SUT
    calls ``PUT /v2/notification/callback`` itself). ``channel = "websocket"``: the SUT creates
    its channel and connects itself. ``tls_ca`` verifies the callback URL's certificate
    (default: the harness CA).

    A project extension: ``channel = ["callback", "websocket"]`` for a SUT that implements
    both. The vendor allows one channel per API key, so such a SUT gets a second key for its
    callback, ``CONFORMANCE_PELION_CALLBACK_API_KEY`` (``CONFORMANCE_PELION_API_KEY`` stays
    the WebSocket's), and is judged on both.
    """

    channel: Channel | list[Channel]
    callback_url: WebUrl | None = None
    callback_headers: dict[str, str] = {}
    registers_itself: StrictBool = False
    tls_ca: ManifestFile | None = None

    @property
    def channels(self) -> tuple[Channel, ...]:
        """The channels claimed, callback first."""
        claimed = {self.channel} if isinstance(self.channel, str) else set(self.channel)
        return tuple(c for c in ("callback", "websocket") if c in claimed)

    @model_validator(mode="after")
    def _consistent(self) -> PelionSection:
        if not self.channels:
            raise ValueError('channel: give "callback", "websocket" or both in a list')
        if "callback" in self.channels:
            if self.callback_url is None:
                raise ValueError(
                    'channel = "callback" needs callback_url = "https://…" (the URL the SUT '
                    "serves notifications on)"
                )
            for name, value in self.callback_headers.items():
                if not _TOKEN.fullmatch(name) or any(ord(c) < 32 and c != "\t" for c in value):
                    raise ValueError(
                        f"callback_headers: {name!r} is not a valid HTTP header (names are "
                        "HTTP tokens, values have no control characters)"
                    )
                if name.lower() in _RESERVED:
                    raise ValueError(f"callback_headers: {name!r} is set by the service itself")
            total = len(self.callback_url) + sum(
                len(k) + len(v) for k, v in self.callback_headers.items()
            )
            if total > MAX_WEBHOOK_CHARS:
                raise ValueError(
                    f"callback_url and callback_headers together have {total} characters; the "
                    f"vendor allows at most {MAX_WEBHOOK_CHARS} (shorten the URL or the headers)"
                )
        else:
            extra = [
                name
                for name, given in (
                    ("callback_url", self.callback_url is not None),
                    ("callback_headers", bool(self.callback_headers)),
                    ("registers_itself", self.registers_itself),
                )
                if given
            ]
            if extra:
                raise ValueError(
                    f'{", ".join(extra)} apply to channel = "callback" only (a WebSocket SUT '
                    "creates its channel and connects itself): remove them or set channel = "
                    '"callback"'
                )
        return self


class ObservedItem(BaseModel):
    """``POST {observer}/pelion``: ``{"kind": "<top-level key>", "item": <the item as
    received>, "payload_hex": "<decoded payload bytes as hex>"}`` (sut-contract.md §4)."""

    model_config = ConfigDict(extra="allow")
    kind: StrictStr
    item: Any
    payload_hex: str | None = Field(default=None, pattern=r"^(?:[0-9A-Fa-f]{2})*$")


class PelionSim(PelionSimulator):
    """The simulated service of one run (the running object of the plug-in)."""

    def __init__(
        self,
        run: VendorRun,
        config: PelionConfig,
        section: PelionSection | None,
        settings: PelionSettings,
    ) -> None:
        super().__init__(run.clock, run.recorder, run.pki.server_context(), config)
        self.section = section
        self.settings = settings
        self.run_ca = run.pki.ca
        self.traffic: DemoTraffic | None = None
        self.registration_error: str | None = None  # why after_ready could not register
        both = section is not None and len(section.channels) == 2
        # The key of the SUT's callback channel: the run's key, or a second one when the SUT
        # also holds a WebSocket channel (one channel per key).
        self.callback_key = settings.callback_api_key if both else self.api_key
        if both:
            self.add_key(self.callback_key)

    def environment(self) -> dict[str, str]:
        env = {
            "CONFORMANCE_PELION_API_URL": self.base_url,
            "CONFORMANCE_PELION_API_KEY": self.api_key,
        }
        if self.callback_key != self.api_key:
            env["CONFORMANCE_PELION_CALLBACK_API_KEY"] = self.callback_key
        return env

    def endpoints(self) -> list[Endpoint]:
        section = self.section
        if section is None or "callback" not in section.channels or section.callback_url is None:
            return []
        cafile = section.tls_ca or self.run_ca
        return [Endpoint("[pelion] callback_url", section.callback_url, cafile)]

    async def after_ready(self) -> None:
        """Register the SUT's callback (the verification PUT happens here) unless it registers
        itself. A refusal is the SUT's to answer for (PEL-CB-01), not a harness fault: it is
        kept in :attr:`registration_error` and the evidence, and the run goes on."""
        section = self.section
        if section is None or "callback" not in section.channels or section.registers_itself:
            return
        assert section.callback_url is not None
        try:
            await self.register_callback(
                section.callback_url,
                section.callback_headers,
                serialization=HARNESS_SERIALIZATION,
                key=self.callback_key,
            )
        except (VerificationFailed, ChannelConflict) as exc:
            self.registration_error = str(exc)
            self.recorder.record(
                "harness", "--", "sut", "register-failed",
                f"could not register the SUT's callback {section.callback_url}: {exc}",
            )  # fmt: skip

    def start_traffic(self, events_per_s: float) -> None:
        """Standalone mode: the demo devices act on their own."""
        self.traffic = DemoTraffic(self, events_per_s)
        self.tasks.spawn(self.traffic.run(), "device traffic")
        self.recorder.record(
            "devices", "--", "pelion", "demo-devices",
            f"demo devices {', '.join(DEMO_DEVICES)} register and act about "
            f"{events_per_s:g}/s; subscribe with PUT /v2/subscriptions/{DEMO_DEVICES[0]}"
            "/3200/0/5501",
        )  # fmt: skip


async def start(run: VendorRun) -> PelionSim:
    settings: PelionSettings = run.settings or PelionSettings()
    section = run.section if isinstance(run.section, PelionSection) else None
    cafiles: tuple[str, ...] = (str(run.pki.ca),)
    if section is not None and section.tls_ca is not None:
        cafiles += (str(section.tls_ca),)
    config = PelionConfig(
        api_key=settings.api_key,
        port=settings.api_port,
        first_backoff_s=settings.first_backoff_s,
        pull_timeout_s=settings.pull_timeout_s,
        ping_interval_s=settings.ping_interval_s,
        delete_close_code=CloseCode(settings.delete_close_code),
        auth_failure="http-401" if settings.ws_auth_failure == "401" else "close-1008",
        cafiles=cafiles,
        epoch_s=time.time() - run.clock.now(),  # serialization v2 timestamps in Unix time
    )
    sim = PelionSim(run, config, section, settings)
    await sim.start()
    if run.section is None:
        sim.start_traffic(settings.events_per_s)
    return sim
