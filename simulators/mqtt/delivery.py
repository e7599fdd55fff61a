"""Where a broker core's messages go: sent now, queued for durable sessions, expired, purged by
the first PUBACK, resent with DUP = 1 (the "Messages follow the vendor rules" part of
:mod:`simulators.mqtt.core`'s theory of operation). No I/O: it returns actions."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import replace

from simulators.mqtt.actions import Action, Notice, NoticeKind, Send
from simulators.mqtt.injected_faults import InjectedFaults
from simulators.mqtt.packets import Publish
from simulators.mqtt.policy import (
    MAX_PACKET_ID,
    QUEUED_ENTRY_OVERHEAD,
    BrokerPolicy,
    next_free_packet_id,
)
from simulators.mqtt.sessions import (
    CoreConnection,
    Inflight,
    Message,
    Session,
    SessionTable,
    notice_for,
)
from simulators.mqtt.topics import topic_matches

__all__ = ["Delivery"]


class Delivery:
    """The messages of one core: routing, per-session queues and in-flight windows, retention
    and redelivery timers. ``connected`` yields the sessions with a live connection, in the
    order of their connections."""

    def __init__(
        self,
        policy: BrokerPolicy,
        sessions: SessionTable,
        faults: InjectedFaults,
        connected: Callable[[], Iterator[Session]],
    ) -> None:
        self.policy = policy
        self._sessions = sessions
        self._faults = faults
        self._connected = connected
        self._queued_messages: OrderedDict[int, Message] = OrderedDict()  # oldest first
        self._next_message_id = 1
        self._queued_bytes: dict[str, int] = {}  # tenant → bytes its sessions hold queued

    def queued_bytes(self, tenant: str) -> int:
        """What ``tenant``'s sessions hold queued, each copy counted (the policy's
        ``max_queued_bytes_per_tenant``)."""
        return self._queued_bytes.get(tenant, 0)

    @staticmethod
    def _cost(message: Message) -> int:
        return len(message.payload) + len(message.topic) + QUEUED_ENTRY_OVERHEAD

    def _unqueued(self, session: Session, message: Message) -> None:
        """One queued copy left ``session``'s queue: its bytes are free again."""
        left = self._queued_bytes.get(session.tenant, 0) - self._cost(message)
        if left > 0:
            self._queued_bytes[session.tenant] = left
        else:
            self._queued_bytes.pop(session.tenant, None)

    # --- messages in ----------------------------------------------------------------------------

    def route(
        self, tenant: str | None, topic: str, payload: bytes, qos: int, now: float
    ) -> list[Action]:
        """Deliver one message to the matching sessions, following the policy's model."""
        message = Message(
            self._next_message_id, tenant, topic, payload, qos, now, now + self.policy.retention_s
        )
        self._next_message_id += 1
        matches = []
        candidates: Iterable[Session] = (
            self._sessions if tenant is None else self._sessions.of_tenant(tenant).values()
        )
        for session in candidates:
            granted = [q for f, q in session.subscriptions.items() if topic_matches(f, topic)]
            if granted:  # MQTT-3.3.5-1: one copy, at the highest matching QoS
                matches.append((session, max(granted)))
        summary = {"message_id": message.message_id, "topic": topic, "qos": qos}
        if not matches:
            return [
                Notice(
                    NoticeKind.MESSAGE_DROPPED,
                    tenant=tenant,
                    detail={**summary, "reason": "no subscriber"},
                )
            ]
        connected = [(s, q) for s, q in matches if s.connection is not None]
        receivers = connected if self.policy.purge_after_first_puback and connected else matches
        actions: list[Action] = []
        sent = False
        for session, granted_qos in receivers:
            delivered, more = self._deliver(
                session, message, min(qos, granted_qos), now
            )  # MQTT-3.8.4-6
            sent |= delivered
            actions += more
        offline = sorted(s.client_id for s in message.queued_in if s.connection is None)
        if message.queued_in:
            self._queued_messages[message.message_id] = message
        if offline:
            actions.append(
                Notice(
                    NoticeKind.MESSAGE_KEPT,
                    tenant=tenant,
                    detail={**summary, "sessions": offline, "expires_at": message.expires_at},
                )
            )
        elif not sent and not message.queued_in:
            if any(isinstance(a, Notice) and a.kind is NoticeKind.QUEUE_FULL for a in actions):
                reason = "every receiving queue was full"
            else:
                reason = "no connected subscriber and no durable session subscribed at QoS 1"
            actions.append(
                Notice(
                    NoticeKind.MESSAGE_DROPPED, tenant=tenant, detail={**summary, "reason": reason}
                )
            )
        return actions

    def acknowledge(
        self, conn: CoreConnection, session: Session, packet_id: int, now: float
    ) -> list[Action]:
        """A PUBACK for ``packet_id``, in flight on ``session``: the id is free again
        (MQTT-2.3.1-4); the first PUBACK for a message purges it from every queue (the vendor's
        rule, if the policy follows it); the window takes the next queued message."""
        entry = session.inflight.pop(packet_id)
        actions: list[Action] = []
        message = entry.message
        if self.policy.purge_after_first_puback and not message.consumed:
            message.consumed = True
            holders = sorted(s.client_id for s in message.queued_in)
            self._unqueue_everywhere(message)
            if holders:
                actions.append(
                    notice_for(
                        NoticeKind.MESSAGE_PURGED,
                        conn,
                        message_id=message.message_id,
                        topic=message.topic,
                        purged_from=holders,
                    )
                )
        return actions + self.fill_window(session, now)

    # --- messages out ---------------------------------------------------------------------------

    def _deliver(
        self, session: Session, message: Message, qos: int, now: float
    ) -> tuple[bool, list[Action]]:
        """Send now, queue, or skip; (whether a PUBLISH went out, actions)."""
        conn = session.connection
        if conn is None:
            if qos == 0 or session.clean_session:  # MQTT-3.1.2-5: QoS 1 and 2 are stored
                return False, []
            return False, self._enqueue(session, message, qos)
        if qos == 0:
            return True, [Send(conn.conn_id, Publish(message.topic, message.payload))]
        if session.queue or len(session.inflight) >= self.policy.max_inflight:
            return False, self._enqueue(session, message, qos)  # MQTT-4.6.0-5: keep the order
        return True, self._send_new(session, conn, message, qos, now)

    def _enqueue(self, session: Session, message: Message, qos: int) -> list[Action]:
        """Queue ``message`` for ``session``, unless its queue holds ``max_queued_per_session``
        messages or its tenant's sessions ``max_queued_bytes_per_tenant`` bytes: then it is
        dropped for this session, with a notice (what was queued first is kept)."""
        cost = self._cost(message)
        held = self._queued_bytes.get(session.tenant, 0)
        limit: dict[str, int] = {}
        if len(session.queue) >= self.policy.max_queued_per_session:
            limit = {"limit": self.policy.max_queued_per_session}
        elif held + cost > self.policy.max_queued_bytes_per_tenant:
            limit = {"tenant_bytes_limit": self.policy.max_queued_bytes_per_tenant}
        if limit:
            session.dropped += 1
            return [
                Notice(
                    NoticeKind.QUEUE_FULL,
                    tenant=session.tenant,
                    client_id=session.client_id,
                    detail={
                        "message_id": message.message_id,
                        "topic": message.topic,
                        **limit,
                        "dropped": session.dropped,
                    },
                )
            ]
        session.queue[message.message_id] = (message, qos)
        message.queued_in.add(session)
        self._queued_bytes[session.tenant] = held + cost
        return []

    def _send_new(
        self, session: Session, conn: CoreConnection, message: Message, qos: int, now: float
    ) -> list[Action]:
        """A first PUBLISH: DUP = 0, RETAIN = 0 (MQTT-3.3.1-9), an unused packet id (MQTT-2.3.1-4)."""
        packet_id = next_free_packet_id(session.next_packet_id, session.inflight)
        session.next_packet_id = packet_id % MAX_PACKET_ID + 1
        publish = Publish(message.topic, message.payload, qos=qos, packet_id=packet_id)
        session.inflight[packet_id] = Inflight(message, publish, self._resend_at(now))
        actions: list[Action] = [Send(conn.conn_id, publish)]
        if self._faults.take_duplicate(session.tenant, session.client_id):
            actions.append(
                notice_for(NoticeKind.FAULT, conn, fault="duplicate-delivery", packet_id=packet_id)
            )
            actions.append(Send(conn.conn_id, replace(publish, dup=True)))
        return actions

    def resume(self, session: Session, now: float) -> list[Action]:
        """A session resumed on a new connection: what is in flight again, then the queue."""
        return self.resend_inflight(session, now) + self.fill_window(session, now)

    def resend_inflight(self, session: Session, now: float) -> list[Action]:
        """Every unacknowledged PUBLISH again, in the original order, DUP = 1, same packet id
        (MQTT-4.4.0-1, MQTT-4.6.0-1, MQTT-3.3.1-1)."""
        conn = session.connection
        assert conn is not None
        actions: list[Action] = []
        for entry in session.inflight.values():
            entry.resend_at = self._resend_at(now)
            actions.append(Send(conn.conn_id, replace(entry.publish, dup=True)))
        return actions

    def fill_window(self, session: Session, now: float) -> list[Action]:
        """Move queued messages into the in-flight window while there is room."""
        actions: list[Action] = []
        conn = session.connection
        while (
            conn is not None and session.queue and len(session.inflight) < self.policy.max_inflight
        ):
            _, (message, qos) = session.queue.popitem(last=False)
            message.queued_in.discard(session)
            self._unqueued(session, message)
            if not message.queued_in:
                self._queued_messages.pop(message.message_id, None)
            actions += self._send_new(session, conn, message, qos, now)
        return actions

    def _resend_at(self, now: float) -> float | None:
        timeout = self.policy.redelivery_timeout_s
        return None if timeout is None else now + timeout

    # --- time -----------------------------------------------------------------------------------

    def run_timers(self, now: float) -> list[Action]:
        """Expire what was queued ``retention_s`` ago; resend what is due for redelivery."""
        actions: list[Action] = []
        while self._queued_messages:
            message = next(iter(self._queued_messages.values()))
            if now < message.expires_at:
                break
            holders = sorted(s.client_id for s in message.queued_in)
            self._unqueue_everywhere(message)
            actions.append(
                Notice(
                    NoticeKind.MESSAGE_EXPIRED,
                    tenant=message.tenant,
                    detail={
                        "message_id": message.message_id,
                        "topic": message.topic,
                        "published_at": message.published_at,
                        "expires_at": message.expires_at,
                        "sessions": holders,
                    },
                )
            )
        if self.policy.redelivery_timeout_s is not None:
            for session in self._connected():
                conn = session.connection
                assert conn is not None
                for entry in session.inflight.values():
                    if entry.resend_at is not None and entry.resend_at <= now:
                        entry.resend_at = self._resend_at(now)
                        actions.append(Send(conn.conn_id, replace(entry.publish, dup=True)))
        return actions

    def next_deadline(self) -> float | None:
        """When :meth:`run_timers` next has work, in simulated seconds."""
        deadlines = []
        if self._queued_messages:
            deadlines.append(next(iter(self._queued_messages.values())).expires_at)
        if self.policy.redelivery_timeout_s is None:  # no in-flight timers: O(1) for adapters
            return min(deadlines, default=None)
        deadlines += (
            entry.resend_at
            for session in self._connected()
            for entry in session.inflight.values()
            if entry.resend_at is not None
        )
        return min(deadlines, default=None)

    # --- forgetting -----------------------------------------------------------------------------

    def forget(self, session: Session) -> None:
        """``session`` is discarded: its queue and in-flight PUBLISHes go with it."""
        for message, _ in session.queue.values():
            message.queued_in.discard(session)
            self._unqueued(session, message)
            if not message.queued_in:
                self._queued_messages.pop(message.message_id, None)
        session.queue.clear()
        session.inflight.clear()

    def _unqueue_everywhere(self, message: Message) -> None:
        for session in message.queued_in:
            del session.queue[message.message_id]
            self._unqueued(session, message)
        message.queued_in.clear()
        self._queued_messages.pop(message.message_id, None)
