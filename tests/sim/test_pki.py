"""simulators.pki over real TLS handshakes on 127.0.0.1: the good certificates verify, the
negative ones fail for the reason they exist, client identities authenticate."""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path

import pytest

from simulators.pki import PKI, CertFiles


async def handshake(server: ssl.SSLContext, client: ssl.SSLContext, host: str = "localhost") -> str:
    """Return "ok" or the client's TLS error."""
    done = asyncio.Event()

    async def on_conn(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        done.set()
        writer.close()

    srv = await asyncio.start_server(on_conn, "127.0.0.1", 0, ssl=server)
    port = srv.sockets[0].getsockname()[1]
    try:
        _, writer = await asyncio.open_connection(
            "127.0.0.1", port, ssl=client, server_hostname=host
        )
        writer.close()
        return "ok"
    except ssl.SSLError as exc:
        return exc.reason or str(exc)
    finally:
        srv.close()
        await srv.wait_closed()


def test_folder_is_written_once_and_reused(tmp_path: Path) -> None:
    first = PKI.load_or_create(tmp_path)
    stamp = first.ca.read_bytes()
    assert PKI.load_or_create(tmp_path).ca.read_bytes() == stamp


@pytest.mark.parametrize(
    "which, host, expected",
    [
        ("server", "localhost", "ok"),
        ("server", "127.0.0.1", "ok"),
        ("impostor_server", "localhost", "CERTIFICATE_VERIFY_FAILED"),
        ("expired_server", "localhost", "CERTIFICATE_VERIFY_FAILED"),
        ("wrong_host_server", "localhost", "CERTIFICATE_VERIFY_FAILED"),
    ],
)
def test_server_certificates(tmp_path: Path, which: str, host: str, expected: str) -> None:
    pki = PKI.load_or_create(tmp_path)
    files: CertFiles = getattr(pki, which)
    result = asyncio.run(handshake(pki.server_context(files), pki.client_context(), host))
    assert result == expected


def test_client_identity_is_required_and_accepted(tmp_path: Path) -> None:
    pki = PKI.load_or_create(tmp_path)
    server = pki.server_context()
    server.verify_mode = ssl.CERT_REQUIRED
    server.load_verify_locations(str(pki.ca))
    server.minimum_version = server.maximum_version = ssl.TLSVersion.TLSv1_2
    identity = pki.client_identity("tenant-a", "admin@tenant-a.test")
    client = pki.client_context()
    client.load_cert_chain(str(identity.cert), str(identity.key))
    assert asyncio.run(handshake(server, client)) == "ok"
    assert pki.client_identity("tenant-a") == identity  # made once, reused
    with pytest.raises(ValueError):
        pki.client_identity("../escape")


def test_certificates_pass_a_strict_x509_verifier(pki: PKI) -> None:
    """pyca/cryptography's verifier follows the web PKI profile (RFC 5280, CA/B Forum): it rejects
    a critical subjectAltName beside a non-empty subject, which trustme's leaves carry."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.x509.verification import PolicyBuilder, Store, VerificationError

    def chain(path: Path) -> list[x509.Certificate]:
        return x509.load_pem_x509_certificates(path.read_bytes())

    now = datetime.datetime.now(datetime.UTC)
    builder = PolicyBuilder().store(Store(chain(pki.ca))).time(now)
    for name in (x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))):
        leaf, *rest = chain(pki.server.cert)
        assert builder.build_server_verifier(name).verify(leaf, rest)
    client = chain(pki.client_identity("strict-check").cert)[0]
    subjects = builder.build_client_verifier().verify(client, []).subjects
    assert subjects == [x509.RFC822Name("strict-check@conformance.test")]
    localhost = builder.build_server_verifier(x509.DNSName("localhost"))
    for bad in (pki.impostor_server, pki.expired_server, pki.wrong_host_server):
        with pytest.raises(VerificationError):
            localhost.verify(chain(bad.cert)[0], [])


@pytest.mark.parametrize("name", ["simulators.ci.test", "198.18.0.1"])
def test_an_advertised_name_is_named_by_every_served_certificate(tmp_path: Path, name: str) -> None:
    """--advertise: the simulators' certificate verifies for the advertised name too, the
    impostor's and the expired one still fail for their own reason, and the CA a SUT already
    trusts stays the same when the name changes."""
    before = PKI.load_or_create(tmp_path)
    ca = before.ca.read_bytes()
    assert asyncio.run(handshake(before.server_context(), before.client_context(), name)) != "ok"
    pki = PKI.load_or_create(tmp_path, (name,))
    assert pki.ca.read_bytes() == ca
    assert pki.server_names() == (name,)
    client = pki.client_context()
    assert asyncio.run(handshake(pki.server_context(), client, name)) == "ok"
    assert asyncio.run(handshake(pki.server_context(), client, "localhost")) == "ok"
    for negative in (pki.impostor_server, pki.expired_server, pki.wrong_host_server):
        result = asyncio.run(handshake(pki.server_context(negative), client, name))
        assert result == "CERTIFICATE_VERIFY_FAILED"
    again = PKI.load_or_create(tmp_path)  # back to the default: the name is dropped
    assert again.server_names() == ()
    assert asyncio.run(handshake(again.server_context(), client, name)) != "ok"
