"""The one HTTP sender toward the SUT: it sends exactly the bytes it is given and reports what
happened as an :class:`Exchange`.

Every simulator that sends HTTP requests to the SUT (a webhook notifier, a callback client) does
it through one :class:`HttpSender`; its vendor rules (a retry schedule, a back-off, what a
vendor fault counts as) stay in its core and adapter, and so does its evidence.

- One aiohttp session per sender: one TLS context (the system's CAs plus ``cafiles``), kept-alive
  connections (at most ``limit``). Redirects are not followed.
- The timeout is real time (the receiver answers at its own pace) and covers the whole exchange:
  connecting, sending, the answer's headers and at most :data:`ANSWER_READ_LIMIT` bytes of its
  body (a longer answer's connection is dropped rather than drained).
- Transport faults (:data:`RawFault`) are written by hand on a fresh connection
  (:func:`write_raw`): ``drop`` writes the whole request and aborts the connection as soon as
  the receiver begins to answer; ``stall`` writes the headers and half the body, then nothing
  until the timeout (real time: it is the receiver that waits).
- :meth:`HttpSender.send` never raises for what the receiver does: a timeout or a connection
  error is the exchange's ``error``.
- A sender may present a TLS client certificate (:class:`ClientCertificate`, switched with
  :meth:`HttpSender.present`); each exchange names the one it presented. A receiver that
  refuses a certificate ends the connection during or right after the handshake, often with
  no alert the HTTP client can read: :meth:`HttpSender.handshake` opens a bare TLS connection
  presenting it and reports whether the receiver kept it open, waiting for a request.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Literal

import aiohttp
from yarl import URL

from simulators.clock import Clock
from simulators.pki import CertFiles

__all__ = [
    "ANSWER_READ_LIMIT",
    "ClientCertificate",
    "Exchange",
    "Handshake",
    "HttpSender",
    "RawFault",
    "write_raw",
]

ANSWER_READ_LIMIT = 64 * 1024  # bytes of a receiver's answer body read, at most
ERROR_CHARS = 300  # of an error's text, kept in the exchange
RawFault = Literal["drop", "stall"]
Outcome = Literal["answered", "timeout", "error", "unsent"]
_EXCEPTIONS = (aiohttp.ClientError, OSError, ssl.SSLError, ValueError)


@dataclass(frozen=True, slots=True)
class Exchange:
    """One request to the SUT as it happened (or as a fault kept it from happening).

    ``answered`` is the status the receiver sent (None without an answer); ``status`` is the one
    the sender's caller acts on: ``answered``, unless a vendor fault counted the exchange
    otherwise. ``dropped_status`` is the status a receiver had begun to answer when a ``drop``
    cut the connection. ``fault`` names the fault the simulator applied (a failure is then
    ours, not the receiver's). ``started_real_s`` and ``started_sim_s`` read the clock as the
    request began; ``elapsed_real_s`` runs from there to the answer (or the error).
    ``timed_out``: no answer within the timeout. ``sent_bytes``: the body's size.
    ``client_cert`` names the TLS client certificate presented (None: none, or no TLS)."""

    status: int | None = None
    answered: int | None = None
    error: str | None = None
    elapsed_real_s: float = 0.0
    started_real_s: float = 0.0
    started_sim_s: float = 0.0
    sent_bytes: int = 0
    sent: bool = True
    timed_out: bool = False
    fault: str | None = None
    dropped_status: int | None = None
    client_cert: str | None = None

    @property
    def succeeded(self) -> bool:
        """The status acted on is 2xx."""
        return self.status is not None and 200 <= self.status < 300

    @property
    def acknowledged(self) -> bool:
        """The receiver answered 2xx, even if a fault kept the sender from reading it or counted
        it otherwise."""
        status = self.answered if self.answered is not None else self.dropped_status
        return status is not None and 200 <= status < 300

    @property
    def outcome(self) -> Outcome:
        """``unsent``, ``timeout``, ``answered`` (the receiver's status was read) or ``error``."""
        if not self.sent:
            return "unsent"
        if self.timed_out:
            return "timeout"
        return "answered" if self.answered is not None else "error"


@dataclass(frozen=True, slots=True)
class ClientCertificate:
    """A TLS client certificate a sender presents: ``name`` (for the evidence), the chain
    (``files.cert``: the leaf first, then its intermediates) and the leaf's key."""

    name: str
    files: CertFiles


@dataclass(frozen=True, slots=True)
class Handshake:
    """What a receiver did with a bare TLS connection (:meth:`HttpSender.handshake`):
    ``kept`` it open, waiting for a request; ``ended`` it during or right after the handshake;
    ``untrusted``: its server certificate failed our verification; ``unreachable``: no
    connection or no handshake in time. ``detail`` says how, for a report."""

    outcome: Literal["kept", "ended", "untrusted", "unreachable"]
    detail: str


class HttpSender:
    """Sends requests to any URL over one aiohttp session per client certificate (none by
    default); reports each as an :class:`Exchange`.

    ``skip_auto_headers`` names headers aiohttp would add by itself (``User-Agent``…) that a
    vendor sets, or leaves out, on its own."""

    def __init__(
        self,
        clock: Clock,
        *,
        timeout_s: float,
        cafiles: tuple[str, ...] = (),
        limit: int = 32,
        skip_auto_headers: tuple[str, ...] = (),
    ) -> None:
        self.clock = clock
        self.timeout_s = timeout_s
        self.cafiles = cafiles
        self.limit = limit
        self.skip_auto_headers = skip_auto_headers
        self.client_cert: ClientCertificate | None = None
        self._sessions: dict[str | None, aiohttp.ClientSession] = {}
        self._contexts: dict[str | None, ssl.SSLContext] = {}

    @property
    def _session(self) -> aiohttp.ClientSession | None:
        """The session of the client certificate presented now."""
        return self._sessions.get(self._presented)

    @property
    def _presented(self) -> str | None:
        return self.client_cert.name if self.client_cert is not None else None

    def present(self, client_cert: ClientCertificate | None) -> ClientCertificate | None:
        """Present ``client_cert`` (None: none) on the requests sent from now on, over
        connections of their own; returns the one presented until now."""
        previous, self.client_cert = self.client_cert, client_cert
        return previous

    def ssl_context(self) -> ssl.SSLContext:
        """The system's CAs plus ``cafiles`` (each a file, or PEM text itself: a CA handed over
        the control plane), presenting the client certificate of now (one context per
        certificate, made once)."""
        name = self._presented
        if name not in self._contexts:
            context = ssl.create_default_context()
            for cafile in self.cafiles:
                if cafile.lstrip().startswith("-----BEGIN"):
                    context.load_verify_locations(cadata=cafile)
                else:
                    context.load_verify_locations(cafile=cafile)
            if self.client_cert is not None:
                files = self.client_cert.files
                context.load_cert_chain(str(files.cert), str(files.key))
            self._contexts[name] = context
        return self._contexts[name]

    async def start(self) -> None:
        await self._start()

    async def _start(self) -> aiohttp.ClientSession:
        name = self._presented
        if name not in self._sessions:
            connector = aiohttp.TCPConnector(ssl=self.ssl_context(), limit=self.limit)
            self._sessions[name] = aiohttp.ClientSession(
                connector=connector,
                timeout=aiohttp.ClientTimeout(total=self.timeout_s),
                skip_auto_headers=self.skip_auto_headers,
            )
        return self._sessions[name]

    async def close(self) -> None:
        sessions, self._sessions = list(self._sessions.values()), {}
        for session in sessions:
            await session.close()

    async def handshake(self, url: str, wait_s: float) -> Handshake:
        """Open a TLS connection to ``url``'s host presenting the client certificate of now,
        send nothing, and wait at most ``wait_s`` (real) for the receiver to end it (a TLS
        alert, a failed handshake, a close). Bounded by the sender's timeout plus ``wait_s``."""
        target = URL(url)
        if target.scheme != "https" or target.host is None or target.port is None:
            raise ValueError(f"{url} is not an https://host:port URL")
        return await asyncio.to_thread(
            _handshake, self.ssl_context(), target.host, target.port, self.timeout_s, wait_s
        )

    async def send(
        self,
        method: str,
        url: str,
        body: bytes,
        headers: Mapping[str, str],
        *,
        timeout_s: float | None = None,
        raw: RawFault | None = None,
        fault: str | None = None,
        on_fault: Callable[[str], None] | None = None,
    ) -> Exchange:
        """One request with exactly these bytes and headers (no retry). ``raw`` misbehaves on
        the wire (``on_fault`` is told what was done, when it is done); ``fault`` is the name
        the exchange reports (default: ``raw``)."""
        timeout = self.timeout_s if timeout_s is None else timeout_s
        started_real, started_sim = self.clock.readings()
        status: int | None = None
        dropped: int | None = None
        error: str | None = None
        timed_out = False
        try:
            if raw is not None:
                context = self.ssl_context() if URL(url).scheme == "https" else None
                error, dropped = await write_raw(
                    self.clock, context, method, url, body, headers, timeout, raw, on_fault
                )
                timed_out = raw == "stall"
            else:
                session = self._session or await self._start()
                # The session carries the usual timeout; only another one costs a new object.
                response = await (
                    session.request(method, url, data=body, headers=headers, allow_redirects=False)
                    if timeout == self.timeout_s
                    else session.request(
                        method,
                        url,
                        data=body,
                        headers=headers,
                        allow_redirects=False,
                        timeout=aiohttp.ClientTimeout(total=timeout),
                    )
                )  # awaited, not entered: one coroutine less on every resumption
                try:
                    # A bounded read: a receiver answering a huge body cannot exhaust us.
                    await response.content.read(ANSWER_READ_LIMIT)
                    if not response.content.at_eof():
                        response.close()  # drop the connection rather than drain the rest
                    status = response.status
                finally:  # what leaving ``async with`` does
                    response.release()
                    await response.wait_for_close()
        except TimeoutError:
            error, timed_out = f"no answer within {timeout:g} s", True
        except _EXCEPTIONS as exc:
            error = f"{type(exc).__name__}: {exc}"[:ERROR_CHARS]
        return Exchange(
            status,
            status,
            error,
            self.clock.real() - started_real,
            started_real,
            started_sim,
            len(body),
            True,
            timed_out,
            fault or raw,
            dropped,
            self._presented if URL(url).scheme == "https" else None,  # no TLS, no certificate
        )


def _handshake(
    context: ssl.SSLContext, host: str, port: int, timeout_s: float, wait_s: float
) -> Handshake:
    """:meth:`HttpSender.handshake` on a blocking socket: the stdlib's asyncio TLS transport
    turns a receiver's alert into a bare end of stream, a blocking socket reads it."""
    try:
        raw = socket.create_connection((host, port), timeout=timeout_s)
    except OSError as exc:
        return Handshake("unreachable", f"no connection: {exc}")
    try:
        try:
            tls = context.wrap_socket(raw, server_hostname=host)
        except ssl.SSLCertVerificationError as exc:
            return Handshake("untrusted", f"its certificate was not trusted: {exc.verify_message}")
        except TimeoutError:
            return Handshake("unreachable", f"no TLS handshake within {timeout_s:g} s")
        except (ssl.SSLError, OSError) as exc:
            return Handshake("ended", f"the TLS handshake failed: {_tls_error(exc)}")
        with tls:
            tls.settimeout(wait_s)
            try:
                data = tls.recv(1)
            except TimeoutError:
                return Handshake("kept", f"kept open for {wait_s:g} s, waiting for a request")
            except (ssl.SSLError, OSError) as exc:
                why = _tls_error(exc)
                return Handshake("ended", f"ended after the handshake, before any request: {why}")
            if not data:
                return Handshake("ended", "closed after the handshake, before any request")
            return Handshake("kept", "it sent data before any request")
    finally:
        raw.close()


def _tls_error(exc: OSError) -> str:
    reason = getattr(exc, "reason", None)
    return (
        f"TLS alert {reason}"
        if reason and "ALERT" in str(reason)
        else f"{type(exc).__name__}: {exc}"
    )


async def write_raw(
    clock: Clock,
    context: ssl.SSLContext | None,
    method: str,
    url: str,
    body: bytes,
    headers: Mapping[str, str],
    timeout: float,
    fault: RawFault,
    on_fault: Callable[[str], None] | None = None,
) -> tuple[str, int | None]:
    """Write the request by hand over a fresh connection (TLS with ``context``), then misbehave
    as ``fault`` says. Returns the exchange's error and, after a ``drop``, the status the
    receiver had begun to answer (None when its first bytes named none)."""
    target = URL(url)
    reader, writer = await asyncio.wait_for(
        asyncio.open_connection(
            target.host, target.port, ssl=context, server_hostname=target.host if context else None
        ),
        timeout,
    )
    head = [f"{method} {target.raw_path_qs} HTTP/1.1", f"Host: {target.host}:{target.port}"]
    head += [f"{k}: {v}" for k, v in headers.items()]
    head += [f"Content-Length: {len(body)}", "Connection: close", "", ""]
    try:
        writer.write("\r\n".join(head).encode("latin-1"))
        if fault == "stall":
            writer.write(body[: len(body) // 2])
            await asyncio.wait_for(writer.drain(), timeout)
            if on_fault is not None:
                on_fault(f"stalled mid-body for {timeout:g} s (real)")
            await clock.sleep_real(timeout)
            return f"stalled mid-body (fault); no answer within {timeout:g} s", None
        writer.write(body)
        await asyncio.wait_for(writer.drain(), timeout)
        first = await asyncio.wait_for(reader.read(12), timeout)
        if on_fault is not None:
            on_fault(
                f"connection aborted after the request was sent (receiver began {first[:12]!r})"
            )
        began = first.split(b" ")
        status = int(began[1]) if len(began) > 1 and began[1][:3].isdigit() else None
        return "connection dropped after the request was sent (fault)", status
    finally:
        writer.transport.abort()
