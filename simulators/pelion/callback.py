"""The callback side of the notification channel: HTTPS PUTs to the application's callback URL,
the way Device Management Connect sends them (vendor doc, "Callback interface" and
"Notification sending logic"; docs/vendors/pelion.md §3).

A thin adapter over :class:`simulators.http_sender.HttpSender` (which reports each PUT as an
:class:`~simulators.http_sender.Exchange`); the rules (batches, back-off, 24 h removal) live in
:class:`simulators.pelion.delivery.CallbackDelivery`.

- Verification: "Device Management Connect verifies the callback URL by calling PUT with the
  given headers" (SPEC20+: the body is the empty JSON ``{}``); the application "responds with
  200 OK" (SPEC: 200 or 204) → :meth:`CallbackClient.verify`. Any 2xx accepts.
- Delivery: each batch is one NotificationMessage PUT to the URL "with the given headers" and
  ``Content-Type: application/json`` → :meth:`CallbackClient.put_batch`. Any 2xx
  acknowledges the batch; "a delivery fails on connection timeout or a 4xx/5xx answer".
- Timeout: 20 s (SPEC20/21 "The request timeout is 20 seconds"), real time (the receiver
  answers at its own pace), covering the whole exchange: connecting, sending, the answer's
  headers and at most :data:`~simulators.http_sender.ANSWER_READ_LIMIT` bytes of its body.
  Redirects are not followed.

Faults (target ``"callback"``, one per batch attempt, armed through a
:class:`~simulators.faults.FaultPlan`):

- ``status`` (``status``, default 500): the batch is sent, whatever the receiver answers the
  attempt counts as that status (the real answer is kept as ``answered``);
- ``timeout``: the batch is sent, the answer is ignored and the attempt counts as timed out
  (no real 20 s wait);
- ``unsent`` (``status`` or none): the batch is not sent at all; the attempt fails at once;
- ``drop``: the request is written in full, then the connection is aborted before the answer
  is read (the receiver got the batch, the sender saw no answer);
- ``stall``: the headers and half the body are sent, then nothing until the request timeout
  (real time: it is the receiver that waits).

``status``, ``timeout`` and ``unsent`` are this adapter's (what the attempt counts as); ``drop``
and ``stall`` are the sender's transport faults.

The caller's certificate: "Device Management Connect presents a certificate signed by a trusted
certificate authority (GlobalSign)" on its requests to the callback URL, whose chain needs "the
verification depth of the client certificates chain to 2 at least". The client presents the
run's caller chain (root → intermediate → leaf, ``CN=notifications.mbedcloud.com``: the
PKI's ``callers/pelion/``) on every PUT, verification and batches alike; :meth:`CallbackClient.present`
switches it to ``none`` or to the ``untrusted`` chain (same shape, another root) for negative
checks.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Literal

from simulators.clock import Clock
from simulators.faults import Fault, FaultKind
from simulators.http_sender import ClientCertificate, Exchange, Handshake, HttpSender
from simulators.pki import CertFiles

__all__ = ["CALLER_NAME", "USER_AGENT", "CallbackClient", "CallerChain"]

CallerChain = Literal["genuine", "untrusted", "none"]
# The common name of the service's callback client certificate (SPEC19/20/21); the simulator's
# leaf carries it, issued under the run's own caller root, never the vendor's.
CALLER_NAME = "notifications.mbedcloud.com"
CALLER_CHAIN = "pelion"  # the PKI's caller chain (simulators.pki.PKI.caller_chain)
UNTRUSTED_CALLER_CHAIN = "pelion-untrusted"  # the same shape under another root

USER_AGENT = "conformance-simulator/pelion (Device Management notification channel)"
TIMEOUT_FAULT_ERROR = "answer ignored: counted as a timeout (fault)"


class CallbackClient:
    """PUTs to callback URLs through one :class:`HttpSender` (any URL; one TLS context)."""

    def __init__(
        self,
        clock: Clock,
        *,
        cafiles: tuple[str, ...] = (),
        timeout_s: float = 20.0,
        caller: CertFiles | None = None,
        untrusted_caller: CertFiles | None = None,
    ) -> None:
        self.clock = clock
        self.sender = HttpSender(
            clock, timeout_s=timeout_s, cafiles=cafiles, limit=64, skip_auto_headers=("User-Agent",)
        )
        self.chains: dict[CallerChain, ClientCertificate | None] = {"none": None}
        if caller is not None:
            self.chains["genuine"] = ClientCertificate("genuine", caller)
        if untrusted_caller is not None:
            self.chains["untrusted"] = ClientCertificate("untrusted", untrusted_caller)
        self.chain: CallerChain = "none"
        self.present("genuine" if caller is not None else "none")

    def present(self, chain: CallerChain) -> CallerChain:
        """Present ``chain`` on every PUT from now on (each chain has connections of its own);
        returns the chain presented until now."""
        if chain not in self.chains:
            raise ValueError(f"no {chain} caller chain: the simulator was given no files for it")
        previous, self.chain = self.chain, chain
        self.sender.present(self.chains[chain])
        return previous

    async def handshake(self, url: str, wait_s: float) -> Handshake:
        """What the receiver at ``url`` does with a bare TLS connection presenting the chain of
        now (:meth:`HttpSender.handshake`)."""
        return await self.sender.handshake(url, wait_s)

    async def start(self) -> None:
        await self.sender.start()

    async def close(self) -> None:
        await self.sender.close()

    @staticmethod
    def headers(registered: Mapping[str, str] | None) -> dict[str, str]:
        """The headers of a PUT: the registered ones (which may override these), JSON content."""
        headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT}
        for name, value in (registered or {}).items():
            for existing in [k for k in headers if k.lower() == name.lower()]:
                del headers[existing]
            headers[name] = value
        return headers

    async def verify(self, url: str, registered: Mapping[str, str] | None) -> Exchange:
        """The verification PUT ``{}`` with the registered headers (no fault applies)."""
        return await self.put(url, b"{}", self.headers(registered))

    async def put_batch(
        self, url: str, body: bytes, registered: Mapping[str, str] | None, fault: Fault | None
    ) -> Exchange:
        """One batch attempt with ``fault`` (or none) applied."""
        return await self.put(url, body, self.headers(registered), fault)

    async def put(
        self,
        url: str,
        body: bytes,
        headers: Mapping[str, str],
        fault: Fault | None = None,
        timeout_s: float | None = None,
    ) -> Exchange:
        """One PUT with exactly these bytes and headers (no retry); never raises for what the
        receiver does."""
        if fault is None:
            return await self.sender.send("PUT", url, body, headers, timeout_s=timeout_s)
        kind = fault.kind
        if kind == FaultKind.UNSENT:
            status = fault.get("status")
            real, sim = self.clock.readings()
            return Exchange(
                status=int(status) if status is not None else None,
                error=None if status is not None else "not sent (fault)",
                started_real_s=real,
                started_sim_s=sim,
                sent=False,
                fault=kind,
            )
        exchange = await self.sender.send(
            "PUT",
            url,
            body,
            headers,
            timeout_s=timeout_s,
            raw="drop"
            if kind == FaultKind.DROP_BEFORE_ACK
            else "stall"
            if kind == FaultKind.STALL
            else None,
            fault=kind,
        )
        if kind == FaultKind.STATUS:
            return replace(exchange, status=int(fault.get("status", 500)))
        if kind == FaultKind.TIMEOUT:
            return replace(exchange, status=None, timed_out=True, error=TIMEOUT_FAULT_ERROR)
        return exchange
