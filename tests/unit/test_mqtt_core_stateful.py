"""A Hypothesis state machine over the broker core: clients of two tenants connect (clean session
0 or 1, colliding client ids), subscribe, acknowledge or not, drop, send garbage; hours pass; the
vendor publishes events. A small model of the vendor rules predicts every outcome, and these
hold at every step:

- no tenant ever has more than 15 live connections ("Ivanti recommends a maximum of fifteen
  connections per tenant"), and no two live connections of a tenant share a client id;
- an event published with no active consumer reaches every matching durable subscriber that
  reconnects within 180 minutes, unless another subscriber acknowledged it first (vendor mode)
  or that subscriber's queue was full, and no event is first delivered after 180 minutes;
- every redelivery of an unacknowledged PUBLISH has DUP = 1 and its original packet id
  (MQTT-4.4.0-1, MQTT-3.3.1-1), resent in the original order (MQTT-4.6.0-1), and a new
  PUBLISH never reuses a packet id in flight (MQTT-2.3.1-4);
- nothing is delivered with RETAIN = 1; delivered QoS <= granted QoS and <= published QoS;
- queues never exceed their bound, and ``next_deadline()`` is exactly the model's next deadline.

The in-flight window (64) is never filled here (a run publishes fewer events), so a connected
session receives at once and every queue belongs to an offline session.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Literal

import hypothesis
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from simulators.mqtt.actions import Action, Close, Notice, NoticeKind, Send
from simulators.mqtt.codec import encode
from simulators.mqtt.core import BrokerCore
from simulators.mqtt.packets import (
    CONNACK_IDENTIFIER_REJECTED,
    CONNACK_SERVER_UNAVAILABLE,
    Connack,
    Connect,
    Disconnect,
    Puback,
    Publish,
    Suback,
    Subscribe,
    Unsuback,
    Unsubscribe,
)
from simulators.mqtt.policy import BrokerPolicy, Identity
from simulators.mqtt.topics import topic_matches

RETENTION_S = 10_800.0
TENANT_LIMIT = 15
MAX_QUEUED = 2
REDELIVERY_S = 30.0
IDENTITIES = {"ta": Identity("ta", "admin@ta.example"), "tb": Identity("tb", "admin@tb.example")}
CLIENT_IDS = ["c0", "c1", "c2"]
TOPICS = ["d/x", "d/y"]
FILTERS = ["d/x", "d/+", "d/#", "#", "e/x"]
# Around the 30 s redelivery timeout and the 180 minutes of retention, and anything up to 4 hours.
DURATIONS = st.sampled_from([1.0, 30.0, 3_600.0, 10_799.0, 10_800.0, 10_801.0]) | st.floats(
    0, 4 * 3_600
)

Key = tuple[str, str]  # (tenant, client id)


@dataclass
class Event:
    payload: bytes
    qos: int
    published_at: float
    consumed: bool = False  # a PUBACK arrived for it


@dataclass
class Outstanding:
    publish: Publish  # as first sent
    due: float | None  # in-session redelivery


@dataclass
class ModelSession:
    clean: bool
    conn: int | None = None
    subscriptions: dict[str, int] = field(default_factory=dict)
    outstanding: dict[int, Outstanding] = field(default_factory=dict)  # original send order
    owed: list[Event] = field(default_factory=list)  # queued while offline

    def granted(self, topic: str) -> int | None:
        matching = [q for f, q in self.subscriptions.items() if topic_matches(f, topic)]
        return max(matching, default=None)


def publishes(actions: list[Action], conn: int) -> list[Publish]:
    return [
        a.packet
        for a in actions
        if isinstance(a, Send) and a.conn_id == conn and isinstance(a.packet, Publish)
    ]


class BrokerMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.now = 0.0
        self.sessions: dict[Key, ModelSession] = {}
        self.live: dict[int, Key] = {}
        self.next_conn = 0
        self.events: dict[bytes, Event] = {}
        self.policy = BrokerPolicy()
        self.core = BrokerCore(self.policy)

    @initialize(
        purge=st.booleans(),
        redelivery=st.sampled_from([None, REDELIVERY_S]),
        duplicate=st.sampled_from(["takeover", "refuse"]),
    )
    def start(
        self, purge: bool, redelivery: float | None, duplicate: Literal["takeover", "refuse"]
    ) -> None:
        self.policy = BrokerPolicy(
            purge_after_first_puback=purge,
            redelivery_timeout_s=redelivery,
            duplicate_client_id=duplicate,
            max_queued_per_session=MAX_QUEUED,
        )
        self.core = BrokerCore(self.policy)

    # --- helpers ------------------------------------------------------------------------------

    def _live_count(self, tenant: str) -> int:
        return sum(1 for key in self.live.values() if key[0] == tenant)

    def _due(self) -> float | None:
        timeout = self.policy.redelivery_timeout_s
        return None if timeout is None else self.now + timeout

    def _detach(self, conn: int) -> None:
        """The model's view of a connection ending (Close from the core, or lost)."""
        key = self.live.pop(conn)
        session = self.sessions[key]
        session.conn = None
        if session.clean:  # MQTT-3.1.2-6
            del self.sessions[key]

    def _check_send(self, conn: int, publish: Publish) -> None:
        """Every PUBLISH the broker sends, whatever the rule."""
        assert not publish.retain  # MQTT-3.3.1-9: nothing is delivered with RETAIN = 1
        session = self.sessions[self.live[conn]]
        event = self.events[publish.payload]
        if publish.dup:
            assert publish.packet_id in session.outstanding, f"DUP for nothing in flight: {publish}"
            entry = session.outstanding[publish.packet_id]
            assert publish == replace(entry.publish, dup=True)  # same packet id, same message
            entry.due = self._due()
            return
        granted = session.granted(publish.topic)
        assert granted is not None and publish.qos <= min(granted, event.qos)  # MQTT-3.8.4-6
        assert self.now < event.published_at + RETENTION_S, "first delivered after 180 minutes"
        if publish.qos:
            assert publish.packet_id not in session.outstanding  # MQTT-2.3.1-4
            assert publish.packet_id is not None
            session.outstanding[publish.packet_id] = Outstanding(publish, self._due())

    def _expect_publishes(
        self, actions: list[Action], expected: dict[int, list[tuple[bytes, bool]]]
    ) -> None:
        """Exactly these (payload, dup) PUBLISHes, per connection and in order, and checked."""
        sent: dict[int, list[tuple[bytes, bool]]] = {}
        for action in actions:
            if isinstance(action, Send) and isinstance(action.packet, Publish):
                assert isinstance(action.conn_id, int)
                self._check_send(action.conn_id, action.packet)
                sent.setdefault(action.conn_id, []).append(
                    (action.packet.payload, action.packet.dup)
                )
        assert sent == {c: p for c, p in expected.items() if p}

    def _open(self, tenant: str) -> int:
        conn = self.next_conn
        self.next_conn += 1
        self.core.connection_made(conn, IDENTITIES[tenant], self.now)
        return conn

    # --- rules --------------------------------------------------------------------------------

    @rule(
        tenant=st.sampled_from(sorted(IDENTITIES)),
        client_id=st.sampled_from(CLIENT_IDS),
        clean=st.booleans(),
    )
    def connect(self, tenant: str, client_id: str, clean: bool) -> None:
        conn = self._open(tenant)
        key = (tenant, client_id)
        existing = self.sessions.get(key)
        older = existing.conn if existing is not None else None
        if older is not None and self.policy.duplicate_client_id == "refuse":
            expected_code = CONNACK_IDENTIFIER_REJECTED
        elif self._live_count(tenant) - (older is not None) >= TENANT_LIMIT:
            expected_code = CONNACK_SERVER_UNAVAILABLE
        else:
            expected_code = 0
        actions = self.core.data_received(
            conn, encode(Connect(client_id, clean_session=clean)), self.now
        )
        sends = [a.packet for a in actions if isinstance(a, Send)]
        if expected_code:
            hypothesis.event(f"connect refused with {expected_code}")
            assert sends == [Connack(False, expected_code)]
            assert [a.conn_id for a in actions if isinstance(a, Close)] == [conn]
            assert self.core.connection_lost(conn, self.now) == []
            return
        closes = [a.conn_id for a in actions if isinstance(a, Close)]
        assert closes == ([older] if older is not None else [])  # MQTT-3.1.4-2
        if older is not None:
            hypothesis.event("take-over")
            self._detach(older)
        session = self.sessions.get(key)
        if session is not None and clean:
            del self.sessions[key]
            session = None
        present = session is not None
        if session is None:
            session = self.sessions[key] = ModelSession(clean)
        session.conn = conn
        self.live[conn] = key
        assert sends[0] == Connack(present, 0)  # MQTT-3.2.2-1..3
        resent = [(e.publish.payload, True) for e in session.outstanding.values()]
        fresh = [(e.payload, False) for e in session.owed]
        session.owed = []
        if resent:
            hypothesis.event("unacknowledged PUBLISHes resent on reconnect")
        if fresh:
            hypothesis.event("queued events delivered on reconnect")
        # MQTT-4.4.0-1: the unacknowledged first, then the queue
        self._expect_publishes(actions, {conn: resent + fresh})

    @rule(tenant=st.sampled_from(sorted(IDENTITIES)))
    def crowd(self, tenant: str) -> None:
        """Fill the tenant up to the limit with clean sessions, then try once more."""
        while self._live_count(tenant) < TENANT_LIMIT:
            conn = self._open(tenant)
            actions = self.core.data_received(conn, encode(Connect(f"crowd-{conn}")), self.now)
            assert [a.packet for a in actions if isinstance(a, Send)] == [Connack(False, 0)]
            self.sessions[(tenant, f"crowd-{conn}")] = ModelSession(clean=True, conn=conn)
            self.live[conn] = (tenant, f"crowd-{conn}")
        conn = self._open(tenant)
        actions = self.core.data_received(conn, encode(Connect(f"crowd-{conn}")), self.now)
        assert [a.packet for a in actions if isinstance(a, Send)] == [
            Connack(False, CONNACK_SERVER_UNAVAILABLE)
        ]
        assert self.core.connection_lost(conn, self.now) == []
        self.at_most_15_connections_per_tenant()
        hypothesis.event("the 16th connection of a tenant refused")
        for crowded in [c for c, k in self.live.items() if k[1].startswith("crowd-")]:
            self._expect_publishes(self.core.connection_lost(crowded, self.now), {})
            self._detach(crowded)  # a freed slot is usable again (the next rules use them)

    @rule(
        tenant=st.sampled_from(sorted(IDENTITIES)),
        client_id=st.sampled_from(CLIENT_IDS),
        topic_filter=st.sampled_from(FILTERS),
        then_offline=st.booleans(),
    )
    def durable_subscriber(
        self, tenant: str, client_id: str, topic_filter: str, then_offline: bool
    ) -> None:
        """What the vendor doc asks of an integrator: clean session 0, a QoS 1 subscription;
        then, perhaps, an outage."""
        self.connect(tenant, client_id, clean=False)
        conn = self.next_conn - 1
        if conn in self.live:
            actions = self.core.data_received(
                conn, encode(Subscribe(7, ((topic_filter, 1),))), self.now
            )
            assert [a.packet for a in actions if isinstance(a, Send)] == [Suback(7, (1,))]
            self.sessions[self.live[conn]].subscriptions[topic_filter] = 1
            if then_offline:
                self._expect_publishes(self.core.connection_lost(conn, self.now), {})
                self._detach(conn)

    @rule(tenant=st.sampled_from(sorted(IDENTITIES)), client_id=st.sampled_from(CLIENT_IDS))
    def reconnect_and_acknowledge_everything(self, tenant: str, client_id: str) -> None:
        """A well-behaved durable subscriber coming back: every PUBLISH gets its PUBACK."""
        self.connect(tenant, client_id, clean=False)
        conn = self.next_conn - 1
        if conn in self.live:
            session = self.sessions[self.live[conn]]
            while session.outstanding:
                self._acknowledge(conn, next(iter(session.outstanding)))

    @precondition(lambda self: self.live)
    @rule(data=st.data(), topic_filter=st.sampled_from(FILTERS), qos=st.integers(0, 2))
    def subscribe(self, data: st.DataObject, topic_filter: str, qos: int) -> None:
        conn = data.draw(st.sampled_from(sorted(self.live)))
        actions = self.core.data_received(
            conn, encode(Subscribe(9, ((topic_filter, qos),))), self.now
        )
        granted = min(qos, 1)  # "MQTT delivers messages with QoS level 1"
        assert [a.packet for a in actions if isinstance(a, Send)] == [Suback(9, (granted,))]
        self.sessions[self.live[conn]].subscriptions[topic_filter] = granted

    @precondition(lambda self: self.live)
    @rule(data=st.data(), topic_filter=st.sampled_from(FILTERS))
    def unsubscribe(self, data: st.DataObject, topic_filter: str) -> None:
        conn = data.draw(st.sampled_from(sorted(self.live)))
        actions = self.core.data_received(conn, encode(Unsubscribe(8, (topic_filter,))), self.now)
        assert [a.packet for a in actions if isinstance(a, Send)] == [Unsuback(8)]
        self.sessions[self.live[conn]].subscriptions.pop(topic_filter, None)

    @precondition(lambda self: any(self.sessions[k].outstanding for k in self.live.values()))
    @rule(data=st.data())
    def acknowledge(self, data: st.DataObject) -> None:
        conn = data.draw(
            st.sampled_from(sorted(c for c, k in self.live.items() if self.sessions[k].outstanding))
        )
        session = self.sessions[self.live[conn]]
        self._acknowledge(conn, data.draw(st.sampled_from(sorted(session.outstanding))))

    def _acknowledge(self, conn: int, packet_id: int) -> None:
        session = self.sessions[self.live[conn]]
        event = self.events[session.outstanding.pop(packet_id).publish.payload]
        actions = self.core.data_received(conn, encode(Puback(packet_id)), self.now)
        self._expect_publishes(actions, {})
        purged = [
            n for n in actions if isinstance(n, Notice) and n.kind is NoticeKind.MESSAGE_PURGED
        ]
        if self.policy.purge_after_first_puback and not event.consumed:
            event.consumed = True  # "The system purges the message after delivery"
            holders = sorted(k[1] for k, s in self.sessions.items() if event in s.owed)
            for s in self.sessions.values():
                s.owed = [e for e in s.owed if e is not event]
            assert [n.detail["purged_from"] for n in purged] == ([holders] if holders else [])
            if holders:
                hypothesis.event("first PUBACK purged queued copies")
        else:
            assert purged == []

    @precondition(lambda self: self.live)
    @rule(data=st.data(), how=st.sampled_from(["lost", "disconnect", "garbage"]))
    def drop(self, data: st.DataObject, how: str) -> None:
        conn = data.draw(st.sampled_from(sorted(self.live)))
        actions = []
        if how == "disconnect":
            actions += self.core.data_received(conn, encode(Disconnect()), self.now)
        elif how == "garbage":
            actions += self.core.data_received(conn, b"\xf0\x00", self.now)
        actions += self.core.connection_lost(conn, self.now)
        assert [a.conn_id for a in actions if isinstance(a, Close)] == (
            [] if how == "lost" else [conn]
        )
        self._expect_publishes(actions, {})
        self._detach(conn)

    @rule(seconds=DURATIONS)
    def time_passes(self, seconds: float) -> None:
        self.now += seconds
        expired = set()
        for session in self.sessions.values():  # "a maximum duration of 3 hours"
            expired |= {e.payload for e in session.owed if self.now >= e.published_at + RETENTION_S}
            session.owed = [e for e in session.owed if self.now < e.published_at + RETENTION_S]
        redelivered: dict[int, list[tuple[bytes, bool]]] = {}
        for conn, key in self.live.items():
            due = [
                o
                for o in self.sessions[key].outstanding.values()
                if o.due is not None and o.due <= self.now
            ]
            redelivered[conn] = [(o.publish.payload, True) for o in due]
        actions = self.core.handle_timeout(self.now)
        self._expect_publishes(actions, redelivered)
        expiries = [
            n for n in actions if isinstance(n, Notice) and n.kind is NoticeKind.MESSAGE_EXPIRED
        ]
        assert len(expiries) == len(expired)
        if expired:
            hypothesis.event("queued events expired")
        if any(redelivered.values()):
            hypothesis.event("in-session redelivery")

    @rule(
        tenant=st.sampled_from(sorted(IDENTITIES)),
        topic=st.sampled_from(TOPICS),
        qos=st.sampled_from([1, 1, 0]),  # "MQTT delivers messages with QoS level 1"
    )
    def vendor_publishes(self, tenant: str, topic: str, qos: int) -> None:
        event = Event(f"e{len(self.events)}".encode(), qos, self.now)
        self.events[event.payload] = event
        matches = [
            (key, s, granted)
            for key, s in self.sessions.items()
            if key[0] == tenant and (granted := s.granted(topic)) is not None
        ]
        connected = [m for m in matches if m[1].conn is not None]
        # "All MQTT clients maintaining an active subscription ... receive the message"; only with
        # none is it "retained in the system" for durable subscribers (standard MQTT: both).
        receivers = connected if self.policy.purge_after_first_puback and connected else matches
        expected: dict[int, list[tuple[bytes, bool]]] = {}
        owed: list[ModelSession] = []
        full: list[str] = []
        for key, session, granted in receivers:
            if session.conn is not None:
                expected[session.conn] = [(event.payload, False)]
            elif min(qos, granted) >= 1:  # MQTT-3.1.2-5
                (full.append(key[1]) if len(session.owed) >= MAX_QUEUED else owed.append(session))
        actions = self.core.publish(topic, event.payload, self.now, qos, tenant=tenant)
        self._expect_publishes(actions, expected)
        dropped = [
            n.client_id
            for n in actions
            if isinstance(n, Notice) and n.kind is NoticeKind.QUEUE_FULL
        ]
        assert sorted(c for c in dropped if c is not None) == sorted(full)
        for session in owed:
            session.owed.append(event)
        hypothesis.event("event kept for offline sessions" if owed else "event not kept")
        if full:
            hypothesis.event("queue full")

    # --- invariants ---------------------------------------------------------------------------

    @invariant()
    def at_most_15_connections_per_tenant(self) -> None:
        for tenant in IDENTITIES:
            assert self._live_count(tenant) <= TENANT_LIMIT
            assert self.core.connection_count(tenant) == self._live_count(tenant)

    @invariant()
    def client_ids_are_unique_among_live_connections(self) -> None:
        assert len(set(self.live.values())) == len(self.live)
        views = self.core.session_views()
        assert {(v.tenant, v.client_id): v.conn_id for v in views if v.connected} == {
            key: conn for conn, key in self.live.items()
        }

    @invariant()
    def sessions_and_queues_match_the_model_and_stay_bounded(self) -> None:
        views = {(v.tenant, v.client_id): v for v in self.core.session_views()}
        assert set(views) == set(self.sessions)
        for key, view in views.items():
            assert view.queued <= MAX_QUEUED
            assert view.queued == len(self.sessions[key].owed)
            assert view.inflight_packet_ids == tuple(self.sessions[key].outstanding)
            assert view.clean_session == self.sessions[key].clean

    @invariant()
    def next_deadline_is_the_models(self) -> None:
        deadlines = [e.published_at + RETENTION_S for s in self.sessions.values() for e in s.owed]
        deadlines += [
            o.due
            for key in self.live.values()
            for o in self.sessions[key].outstanding.values()
            if o.due is not None
        ]
        assert self.core.next_deadline() == min(deadlines, default=None)


BrokerMachine.TestCase.settings = settings(max_examples=200, stateful_step_count=60, deadline=None)
TestBrokerMachine = BrokerMachine.TestCase
