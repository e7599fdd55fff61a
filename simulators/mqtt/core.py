"""An MQTT 3.1.1 broker without I/O: sessions, delivery, retention and faults.

Theory of operation
===================

One :class:`BrokerCore` holds every connection and session of one simulated broker. It never
reads a clock and never touches a socket (h11's rule): the adapter calls in with bytes and
``now`` (simulated seconds) and carries out the returned actions, in order:

- :class:`Received` - a packet decoded from the client (record it as evidence);
- :class:`Send` - encode the packet, write it, record it;
- :class:`Close` - flush what was sent, then close the connection;
- :class:`Notice` - a decision worth recording that is not a packet (refusal, take-over,
  expiry, purge, drop, malformed input).

The adapter also calls :meth:`BrokerCore.handle_timeout` when :meth:`BrokerCore.next_deadline`
is reached, or sooner (message expiry, optional in-session redelivery: only what is due is
done), and :meth:`BrokerCore.connection_lost` when a socket closes, whoever closed it.
Keep-alive (MQTT-3.1.2-24: silent for 1.5 × keep-alive → disconnect) is the adapter's, in real
time: the core records ``keepalive_s`` and nothing more, because a jump of simulated time must
never disconnect a client that is keeping up.

Connections::

    AWAITING_CONNECT --CONNECT accepted (CONNACK 0)--> CONNECTED --DISCONNECT, error, take-over,
           |                                                       fault, lost--> CLOSED
           +--any other packet (MQTT-3.1.0-1), CONNACK refusal, malformed bytes--> CLOSED

A refused CONNECT leaves nothing behind: no session, no connection count (MQTT-3.1.4-5: nothing
after it is processed). Sessions are keyed by (tenant, client id), so one tenant can neither
take over nor resume another tenant's session. Clean session = 1 discards the session when the
connection ends (MQTT-3.1.2-6); clean session = 0 keeps subscriptions, unacknowledged PUBLISHes
and the queue, and on reconnect CONNACK says session present (MQTT-3.2.2-2) and every
unacknowledged PUBLISH is resent first, with DUP = 1 and its packet id, in the original order
(MQTT-4.4.0-1, MQTT-3.3.1-1, MQTT-4.6.0-1), then the queue.

Messages follow the vendor rules (:class:`BrokerPolicy` quotes them):

- "All MQTT clients maintaining an active subscription when MQTT sends the message receive the
  message." A message with at least one connected matching session goes to the connected ones.
- "If no active consumers are available at the instant message is published to the messaging
  server, the message would be retained in the system for a maximum duration of 3 hours before
  it either gets consumed by a re-connecting durable subscriber or gets evacuated out of the
  system". With no connected match it is queued for every matching durable session (clean
  session = 0, granted QoS >= 1) until ``published_at + retention_s``, then dropped with a
  notice.
- "The system purges the message after delivery, even if the message is consumed by only one
  active client that acknowledges receipt with a PUBACK command." The first PUBACK for a message
  removes it from every queue. Copies already sent stay in flight until acknowledged: their
  packet ids cannot be reused before that (MQTT-2.3.1-4), and MQTT-4.4.0-1 still applies.

``purge_after_first_puback=False`` gives standard MQTT instead: every matching session gets its
own copy, connected or not (MQTT-3.1.2-5). In both, a message is delivered at
min(published QoS, granted QoS) (MQTT-3.8.4-6) and never with RETAIN = 1 (MQTT-3.3.1-9): the
vendor's "retained in the system" is this queue, not the MQTT retained-message store, which
this broker does not keep. Memory is bounded by the policy whatever clients do: connections
and sessions per tenant, subscriptions per session, filter and client id lengths, in-flight
window, queue length, packet size.

Where the parts live: :mod:`~simulators.mqtt.policy` (the rules), :mod:`~simulators.mqtt.actions`
(what the adapter carries out), :mod:`~simulators.mqtt.sessions` (the state),
:mod:`~simulators.mqtt.admission` (CONNECT and SUBSCRIBE decisions),
:mod:`~simulators.mqtt.delivery` (messages, queues, timers) and
:mod:`~simulators.mqtt.injected_faults` (faults a test arms, :attr:`BrokerCore.faults`). This
module ties them to the packets.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

from simulators.mqtt.actions import (
    Action,
    Close,
    ConnectionId,
    Notice,
    NoticeKind,
    Received,
    Send,
)
from simulators.mqtt.admission import Admission, Refused
from simulators.mqtt.codec import Decoder, MalformedPacket
from simulators.mqtt.delivery import Delivery
from simulators.mqtt.injected_faults import InjectedFaults
from simulators.mqtt.packets import (
    CONNACK_ACCEPTED,
    CONNACK_SERVER_UNAVAILABLE,
    SUBACK_FAILURE,
    Connack,
    Connect,
    Disconnect,
    Packet,
    Pingreq,
    Pingresp,
    Puback,
    Pubcomp,
    Publish,
    Pubrec,
    Pubrel,
    Suback,
    Subscribe,
    Unsuback,
    Unsubscribe,
    Will,
)
from simulators.mqtt.policy import BrokerPolicy, Identity
from simulators.mqtt.sessions import (
    CoreConnection,
    Phase,
    Session,
    SessionTable,
    SessionView,
    notice_for,
    view_of,
)
from simulators.mqtt.topics import topic_name_problem

__all__ = ["BrokerCore"]


class BrokerCore:
    """The broker's state and rules; see the module docstring."""

    def __init__(self, policy: BrokerPolicy | None = None) -> None:
        self.policy = policy if policy is not None else BrokerPolicy()
        self.faults = InjectedFaults()
        self._connections: dict[ConnectionId, CoreConnection] = {}
        self._sessions = SessionTable()
        self._admission = Admission(self.policy, self._sessions, self.faults)
        self._delivery = Delivery(
            self.policy, self._sessions, self.faults, self._connected_sessions
        )
        self._now = -math.inf

    # --- adapter entry points -----------------------------------------------------------------

    def connection_made(self, conn_id: ConnectionId, identity: Identity | None, now: float) -> None:
        """A client connected (TLS done); ``identity`` is None without a usable certificate."""
        self._observe(now)
        if conn_id in self._connections:
            raise ValueError(f"connection {conn_id!r} already exists")
        decoder = Decoder("server", max_packet_size=self.policy.max_packet_size)
        self._connections[conn_id] = CoreConnection(conn_id, identity, decoder)

    def data_received(self, conn_id: ConnectionId, data: bytes, now: float) -> list[Action]:
        """Bytes from the client; nothing after a decision to close is processed (MQTT-3.1.4-5)."""
        conn = self._connection(conn_id)
        now = self._observe(now)
        actions = self._delivery.run_timers(now)
        if conn.state is Phase.CLOSED:
            return actions
        conn.decoder.receive_data(data)
        while self._is_open(conn):
            try:
                packet = conn.decoder.next_packet()
            except MalformedPacket as exc:
                actions.append(notice_for(NoticeKind.MALFORMED_PACKET, conn, reason=exc.reason))
                actions += self._close(conn, now, f"malformed packet: {exc.reason}")
                break
            if packet is None:
                break
            actions.append(Received(conn_id, packet))
            actions += self._handle(conn, packet, now)
        return actions

    def connection_lost(self, conn_id: ConnectionId, now: float) -> list[Action]:
        """The socket closed (either side); forget the connection. The Will is published unless
        DISCONNECT came first (MQTT-3.1.2-8, MQTT-3.14.4-3)."""
        conn = self._connection(conn_id)
        now = self._observe(now)
        actions = self._delivery.run_timers(now)
        del self._connections[conn_id]
        if conn.state is not Phase.CLOSED:
            actions += self._detach(conn, now)
        return actions

    def handle_timeout(self, now: float) -> list[Action]:
        """Run what is due: message expiry and in-session redelivery."""
        return self._delivery.run_timers(self._observe(now))

    def next_deadline(self) -> float | None:
        """When :meth:`handle_timeout` next has work, in simulated seconds (keep-alive is not
        included)."""
        return self._delivery.next_deadline()

    def publish(
        self, topic: str, payload: bytes, now: float, qos: int = 1, *, tenant: str | None = None
    ) -> list[Action]:
        """The vendor publishes an event to ``tenant``'s subscribers (every tenant's if None)."""
        if problem := topic_name_problem(topic):
            raise ValueError(problem)
        if qos not in (0, 1, 2):
            raise ValueError(f"QoS {qos} is not 0, 1 or 2")
        now = self._observe(now)
        return self._delivery.run_timers(now) + self._delivery.route(
            tenant, topic, payload, qos, now
        )

    # --- queries ------------------------------------------------------------------------------

    def keepalive_s(self, conn_id: ConnectionId) -> int | None:
        """The keep-alive the client asked for in its accepted CONNECT (0: none), else None."""
        conn = self._connection(conn_id)
        return conn.keepalive_s if conn.state is Phase.CONNECTED else None

    def connection_count(self, tenant: str) -> int:
        """Connections of ``tenant`` that are past CONNACK 0 and not closed."""
        return self._sessions.live(tenant)

    def session_views(self, tenant: str | None = None) -> list[SessionView]:
        """Snapshots of every session (of ``tenant`` if given)."""
        return [view_of(s) for s in self._sessions if tenant in (None, s.tenant)]

    def queued_bytes(self, tenant: str) -> int:
        """What ``tenant``'s sessions hold queued (the policy's ``max_queued_bytes_per_tenant``)."""
        return self._delivery.queued_bytes(tenant)

    def session_view(self, client_id: str, *, tenant: str) -> SessionView | None:
        session = self._sessions.get(tenant, client_id)
        return view_of(session) if session is not None else None

    # --- faults acting now (arm the others on :attr:`faults`) ----------------------------------

    def hold_offline(
        self,
        client_id: str,
        until: float,
        now: float,
        *,
        tenant: str | None = None,
        return_code: int = CONNACK_SERVER_UNAVAILABLE,
    ) -> list[Action]:
        """Disconnect ``client_id`` and refuse its CONNECTs until simulated time ``until``
        (:meth:`InjectedFaults.release` ends it early)."""
        self.faults.hold(client_id, until, tenant=tenant, return_code=return_code)
        return self.disconnect(client_id, now, f"held offline until {until}", tenant=tenant)

    def disconnect(
        self,
        client_id: str,
        now: float,
        reason: str = "closed by the broker",
        *,
        tenant: str | None = None,
    ) -> list[Action]:
        """Close the live connection(s) of ``client_id`` as a network failure would (the Will
        is published). Nothing happens if it is not connected."""
        now = self._observe(now)
        actions = self._delivery.run_timers(now)
        for session in self._sessions.find(client_id, tenant):
            if session.connection is not None:
                conn = session.connection
                actions.append(
                    notice_for(NoticeKind.FAULT, conn, fault="disconnect", reason=reason)
                )
                actions += self._close(conn, now, reason)
        return actions

    def drop_connection(self, conn_id: ConnectionId, now: float, reason: str) -> list[Action]:
        """Close ``conn_id`` as a network failure would (e.g. keep-alive expired, MQTT-3.1.2-24)."""
        conn = self._connection(conn_id)
        now = self._observe(now)
        actions = self._delivery.run_timers(now)
        if conn.state is not Phase.CLOSED:
            actions += self._close(conn, now, reason)
        return actions

    def redeliver_inflight(
        self, client_id: str, now: float, *, tenant: str | None = None
    ) -> list[Action]:
        """Resend every unacknowledged PUBLISH of ``client_id`` now, DUP = 1, same packet id."""
        now = self._observe(now)
        actions = self._delivery.run_timers(now)
        for session in self._sessions.find(client_id, tenant):
            if session.connection is not None and session.inflight:
                conn = session.connection
                actions.append(notice_for(NoticeKind.FAULT, conn, fault="redeliver-inflight"))
                actions += self._delivery.resend_inflight(session, now)
        return actions

    # --- packets ------------------------------------------------------------------------------

    def _handle(self, conn: CoreConnection, packet: Packet, now: float) -> list[Action]:
        if conn.state is Phase.AWAITING_CONNECT:
            if isinstance(packet, Connect):
                return self._on_connect(conn, packet, now)
            return self._violation(
                conn, now, f"{type(packet).__name__.upper()} before CONNECT (MQTT-3.1.0-1)"
            )
        session = conn.session
        assert session is not None and conn.identity is not None
        match packet:
            case Connect():
                return self._violation(conn, now, "a second CONNECT (MQTT-3.1.0-2)")
            case Publish():
                return self._on_publish(conn, session, conn.identity, packet, now)
            case Puback(packet_id):
                return self._on_puback(conn, session, packet_id, now)
            case Pubrel(packet_id):  # MQTT-4.3.3-2: PUBCOMP with the same id, known or not
                session.awaiting_pubrel.discard(packet_id)
                return [Send(conn.conn_id, Pubcomp(packet_id))]
            case Pubrec(packet_id) | Pubcomp(packet_id):  # this broker never sends QoS 2
                return [self._unknown_packet_id(conn, packet)]
            case Subscribe():
                return self._on_subscribe(conn, session, conn.identity, packet)
            case Unsubscribe(packet_id, topic_filters):  # MQTT-3.10.4-1, -4, -5
                for topic_filter in topic_filters:
                    session.subscriptions.pop(topic_filter, None)
                return [Send(conn.conn_id, Unsuback(packet_id))]
            case Pingreq():  # MQTT-3.12.4-1
                return [Send(conn.conn_id, Pingresp())]
            case Disconnect():  # MQTT-3.14.4-3: the Will is discarded
                conn.will = None
                return self._close(conn, now, "client sent DISCONNECT")
            case _:  # the server-side decoder returns no server → client packet
                raise AssertionError(f"unexpected {packet!r}")

    def _on_connect(self, conn: CoreConnection, connect: Connect, now: float) -> list[Action]:
        try:
            admitted = self._admission.connect(conn.identity, connect, now)
        except Refused as refusal:
            conn.state = Phase.CLOSED
            return [
                notice_for(
                    NoticeKind.CONNECTION_REFUSED,
                    conn,
                    client_id=connect.client_id,
                    return_code=refusal.return_code,
                    reason=refusal.reason,
                ),
                Send(conn.conn_id, Connack(False, refusal.return_code)),  # MQTT-3.2.2-4
                Close(conn.conn_id, refusal.reason),  # MQTT-3.2.2-5
            ]
        tenant, client_id, session = admitted.tenant, admitted.client_id, admitted.session
        actions: list[Action] = []
        if session is not None and session.connection is not None:  # MQTT-3.1.4-2
            older = session.connection
            actions.append(
                notice_for(
                    NoticeKind.TAKEOVER, older, new_conn_id=conn.conn_id, client_id=client_id
                )
            )
            actions += self._close(
                older, now, "take-over: a new connection with the same client id (MQTT-3.1.4-2)"
            )
            session = self._sessions.get(tenant, client_id)  # gone if it was clean
        if session is not None and connect.clean_session:  # MQTT-3.1.2-6
            self._discard_session(session)
            session = None
        session_present = session is not None  # MQTT-3.2.2-1, -2, -3
        if session is None:
            if (evicted := admitted.evict) is not None:
                actions.append(
                    Notice(
                        NoticeKind.SESSION_EVICTED,
                        tenant=tenant,
                        client_id=evicted.client_id,
                        detail={"queued": len(evicted.queue), "inflight": len(evicted.inflight)},
                    )
                )
                self._discard_session(evicted)
            session = Session(tenant, client_id, connect.clean_session)
            self._sessions.add(session)
        conn.state = Phase.CONNECTED
        conn.keepalive_s = connect.keepalive_s
        conn.will = connect.will
        self._sessions.attach(session, conn)
        actions.append(
            Send(conn.conn_id, Connack(session_present, CONNACK_ACCEPTED))
        )  # MQTT-3.1.4-4
        actions += self._delivery.resume(session, now)  # MQTT-4.4.0-1
        return actions

    def _on_publish(
        self,
        conn: CoreConnection,
        session: Session,
        identity: Identity,
        publish: Publish,
        now: float,
    ) -> list[Action]:
        """A client publishes: forward if allowed, acknowledge either way (MQTT-3.3.5-2)."""
        actions: list[Action] = []
        repeat = publish.qos == 2 and publish.packet_id in session.awaiting_pubrel
        if not repeat:  # MQTT-4.3.3-2: no duplicate onward delivery before PUBREL
            if self.policy.may_publish(identity, publish.topic):
                actions += self._delivery.route(
                    identity.tenant, publish.topic, publish.payload, publish.qos, now
                )
            else:
                actions.append(
                    notice_for(
                        NoticeKind.PUBLISH_REFUSED,
                        conn,
                        topic=publish.topic,
                        qos=publish.qos,
                        reason="the client may not publish to this topic",
                    )
                )
        if publish.packet_id is not None:
            if publish.qos == 1:  # MQTT-4.3.2-2
                actions.append(Send(conn.conn_id, Puback(publish.packet_id)))
            else:  # MQTT-4.3.3-2
                session.awaiting_pubrel.add(publish.packet_id)
                actions.append(Send(conn.conn_id, Pubrec(publish.packet_id)))
        return actions

    def _on_puback(
        self, conn: CoreConnection, session: Session, packet_id: int, now: float
    ) -> list[Action]:
        if packet_id not in session.inflight:
            return [self._unknown_packet_id(conn, Puback(packet_id))]
        if self.faults.take_lost_puback(session.tenant, session.client_id):
            return [notice_for(NoticeKind.FAULT, conn, fault="puback-lost", packet_id=packet_id)]
        return self._delivery.acknowledge(conn, session, packet_id, now)

    def _on_subscribe(
        self, conn: CoreConnection, session: Session, identity: Identity, subscribe: Subscribe
    ) -> list[Action]:
        """MQTT-3.8.4-1..5: one SUBACK, same packet id, one return code per filter in order."""
        actions: list[Action] = []
        return_codes = []
        for topic_filter, requested_qos in subscribe.subscriptions:  # MQTT-3.8.4-4
            problem = self._admission.subscription_problem(identity, session, topic_filter)
            if problem is not None:
                return_codes.append(SUBACK_FAILURE)
                actions.append(
                    notice_for(
                        NoticeKind.SUBSCRIBE_REFUSED,
                        conn,
                        topic_filter=topic_filter,
                        reason=problem,
                    )
                )
                continue
            granted_qos = min(requested_qos, self.policy.max_qos)
            session.subscriptions[topic_filter] = granted_qos  # MQTT-3.8.4-3: replaces
            return_codes.append(granted_qos)
        actions.append(Send(conn.conn_id, Suback(subscribe.packet_id, tuple(return_codes))))
        return actions

    # --- bookkeeping --------------------------------------------------------------------------

    def _close(self, conn: CoreConnection, now: float, reason: str) -> list[Action]:
        """Close ``conn`` on the broker's initiative; the Will is published unless discarded."""
        return [Close(conn.conn_id, reason), *self._detach(conn, now)]

    def _detach(self, conn: CoreConnection, now: float) -> list[Action]:
        was_connected = conn.state is Phase.CONNECTED
        conn.state = Phase.CLOSED
        session, conn.session = conn.session, None
        if not was_connected or session is None:
            return []
        self._sessions.detach(session, now)
        if session.clean_session:  # MQTT-3.1.2-6: lasts as long as the network connection
            self._discard_session(session)
        will, conn.will = conn.will, None
        if will is None:
            return []
        return self._publish_will(conn, session, will, now)

    def _publish_will(
        self, conn: CoreConnection, session: Session, will: Will, now: float
    ) -> list[Action]:
        """MQTT-3.1.2-8: the Will goes out when the connection ends without DISCONNECT."""
        identity = conn.identity
        assert identity is not None
        notice = notice_for(
            NoticeKind.WILL_PUBLISHED,
            conn,
            client_id=session.client_id,
            topic=will.topic,
            qos=will.qos,
        )
        if not self.policy.may_publish(identity, will.topic):
            refused = notice_for(
                NoticeKind.PUBLISH_REFUSED,
                conn,
                client_id=session.client_id,
                topic=will.topic,
                qos=will.qos,
                reason="the client may not publish its Will to this topic",
            )
            return [refused]
        return [
            notice,
            *self._delivery.route(identity.tenant, will.topic, will.payload, will.qos, now),
        ]

    def _discard_session(self, session: Session) -> None:
        assert session.connection is None
        self._delivery.forget(session)
        self._sessions.remove(session)

    def _violation(self, conn: CoreConnection, now: float, reason: str) -> list[Action]:
        """MQTT-4.8.0-1: a protocol violation closes the connection."""
        return [
            notice_for(NoticeKind.PROTOCOL_VIOLATION, conn, reason=reason),
            *self._close(conn, now, reason),
        ]

    def _unknown_packet_id(self, conn: CoreConnection, packet: Puback | Pubrec | Pubcomp) -> Notice:
        return notice_for(
            NoticeKind.UNKNOWN_PACKET_ID,
            conn,
            packet=type(packet).__name__.upper(),
            packet_id=packet.packet_id,
        )

    def _observe(self, now: float) -> float:
        """Simulated time as the core sees it: never earlier than what it has already seen
        (two adapter threads may read the clock in one order and call in the other)."""
        if now > self._now:
            self._now = now
        return self._now

    @staticmethod
    def _is_open(conn: CoreConnection) -> bool:
        return conn.state is not Phase.CLOSED

    def _connection(self, conn_id: ConnectionId) -> CoreConnection:
        try:
            return self._connections[conn_id]
        except KeyError:
            raise ValueError(f"unknown connection {conn_id!r}") from None

    def _connected_sessions(self) -> Iterator[Session]:
        for conn in self._connections.values():
            if conn.state is Phase.CONNECTED and conn.session is not None:
                yield conn.session
