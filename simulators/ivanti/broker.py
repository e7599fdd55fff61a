"""The simulated Ivanti Event Notification Service broker: tenants, identities, the MQTT
listener over mutual TLS 1.2, events, faults and impostor brokers.

The vendor's rules (quoted in :class:`simulators.mqtt.policy.BrokerPolicy`, whose defaults they
are) run in the generic core; this module adds what is Ivanti's:

- "MQTT protocol enabled by Ivanti EPMM for CPS events only supports TLS 1.2." and
  "certificate-based authentication on every connection": the listener speaks TLS 1.2 only and
  requires a client certificate from the tenant CA (the simulators' CA). The certificate's
  e-mail (rfc822Name) is the login email; the tenant is the one that login belongs to. A
  certificate whose email no tenant knows gets CONNACK 5 (not authorized); an MQTT user name, if
  sent, must be that email (CONNACK 4 otherwise).
- Topics are the tenant's (:func:`simulators.ivanti.events.topics`): a subscription to anything
  else gets SUBACK 0x80. Wildcards are accepted when they stay inside the tenant's topics
  (``<tenant>/device/#``).
- "Partner connection and communication with a message broker as a subscriber": a subscriber's
  PUBLISH is acknowledged, not forwarded, and recorded (``publish-refused``). Each tenant also has
  an **event source** identity, the vendor side, which may publish to the tenant's topics over
  MQTT (the benchmark publishes that way); the suite publishes through :meth:`IvantiBroker.publish`.

Impostor brokers (:class:`Impostor`) are separate listeners presenting a certificate a careful
client must refuse (unknown CA, expired, wrong host name); each records whether any MQTT CONNECT
reached it, and answers it CONNACK 5 (not authorized), so a careless client tries again.
:meth:`IvantiBroker.present_impostors` makes the broker's own address hand its next connections
to impostors, so a client configured with the real address meets them too.
"""

from __future__ import annotations

import json
import ssl
import threading
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Any, Final, Literal

from simulators.clock import Clock
from simulators.evidence import Recorder
from simulators.faultlog import FaultLog
from simulators.faults import FaultKind
from simulators.ivanti.events import (
    EVENT_TYPES,
    DeviceEvent,
    EventGenerator,
    Fleet,
    TopicStyle,
    event_key,
    topics,
)
from simulators.mqtt.actions import Action, Notice, NoticeKind, Send
from simulators.mqtt.core import BrokerCore
from simulators.mqtt.packetlog import ConnectionView
from simulators.mqtt.packets import CONNACK_NOT_AUTHORIZED, CONNACK_SERVER_UNAVAILABLE, Publish
from simulators.mqtt.policy import BrokerPolicy, Identity
from simulators.mqtt.runfacts import ConnectionFacts
from simulators.mqtt.server import MqttServer, tls12_server_context
from simulators.mqtt.sessions import SessionView
from simulators.mqtt.topics import topic_filter_problem, topic_matches
from simulators.network import LOCAL, Reach
from simulators.pki import PKI, CertFiles

__all__ = [
    "ACTOR",
    "EVENT_SOURCE",
    "Impostor",
    "ImpostorKind",
    "IvantiBroker",
    "Login",
    "Published",
    "Tenant",
    "tenant_id_for",
]

ACTOR = "ivanti-broker"
EVENT_SOURCE = "event-source"  # the role (and identity name) allowed to publish events
ImpostorKind = Literal["unknown-ca", "expired", "wrong-host"]
IMPOSTOR_KINDS: Final[tuple[ImpostorKind, ...]] = ("unknown-ca", "expired", "wrong-host")
Role = Literal["subscriber", "event-source"]


def tenant_id_for(name: str) -> str:
    """A tenant GUID that stays the same from run to run for the same name (a deployed SUT
    configured once keeps working)."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"conformance-ivanti-tenant:{name}"))


@dataclass(frozen=True)
class Tenant:
    """One tenant: its GUID, its topic style, and its topics (event type → topic)."""

    name: str
    tenant_id: str
    style: TopicStyle
    topics: dict[str, str]

    def topic(self, event_type: str) -> str:
        try:
            return self.topics[event_type]
        except KeyError:
            raise ValueError(
                f"unknown event type {event_type!r} (known: {', '.join(self.topics)})"
            ) from None

    @property
    def prefix(self) -> str:
        return f"{self.tenant_id}/" if self.style == "neurons" else ""


@dataclass(frozen=True)
class Login:
    """A login email bound to a client certificate, in one tenant."""

    email: str
    tenant: Tenant
    role: Role
    cert: CertFiles


@dataclass(frozen=True)
class Published:
    """What :meth:`IvantiBroker.publish` sent, and what the broker did with it at once."""

    tenant_id: str
    topic: str
    payload: bytes
    message: Any  # the payload as JSON, None when it is not JSON
    key: str | None  # :func:`event_key` of (topic, message): ties observer records to it
    qos: int
    sim_s: float
    real_s: float
    delivered_to: tuple[str, ...]  # client ids sent a PUBLISH now
    kept_for: tuple[str, ...]  # offline durable sessions it is queued for
    dropped: bool  # nobody could take it

    @property
    def event_type(self) -> str | None:
        message = self.message
        value = message.get("eventType") if isinstance(message, dict) else None
        return value if isinstance(value, str) else None


@dataclass
class Impostor:
    """A listener a careful client must refuse: ``kind`` says what is wrong with its
    certificate. :attr:`connect_received` is whether any MQTT CONNECT arrived (IVT-TLS-03)."""

    kind: ImpostorKind
    server: MqttServer
    host: str  # the advertised name a client is handed

    @property
    def port(self) -> int:
        return self.server.port

    @property
    def connect_received(self) -> bool:
        return any(c.received("CONNECT") for c in self.server.connections())

    @property
    def handshakes_refused(self) -> int:
        """TLS handshakes the client began (it sent its ClientHello) and that failed: it
        refused the certificate, most likely. A bare TCP connect refuses nothing."""
        return self.server.handshakes_failed_after_hello

    def connections(self) -> list[ConnectionView]:
        return self.server.connections()


@dataclass
class _Directory:
    """Tenants and logins, by name, GUID and email (changed from any thread, under a lock)."""

    pki: PKI
    lock: threading.Lock = field(default_factory=threading.Lock)
    tenants: dict[str, Tenant] = field(default_factory=dict)  # by GUID
    by_name: dict[str, Tenant] = field(default_factory=dict)
    logins: dict[str, Login] = field(default_factory=dict)  # by email


class IvantiBroker:
    """The broker and its Python API (every coroutine runs in the broker's event loop; the
    read-only queries may be called from any thread)."""

    def __init__(
        self,
        clock: Clock,
        recorder: Recorder,
        pki: PKI,
        *,
        port: int = 0,
        policy: BrokerPolicy | None = None,
        epoch_ms: int = 1_700_000_000_000,
        fault_log: FaultLog | None = None,
        impostors: bool = True,
        reach: Reach = LOCAL,
    ) -> None:
        self.clock = clock
        self.reach = reach
        self.recorder = recorder
        self.pki = pki
        self.epoch_ms = epoch_ms  # wall time (ms) at simulated time 0: event timestamps
        self.fault_log = fault_log if fault_log is not None else FaultLog(ACTOR)
        self._directory = _Directory(pki)
        base = policy if policy is not None else BrokerPolicy()
        self.policy = replace(
            base, may_subscribe=self._may_subscribe, may_publish=self._may_publish
        )
        self.core = BrokerCore(self.policy)
        context = tls12_server_context(
            str(pki.server.cert), str(pki.server.key), str(pki.ca), require_client_cert=True
        )
        self.server = MqttServer(
            self.core,
            clock,
            recorder,
            context,
            identify=self._identify,
            actor=ACTOR,
            listen=reach.listen,
            port=port,
            fault_log=self.fault_log,
            watched=self._is_event_topic,
        )
        self.impostors: dict[ImpostorKind, Impostor] = {}
        if impostors:
            for kind in IMPOSTOR_KINDS:
                self.impostors[kind] = Impostor(kind, self._impostor_server(kind), reach.advertise)
        self.fleets: dict[str, Fleet] = {}
        self.generators: dict[str, EventGenerator] = {}

    # --- life cycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        await self.server.start()
        for impostor in self.impostors.values():
            await impostor.server.start()
        self.recorder.record(
            ACTOR,
            "--",
            "broker",
            "start",
            f"listening on {self.reach.listen}:{self.port} (TLS 1.2, client certificates); duplicate "
            f"client ids: {self.policy.duplicate_client_id}; impostors: "
            + ", ".join(f"{k} :{i.port}" for k, i in self.impostors.items()),
        )

    async def stop(self) -> None:
        for impostor in self.impostors.values():
            await impostor.server.stop()
        await self.server.stop()

    @property
    def host(self) -> str:
        """The name a SUT is handed (``--advertise``)."""
        return self.reach.advertise

    @property
    def port(self) -> int:
        return self.server.port

    # --- tenants and identities (any thread) --------------------------------------------------

    def add_tenant(self, name: str, style: TopicStyle = "neurons") -> Tenant:
        """A tenant called ``name`` (its GUID is stable: :func:`tenant_id_for`), with an event
        source identity. Adding the same name again returns the existing tenant."""
        if style not in ("neurons", "epmm"):
            raise ValueError(f"topic style is 'neurons' or 'epmm', not {style!r}")
        directory = self._directory
        with directory.lock:
            existing = directory.by_name.get(name)
        if existing is not None:
            if existing.style != style:
                raise ValueError(f"tenant {name!r} exists with topic style {existing.style!r}")
            return existing
        tenant_id = tenant_id_for(name)
        tenant = Tenant(name, tenant_id, style, topics(tenant_id, style))
        with directory.lock:
            directory.tenants[tenant_id] = tenant
            directory.by_name[name] = tenant
        self.fleets[tenant_id] = Fleet(tenant_id, epoch_ms=self.wall_ms())
        self.generators[tenant_id] = EventGenerator(self.fleets[tenant_id])
        self.login(tenant, EVENT_SOURCE, role="event-source")
        return tenant

    def tenant(self, name_or_id: str) -> Tenant:
        with self._directory.lock:
            found = self._directory.tenants.get(name_or_id) or self._directory.by_name.get(
                name_or_id
            )
        if found is None:
            raise KeyError(f"no tenant {name_or_id!r}")
        return found

    def tenants(self) -> list[Tenant]:
        with self._directory.lock:
            return list(self._directory.tenants.values())

    def login(self, tenant: Tenant, name: str, *, role: Role = "subscriber") -> Login:
        """The identity certificate ``name`` of ``tenant`` (made once, kept in the PKI folder),
        whose email is the login: ``<name>@<tenant name>.ivanti.test``."""
        email = f"{name}@{tenant.name}.ivanti.test"
        files = self.pki.client_identity(f"ivanti-{tenant.name}-{name}", email)
        login = Login(email, tenant, role, files)
        with self._directory.lock:
            self._directory.logins[email] = login
        return login

    def event_source(self, tenant: Tenant) -> Login:
        """The vendor-side identity allowed to publish ``tenant``'s events over MQTT."""
        return self.login(tenant, EVENT_SOURCE, role="event-source")

    def login_by_email(self, email: str) -> Login | None:
        with self._directory.lock:
            return self._directory.logins.get(email)

    def login_for(self, cert: dict[str, Any] | None) -> Login | None:
        """The login a verified peer certificate (``getpeercert()``) belongs to."""
        for email in _emails(cert):
            if (login := self.login_by_email(email)) is not None:
                return login
        return None

    def _identify(self, ssl_object: ssl.SSLObject | None) -> Identity | None:
        cert = ssl_object.getpeercert() if ssl_object is not None else None
        login = self.login_for(cert)
        return Identity(login.tenant.tenant_id, login.email) if login is not None else None

    def _may_subscribe(self, identity: Identity, topic_filter: str) -> bool:
        tenant = self._directory.tenants.get(identity.tenant)
        if tenant is None or topic_filter_problem(topic_filter):
            return False
        if tenant.style == "neurons" and topic_filter.split("/", 1)[0] != tenant.tenant_id:
            return False  # a wildcard first level would reach past the tenant's prefix
        return any(topic_matches(topic_filter, t) for t in tenant.topics.values())

    def _is_event_topic(self, tenant_id: str | None, topic: str) -> bool:
        """Whether ``topic`` is one of ``tenant_id``'s event topics (IVT-PUB-01 watches them)."""
        tenant = self._directory.tenants.get(tenant_id) if tenant_id is not None else None
        return tenant is not None and topic in tenant.topics.values()

    def _may_publish(self, identity: Identity, topic: str) -> bool:
        login = self.login_by_email(identity.email)
        return (
            login is not None
            and login.role == "event-source"
            and topic in login.tenant.topics.values()
        )

    # --- events (in the loop) -----------------------------------------------------------------

    def wall_ms(self) -> int:
        """The vendor's wall clock in epoch milliseconds: it follows simulated time."""
        return self.epoch_ms + round(self.clock.now() * 1000)

    def make_event(self, tenant: Tenant, event_type: str | None = None) -> tuple[str, DeviceEvent]:
        """A realistic event (random type unless given) about one of the tenant's devices."""
        return self.generators[tenant.tenant_id].next(self.wall_ms(), event_type)

    async def publish(
        self,
        tenant: Tenant,
        event: str | DeviceEvent | None = None,
        payload: bytes | dict[str, Any] | None = None,
        *,
        topic: str | None = None,
        qos: int = 1,
    ) -> Published:
        """Publish one event to ``tenant``'s subscribers, as the vendor does.

        ``event`` is an event type (``"device_check_in"``; a realistic payload is made unless
        ``payload`` is given), a :class:`DeviceEvent`, or None (a random type). ``payload`` may be
        any bytes (malformed ones too) or a JSON object. ``topic`` overrides the event type's
        topic (it must still be a valid topic name)."""
        event_type: str | None = None
        if isinstance(event, DeviceEvent):
            body: bytes = event.to_wire()
            event_type = _event_type_of(event.eventType)
        else:
            event_type = event
            if payload is None:
                event_type, made = self.make_event(tenant, event_type)
                body = made.to_wire()
            elif isinstance(payload, bytes):
                body = payload
            else:
                body = json.dumps(payload, separators=(",", ":")).encode()
        if topic is None:
            if event_type is None:
                raise ValueError("give an event type or a topic")
            topic = tenant.topic(event_type)
        try:
            message = json.loads(body)
        except (ValueError, RecursionError):
            message = None
        key = (event_key(topic, message) or None) if message is not None else None
        if key is not None:
            self.recorder.remember_cause(key)
        self.server.evidence.remember_publisher(topic, body)
        real, sim = self.clock.readings()
        self.recorder.record(
            ACTOR,
            "--",
            tenant.name,
            "event",
            f"event {event_type or '?'} on {topic} ({len(body)} B, QoS {qos})",
            topic=topic,
            size=len(body),
            key=key,
        )
        actions = self.server.call(
            lambda now: self.core.publish(topic, body, now, qos, tenant=tenant.tenant_id)
        )
        delivered = tuple(self._client_ids(actions))
        kept: tuple[str, ...] = ()
        dropped = False
        for action in actions:
            if isinstance(action, Notice) and action.kind is NoticeKind.MESSAGE_KEPT:
                sessions = action.detail.get("sessions", ())
                kept = tuple(str(s) for s in sessions) if isinstance(sessions, list) else ()
            if isinstance(action, Notice) and action.kind is NoticeKind.MESSAGE_DROPPED:
                dropped = True
        return Published(
            tenant.tenant_id, topic, body, message, key, qos, sim, real, delivered, kept, dropped
        )

    def _client_ids(self, actions: Iterable[Action]) -> Iterable[str]:
        ids = {a.conn_id for a in actions if isinstance(a, Send) and isinstance(a.packet, Publish)}
        for conn_id in sorted(ids, key=str):
            view = self.server.connection(conn_id)  # type: ignore[arg-type]
            if view is not None and view.client_id is not None:
                yield view.client_id

    async def generate(
        self, tenant: Tenant, events_per_s: float, event_types: Iterable[str] = EVENT_TYPES
    ) -> None:
        """Publish realistic events to ``tenant`` about ``events_per_s`` times a real second
        (the vendor's own activity keeps real pace; a jump of simulated time does not flood)."""
        if events_per_s <= 0:
            return
        kinds = tuple(event_types)
        generator = self.generators[tenant.tenant_id]
        while True:
            await self.clock.sleep_real(1.0 / events_per_s)
            await self.publish(tenant, generator.pick(kinds))

    # --- faults and session control (in the loop) ---------------------------------------------

    async def hold_offline(
        self,
        client_id: str,
        duration_sim_s: float,
        *,
        tenant: Tenant | None = None,
        return_code: int = CONNACK_SERVER_UNAVAILABLE,
    ) -> None:
        """Disconnect ``client_id`` and refuse its reconnects (CONNACK ``return_code``) for
        ``duration_sim_s`` simulated seconds; advance the clock to end it early in real time."""
        until = self.clock.now() + duration_sim_s
        self.server.call(
            lambda now: self.core.hold_offline(
                client_id, until, now, tenant=_tid(tenant), return_code=return_code
            )
        )

    async def release(self, client_id: str, *, tenant: Tenant | None = None) -> None:
        """End :meth:`hold_offline` now."""
        self.core.faults.release(client_id, tenant=_tid(tenant))

    async def disconnect(
        self, client_id: str, *, tenant: Tenant | None = None, reason: str = "dropped by the broker"
    ) -> None:
        """Close ``client_id``'s live connection as a network failure would."""
        self.server.call(
            lambda now: self.core.disconnect(client_id, now, reason, tenant=_tid(tenant))
        )

    async def redeliver(self, client_id: str, *, tenant: Tenant | None = None) -> None:
        """Resend every unacknowledged PUBLISH of ``client_id`` now, DUP = 1, same packet id."""
        self.server.call(
            lambda now: self.core.redeliver_inflight(client_id, now, tenant=_tid(tenant))
        )

    async def duplicate_next(
        self, client_id: str, *, tenant: Tenant | None = None, times: int = 1
    ) -> None:
        """Send each of the next ``times`` PUBLISHes to ``client_id`` twice (the copy DUP = 1)."""
        self.core.faults.duplicate_next_delivery(client_id, tenant=_tid(tenant), times=times)

    async def lose_next_pubacks(
        self, client_id: str, *, tenant: Tenant | None = None, times: int = 1
    ) -> None:
        """Do not count the next ``times`` PUBACKs of ``client_id`` (lost on the way)."""
        self.core.faults.lose_next_pubacks(client_id, tenant=_tid(tenant), times=times)

    async def refuse_next_connects(
        self,
        count: int,
        *,
        tenant: Tenant | None = None,
        return_code: int = CONNACK_SERVER_UNAVAILABLE,
    ) -> None:
        """Refuse the next ``count`` CONNECTs (of ``tenant``) with ``return_code``."""
        self.core.faults.refuse_next_connects(count, return_code, tenant=_tid(tenant))

    async def begin_outage(
        self, *, tenant: Tenant | None = None, return_code: int = CONNACK_SERVER_UNAVAILABLE
    ) -> None:
        """Refuse every CONNECT (of ``tenant``) with ``return_code`` until :meth:`end_outage`,
        whatever its client id; live connections stay (drop them with :meth:`disconnect`)."""
        self.core.faults.begin_outage(return_code, tenant=_tid(tenant))

    async def end_outage(self, *, tenant: Tenant | None = None) -> None:
        self.core.faults.end_outage(tenant=_tid(tenant))

    def present_impostors(self, kinds: Iterable[ImpostorKind]) -> None:
        """Hand the next TCP connections to the broker's address to these impostors, one each,
        in order (thread-safe): a client meets their certificates where it expects the broker."""
        self.server.divert(self.impostors[kind].server for kind in kinds)

    def stop_impostors(self) -> int:
        """Forget the impostor hand-overs not used yet; return how many there were."""
        return self.server.stop_diverting()

    def drop_before_puback(
        self,
        client_id: str | None = None,
        *,
        times: int = 1,
        kind: FaultKind = FaultKind.DROP_BEFORE_ACK,
    ) -> None:
        """Close the connection right after the next ``times`` QoS 1 PUBLISHes to ``client_id``
        (any client if None), before a PUBACK can count; with ``FaultKind.UNSENT``, instead of
        writing them (the client first sees them resent with DUP = 1). Thread-safe."""
        target = "publish" if client_id is None else f"publish:{client_id}"
        self.server.faults.add(target, kind, times=times)

    # --- queries ------------------------------------------------------------------------------

    def connections(
        self, tenant: Tenant | None = None, *, open_only: bool = False
    ) -> list[ConnectionView]:
        """Every connection (of ``tenant``) with its packet log; any thread."""
        return self.server.connections(tenant=_tid(tenant), open_only=open_only)

    def connection_facts(self, tenant: Tenant) -> ConnectionFacts:
        """What ``tenant``'s connections did over the whole run, every connection counted (the
        packet log keeps the latest ones only); any thread."""
        return self.server.connection_facts(tenant.tenant_id)

    def wait_for(self, predicate: Callable[[list[ConnectionView]], Any], timeout: float) -> Any:
        """Block (outside the loop) until ``predicate(connections())`` holds or time runs out."""
        return self.server.wait_for(predicate, timeout)

    async def sessions(self, tenant: Tenant | None = None) -> list[SessionView]:
        """Every session the broker keeps (of ``tenant``): subscriptions, in flight, queued."""
        return self.core.session_views(_tid(tenant))

    def connection_count(self, tenant: Tenant) -> int:
        """Live (accepted, not closed) connections of ``tenant``."""
        return sum(1 for c in self.connections(tenant, open_only=True) if c.accepted)

    # --- impostors ----------------------------------------------------------------------------

    def _impostor_server(self, kind: ImpostorKind) -> MqttServer:
        files = {
            "unknown-ca": self.pki.impostor_server,
            "expired": self.pki.expired_server,
            "wrong-host": self.pki.wrong_host_server,
        }[kind]
        context = tls12_server_context(
            str(files.cert), str(files.key), str(self.pki.ca), require_client_cert=False
        )

        def anyone(ssl_object: ssl.SSLObject | None) -> Identity:
            cert = ssl_object.getpeercert() if ssl_object is not None else None
            emails = _emails(cert)
            return Identity(f"impostor-{kind}", emails[0] if emails else "anonymous")

        core = BrokerCore(BrokerPolicy(max_connections_per_tenant=1_000))
        core.faults.begin_outage(CONNACK_NOT_AUTHORIZED)  # record the CONNECT, admit nobody
        return MqttServer(
            core,
            self.clock,
            self.recorder,
            context,
            identify=anyone,
            actor=f"{ACTOR}-impostor-{kind}",
            listen=self.reach.listen,
            fault_log=self.fault_log,
            max_connections=100,
        )


def _emails(cert: dict[str, Any] | None) -> list[str]:
    """The rfc822Name SANs of a ``getpeercert()`` dict, then any subject emailAddress."""
    if not cert:
        return []
    found = [value for kind, value in cert.get("subjectAltName", ()) if kind == "email"]
    for rdn in cert.get("subject", ()):
        found += [value for key, value in rdn if key == "emailAddress"]
    return found


def _tid(tenant: Tenant | None) -> str | None:
    return tenant.tenant_id if tenant is not None else None


def _event_type_of(dotted: str) -> str | None:
    for name, topic in EVENT_TYPES.items():
        if topic.replace("/", ".") == dotted:
            return name
    return None
