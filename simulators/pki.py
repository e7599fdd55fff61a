"""The simulators' PKI, made with trustme and written to a folder a user can reuse.

One CA signs every simulator server certificate (for ``localhost``, ``127.0.0.1`` and the
``--advertise`` name, if any) and the client identity certificates. For negative checks there is an impostor CA with its own
``localhost`` certificate, an expired certificate and a wrong-host certificate, all for the same
key usage as the good one. A folder written once is read back on later runs, so an SUT that runs
outside the harness can trust ``ca.pem`` once and for all.

A caller chain (:meth:`PKI.caller_chain`) stands for the client certificate a service presents
when it calls the SUT: a root of its own signs an intermediate, which signs the leaf, so a
receiver that trusts the root verifies a chain of depth 2.
"""

from __future__ import annotations

import datetime
import ipaddress
import ssl
from dataclasses import dataclass
from pathlib import Path

import trustme
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = ["PKI", "CallerChain", "CertFiles", "PKIError"]


class PKIError(ValueError):
    """The PKI folder cannot be used (not a folder, unreadable, a file that does not decode):
    the message names the path and the fix."""


SERVER_HOSTS = ("localhost", "127.0.0.1")
# A folder written by an older layout is written again (3: the impostor CA key is kept, to
# issue certificates for --advertise names).
PKI_VERSION = "3"


class _Issuer:
    """Issues leaf certificates from a CA, the way public CAs do (RFC 5280, CA/B Forum):
    subjectAltName non-critical beside a non-empty subject, so strict verifiers accept them."""

    def __init__(self, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> None:
        self.cert = cert
        self.key = key

    @classmethod
    def of(cls, ca: trustme.CA) -> _Issuer:
        return cls.load(ca.cert_pem.bytes(), ca.private_key_pem.bytes())

    @classmethod
    def load(cls, cert_pem: bytes, key_pem: bytes) -> _Issuer:
        key = serialization.load_pem_private_key(key_pem, password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise ValueError("the CA key is not an EC key")
        return cls(x509.load_pem_x509_certificate(cert_pem), key)

    def issue(
        self,
        files: CertFiles,
        *,
        hosts: tuple[str, ...] = (),
        emails: tuple[str, ...] = (),
        common_name: str | None = None,
        not_before: datetime.datetime | None = None,
        not_after: datetime.datetime | None = None,
    ) -> None:
        """Write a certificate (server auth for ``hosts``, client auth for ``emails``) and its
        key to ``files``."""
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        names: list[x509.GeneralName] = []
        for host in hosts:
            try:
                names.append(x509.IPAddress(ipaddress.ip_address(host)))
            except ValueError:
                names.append(x509.DNSName(host))
        names += [x509.RFC822Name(email) for email in emails]
        usages = [ExtendedKeyUsageOID.SERVER_AUTH] if hosts else []
        usages += [ExtendedKeyUsageOID.CLIENT_AUTH] if emails else []
        subject = x509.Name(
            [
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Conformance simulators"),
                x509.NameAttribute(NameOID.COMMON_NAME, common_name or (hosts or emails)[0]),
            ]
        )
        cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before or now - datetime.timedelta(hours=1))
            .not_valid_after(not_after or now + datetime.timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=False,
                    crl_sign=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False
            )
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()),
                critical=False,
            )
            .sign(self.key, hashes.SHA256())
        )
        files.key.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        files.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


@dataclass(frozen=True)
class CertFiles:
    """A certificate chain and its private key on disk."""

    cert: Path
    key: Path


@dataclass(frozen=True)
class CallerChain:
    """A caller's client certificate chain: ``root`` (PEM, for the receiver to trust) signs an
    intermediate, which signs the leaf; ``chain.cert`` holds leaf and intermediate (as a TLS
    client sends them), ``chain.key`` the leaf's key."""

    root: Path
    chain: CertFiles


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
    def load_or_create(cls, folder: Path, names: tuple[str, ...] = ()) -> PKI:
        """Reuse the PKI in ``folder`` when complete and of this version; otherwise write a new
        one there.

        ``names``: host names or addresses the simulator server certificates name besides
        ``localhost`` and ``127.0.0.1`` (``--advertise``). When they differ from the folder's,
        only those certificates are issued again: the CA a SUT trusts stays the same.
        """
        try:
            folder = folder.resolve()
            pki = cls._paths(folder)
            version = folder / "pki-version"
            current = version.is_file() and version.read_text().strip() == PKI_VERSION
            if current and all(p.is_file() for p in pki._all_files()):
                pki._check_decodes()
                if pki.server_names() != names:
                    pki._issue_servers(names)
                return pki
            folder.mkdir(parents=True, exist_ok=True)
        except (OSError, RuntimeError) as exc:  # RuntimeError: a symlink loop (Python < 3.13)
            what = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
            raise PKIError(
                f"the PKI folder {folder} cannot be used: {what} (give a folder this user can "
                "write, e.g. --pki-dir=reports/pki)"
            ) from None
        ca = trustme.CA(organization_name="Conformance simulators CA")
        impostor = trustme.CA(organization_name="Impostor CA")
        ca.cert_pem.write_to_path(str(pki.ca))
        ca.private_key_pem.write_to_path(str(folder / "ca.key"))
        impostor.cert_pem.write_to_path(str(pki.impostor_ca))
        impostor.private_key_pem.write_to_path(str(folder / "impostor-ca.key"))
        good = _Issuer.of(ca)
        good.issue(pki.sut_server, hosts=SERVER_HOSTS)
        good.issue(pki.wrong_host_server, hosts=("wrong-host.example",))
        pki._issue_servers(names)
        version.write_text(PKI_VERSION + "\n")
        return pki

    def server_names(self) -> tuple[str, ...]:
        """The names the simulator server certificates carry besides ``SERVER_HOSTS``."""
        recorded = self.folder / "server-names"
        return tuple(recorded.read_text().split()) if recorded.is_file() else ()

    def _issue_servers(self, names: tuple[str, ...]) -> None:
        """(Re)issue every certificate a simulator serves (the good one, the impostor's and
        the expired one) for ``SERVER_HOSTS`` and ``names``."""
        hosts = tuple(dict.fromkeys((*SERVER_HOSTS, *names)))
        good = _Issuer.load(self.ca.read_bytes(), self._ca_key())
        bad = _Issuer.load(self.impostor_ca.read_bytes(), self._impostor_key())
        now = datetime.datetime.now(datetime.UTC)
        good.issue(self.server, hosts=hosts)
        bad.issue(self.impostor_server, hosts=hosts)
        good.issue(
            self.expired_server,
            hosts=hosts,
            not_before=now - datetime.timedelta(days=30),
            not_after=now - datetime.timedelta(days=1),
        )
        (self.folder / "server-names").write_text("".join(f"{n}\n" for n in names))

    def _check_decodes(self) -> None:
        """Every certificate and key of a reused PKI decodes; else a :class:`PKIError` naming
        the file (a TLS library's own error names none)."""
        for path in self._all_files():
            data = path.read_bytes()
            try:
                if path.suffix == ".key":
                    serialization.load_pem_private_key(data, password=None)
                else:
                    x509.load_pem_x509_certificate(data)
            except ValueError as exc:
                kind = "private key" if path.suffix == ".key" else "certificate"
                raise PKIError(
                    f"{path} is not a PEM {kind} ({exc}); delete the folder {self.folder} and "
                    "a new PKI is written there on the next run"
                ) from None

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
        files = [self.ca, self.folder / "ca.key", self.impostor_ca, self.folder / "impostor-ca.key"]
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
        issuer = _Issuer.load(self.ca.read_bytes(), self._ca_key())
        issuer.issue(files, emails=(email or f"{name}@conformance.test",), common_name=name)
        return files

    def caller_chain(self, name: str, common_name: str) -> CallerChain:
        """The caller chain ``callers/<name>/`` (``root.pem``, ``chain.pem``, ``chain.key``),
        made once: a root of its own, an intermediate, and a client-authentication leaf for
        ``common_name``. Another name is another root."""
        if not name.replace("-", "").replace("_", "").isalnum():
            raise ValueError(f"caller chain name {name!r}: letters, digits, - and _ only")
        folder = self.folder / "callers" / name
        made = CallerChain(
            folder / "root.pem", CertFiles(folder / "chain.pem", folder / "chain.key")
        )
        if all(p.is_file() for p in (made.root, made.chain.cert, made.chain.key)):
            return made
        folder.mkdir(parents=True, exist_ok=True)
        root = trustme.CA(organization_name=f"Conformance caller root ({name})")
        leaf = root.create_child_ca().issue_cert(common_name, common_name=common_name)
        leaf.private_key_pem.write_to_path(str(made.chain.key))
        made.chain.cert.write_bytes(b"".join(pem.bytes() for pem in leaf.cert_chain_pems))
        root.cert_pem.write_to_path(str(made.root))  # last: its presence says the rest is there
        return made

    def _ca_key(self) -> bytes:
        return (self.folder / "ca.key").read_bytes()

    def _impostor_key(self) -> bytes:
        return (self.folder / "impostor-ca.key").read_bytes()

    def server_context(self, files: CertFiles | None = None) -> ssl.SSLContext:
        """A TLS server context presenting ``files`` (default: the simulators' certificate)."""
        files = files or self.server
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(str(files.cert), str(files.key))
        return ctx

    def client_context(self, cafile: Path | None = None) -> ssl.SSLContext:
        """A TLS client context that trusts ``cafile`` (default: this PKI's CA)."""
        return ssl.create_default_context(cafile=str(cafile or self.ca))
