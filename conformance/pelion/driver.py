"""The Pelion driver: what the Pelion checks do to the SUT, over the run's simulated service and
the observer.

A SUT claims the callback channel, the WebSocket channel, or both (a project extension: a
second API key for its callback). The driver delivers NotificationMessages on either channel
the way the service does, waits for the SUT's reports, and judges each check from the
simulator's records: every batch attempt, every WebSocket connection, every REST call.
"""

from __future__ import annotations

import base64
import bisect
import hashlib
import itertools
import json
import secrets
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, TypeVar

import pytest

from conformance.driver import MarkerRefused, VendorDriver, curl_command, inline_text
from conformance.pelion.replay import websocket_script
from conformance.pelion.running import HARNESS_SERIALIZATION, RunningPelion
from conformance.pelion.section import PelionSection
from conformance.vendors import vendor
from conformance.verdicts import Check
from simulators.http_sender import Exchange, Handshake
from simulators.operations import Applies
from simulators.pelion.callback import CallbackClient, CallerChain
from simulators.pelion.channels import ItemQueued
from simulators.pelion.delivery_terms import REASON_NO_CHANNEL
from simulators.pelion.models import Kind, SerializationConfig
from simulators.pelion.operations import (
    Connections,
    Inject,
    InjectTogether,
    PelionTarget,
    PresentCaller,
    SerializeWith,
)
from simulators.pelion.simulator import DeliveryAttempt, PelionSimulator
from simulators.pelion.websocket import ConnectionInfo
from simulators.problem import Problem

__all__ = ["RECONNECT_WAIT_S", "Channel", "PelionDriver", "payload_hex"]

Channel = Literal["callback", "websocket"]
R = TypeVar("R")
# How long the SUT has to register its channel or connect, from the first check that needs it:
# one the harness launched has passed its readiness probe; one running elsewhere may be in its
# reconnect back-off.
STARTUP_WAIT_S = 20.0
STARTUP_WAIT_ELSEWHERE_S = 60.0
DELIVERY_WAIT_S = 45.0  # real seconds a delivery may take (a batch, its retries, reconnects)
# How long a SUT has to come back after a close or a drop. PEL-WS-04 names no bound, and the
# three disruptions come back to back, so a SUT backing off as the service itself does (2, 4,
# 8 … s, capped at 120 s) may be at its cap: 120 s, and 10 s for the channel PUT after a 1011.
RECONNECT_WAIT_S = 130.0
SETTLE_S = 0.5  # after a frame, how long the socket must stay open to count as accepted
# How long a bare TLS connection presenting the caller's chain must stay open (real s) for the
# receiver to count as accepting it: one refusing the certificate ends it within a round trip.
HANDSHAKE_WAIT_S = 3.0
# Callback PUTs in a row (our faults aside) that got no HTTP answer within the service's 20 s
# timeout before the SUT is taken as down although its probes answer (project assumption: one
# late answer is a slow batch, PEL-CB-03/04; two in a row, whatever their size, is a receiver
# that has stopped processing, and waiting 20 s per batch for the rest of the run is not a bound).
SILENT_LIMIT = 2
_ep_numbers = itertools.count(1)


def new_ep() -> str:
    """A fresh device id (32 hex digits) no other check uses."""
    return f"c0ffee{secrets.token_hex(4)}{next(_ep_numbers):018x}"


def payload_hex(item: Mapping[str, Any]) -> str | None:
    """The hex of an item's decoded base64 payload (what the observer record must carry)."""
    payload = item.get("payload")
    return base64.b64decode(payload).hex() if isinstance(payload, str) else None


def identity(queued: ItemQueued) -> tuple[str, str]:
    """A queued item's uid and its kind-and-address (the observer keys of a record that
    reports it: the plug-in's ``observer_keys``)."""
    event = queued.item.event
    address = event.body.get("id" if event.kind == "async-responses" else "ep")
    return queued.item.uid, f"{event.kind}:{address}"


@dataclass(repr=False)
class PelionDriver(VendorDriver):
    """What the Pelion checks do to the SUT."""

    vendor_name: ClassVar[str] = "pelion"
    record_shape: ClassVar[str] = '{"kind": …, "item": …, "payload_hex": …}'

    sim: RunningPelion
    forced: dict[Channel, str] = field(default_factory=dict)  # channels the harness set up itself
    no_socket: str | None = None  # why the SUT holds no socket, once a wait ran out
    never_connected: str | None = None  # "" once it connected; why not, once it never did
    # Items that probe the SUT's tolerance of a message shape (PEL-MSG-*): PEL-CB-03 judges
    # the answers to ordinary batches, not to these.
    probes: set[str] = field(default_factory=set)
    # The SUT's own serialization of a channel while a check probes another (serializing)
    _own_serialization: dict[Channel, SerializationConfig | None] = field(default_factory=dict)
    # PEL-WS-05: when the run's key was revoked (real s) and the sockets that revocation closed;
    # the key comes back by itself at the window's end (other vendors' checks run meanwhile).
    policy_window: tuple[float, frozenset[int]] | None = None
    # PEL-CB-07: why the SUT refuses Device Management's client certificate ("" once a
    # handshake presenting it was kept open; None until one was needed).
    caller_refusal: str | None = None

    def __repr__(self) -> str:
        return f"<PelionDriver {self.channels}>"

    def perform(self, operation: Applies[PelionTarget, R], timeout: float = 120.0) -> R:
        """Carry out one operation, in the simulators' loop."""
        return self.harness.run(self.sim.perform(operation), timeout=timeout)

    @property
    def service(self) -> PelionSimulator:
        """The simulated Device Management service."""
        return self.sim.service

    @property
    def section(self) -> PelionSection:
        assert self.sim.section is not None
        return self.sim.section

    @property
    def channels(self) -> tuple[Channel, ...]:
        return self.section.channels

    def key(self, channel: Channel) -> str:
        return self.sim.callback_key if channel == "callback" else self.sim.api_key

    def require(self, channel: Channel, check: Check) -> None:
        if channel not in self.channels:
            raise check.not_verified(
                f"profile not declared: the SUT's [pelion] claims no {channel}"
            )

    # Channels.

    def callback_registered(self) -> bool:
        state = self.service.channel_state(self.sim.callback_key)
        return state is not None and state.mechanism == "CALLBACK"

    def without_tls(self) -> Problem:
        """Why no client certificate can be presented to the SUT's callback: a plain-HTTP URL
        (registered, else declared); None for HTTPS."""
        state = self.service.channel_state(self.sim.callback_key)
        url = state.url if state is not None and state.url else self.section.callback_url
        if url is None or url.lower().startswith("https://"):
            return None
        return (
            f"the callback URL {url} is plain HTTP: without TLS no client certificate is "
            "presented (PEL-CB-02 judges the URL)"
        )

    def unanswered_caller_puts(self) -> list[tuple[str, str]]:
        """The callback PUTs to the SUT (verifications and batches) that presented the genuine
        caller chain and got no HTTP answer: (URL, what happened)."""
        key = self.sim.callback_key
        found = [
            (v.url, v.exchange.error or v.exchange.outcome)
            for v in self.service.verifications()
            if v.key == key and v.exchange.client_cert == "genuine" and v.exchange.answered is None
        ]
        found += [
            (a.url, a.error or "no answer")
            for a in self.service.attempts()
            if a.key == key and a.channel == "callback" and a.url and a.fault is None
            and a.client_cert == "genuine" and a.answered is None
        ]  # fmt: skip
        return found

    def caller_refused(self) -> Problem:
        """Why the SUT refuses Device Management's client certificate (PEL-CB-07), else None.

        Evidence first: a PUT that presented the genuine chain got no HTTP answer. Then one
        bare TLS connection presenting the same chain, sending nothing: a receiver that ends it
        (an alert, a close) before any request refuses the caller; one that keeps it open,
        waiting for a request, accepts the certificate (its unanswered PUT had another cause).
        Judged once, when the first unanswered PUT is seen; a receiver that could not be
        reached (or whose server certificate we refused) is asked again next time."""
        if self.caller_refusal is not None:
            return self.caller_refusal or None
        unanswered = self.unanswered_caller_puts()
        if not unanswered:
            return None
        url, what = unanswered[0]
        self.harness.require_sut()

        async def handshake() -> Handshake:
            previous = await self.sim.perform(PresentCaller(chain="genuine"))
            try:
                return await self.service.client.handshake(url, HANDSHAKE_WAIT_S)
            finally:
                await self.sim.perform(PresentCaller(chain=previous))

        probe = self.harness.run(handshake())
        if probe.outcome in ("unreachable", "untrusted"):
            return None  # nothing learnt about the certificate
        self.caller_refusal = (
            f"the SUT refuses Device Management's client certificate (root, intermediate, leaf "
            f"under CONFORMANCE_PELION_CALLER_CA): a PUT presenting it got no answer ({what}), "
            f"and a bare TLS connection presenting it was {probe.detail}"
            if probe.outcome == "ended"
            else ""
        )
        return self.caller_refusal or None

    def ensure_callback(self, check: Check) -> None:
        """The SUT's callback is registered: by the SUT (``registers_itself``), by the harness
        after the SUT was ready, or, when either failed, here without verification so the
        other requirements are still judged (PEL-CB-01 and PEL-CB-06 judge the registration).
        A SUT that refuses the caller's certificate can be sent nothing: not-verified, PEL-CB-07
        judges it."""
        self.require("callback", check)
        if self.section.registers_itself and not self.callback_registered():
            self.service.wait_for(
                self.callback_registered, max(0.0, STARTUP_WAIT_S - self.harness.clock.real())
            )
        if refusal := self.caller_refused():
            raise check.not_verified(f"{refusal} (judged by PEL-CB-07)")
        if self.callback_registered():
            return
        url = self.section.callback_url
        if url is None:
            raise check.not_verified("the SUT registered no callback, and its URL is not declared")
        self.harness.run(
            self.service.register_callback(
                url,
                self.section.callback_headers,
                serialization=HARNESS_SERIALIZATION,
                key=self.sim.callback_key,
                verify=False,
            )
        )
        self.forced["callback"] = "the harness registered the callback without verification"
        check.note(self.forced["callback"] + " (see PEL-CB-01 / PEL-CB-06)")

    def socket_bound(self) -> bool:
        state = self.service.channel_state(self.sim.api_key)
        return state is not None and state.connection is not None and state.status == "connected"

    def unregistered_reconnects(
        self, since_real_s: float = 0.0
    ) -> list[tuple[ConnectionInfo, ConnectionInfo]]:
        """PEL-WS-04: each connection of the run's key closed 1011 for "no channel" since
        ``since_real_s`` whose next connect came with no channel created in between, with that
        next connect. A 1011 for another unexpected condition (the channel still exists) asks
        for no new channel."""
        key = self.sim.api_key
        conns = sorted(
            (c for c in self.service.connections() if c.key == key),
            key=lambda c: c.connected_real_s,
        )
        created = sorted(
            c.real_s
            for c in self.service.calls()
            if c.endpoint == "PUT /v2/notification/websocket" and c.status in (200, 201)
        )
        found = []
        for closed, again in itertools.pairwise(conns):
            at = closed.close_sent_real_s
            if closed.close_sent != (1011, REASON_NO_CHANNEL) or at is None:
                continue
            if at < since_real_s:
                continue
            first_put = bisect.bisect_left(created, at)
            if first_put == len(created) or created[first_put] > again.connected_real_s:
                found.append((closed, again))
        return found

    @property
    def startup_wait(self) -> float:
        launched = self.harness.manifest.process is not None
        return STARTUP_WAIT_S if launched else STARTUP_WAIT_ELSEWHERE_S

    def first_connect(self) -> Problem:
        """Wait (once, bounded by :attr:`startup_wait`) for the SUT's first WebSocket connect.
        A SUT that declares the channel and never connects never showed up on it: it is taken
        as down (``harness.mark_down``), and the cause is returned (PEL-WS-01 fails with it)."""
        if self.never_connected is None:
            connected = self.service.wait_for(
                lambda: bool(self.service.connections()), self.startup_wait
            )
            self.never_connected = (
                ""
                if connected
                else self.harness.mark_down(
                    f'the SUT declares channel = "websocket" but never connected within '
                    f"{self.startup_wait:g} s ({self.channel_story()})"
                )
            )
        return self.never_connected or None

    def channel_story(self) -> str:
        """Whether the SUT created its WebSocket channel, for a message."""
        puts = [c for c in self.service.calls() if c.endpoint == "PUT /v2/notification/websocket"]
        if not puts:
            return "it never created its channel either"
        return f"it created its channel: PUT /v2/notification/websocket -> {puts[-1].status}"

    def ensure_socket(self, check: Check, timeout: float = STARTUP_WAIT_S) -> None:
        """The SUT holds its WebSocket (waits for a reconnect, bounded). Without one nothing
        on the socket can be observed: not-verified, with the cause; once a wait has run out,
        later checks do not wait again unless a socket is back."""
        self.require("websocket", check)
        self.harness.require_sut()
        if absent := self.first_connect():
            raise check.not_verified(absent)
        wait = 0.5 if self.no_socket else timeout
        if self.service.wait_for(self.socket_bound, wait):
            self.no_socket = None
            return
        self.no_socket = self.no_socket or (
            f"the SUT holds no WebSocket on its channel (waited {timeout:g} s): "
            f"{self.describe_connections()}"
        )
        raise check.not_verified(self.no_socket)

    def ensure(self, channel: Channel, check: Check) -> None:
        if channel == "callback":
            self.ensure_callback(check)
        else:
            self.ensure_socket(check)

    def describe_connections(self) -> str:
        conns = self.perform(Connections())
        if not conns:
            return "it never connected"
        last = conns[-1]
        return (
            f"{len(conns)} connection(s); the last: status {last.status}, "
            f"end {last.end or 'open'}, close sent {last.close_sent}, received {last.close_received}"
        )

    # Delivering.

    def inject(
        self, channel: Channel, kind: Kind, bodies: Iterable[Mapping[str, Any]]
    ) -> list[ItemQueued]:
        return self.perform(
            Inject(kind=kind, items=[dict(b) for b in bodies], key=self.key(channel))
        )

    def inject_together(
        self, channel: Channel, items: Iterable[tuple[Kind, Mapping[str, Any]]]
    ) -> list[ItemQueued]:
        """Queue items of several kinds at once, so they leave in one message."""
        together = [(kind, dict(body)) for kind, body in items]
        return self.perform(InjectTogether(items=together, key=self.key(channel)))

    def notifications(
        self, channel: Channel, values: Iterable[bytes], *, ct: str = "text/plain"
    ) -> list[ItemQueued]:
        """``notifications`` items with these payloads, one device each."""
        return self.inject(
            channel,
            "notifications",
            (
                {
                    "ep": new_ep(),
                    "path": "/3200/0/5501",
                    "ct": ct,
                    "payload": base64.b64encode(v).decode(),
                    "max-age": 0,
                }
                for v in values
            ),
        )

    def deliver(
        self, channel: Channel, queued: list[ItemQueued], *, first_try: bool = False
    ) -> list[DeliveryAttempt]:
        """Run the delivery schedule (back-off waits jump the clock) until every item queued was
        delivered (a 2xx, or a frame the socket took), or with ``first_try`` until every item
        was in one finished attempt, or the wait ran out; return the attempts that carried
        them. Items still queued then are discarded, so they do not hold up the next check."""
        self.harness.require_sut()
        uids = {q.item.uid for q in queued}
        key = self.key(channel)

        def delivered() -> bool:
            done: set[str] = set()
            for attempt in self.service.attempts():
                if attempt.key == key and (attempt.succeeded or first_try) and attempt.uids:
                    done.update(attempt.uids)
            return uids <= done or len(self.unanswered_streak()) >= SILENT_LIMIT

        wait = DELIVERY_WAIT_S
        if self.deadline is not None:  # an exploration's bound
            wait = max(0.1, min(wait, self.deadline - time.monotonic()))
        done = self.harness.run(
            self.service.drive(delivered, timeout_real_s=wait, max_sim_s=3600),
            timeout=wait + 30,
            autojump=True,
        )
        if not done or first_try or self.harness.sut_down:
            self.service.discard_queue(key)
        attempts = self.attempts_of(uids)
        if channel == "callback":
            self.watch_callback()
        return attempts

    def unanswered_streak(self) -> list[DeliveryAttempt]:
        """The callback's last batch attempts in a row that got no HTTP answer at all (a
        timeout, a reset, a refused connection), our own faults aside."""
        streak: list[DeliveryAttempt] = []
        key = self.sim.callback_key
        for attempt in reversed(self.service.attempts()):
            if attempt.channel != "callback" or attempt.key != key or attempt.fault is not None:
                continue
            if attempt.answered is not None:
                break
            streak.append(attempt)
        return streak[::-1]

    def watch_callback(self) -> None:
        """A callback batch without an answer: probe the SUT at once (a dead process or
        endpoint is down, :meth:`Harness.confirm_unresponsive`). A receiver whose probes still
        answer but which left :data:`SILENT_LIMIT` batches in a row unanswered is half-dead:
        taken as down with that cause (``harness.mark_down``), and the check that saw it
        fails with it."""
        streak = self.unanswered_streak()
        if not streak or self.harness.sut_down:
            return
        last = streak[-1]
        symptom = f"no answer to a notification batch PUT: {last.error}"
        if self.harness.confirm_unresponsive(symptom) is None and len(streak) >= SILENT_LIMIT:
            raise AssertionError(
                self.harness.mark_down(
                    f"{len(streak)} notification batch PUTs in a row got no answer "
                    f"(the last: {last.error} after {last.elapsed_real_s:.1f} s) while its "
                    "probes still answered"
                )
            )

    def attempts_of(self, uids: Iterable[str]) -> list[DeliveryAttempt]:
        wanted = set(uids)
        return [a for a in self.service.attempts() if a.uids and wanted & set(a.uids)]

    def put(self, body: bytes, headers: Mapping[str, str] | None = None) -> Exchange:
        """One PUT of exactly these bytes to the SUT's callback URL (default: the registered
        headers); never retried."""
        self.harness.require_sut()
        url = self.section.callback_url
        assert url is not None
        sent = self.service.client.headers(
            self.section.callback_headers if headers is None else headers
        )
        return self.harness.run(self.service.client.put(url, body, sent))

    def put_presenting(self, chain: CallerChain, body: bytes) -> Exchange:
        """:meth:`put` with the caller presenting ``chain`` (:class:`PresentCaller`), then the
        chain of before again."""
        previous = self.perform(PresentCaller(chain=chain))
        try:
            return self.put(body)
        finally:
            self.perform(PresentCaller(chain=previous))

    # Reproducers.

    def reproduce(self, check: Check, attempts: Iterable[DeliveryAttempt]) -> None:
        """Offer ``check`` what sends these batches again: a ``curl`` PUT per callback batch,
        one script for the WebSocket frames (:meth:`reproduce_frames`)."""
        frames: list[bytes] = []
        for attempt in attempts:
            body = self.service.attempt_body(attempt.seq)
            if body is None:
                check.no_reproducer("the batch's body is no longer kept (the log is bounded)")
            elif attempt.channel == "callback":
                self.reproduce_put(check, body)
            elif attempt.channel == "websocket":
                frames.append(body)
        if frames:
            self.reproduce_frames(check, frames)

    def reproduce_put(
        self, check: Check, body: bytes, headers: Mapping[str, str] | None = None
    ) -> None:
        """Offer ``check`` a ``curl`` PUT of ``body`` to the callback URL with the registered
        headers (or ``headers``), as the service sends it."""
        url = self.section.callback_url
        if url is None:
            check.no_reproducer("the SUT's callback URL is not declared")
            return
        sent = CallbackClient.headers(self.section.callback_headers if headers is None else headers)
        cafile = str(self.section.tls_ca or self.sim.run_ca) if url.startswith("https") else None
        command = curl_command(self.harness, "PUT", url, sent, body, cafile)
        check.reproducer(command, size=len(body))

    def reproduce_frames(self, check: Check, frames: list[bytes]) -> None:
        """Offer ``check`` a script beside the report that plays the service's side of the
        SUT's WebSocket and sends these frames (:mod:`conformance.pelion.replay`)."""
        nodeid = self.harness.cause or "a check"
        digest = hashlib.sha256(b"\0".join(frames)).hexdigest()[:12]
        name = f"pelion-websocket-{digest}.py"
        pki = self.harness.pki
        script = websocket_script(
            check=nodeid,
            name=f"reproducers/{name}",
            key=self.sim.api_key,
            ca=str(pki.ca),
            cert=str(pki.server.cert),
            cert_key=str(pki.server.key),
            frames=[
                ("text", text)
                if (text := inline_text(frame)) is not None
                else ("file", self.harness.body_file(frame))
                for frame in frames
            ],
        )
        path = self.harness.script_file(name, script)
        check.reproducer(
            f"python3 {path}  # then start the SUT with the CONFORMANCE_PELION_API_URL it prints",
            size=sum(map(len, frames)),
        )

    # The observer.

    def reports_by_item(self, queued: Iterable[ItemQueued]) -> dict[str, list[dict[str, Any]]]:
        """The observer records naming each queued item (by uid, or by kind and address),
        keyed by the item's uid; an item nobody reported is absent."""
        wanted: dict[str, str] = {}
        for q in queued:
            for key in identity(q):
                wanted[key] = q.item.uid
        found: dict[str, list[dict[str, Any]]] = {}
        keys = vendor("pelion").observer_keys
        for record in self.records():
            for uid in {wanted[k] for k in keys(record) if k in wanted}:
                found.setdefault(uid, []).append(record)
        return found

    def unreported(self, queued: Iterable[ItemQueued]) -> list[ItemQueued]:
        """The queued items no observer record names (by uid, or by kind and address)."""
        keys = vendor("pelion").observer_keys
        seen: set[str] = set()
        for record in self.records():
            seen.update(keys(record))
        return [q for q in queued if not seen & set(identity(q))]

    def count_reports(
        self, queued: Iterable[ItemQueued], timeout: float, *, more_than: int = 0
    ) -> dict[str, int]:
        """Reports per item uid (a record names an item by its uid, or by its kind and
        address: :func:`identity`), waiting (at most ``timeout``) until every item was reported
        more than ``more_than`` times, in any order: a SUT may process concurrently."""
        wanted = {key: q.item.uid for q in queued for key in identity(q)}
        return self.count_keyed(wanted, timeout, more_than=more_than)

    @contextmanager
    def serializing(self, channel: Channel, config: dict[str, Any] | None) -> Iterator[None]:
        """Serialize ``channel``'s batches with ``config`` inside the block (a probe of the
        SUT's tolerance, PEL-MSG-02), then restore the SUT's own serialization. A fence marker
        sent meanwhile goes in the SUT's own serialization (:meth:`fence`)."""
        key = self.key(channel)
        own = self.perform(SerializeWith(config=config, key=key))
        self._own_serialization[channel] = own
        try:
            yield
        finally:
            del self._own_serialization[channel]
            self.perform(SerializeWith(config=_config(own), key=key))

    def fence(self, channel: Channel, awaiting: Iterable[ItemQueued] = ()) -> Problem:
        """Wait for the reports of ``awaiting``, then for a marker's, delivered on ``channel``
        (:meth:`VendorDriver.fence_with`). The marker never travels under the condition a
        check probes: inside :meth:`serializing` it goes in the SUT's own serialization, so a
        SUT that drops the probed one still reports it."""
        key = self.key(channel)

        def marker() -> dict[str, str]:
            probing = channel in self._own_serialization
            if probing:
                probe = self.perform(
                    SerializeWith(config=_config(self._own_serialization[channel]), key=key)
                )
            try:
                queued = self.notifications(channel, [b"fence-" + secrets.token_hex(4).encode()])
                delivered = any(a.succeeded for a in self.deliver(channel, queued))
            finally:
                if probing:
                    self.perform(SerializeWith(config=_config(probe), key=key))
            if not delivered:
                raise MarkerRefused(
                    "the SUT did not take a marker notification, so reports cannot be awaited"
                )
            return {k: q.item.uid for q in queued for k in identity(q)}

        return self.fence_with({k: q.item.uid for q in awaiting for k in identity(q)}, marker)

    def kept(self, attempts: list[DeliveryAttempt], seconds: float = SETTLE_S) -> Problem:
        """None when the SUT kept the socket that took these frames for ``seconds`` (real)
        after them: the client neither closed it nor lost it (a socket the server closed, e.g.
        replaced by the SUT's own second socket, is not the client's doing). Else what
        happened to it."""
        numbers = {a.connection for a in attempts if a.succeeded and a.connection is not None}
        self.harness.run(self.harness.clock.sleep_real(seconds))
        for conn in self.service.connections():
            if conn.number in numbers and conn.end in ("client-close", "lost", "error"):
                return (
                    f"connection {conn.number} ended ({conn.end}, close code {conn.close_received})"
                )
        return None if numbers else "no socket took the frames"


def describe(attempts: list[DeliveryAttempt]) -> str:
    """The attempts as prose."""
    if not attempts:
        return "never sent"
    parts = []
    for a in attempts[-4:]:
        what = (
            a.answered if a.answered is not None else a.status if a.status is not None else a.error
        )
        frame = "frame taken" if a.channel == "websocket" and a.succeeded else what
        parts.append(f"{a.items} item(s): {frame} in {a.elapsed_real_s * 1000:.0f} ms")
    more = f" (and {len(attempts) - 4} earlier)" if len(attempts) > 4 else ""
    return "; ".join(parts) + more


def json_bytes(value: Any) -> bytes:
    return json.dumps(value).encode()


def channels_of(check_callback: Callable[..., Any]) -> Any:
    """Parametrize a check over both channels (an undeclared one is not-verified)."""
    return pytest.mark.parametrize("channel", ["callback", "websocket"])(check_callback)


def _config(serialization: SerializationConfig | None) -> dict[str, Any] | None:
    """A serialization as :class:`SerializeWith` takes it (None: the vendor default)."""
    return serialization.model_dump(by_alias=True) if serialization is not None else None
