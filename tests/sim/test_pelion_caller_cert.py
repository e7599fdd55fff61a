"""The caller's client certificate on callback PUTs (SIM-PEL-CLIENTCERT): a real aiohttp
receiver whose TLS requires a client certificate under the run's caller root, as the vendor doc
advises ("add the chain of trust", "verification depth … 2 at least")."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from simulators.pelion.callback import CALLER_NAME
from simulators.pelion.operations import PresentCaller
from simulators.pelion.simulator import PelionSimulator
from simulators.pki import PKI, CallerChain
from tests.sim.pelion_support import call, client, notification, running, target


@dataclass
class StrictReceiver:
    """A callback receiver whose TLS requires a client certificate from ``trusted``; it
    records the subject and issuer of the certificate each PUT presented."""

    url: str = ""
    callers: list[tuple[str, str]] = field(default_factory=list)


def _name(rdns: Any) -> str:
    return ",".join(f"{k}={v}" for rdn in rdns for k, v in rdn)


@asynccontextmanager
async def strict_receiver(pki: PKI, *, required: bool = True) -> AsyncIterator[StrictReceiver]:
    rec = StrictReceiver()

    async def handle(request: web.Request) -> web.Response:
        transport = request.transport
        peer = transport.get_extra_info("peercert") if transport is not None else None
        subject = _name(peer["subject"]) if peer else ""
        rec.callers.append((subject, _name(peer["issuer"]) if peer else ""))
        return web.Response(status=204)

    context = pki.server_context(pki.sut_server)
    context.verify_mode = ssl.CERT_REQUIRED if required else ssl.CERT_OPTIONAL
    context.load_verify_locations(cafile=str(genuine(pki).root))  # the root alone, no intermediate
    app = web.Application()
    app.router.add_put("/cb", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    rec.url = f"https://127.0.0.1:{port}/cb"
    try:
        yield rec
    finally:
        await runner.cleanup()


def genuine(pki: PKI) -> CallerChain:
    return pki.caller_chain("pelion", CALLER_NAME)


def untrusted(pki: PKI) -> CallerChain:
    return pki.caller_chain("pelion-untrusted", CALLER_NAME)


def caller_config(pki: PKI) -> dict[str, Any]:
    return {"caller": genuine(pki).chain, "untrusted_caller": untrusted(pki).chain}


async def register(session: Any, sim: PelionSimulator, url: str) -> int:
    status, _, _ = await call(session, sim, "PUT", "/v2/notification/callback", json={"url": url})
    return status


@pytest.mark.sim("SIM-PEL-CLIENTCERT")
def test_the_caller_chain_is_root_intermediate_leaf(pki: PKI) -> None:
    """SIM-PEL-CLIENTCERT: the chain file holds the leaf (client auth, the vendor's CN) and the
    intermediate that signed it; the intermediate is a CA signed by the caller root, which signs
    itself: a chain of depth 2, like the vendor's GlobalSign one. The untrusted chain has the
    same shape under another root."""
    for made in (genuine(pki), untrusted(pki)):
        leaf, intermediate = x509.load_pem_x509_certificates(made.chain.cert.read_bytes())
        root = x509.load_pem_x509_certificate(made.root.read_bytes())
        assert leaf.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == CALLER_NAME
        usages = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        assert ExtendedKeyUsageOID.CLIENT_AUTH in usages
        assert leaf.issuer == intermediate.subject != root.subject
        assert intermediate.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
        assert intermediate.issuer == root.subject == root.issuer
        leaf.verify_directly_issued_by(intermediate)
        intermediate.verify_directly_issued_by(root)
    assert genuine(pki).root.read_bytes() != untrusted(pki).root.read_bytes()
    assert genuine(pki) == pki.caller_chain("pelion", "another.name")  # made once, then kept


@pytest.mark.sim("SIM-PEL-CLIENTCERT")
def test_every_callback_put_presents_the_chain(pki: PKI) -> None:
    """SIM-PEL-CLIENTCERT: a receiver that requires a client certificate and trusts only the
    caller root (not the intermediate) takes the verification PUT and the batches: each PUT
    presented the leaf and its intermediate; the records name the chain."""

    async def scenario() -> None:
        async with (
            running(pki, **caller_config(pki)) as sim,
            client(pki) as session,
            strict_receiver(pki) as rec,
        ):
            assert await register(session, sim, rec.url) == 204
            await sim.inject("notifications", [notification(1)])
            with sim.clock.autojump():
                assert await sim.drive(timeout_real_s=10)
            await sim.inject("notifications", [notification(2)])
            with sim.clock.autojump():
                assert await sim.drive(timeout_real_s=10)
            _, intermediate = x509.load_pem_x509_certificates(genuine(pki).chain.cert.read_bytes())
            [unit] = intermediate.subject.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)
            assert len(rec.callers) == 3  # the verification and two batches
            for subject, issuer in rec.callers:  # the leaf, issued by the intermediate
                assert f"commonName={CALLER_NAME}" in subject
                assert f"organizationalUnitName={unit.value!s}" in issuer
            [verification] = sim.verifications()
            assert verification.accepted and verification.exchange.client_cert == "genuine"
            attempts = sim.attempts()
            assert [(a.succeeded, a.client_cert) for a in attempts] == [(True, "genuine")] * 2
            kept = await sim.client.handshake(rec.url, 0.3)  # open, waiting for a request
            assert kept.outcome == "kept", kept

    asyncio.run(scenario())


@pytest.mark.sim("SIM-PEL-CLIENTCERT")
def test_the_chain_switches_to_none_or_untrusted(pki: PKI) -> None:
    """SIM-PEL-CLIENTCERT: :class:`PresentCaller` switches the chain of the next PUTs: with
    ``none`` or ``untrusted`` the strict receiver refuses the verification (the registration
    gets 400, the exchange names what was presented, a bare handshake is ended); with
    ``genuine`` again it is accepted. A receiver that only asks for a certificate sees none."""

    async def scenario() -> None:
        async with (
            running(pki, **caller_config(pki)) as sim,
            client(pki) as session,
            strict_receiver(pki) as strict,
            strict_receiver(pki, required=False) as lenient,
        ):
            assert await PresentCaller(chain="none").apply(target(sim)) == "genuine"
            assert await register(session, sim, strict.url) == 400
            ended = await sim.client.handshake(strict.url, 5.0)
            assert ended.outcome == "ended", ended  # refused
            assert await register(session, sim, lenient.url) == 204
            assert lenient.callers == [("", "")]
            assert await PresentCaller(chain="untrusted").apply(target(sim)) == "none"
            assert await register(session, sim, strict.url) == 400
            assert (await sim.client.handshake(strict.url, 5.0)).outcome == "ended"
            nobody = await sim.client.handshake("https://127.0.0.1:1/cb", 1.0)
            assert nobody.outcome == "unreachable", nobody  # not a refusal of the certificate
            assert await PresentCaller(chain="genuine").apply(target(sim)) == "untrusted"
            assert await register(session, sim, strict.url) == 204
            presented = [v.exchange.client_cert for v in sim.verifications()]
            assert presented == [None, None, "untrusted", "genuine"]
            assert [v.accepted for v in sim.verifications()] == [False, True, False, True]
            [(subject, _)] = strict.callers  # only the genuine chain got through
            assert f"commonName={CALLER_NAME}" in subject

    asyncio.run(scenario())


@pytest.mark.sim("SIM-PEL-CLIENTCERT")
def test_without_caller_files_nothing_is_presented(pki: PKI) -> None:
    """SIM-PEL-CLIENTCERT: a simulator given no caller chain presents none, and says so when
    asked for one it does not have."""

    async def scenario() -> None:
        async with running(pki) as sim:
            assert sim.client.chain == "none"
            try:
                await PresentCaller(chain="genuine").apply(target(sim))
            except ValueError as exc:
                assert "no genuine caller chain" in str(exc)
            else:
                raise AssertionError("a chain the simulator lacks was presented")

    asyncio.run(scenario())
