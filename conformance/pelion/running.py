"""The Pelion side of a run: :class:`RunningPelion` composes the simulated Device Management
service (:class:`simulators.pelion.simulator.PelionSimulator`) with what the run declared: the
SUT's section, its callback's key, and the registration the harness makes for it.

A check reaches the service through its driver (``pelion.service``)::

    ep = pelion.service.add_device().ep                     # any thread
    harness.run(pelion.service.register(ep))                # devices act in the loop
    pelion.service.subscribe(ep, "/3200/0/5501")
    queued = harness.run(pelion.service.set_value(ep, "/3200/0/5501", 42))
    pelion.perform(FailDeliveries(status=503))              # operations: faults, events…

Everything the service saw is kept, bounded: ``attempts()`` (each batch: size, uids, status or
error, real-time elapsed, the simulated back-off wait that followed), ``verifications()``,
``connections()`` (WebSocket handshakes, pings, frames, close codes both ways), ``calls()`` (the
SUT's REST calls), ``channel_state()`` and ``removed_channels()``.
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any, TypeVar

from conformance.pelion.section import PelionSection
from conformance.pelion.vendor import PelionSettings
from conformance.vendors import FIRST_CONTACT_TIMEOUT_S, Endpoint, VendorRun, setup_mistake
from simulators.operations import Applies
from simulators.pelion.callback import CALLER_CHAIN, CALLER_NAME, UNTRUSTED_CALLER_CHAIN
from simulators.pelion.channels import ChannelConflict
from simulators.pelion.operations import PelionTarget
from simulators.pelion.simulator import PelionConfig, PelionSimulator, VerificationFailed
from simulators.pelion.traffic import DemoTraffic

__all__ = ["HARNESS_SERIALIZATION", "RunningPelion", "start"]

R = TypeVar("R")

# The serialization the harness registers a SUT's callback with: serialization v2 with a uid
# (so the SUT can deduplicate a resent batch), the timestamp and the original endpoint name.
HARNESS_SERIALIZATION: dict[str, Any] = {
    "type": "v2",
    "cfg": {"include_uid": True, "include_timestamp": True, "include_original_ep": True},
}


class RunningPelion:
    """The simulated service of one run, and what the run declared (the plug-in's running
    object)."""

    def __init__(
        self,
        run: VendorRun,
        service: PelionSimulator,
        section: PelionSection | None,
        settings: PelionSettings,
    ) -> None:
        self.service = service
        self.section = section
        self.settings = settings
        self.run_ca = run.pki.ca
        self.caller_ca = run.pki.caller_chain(CALLER_CHAIN, CALLER_NAME).root
        self.traffic: DemoTraffic | None = None
        self.registration_error: str | None = None  # why after_ready could not register
        both = section is not None and len(section.channels) == 2
        # The key of the SUT's callback channel: the run's key, or a second one when the SUT
        # also holds a WebSocket channel (one channel per key).
        self.callback_key = settings.callback_api_key if both else service.api_key
        if both:
            service.add_key(self.callback_key)

    @property
    def api_key(self) -> str:
        return self.service.api_key

    @property
    def target(self) -> PelionTarget:
        """What operations act on: the service, and the run's key unless they name one."""
        return PelionTarget(self.service, self.service.api_key)

    async def perform(self, operation: Applies[PelionTarget, R]) -> R:
        """Carry out one operation (:mod:`simulators.pelion.operations`)."""
        return await operation.apply(self.target)

    def environment(self) -> dict[str, str]:
        env = {
            "CONFORMANCE_PELION_API_URL": self.service.base_url,
            "CONFORMANCE_PELION_API_KEY": self.service.api_key,
            # The root of the client certificate chain callback PUTs present (depth 2).
            "CONFORMANCE_PELION_CALLER_CA": str(self.caller_ca),
        }
        if self.callback_key != self.service.api_key:
            env["CONFORMANCE_PELION_CALLBACK_API_KEY"] = self.callback_key
        return env

    def endpoints(self) -> list[Endpoint]:
        section = self.section
        if section is None or "callback" not in section.channels or section.callback_url is None:
            return []
        cafile = section.tls_ca or self.run_ca
        caller = self.service.config.caller  # presented, as the service does
        return [Endpoint("[pelion] callback_url", section.callback_url, cafile, caller)]

    async def after_ready(self) -> None:
        """Register the SUT's callback (the verification PUT happens here) unless it registers
        itself. A refusal is the SUT's to answer for (PEL-CB-01), not a harness fault: it is
        kept in :attr:`registration_error` and the evidence, and the run goes on."""
        section = self.section
        if section is None or "callback" not in section.channels or section.registers_itself:
            return
        assert section.callback_url is not None
        try:
            await self.service.register_callback(
                section.callback_url,
                section.callback_headers,
                serialization=HARNESS_SERIALIZATION,
                key=self.callback_key,
            )
        except (VerificationFailed, ChannelConflict) as exc:
            self.registration_error = str(exc)
            self.service.recorder.record(
                "harness", "--", "sut", "register-failed",
                f"could not register the SUT's callback {section.callback_url}: {exc}",
            )  # fmt: skip

    async def first_contact(self) -> str | None:
        """The verification PUT ``{}`` the service sends to a callback URL, with the
        registered headers: the one the harness's registration made (:meth:`after_ready`),
        else one sent now to a SUT that registers itself (outside the verification log, which
        PEL-CB-01 judges)."""
        section = self.section
        if section is None or "callback" not in section.channels or section.callback_url is None:
            return None
        url = section.callback_url
        made = [v for v in self.service.verifications() if v.key == self.callback_key]
        if made:
            answered = made[-1].exchange.answered
        else:
            client = self.service.client
            sent = client.headers(section.callback_headers)
            exchange = await client.put(url, b"{}", sent, timeout_s=FIRST_CONTACT_TIMEOUT_S)
            answered = exchange.answered
        names = ", ".join(section.callback_headers) or "none"
        return setup_mistake(
            answered,
            sent=(
                f"PUT {url} (the verification PUT {{}} Device Management sends, with the "
                f"registered headers: {names})"
            ),
            path_fix=(
                "Give the URL it serves batches at: --sut=URL (in a manifest, callback_url in "
                "[pelion])"
            ),
            credentials_fix=(
                "Give what it expects: --sut-token=SECRET (sent as its Authorization header) "
                "or, in a manifest, callback_headers in [pelion]"
            ),
        )

    def errors(self) -> list[str]:
        return self.service.errors()

    async def stop(self) -> None:
        await self.service.stop()


async def start(run: VendorRun) -> RunningPelion:
    settings: PelionSettings = run.settings or PelionSettings()
    section = run.section if isinstance(run.section, PelionSection) else None
    cafiles: tuple[str, ...] = (str(run.pki.ca),)
    if section is not None and section.tls_ca is not None:
        cafiles += (str(section.tls_ca),)
    config = PelionConfig(
        api_key=settings.api_key,
        port=settings.api_port,
        pull_timeout_s=settings.pull_timeout_s,
        ping_interval_s=settings.ping_interval_s,
        cafiles=cafiles,
        caller=run.pki.caller_chain(CALLER_CHAIN, CALLER_NAME).chain,
        untrusted_caller=run.pki.caller_chain(UNTRUSTED_CALLER_CHAIN, CALLER_NAME).chain,
        epoch_s=time.time() - run.clock.now(),  # serialization v2 timestamps in Unix time
    )
    if settings.channel is not None:  # else the vendor doc's rules, the core's defaults
        config = replace(config, channel=settings.channel)
    if settings.ws_auth_failure is not None:
        config = replace(config, ws_auth_failure=settings.ws_auth_failure)
    service = PelionSimulator(run.clock, run.recorder, run.pki.server_context(), config, run.reach)
    running = RunningPelion(run, service, section, settings)
    await service.start()
    if run.section is None and settings.events_per_s > 0:  # standalone: the devices' own traffic
        running.traffic = service.start_traffic(settings.events_per_s)
    return running
