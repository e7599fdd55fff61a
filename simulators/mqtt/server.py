"""An asyncio adapter for :class:`~simulators.mqtt.core.BrokerCore`: a TLS listener on
127.0.0.1 that carries bytes, records every packet, and keeps the time rules the core leaves to
its adapter.

What the adapter does and the core does not:

- **TLS.** Each TCP connection is accepted bare, then upgraded with ``loop.start_tls`` and the
  listener's context, so a refused handshake (TLS 1.3 against a 1.2-only context, no client
  certificate, an unknown CA, garbage) is seen and recorded, not lost inside asyncio. The
  client's identity comes from its certificate through the ``identify`` callback.
- **Evidence.** Every packet in and out is one evidence event and one
  :class:`~simulators.mqtt.packetlog.PacketRecord` in the connection's log (type, packet id, QoS,
  DUP, RETAIN, topic, size, real and simulated time), read as a
  :class:`~simulators.mqtt.packetlog.ConnectionView`; :mod:`simulators.mqtt.evidence` records,
  and ties a PUBACK to the cause of the PUBLISH it answers.
- **Real time.** A connection that sends no CONNECT within ``connect_timeout_s`` is closed; a
  connected client silent for 1.5 × its keep-alive is disconnected (MQTT-3.1.2-24). Both run on
  :meth:`Clock.sleep_real`, so a jump of simulated hours never fires them.
- **Simulated time.** The core's :meth:`~BrokerCore.next_deadline` (message expiry, in-session
  redelivery) is slept on by a :class:`~simulators.adapter.DeadlineLoop`; it is woken whenever an
  action moves the deadline, and by :meth:`Clock.advance`.
- **Bounds.** At most ``max_connections`` connections at once (more are closed before TLS), a
  TLS handshake timeout, the core's packet-size limit, and a cap on unsent bytes to a peer that
  does not read (it is disconnected; a durable session keeps its messages). The packet log keeps
  the latest ``connections_kept`` connections, ``packets_kept`` packets each, and
  ``log_entries_kept`` entries in all (the oldest closed connections are forgotten first); each
  entry is bounded (:mod:`simulators.mqtt.packetlog`). Nothing of a connection but its log
  outlives its close. What the checks judge over the whole run (peak concurrency, shared and
  abandoned client IDs, clean sessions, PUBLISHes and Wills on ``watched`` topics) is tallied
  for every connection in :attr:`MqttServer.facts` (:mod:`simulators.mqtt.runfacts`), so a
  client that churns connections cannot push an early finding out of the log.

**Diverting.** :meth:`MqttServer.divert` hands the next accepted TCP connections to other
listeners in the same loop (before TLS), each of which upgrades it with its own context and
records it: a client that connects to this address meets their certificates (e.g. impostors'),
then this listener again. :attr:`MqttServer.ambient_cause` attributes the evidence no check
caused (a client's own CONNECT, PINGREQ, SUBSCRIBE…) to the check that is watching.

Faults armed in :attr:`MqttServer.faults` (a :class:`~simulators.faults.FaultPlan`): target
``"publish:<client id>"`` (or ``"publish"`` for any client), kind ``FaultKind.DROP_BEFORE_ACK``: the
next QoS >= 1 PUBLISH to that client is sent and the connection is closed at once, so its PUBACK
can never count and the PUBLISH is resent with DUP = 1 when the session resumes; kind
``FaultKind.UNSENT``: the PUBLISH is never written (lost on the way) and the connection drops,
so the client first sees it as the DUP = 1 resend.

Everything here runs in the listener's event loop except the read-only queries
(:meth:`MqttServer.connections`, :meth:`MqttServer.wait_for`), which any thread may call.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import socket
import ssl
from collections import deque
from collections.abc import Callable, Iterable
from typing import TypeVar

from simulators.adapter import BackgroundTasks, DeadlineLoop, StateChanges
from simulators.clock import Clock
from simulators.evidence import Recorder
from simulators.faultlog import FaultLog
from simulators.faults import FaultKind, FaultPlan
from simulators.mqtt.actions import Action, Close, Notice, Received, Send
from simulators.mqtt.codec import encode
from simulators.mqtt.core import BrokerCore
from simulators.mqtt.evidence import SUMMARY_KEPT, MqttEvidence, wire_size
from simulators.mqtt.packetlog import (
    CLOSED_BY_CLIENT,
    ConnectionLog,
    ConnectionView,
    Direction,
    HandshakeFailure,
    PacketRecord,
)
from simulators.mqtt.packets import Connack, Connect, Packet, Publish
from simulators.mqtt.policy import Identity
from simulators.mqtt.runfacts import ConnectionFacts, RunFacts, Watched
from simulators.mqtt.text import excerpt
from simulators.network import LOOPBACK

__all__ = [
    # The packet-log model, defined in simulators.mqtt.packetlog, also named here: what a
    # server's queries return.
    "CLOSED_BY_CLIENT",
    "ConnectionView",
    "HandshakeFailure",
    "Identify",
    "MqttServer",
    "PacketRecord",
    "tls12_server_context",
]

T = TypeVar("T")
Identify = Callable[[ssl.SSLObject | None], Identity | None]

DEFAULT_CONNECT_TIMEOUT_S = 10.0
DEFAULT_HANDSHAKE_TIMEOUT_S = 10.0
KEEPALIVE_FACTOR = 1.5  # MQTT-3.1.2-24
SHUTDOWN_TIMEOUT_S = 2.0  # a peer that never answers the TLS close_notify is cut off then


def tls12_server_context(
    cert: str, key: str, cafile: str, *, require_client_cert: bool = True
) -> ssl.SSLContext:
    """A server context that speaks TLS 1.2 and nothing else (1.3, 1.1 and 1.0 refused at the
    handshake) and asks for a client certificate from ``cafile`` (required by default)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    context.verify_mode = ssl.CERT_REQUIRED if require_client_cert else ssl.CERT_OPTIONAL
    context.load_verify_locations(cafile=cafile)
    context.load_cert_chain(cert, key)
    return context


# --- the listener -----------------------------------------------------------------------------


class _ClientProtocol(asyncio.Protocol):
    """The asyncio side of one client connection: its TLS byte stream, fed to the core. Bytes
    that arrive while the handshake is finishing (before :meth:`attach`) are kept and fed then."""

    def __init__(self, server: MqttServer, conn_id: int, peer: str) -> None:
        self.server = server
        self.conn_id = conn_id
        self.peer = peer
        self.transport: asyncio.Transport | None = None
        self.log: ConnectionLog | None = None
        self.early: list[bytes] = []
        self.lost = False
        self.closing = False
        self.last_packet_real_s = 0.0
        self.closed = asyncio.Event()
        self.connected = asyncio.Event()  # set when CONNACK 0 goes out: keep-alive applies
        self.pending = bytearray()  # encoded packets not yet written
        self.causes: dict[int, str] = {}  # packet id of a PUBLISH sent for a cause -> cause

    def attach(self, transport: asyncio.Transport) -> None:
        self.transport = transport
        self.server._attached(self)
        for data in self.early:
            self.data_received(data)
        self.early.clear()

    def data_received(self, data: bytes) -> None:
        if self.log is None:
            self.early.append(data)
            return
        if self.closing:
            return
        server = self.server
        server.execute(server.core.data_received(self.conn_id, data, server.clock.now()))

    def eof_received(self) -> bool | None:
        return False  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        if self.lost:
            return
        self.lost = True
        self.closed.set()
        if self.log is not None:
            self.server._lost(self)


class MqttServer:
    """A TLS MQTT listener in front of one :class:`BrokerCore` (see the module docstring)."""

    def __init__(
        self,
        core: BrokerCore,
        clock: Clock,
        recorder: Recorder,
        ssl_context: ssl.SSLContext,
        *,
        identify: Identify,
        actor: str = "broker",
        listen: str = LOOPBACK,
        port: int = 0,
        connect_timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S,
        handshake_timeout_s: float = DEFAULT_HANDSHAKE_TIMEOUT_S,
        max_connections: int = 1_000,
        max_unsent_bytes: int = 8 * 1024 * 1024,
        packets_kept: int = 2_000,
        connections_kept: int = 2_000,
        log_entries_kept: int = 200_000,
        fault_log: FaultLog | None = None,
        watched: Watched | None = None,
    ) -> None:
        self.core = core
        self.clock = clock
        self.recorder = recorder
        self.ssl_context = ssl_context
        self.identify = identify
        self.actor = actor
        self.listen = listen
        self.port = port
        self.connect_timeout_s = connect_timeout_s
        self.handshake_timeout_s = handshake_timeout_s
        self.max_connections = max_connections
        self.max_unsent_bytes = max_unsent_bytes
        self.packets_kept = packets_kept
        self.faults = FaultPlan()
        self.fault_log = fault_log if fault_log is not None else FaultLog(actor)
        self.handshake_failures: deque[HandshakeFailure] = deque(maxlen=200)
        self.handshakes_failed = 0
        self.handshakes_failed_after_hello = 0  # the client had sent its ClientHello
        self.changed = StateChanges(clock)  # notified whenever a connection log changes
        self.evidence = MqttEvidence(recorder, clock, self.changed, actor)
        self._ids = itertools.count(1)
        self._live: dict[int, _ClientProtocol] = {}  # every accepted TCP connection not yet lost
        self._logs: dict[int, ConnectionLog] = {}  # the latest connections_kept
        self.connections_kept = connections_kept
        self.facts = RunFacts(watched) if watched is not None else RunFacts()
        self.log_entries_kept = log_entries_kept
        self._closed_kept = 0  # entries of the kept logs of connections no longer live
        self._server: asyncio.Server | None = None
        self.tasks = BackgroundTasks(self.fault_log)
        self.timers = DeadlineLoop(clock, core, self.execute)
        self._diverts: deque[MqttServer] = deque()

    @property
    def ambient_cause(self) -> str | None:
        """The cause of evidence no check caused (a client's own packets), when a check watches."""
        return self.evidence.ambient_cause

    @ambient_cause.setter
    def ambient_cause(self, cause: str | None) -> None:
        self.evidence.ambient_cause = cause

    # --- life cycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: _Accept(self), self.listen, self.port, reuse_address=True
        )
        self.port = self._server.sockets[0].getsockname()[1]
        self.tasks.spawn(self.timers.run(), "deadline loop")

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for conn in list(self._live.values()):
            if conn.transport is not None:
                conn.transport.abort()
        await self.tasks.cancel()
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 5)

    # --- diverting (any thread) -----------------------------------------------------------------

    def divert(self, targets: Iterable[MqttServer]) -> None:
        """Hand each of the next accepted TCP connections to the next of ``targets`` (listeners
        in this loop), before TLS: each upgrades it with its own context and records it."""
        self._diverts.extend(targets)

    def stop_diverting(self) -> int:
        """Forget the diverts not used yet; return how many there were."""
        left = len(self._diverts)
        self._diverts.clear()
        return left

    @property
    def diverts_pending(self) -> int:
        return len(self._diverts)

    # --- driving the core (in the loop) ---------------------------------------------------------

    def call(self, operation: Callable[[float], list[Action]]) -> list[Action]:
        """Run ``operation(now)`` on the core (simulated ``now``) and carry out its actions."""
        actions = operation(self.clock.now())
        self.execute(actions)
        return actions

    def execute(self, actions: Iterable[Action]) -> None:
        """Carry out the core's actions in order: record, write (one write per connection),
        close; then re-arm the deadline sleeper if the core's next deadline moved."""
        work = deque(actions)
        touched: dict[int, _ClientProtocol] = {}
        while work:
            action = work.popleft()
            if isinstance(action, Send):
                conn = self._live.get(action.conn_id)  # type: ignore[call-overload]
                if conn is None or conn.closing:
                    continue
                packet = action.packet
                fault = None
                if isinstance(packet, Publish) and packet.qos and not packet.dup:
                    fault = self._publish_fault(conn)
                    if fault is FaultKind.UNSENT:  # in flight for the core, never written
                        work.extend(self._drop_for(conn, packet, fault))
                        continue
                data = encode(packet)
                conn.pending += data
                touched[conn.conn_id] = conn
                self._packet(conn, "out", packet, len(data))
                if fault is FaultKind.DROP_BEFORE_ACK:
                    assert isinstance(packet, Publish)
                    work.extend(self._drop_for(conn, packet, fault))
                elif isinstance(packet, Connack) and packet.return_code == 0:
                    conn.connected.set()
            elif isinstance(action, Received):
                conn = self._live.get(action.conn_id)  # type: ignore[call-overload]
                if conn is not None:
                    conn.last_packet_real_s = self.clock.real()
                    self._packet(conn, "in", action.packet, wire_size(action.packet))
            elif isinstance(action, Close):
                conn = self._live.get(action.conn_id)  # type: ignore[call-overload]
                if conn is not None and not conn.closing:
                    self._flush(conn)
                    self._close(conn, action.reason)
            elif isinstance(action, Notice):
                self.evidence.notice(action)
        for conn in touched.values():
            self._flush(conn)
        self.timers.rearm()

    def _flush(self, conn: _ClientProtocol) -> None:
        if not conn.pending or conn.transport is None or conn.transport.is_closing():
            conn.pending.clear()
            return
        conn.transport.write(bytes(conn.pending))
        conn.pending.clear()
        if not conn.closing and conn.transport.get_write_buffer_size() > self.max_unsent_bytes:
            reason = f"the client reads nothing: over {self.max_unsent_bytes} bytes unsent"
            self.execute(self.core.drop_connection(conn.conn_id, self.clock.now(), reason))

    def _close(self, conn: _ClientProtocol, reason: str) -> None:
        conn.closing = True
        log = conn.log
        if log is not None and log.close_reason is None:
            with self.changed:  # the broker serves it no more: closed from now on
                log.close_reason = excerpt(reason, SUMMARY_KEPT)
                log.closed_real_s = self.clock.real()
                self.facts.closed(conn.conn_id, _tenant(log))
                self.changed.notify_all()
        self.evidence.event(self._peer(conn), "close", f"closed: {reason}")
        if conn.transport is not None:
            conn.transport.close()

    def _publish_fault(self, conn: _ClientProtocol) -> FaultKind | None:
        """The fault armed for the next QoS >= 1 PUBLISH to this client, if any."""
        log = conn.log
        client_id = log.connect.client_id if log is not None and log.connect else ""
        fault = self.faults.take(f"publish:{client_id}") or self.faults.take("publish")
        if fault is None:
            return None
        if fault.kind not in (FaultKind.DROP_BEFORE_ACK, FaultKind.UNSENT):
            raise ValueError(f"unknown publish fault {fault.kind!r}")
        return fault.kind

    def _drop_for(self, conn: _ClientProtocol, publish: Publish, fault: FaultKind) -> list[Action]:
        """Drop the connection for a PUBLISH fault: right after the PUBLISH (its PUBACK can
        never count), or instead of writing it (the client never sees it; the broker holds it
        in flight all the same). Either way it is resent with DUP = 1 when the session
        resumes."""
        what = (
            "right after PUBLISH id={id}, before its PUBACK"
            if fault is FaultKind.DROP_BEFORE_ACK
            else "before PUBLISH id={id} was written: the client never saw it"
        ).format(id=publish.packet_id)
        self.evidence.event(self._peer(conn), "fault", f"fault: connection dropped {what}")
        self._flush(conn)
        return self.core.drop_connection(
            conn.conn_id, self.clock.now(), f"injected fault: dropped {what}"
        )

    def _packet(
        self, conn: _ClientProtocol, direction: Direction, packet: Packet, size: int
    ) -> None:
        """Log one packet of ``conn`` and record it (:meth:`MqttEvidence.packet`)."""
        log = conn.log
        assert log is not None
        self.evidence.packet(log, conn.causes, direction, packet, size)
        kind = type(packet)
        if kind is Connect or kind is Connack or (kind is Publish and direction == "in"):
            with self.changed:
                self._tally(conn.conn_id, _tenant(log), packet)

    def _tally(self, conn_id: int, tenant: str | None, packet: Packet) -> None:
        """Count a CONNECT, a CONNACK 0 or a PUBLISH from the client in the run-wide facts."""
        facts = self.facts
        if isinstance(packet, Connect):
            will = packet.will.topic if packet.will is not None else None
            facts.connect(conn_id, tenant, packet.client_id, packet.clean_session, will)
        elif isinstance(packet, Connack):
            if packet.return_code == 0:
                facts.accepted(conn_id, tenant)
        elif isinstance(packet, Publish):
            facts.published(tenant, packet.topic)

    @staticmethod
    def _peer(conn: _ClientProtocol) -> str:
        return conn.log.who() if conn.log is not None else f"conn {conn.conn_id}"

    # --- queries (any thread) -------------------------------------------------------------------

    def connections(
        self, *, tenant: str | None = None, open_only: bool = False
    ) -> list[ConnectionView]:
        """Every connection kept (the latest ``connections_kept``), oldest first."""
        with self.changed:
            logs = list(self._logs.values())
            views = [log.view() for log in logs]
        return [v for v in views if tenant in (None, v.tenant) and (not open_only or v.open)]

    def connection_facts(self, tenant: str | None) -> ConnectionFacts:
        """What ``tenant``'s connections did over the whole run, every one counted (the log
        keeps the latest only): :mod:`simulators.mqtt.runfacts`."""
        with self.changed:
            return self.facts.of(tenant)

    def connection(self, conn_id: int) -> ConnectionView | None:
        with self.changed:
            log = self._logs.get(conn_id)
            return log.view() if log is not None else None

    def wait_for(self, predicate: Callable[[list[ConnectionView]], T], timeout: float) -> T:
        """Block (outside the loop) until ``predicate(connections())`` is truthy or ``timeout``
        real seconds pass; return its last value (:meth:`StateChanges.wait_for`)."""
        return self.changed.wait_for(lambda: predicate(self.connections()), timeout)

    async def until(self, predicate: Callable[[list[ConnectionView]], T], timeout: float) -> T:
        """:meth:`wait_for` for code running in the loop."""
        return await asyncio.to_thread(self.wait_for, predicate, timeout)

    # --- connection life cycle ----------------------------------------------------------------

    def _accepted(self, transport: asyncio.Transport) -> None:
        """A bare TCP connection: upgrade it to TLS in a task (bytes wait in the kernel)."""
        transport.pause_reading()
        self.tasks.spawn(self._admit(transport), "TLS handshake")

    async def _admit(self, transport: asyncio.Transport, hello: bool | None = None) -> None:
        """Hand the connection to a pending diversion once it has begun TLS (a bare connect,
        as a port check makes, is no client meeting the impostor), else upgrade it here."""
        peername = transport.get_extra_info("peername")
        peer = f"{peername[0]}:{peername[1]}" if peername else "?"
        if hello is None:
            hello = await _client_hello(transport, self.clock, self.handshake_timeout_s)
        if hello and self._diverts:
            target = self._diverts.popleft()
            self.evidence.event(
                peer,
                "diverted",
                f"connection handed to {target.actor} (its certificate, its records)",
            )
            await target._admit(transport, hello)
            return
        if len(self._live) >= self.max_connections:
            self.evidence.event(peer, "refused", f"over {self.max_connections} connections")
            transport.abort()
            return
        conn = _ClientProtocol(self, next(self._ids), peer)
        self._live[conn.conn_id] = conn
        await self._handshake(conn, transport, hello)

    async def _handshake(self, conn: _ClientProtocol, raw: asyncio.Transport, hello: bool) -> None:
        loop = asyncio.get_running_loop()
        try:
            transport = await loop.start_tls(
                raw,
                conn,
                self.ssl_context,
                server_side=True,
                ssl_handshake_timeout=self.handshake_timeout_s,
                ssl_shutdown_timeout=SHUTDOWN_TIMEOUT_S,
            )
        except (OSError, TimeoutError, ConnectionError, ValueError) as exc:
            self._live.pop(conn.conn_id, None)
            raw.abort()
            reason = _handshake_reason(exc)
            self.handshakes_failed += 1
            self.handshakes_failed_after_hello += hello
            with self.changed:
                self.handshake_failures.append(
                    HandshakeFailure(self.clock.real(), conn.peer, reason, hello)
                )
                self.changed.notify_all()
            self.evidence.event(conn.peer, "tls-refused", f"TLS handshake failed: {reason}")
            return
        if transport is None or conn.lost:
            self._live.pop(conn.conn_id, None)
            return
        conn.attach(transport)
        self.tasks.spawn(self._watch(conn), "keep-alive watch")

    def _attached(self, conn: _ClientProtocol) -> None:
        assert conn.transport is not None
        ssl_object = conn.transport.get_extra_info("ssl_object")
        identity = self.identify(ssl_object)
        real, sim = self.clock.readings()
        log = ConnectionLog(
            conn.conn_id, conn.peer, identity, real, sim, deque(maxlen=self.packets_kept)
        )
        with self.changed:
            self._logs[conn.conn_id] = log
            self._trim_logs()
            self.changed.notify_all()
        conn.log = log
        conn.last_packet_real_s = real
        version = ssl_object.version() if ssl_object is not None else "?"
        who = f"{identity.email} (tenant {identity.tenant})" if identity else "an unknown identity"
        self.evidence.event(conn.peer, "tls", f"{version} connection from {who}", conn=conn.conn_id)
        self.core.connection_made(conn.conn_id, identity, self.clock.now())

    def _trim_logs(self) -> None:
        """Forget the oldest logs past ``connections_kept``, then the oldest closed ones while
        the logs together keep more than ``log_entries_kept`` entries (packets, subscriptions:
        :attr:`ConnectionLog.kept`), so a client that churns connections or floods one cannot
        grow the packet log without bound. A closed connection's log no longer changes: its
        entries are counted once, when it closes (:attr:`_closed_kept`), so a trim costs the
        open connections only. Under ``changed``."""
        logs = self._logs
        while len(logs) > self.connections_kept:
            self._forget(next(iter(logs)))
        budget = self.log_entries_kept
        total = self._closed_kept + sum(logs[c].kept for c in self._live if c in logs)
        if total <= budget:
            return
        for conn_id in list(logs):  # oldest first
            if total <= budget:
                break
            if conn_id not in self._live:
                total -= logs[conn_id].kept
                self._forget(conn_id)

    def _forget(self, conn_id: int) -> None:
        log = self._logs.pop(conn_id)
        if conn_id not in self._live:
            self._closed_kept -= log.kept

    def _lost(self, conn: _ClientProtocol) -> None:
        self._live.pop(conn.conn_id, None)
        log = conn.log
        assert log is not None
        with self.changed:
            if log.closed_real_s is None:
                log.closed_real_s = self.clock.real()
            if log.close_reason is None:
                log.close_reason = CLOSED_BY_CLIENT
            self.facts.closed(conn.conn_id, _tenant(log))
            if conn.conn_id in self._logs:  # its log changes no more: counted once, now
                self._closed_kept += log.kept
            self._trim_logs()
            self.changed.notify_all()
        if not conn.closing:
            self.recorder.record(
                self._peer(conn),
                "->",
                self.actor,
                "close",
                "the client closed the connection",
                cause=self.evidence.cause(),
            )
        conn.closing = True
        self.execute(self.core.connection_lost(conn.conn_id, self.clock.now()))

    async def _watch(self, conn: _ClientProtocol) -> None:
        """Real-time rules: CONNECT within connect_timeout_s; then a packet within 1.5 × the
        keep-alive (MQTT-3.1.2-24). Never the simulated clock. The watch ends as soon as the
        connection is lost, whatever its keep-alive: a closed connection is not kept alive
        for 1.5 × 65,535 s by the task that watches it."""
        connect_by = self.clock.real() + self.connect_timeout_s
        while not conn.lost and not conn.closing:
            keepalive = self.core.keepalive_s(conn.conn_id)
            if keepalive is None:  # not connected yet
                deadline, reason = connect_by, f"no CONNECT within {self.connect_timeout_s} s"
            elif keepalive == 0:
                await conn.closed.wait()
                return
            else:
                limit = KEEPALIVE_FACTOR * keepalive
                deadline = conn.last_packet_real_s + limit
                reason = f"keep-alive: nothing received for {limit:g} s (1.5 x {keepalive} s, MQTT-3.1.2-24)"
            remaining = deadline - self.clock.real()
            if remaining <= 0:
                self.execute(self.core.drop_connection(conn.conn_id, self.clock.now(), reason))
                return
            # Wake at the deadline, when the connection is lost, or (before CONNACK) as soon as
            # keep-alive applies.
            waiters = [
                asyncio.ensure_future(self.clock.sleep_real(remaining)),
                asyncio.ensure_future(conn.closed.wait()),
            ]
            if keepalive is None:
                waiters.append(asyncio.ensure_future(conn.connected.wait()))
            try:
                await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for waiter in waiters:
                    waiter.cancel()


class _Accept(asyncio.Protocol):
    """The bare TCP phase: hand the transport over and let the TLS upgrade take it."""

    def __init__(self, server: MqttServer) -> None:
        self.server = server

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.server._accepted(transport)


def _handshake_reason(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "no TLS handshake in time"
    if isinstance(exc, ssl.SSLError) and exc.reason:
        return f"{exc.reason} ({exc.library or 'ssl'})"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


TLS_HANDSHAKE_RECORD = 0x16  # the content type of a TLS record carrying a ClientHello


async def _client_hello(raw: asyncio.Transport, clock: Clock, timeout: float) -> bool:
    """Whether the client's first bytes are a TLS handshake record (its ClientHello), peeked on
    a duplicate of the socket and left for the TLS layer, waiting for them at most ``timeout``
    (real seconds, polled: the transport owns the socket's reader). A port check connects and
    closes without sending any: its end refuses no certificate."""
    sock = raw.get_extra_info("socket")
    if sock is None:
        return True  # nothing to peek at: count the handshake as the client's
    waited, step = 0.0, 0.002
    with socket.socket(fileno=os.dup(sock.fileno())) as peek:
        peek.setblocking(False)
        while True:
            try:
                return peek.recv(1, socket.MSG_PEEK) == bytes([TLS_HANDSHAKE_RECORD])
            except BlockingIOError:
                pass
            except OSError:
                return False
            if waited >= timeout:
                return False
            await clock.sleep_real(step)
            waited, step = waited + step, min(step * 2, 0.25)


def _tenant(log: ConnectionLog) -> str | None:
    return log.identity.tenant if log.identity is not None else None
