"""The Pelion plug-in's running object over real sockets: the environment a SUT gets, the
endpoints probed, the callback registered once the SUT is ready, and the standalone device
traffic (docs/sut-contract.md §3, §6)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from conformance.pelion.running import RunningPelion
from conformance.pelion.section import PelionSection
from conformance.pelion.vendor import VENDOR, PelionSettings
from conformance.vendors import VendorRun
from simulators.clock import Clock
from simulators.evidence import Recorder
from simulators.pelion.traffic import DEMO_DEVICES
from simulators.pki import PKI
from tests.sim.pelion_support import KEY, call, client, receiver

SETTINGS = PelionSettings(api_key=KEY, pull_timeout_s=0.5)


async def start(
    pki: PKI, tmp_path: Path, section: PelionSection | None, **kw: Any
) -> RunningPelion:
    clock = Clock()
    settings = PelionSettings(**{**SETTINGS.__dict__, **kw})
    run = VendorRun(clock, Recorder(clock), pki, "http://127.0.0.1:9", tmp_path, settings, section)
    sim = await VENDOR.start(run)
    assert isinstance(sim, RunningPelion)
    return sim


@pytest.mark.sim("SIM-PEL-VERIFY")
def test_a_callback_sut_is_registered_after_it_is_ready(pki: PKI, tmp_path: Path) -> None:
    """SIM-PEL-VERIFY: the SUT gets exactly the three variables; its callback URL is probed with
    the run's CA; after_ready registers it (the verification PUT carries the headers)."""

    async def scenario() -> None:
        async with receiver(pki) as rec:
            section = PelionSection(
                channel="callback", callback_url=rec.url, callback_headers={"x-secret": "s"}
            )
            sim = await start(pki, tmp_path, section)
            try:
                env = sim.environment()
                assert env == {
                    "CONFORMANCE_PELION_API_URL": f"https://127.0.0.1:{sim.service.port}",
                    "CONFORMANCE_PELION_API_KEY": KEY,
                    "CONFORMANCE_PELION_CALLER_CA": str(
                        pki.folder / "callers" / "pelion" / "root.pem"
                    ),
                }
                [endpoint] = sim.endpoints()
                assert (endpoint.url, endpoint.cafile) == (rec.url, pki.ca)
                await sim.after_ready()
                assert rec.puts[0].body == b"{}" and rec.puts[0].headers["x-secret"] == "s"
                state = sim.service.channel_state()
                assert state is not None and (state.mechanism, state.url) == ("CALLBACK", rec.url)
                assert sim.registration_error is None and sim.traffic is None
            finally:
                await sim.stop()
            assert sim.errors() == []

    asyncio.run(scenario())


@pytest.mark.sim("SIM-PEL-VERIFY")
def test_a_refused_verification_is_kept_for_the_checks(pki: PKI, tmp_path: Path) -> None:
    """SIM-PEL-VERIFY: a SUT that refuses the verification PUT is not a harness fault: the run
    goes on and the reason is kept."""

    async def scenario() -> None:
        async with receiver(pki, lambda n, put: 403) as rec:
            sim = await start(
                pki, tmp_path, PelionSection(channel="callback", callback_url=rec.url)
            )
            try:
                await sim.after_ready()
                assert sim.registration_error and "403" in sim.registration_error
                assert sim.service.channel_state() is None
            finally:
                await sim.stop()

    asyncio.run(scenario())


def test_self_registering_and_websocket_suts_are_left_alone(pki: PKI, tmp_path: Path) -> None:
    async def scenario() -> None:
        async with receiver(pki) as rec:
            for section in (
                PelionSection(channel="callback", callback_url=rec.url, registers_itself=True),
                PelionSection(channel="websocket"),
            ):
                sim = await start(pki, tmp_path, section)
                try:
                    await sim.after_ready()
                    assert sim.service.channel_state() is None and sim.traffic is None
                    if section.channel == "websocket":
                        assert sim.endpoints() == []
                finally:
                    await sim.stop()
            assert rec.puts == []

    asyncio.run(scenario())


def test_standalone_devices_act_on_their_own(pki: PKI, tmp_path: Path) -> None:
    """Standalone (no section): the demo devices register and change values by themselves;
    an application that subscribes gets notifications (text and TLV) without doing anything
    else, and registration events as the third device comes and goes."""

    async def scenario() -> None:
        sim = await start(pki, tmp_path, None, events_per_s=50.0)
        try:
            assert sim.traffic is not None
            async with client(pki) as session:
                status, _, _ = await call(session, sim.service, "GET", "/v2/notification/pull")
                assert status in (200, 204)  # the channel now exists (with what came meanwhile)
                for device, path in [
                    (DEMO_DEVICES[0], "3200/0/5501"),
                    (DEMO_DEVICES[1], "3304/0/5700"),
                ]:
                    status, _, _ = await call(
                        session, sim.service, "PUT", f"/v2/subscriptions/{device}/{path}"
                    )
                    assert status == 200
                kinds: set[str] = set()
                cts: set[str] = set()
                async with asyncio.timeout(20):
                    while not {"notifications", "registrations", "de-registrations"} <= kinds:
                        status, _, data = await call(
                            session, sim.service, "GET", "/v2/notification/pull"
                        )
                        for kind, items in (data or {}).items():
                            kinds.add(kind)
                            cts.update(i.get("ct", "") for i in items if isinstance(i, dict))
                assert {"text/plain", "application/vnd.oma.lwm2m+tlv"} <= cts
        finally:
            await sim.stop()
        assert sim.errors() == []

    asyncio.run(scenario())
