"""The simulators' PKI, made with trustme and written to a folder a user can reuse.

One CA signs every simulator server certificate (for ``localhost`` and ``127.0.0.1``) and the
client identity certificates. For negative checks there is an impostor CA with its own
``localhost`` certificate, an expired certificate and a wrong-host certificate, all for the same
key usage as the good one. A folder written once is read back on later runs, so an SUT that runs
outside the harness can trust ``ca.pem`` once and for all.
"""

from __future__ import annotations

import datetime
import ssl
from dataclasses import dataclass
from pathlib import Path

import trustme

__all__ = ["PKI", "CertFiles"]

SERVER_HOSTS = ("localhost", "127.0.0.1")


@dataclass(frozen=True)
class CertFiles:
    """A certificate chain and its private key on disk."""

    cert: Path
    key: Path


@dataclass(frozen=True)
class PKI:
    """Paths of every PEM file in the PKI folder."""

    folder: Path
    ca: Path
    server: CertFiles
    sut_server: CertFiles
    impostor_ca: Path
    impostor_server: CertFiles
    expired_server: CertFiles
    wrong_host_server: CertFiles

    @classmethod
    def load_or_create(cls, folder: Path) -> PKI:
        """Reuse the PKI in ``folder`` when complete; otherwise write a new one there."""
        folder = folder.resolve()
        pki = cls._paths(folder)
        if all(p.is_file() for p in pki._all_files()):
            return pki
        folder.mkdir(parents=True, exist_ok=True)
        ca = trustme.CA(organization_name="Conformance simulators CA")
        impostor = trustme.CA(organization_name="Impostor CA")
        ca.cert_pem.write_to_path(str(pki.ca))
        ca.private_key_pem.write_to_path(str(folder / "ca.key"))
        impostor.cert_pem.write_to_path(str(pki.impostor_ca))
        now = datetime.datetime.now(datetime.UTC)
        issued = [
            (ca.issue_cert(*SERVER_HOSTS), pki.server),
            (ca.issue_cert(*SERVER_HOSTS), pki.sut_server),
            (impostor.issue_cert(*SERVER_HOSTS), pki.impostor_server),
            (
                ca.issue_cert(
                    *SERVER_HOSTS,
                    not_before=now - datetime.timedelta(days=30),
                    not_after=now - datetime.timedelta(days=1),
                ),
                pki.expired_server,
            ),
            (ca.issue_cert("wrong-host.example"), pki.wrong_host_server),
        ]
        for cert, files in issued:
            cert.private_key_pem.write_to_path(str(files.key))
            cert.cert_chain_pems[0].write_to_path(str(files.cert))
            for extra in cert.cert_chain_pems[1:]:
                extra.write_to_path(str(files.cert), append=True)
        return pki

    @classmethod
    def _paths(cls, folder: Path) -> PKI:
        def pair(name: str) -> CertFiles:
            return CertFiles(folder / f"{name}.pem", folder / f"{name}.key")

        return cls(
            folder=folder,
            ca=folder / "ca.pem",
            server=pair("server"),
            sut_server=pair("sut-server"),
            impostor_ca=folder / "impostor-ca.pem",
            impostor_server=pair("impostor-server"),
            expired_server=pair("expired-server"),
            wrong_host_server=pair("wrong-host-server"),
        )

    def _all_files(self) -> list[Path]:
        pairs = [
            self.server,
            self.sut_server,
            self.impostor_server,
            self.expired_server,
            self.wrong_host_server,
        ]
        files = [self.ca, self.folder / "ca.key", self.impostor_ca]
        return [*files, *(p for c in pairs for p in (c.cert, c.key))]

    def client_identity(self, name: str, email: str | None = None) -> CertFiles:
        """A client identity certificate from the CA (``clients/<name>.pem``), made once.

        The certificate names ``email`` (default ``<name>@conformance.test``) as an RFC 822
        identity: the login email a tenant binds to a certificate.
        """
        files = CertFiles(
            self.folder / "clients" / f"{name}.pem", self.folder / "clients" / f"{name}.key"
        )
        if files.cert.is_file() and files.key.is_file():
            return files
        if not name.replace("-", "").replace("_", "").isalnum():
            raise ValueError(f"client identity name {name!r}: letters, digits, - and _ only")
        files.cert.parent.mkdir(parents=True, exist_ok=True)
        ca = trustme.CA.from_pem(self.ca.read_bytes(), self._ca_key())
        cert = ca.issue_cert(email or f"{name}@conformance.test", common_name=name)
        cert.private_key_pem.write_to_path(str(files.key))
        cert.cert_chain_pems[0].write_to_path(str(files.cert))
        return files

    def _ca_key(self) -> bytes:
        return (self.folder / "ca.key").read_bytes()

    def server_context(self, files: CertFiles | None = None) -> ssl.SSLContext:
        """A TLS server context presenting ``files`` (default: the simulators' certificate)."""
        files = files or self.server
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(str(files.cert), str(files.key))
        return ctx

    def client_context(self, cafile: Path | None = None) -> ssl.SSLContext:
        """A TLS client context that trusts ``cafile`` (default: this PKI's CA)."""
        return ssl.create_default_context(cafile=str(cafile or self.ca))
