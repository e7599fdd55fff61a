"""The Ivanti driver: what the Ivanti checks do to the SUT, over the run's broker, CPS API and
observer.

The SUT is an MQTT client: it comes to the broker, so every check first makes sure it is
connected (:meth:`IvantiDriver.online`), waiting a bounded time. A SUT that never connects, or
leaves and does not come back, is taken as down (``harness.mark_down``) with the cause named:
the check that saw it fails, every later check that needs it is not-verified at once. Checks find each copy of a message they
published on the SUT's connections (:meth:`IvantiDriver.copies`: the PUBLISHes, DUP flag and
packet id, paired one to one with the PUBACKs that answered them by
:func:`~simulators.mqtt.packetlog.pair_acks`).
"""

from __future__ import annotations

import itertools
import shlex
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

from conformance.driver import MarkerRefused, VendorDriver, inline_text
from conformance.ivanti.running import RunningIvanti
from conformance.vendors import vendor
from conformance.verdicts import Check
from simulators.ivanti.broker import Published
from simulators.ivanti.events import EVENT_TYPES
from simulators.ivanti.operations import Disconnect, IvantiTarget, Publish, Sessions
from simulators.mqtt.packetlog import ConnectionView, Copy
from simulators.mqtt.packetlog import pair_acks as pair_acks  # the checks' pairing, named here too
from simulators.mqtt.packets import CONNACK_ACCEPTED
from simulators.mqtt.runfacts import ConnectionFacts
from simulators.mqtt.topics import topic_matches
from simulators.operations import Applies
from simulators.problem import Problem

R = TypeVar("R")

# For the SUT's first connection, from the first check: one the harness launched has passed
# its readiness probe; one running elsewhere may be in its reconnect back-off.
STARTUP_WAIT_S = 20.0
STARTUP_WAIT_ELSEWHERE_S = 60.0
RECONNECT_WAIT_S = 30.0  # back online after a drop, unless its back-off is seen to be longer
RECONNECT_WAIT_MAX_S = 120.0
SUBSCRIBE_WAIT_S = 5.0  # after its first CONNACK, for its subscriptions to settle
ACK_LIMIT_S = 10.0  # IVT-ACK-01: "within 10 s"
# Other checks: how long a PUBLISH may wait for its PUBACK (longer than IVT-ACK-01's limit, so
# a SUT that is only slow fails that requirement, not theirs).
RECEIPT_WAIT_S = 12.0
REJOIN_GRACE_S = 3.0  # for a client ID to come back once the SUT returned under new ones
# The event type a check uses when any will do: the most frequent one, then the others.
PREFERRED = ("device_check_in", *(t for t in EVENT_TYPES if t != "device_check_in"))


def accepted_at(view: ConnectionView) -> float | None:
    """Real time of the CONNACK 0 on ``view`` (None: not accepted)."""
    return (
        next((p.real_s for p in view.packets if p.kind == "CONNACK"), None)
        if (view.accepted)
        else None
    )


# Why a check offers no mosquitto_pub reproducer (the message checks do: IVT-ACK-01, IVT-PAY-*,
# IVT-SESS-02): what it judges is not a message the event source publishes.
NOT_REPLAYED_TLS = (
    "the SUT's TLS handshake with the broker is judged: `conformance-sim serve ivanti` records "
    "it when the SUT connects; no published message replays it"
)
NOT_REPLAYED_SUT_ACTS = (
    "what the SUT does by itself is judged (its connections, CONNECT, SUBSCRIBEs or REST "
    "calls): no published message replays it"
)
NOT_REPLAYED_REDELIVERY = (
    "a redelivered copy (DUP = 1, or resent after a reconnect) is the broker's to send: "
    "mosquitto_pub publishes as a client and can set neither"
)
NOT_REPLAYED_OVER_TIME = (
    "judged over the connection's life in real time (a drop, refusals, keep-alive timers): "
    "no published message replays it"
)
NOT_REPLAYED_ORDER = (
    "the order of the SUT's observer report and its PUBACK is judged, which only the harness "
    "sees; publishing the event again shows neither"
)


@dataclass(repr=False)
class IvantiDriver(VendorDriver):
    """What the Ivanti checks do to the SUT: publish to its topics as the vendor does, drop and
    refuse its connections, and read the broker's packet logs, the CPS calls and the observer."""

    vendor_name: ClassVar[str] = "ivanti"
    record_shape: ClassVar[str] = '{"topic": "<topic>", "message": <the JSON payload>}'

    sim: RunningIvanti
    # hash(payload) -> event key of each plain event published (None: not JSON)
    regular: dict[int, str | None] = field(default_factory=dict)
    baseline: set[str] = field(default_factory=set)  # consumed types covered at first contact
    _contact: bool = False

    def __repr__(self) -> str:
        return f"<IvantiDriver {self.sim.broker.host}:{self.sim.broker.port}>"

    def perform(self, operation: Applies[IvantiTarget, R]) -> R:
        """Carry out one operation on the SUT's tenant, in the simulators' loop."""
        return self.harness.run(self.sim.perform(operation))

    # --- the SUT's connections ----------------------------------------------------------------

    def connections(self) -> list[ConnectionView]:
        """Every connection of the SUT's tenant in the run (kept ones), oldest first."""
        return self.sim.connections()

    def connection_facts(self) -> ConnectionFacts:
        """What the SUT's connections did over the whole run, every one counted (the packet
        log keeps the latest ones only): what the run-wide checks judge."""
        return self.sim.connection_facts()

    @staticmethod
    def live_of(views: list[ConnectionView]) -> list[ConnectionView]:
        return [v for v in views if v.open and v.accepted]

    def live(self) -> list[ConnectionView]:
        return self.live_of(self.connections())

    def client_ids(self) -> list[str]:
        return sorted({v.client_id for v in self.live() if v.client_id is not None})

    def exited(self) -> bool:
        sut = self.harness.sut
        return sut is not None and sut.exited() is not None

    def online(self, *, since: float | None = None) -> list[ConnectionView]:
        """The SUT's live connections, waiting (bounded) for it to come back if it has none;
        when it does not, it is taken as down and the check fails with the cause. Never empty:
        a SUT that churns its connections may have none live again by the time they are read,
        and then the ones last seen live stand for it."""
        self.harness.require_sut()
        self.first_contact()
        seen = self.live()
        if not seen:
            bound = self.reconnect_bound()
            start = self.harness.clock.real() if since is None else since
            remaining = max(0.0, start + bound - self.harness.clock.real())
            came = self.sim.wait_for(lambda vs: self.live_of(vs) or self.exited(), remaining)
            if not (isinstance(came, list) and came):
                raise AssertionError(self.harness.mark_down(self.offline_cause(bound)))
            seen = came
        self.settle()
        return self.live() or seen

    def wait_back(self, client_ids: set[str], since: float, *, every: bool = True) -> set[str]:
        """Wait until each (``every``) or one of ``client_ids`` has a live connection opened
        after ``since`` (a SUT with several connections brings them back one by one), bounded
        by its back-off. Once the SUT comes back under client IDs never seen before, or one of
        these is refused (e.g. the tenant is full), REJOIN_GRACE_S more at most. Returns the
        ones back."""
        known = {v.client_id for v in self.connections() if v.opened_real_s <= since}

        def back(views: list[ConnectionView]) -> set[str]:
            live = self.live_of(views)
            ids = {v.client_id for v in live if v.client_id and v.opened_real_s > since}
            return ids & client_ids

        def done(views: list[ConnectionView]) -> bool:
            found = back(views)
            return found >= client_ids if every else bool(found)

        def hopeless(views: list[ConnectionView]) -> bool:
            return any(
                (v.open and v.accepted and v.client_id not in known)
                or (v.client_id in client_ids and v.opened_real_s > since and v.connack)
                for v in views
            )

        bound = max(0.0, since + self.reconnect_bound() - self.harness.clock.real())
        self.sim.wait_for(lambda vs: done(vs) or hopeless(vs), bound)
        if not done(self.connections()):
            self.sim.wait_for(done, REJOIN_GRACE_S)
        return back(self.connections())

    def refused(self, client_id: str, since: float) -> list[int]:
        """The return codes of the refused CONNECTs of ``client_id`` after ``since``."""
        return [
            v.connack
            for v in self.connections()
            if v.client_id == client_id and v.opened_real_s > since and v.connack
        ]

    def covered_types(self) -> set[str]:
        """The consumed event types whose topic a live session of the SUT subscribes to."""
        return set(self.subscribed_types())

    def resubscribes(self) -> bool:
        """Whether the SUT has subscribed again on a later connection of a client ID (as
        clients that do not rely on the kept session do, right after each CONNACK)."""
        seen: set[str] = set()
        for view in self.connections():
            if not view.accepted or view.client_id is None:
                continue
            if view.client_id in seen and view.received("SUBSCRIBE"):
                return True
            seen.add(view.client_id)
        return False

    def settle(self) -> None:
        """After a (re)connection, wait (bounded) until the SUT's live sessions subscribe to
        what they did at first contact, and, for a SUT that subscribes again on each
        connection, until it has done so: what arrives before, it may not be ready for."""
        deadline = self.harness.clock.real() + SUBSCRIBE_WAIT_S
        if self.resubscribes():
            self.sim.wait_for(
                lambda vs: all(v.sent("SUBACK") for v in self.live_of(vs)),
                SUBSCRIBE_WAIT_S,
            )
        while not self.baseline <= self.covered_types():
            left = deadline - self.harness.clock.real()
            if left <= 0:
                return
            seen = sum(len(v.sent("SUBACK")) for v in self.live())

            def changed(views: list[ConnectionView], seen: int = seen) -> bool:
                live = self.live_of(views)
                return not live or sum(len(v.sent("SUBACK")) for v in live) > seen

            self.sim.wait_for(changed, left)
            if not self.live():
                return

    def first_contact(self) -> None:
        """Once per run: wait for the SUT's first connection, then for its subscriptions to
        settle (they cover what it consumes, or SUBSCRIBE_WAIT_S pass)."""
        if self._contact:
            return
        self._contact = True
        live = self.sim.wait_for(lambda vs: self.live_of(vs) or self.exited(), self.startup_wait)
        if not (isinstance(live, list) and live):
            raise AssertionError(self.harness.mark_down(self.startup_cause()))
        first = min(accepted_at(v) or 0.0 for v in live)
        wanted = list(self.sim.consumed_topics.values())

        def covered(views: list[ConnectionView]) -> bool:
            granted = [
                f for v in self.live_of(views) for f, _, code in v.subscriptions if code < 0x80
            ]
            return all(any(topic_matches(f, t) for f in granted) for t in wanted)

        left = first + SUBSCRIBE_WAIT_S - self.harness.clock.real()
        if left > 0:
            self.sim.wait_for(covered, left)
        self.baseline = self.covered_types()

    @property
    def startup_wait(self) -> float:
        launched = self.harness.manifest.process is not None
        return STARTUP_WAIT_S if launched else STARTUP_WAIT_ELSEWHERE_S

    def startup_cause(self) -> str:
        if self.exited():
            return f"the SUT process exited ({self.harness.sut_alive()})"
        views = self.connections()
        failures = [f.reason for f in self.sim.broker.server.handshake_failures]
        refused = [v for v in views if v.connack not in (None, CONNACK_ACCEPTED)]
        if views and refused:
            codes = sorted({str(v.connack) for v in refused})
            return (
                f"no MQTT connection of the SUT was accepted within {self.startup_wait:g} s: "
                f"{len(refused)} CONNECT(s) refused with CONNACK {', '.join(codes)}"
            )
        if failures:
            return (
                f"no MQTT connection of the SUT within {self.startup_wait:g} s: {len(failures)} "
                f"TLS handshake(s) with the broker failed ({'; '.join(sorted(set(failures))[:3])})"
            )
        if views:
            return f"the SUT opened a TLS connection but sent no accepted CONNECT within {self.startup_wait:g} s"
        return (
            f"nothing reached the broker ({self.sim.broker.host}:{self.sim.broker.port}) within "
            f"{self.startup_wait:g} s: is the SUT configured with CONFORMANCE_IVANTI_BROKER_*?"
        )

    def offline_cause(self, bound: float) -> str:
        if self.exited():
            return f"the SUT process exited ({self.harness.sut_alive()})"
        views = self.connections()
        last = max(views, key=lambda v: v.closed_real_s or 0.0, default=None)
        how = (
            f"its last connection ({last.client_id}) was closed: {last.close_reason}"
            if last is not None and last.close_reason
            else "it has no connection"
        )
        return f"the SUT did not reconnect to the broker within {bound:g} s ({how})"

    def reconnect_bound(self) -> float:
        """How long the SUT may take to come back: RECONNECT_WAIT_S, or 2.5 times the longest
        gap between its recent consecutive CONNECTs (its back-off), capped."""
        connects = sorted(p.real_s for v in self.connections()[-30:] for p in v.received("CONNECT"))
        gaps = [b - a for a, b in itertools.pairwise(connects)][-5:]
        return min(RECONNECT_WAIT_MAX_S, max([RECONNECT_WAIT_S, *(2.5 * g for g in gaps)]))

    def subscriptions(self) -> list[tuple[str, int]]:
        """(filter, granted QoS) of the sessions of the SUT's live connections."""
        live = {v.client_id for v in self.live()}
        sessions = self.perform(Sessions())
        return [
            (topic_filter, qos)
            for s in sessions
            if s.client_id in live
            for topic_filter, qos in s.subscriptions
        ]

    def covering(self, topic: str) -> list[tuple[str, int]]:
        return [(f, q) for f, q in self.subscriptions() if topic_matches(f, topic)]

    def subscribed_types(self) -> list[str]:
        """The consumed event types whose topic the SUT is subscribed to, preferred first."""
        granted = [f for f, _ in self.subscriptions()]
        consumed = self.sim.consumed_topics
        return [
            t
            for t in PREFERRED
            if t in consumed and any(topic_matches(f, consumed[t]) for f in granted)
        ]

    def event_type(self, check: Check) -> str:
        """A consumed event type the SUT subscribes to; not-verified when there is none."""
        types = self.subscribed_types()
        if not types:
            raise check.not_verified(
                "the SUT subscribes to none of the topics it consumes (see IVT-SUB-01)"
            )
        return types[0]

    def qos1_type(self, check: Check) -> tuple[str, str]:
        """A consumed event type whose topic a live session of the SUT holds at QoS 1, and that
        session's client id; not-verified when there is none (nothing is acknowledged or
        redelivered at QoS 0)."""
        live = {v.client_id for v in self.live()}
        sessions = [s for s in self.perform(Sessions()) if s.client_id in live]
        consumed = self.sim.consumed_topics
        for name in self.subscribed_types():
            for session in sessions:
                if any(
                    q >= 1 and topic_matches(f, consumed[name]) for f, q in session.subscriptions
                ):
                    return name, session.client_id
        if self.subscribed_types():
            raise check.not_verified(
                "the SUT subscribes at QoS 0 only, so nothing is acknowledged or redelivered "
                "(see IVT-SUB-02)"
            )
        raise check.not_verified(
            "the SUT subscribes to none of the topics it consumes (see IVT-SUB-01)"
        )

    # --- publishing and what became of it -----------------------------------------------------

    def publish(
        self,
        event_type: str,
        payload: bytes | dict[str, Any] | None = None,
        *,
        regular: bool | None = None,
    ) -> Published:
        """Publish to the SUT's topic of ``event_type`` as the vendor does (QoS 1); a realistic
        event unless ``payload`` is given. Regular events (the default for a generated one)
        also count for the run-wide acknowledgement check."""
        published = self.perform(Publish(event_type=event_type, payload=payload))
        if regular if regular is not None else payload is None:
            self.regular[hash(published.payload)] = published.key
        return published

    def realistic(self, event_type: str) -> dict[str, Any]:
        """A realistic event of ``event_type`` as a JSON object, not published."""

        async def make() -> dict[str, Any]:
            _, event = self.sim.broker.make_event(self.sim.tenant, event_type)
            return event.model_dump(exclude_none=True)

        return self.harness.run(make())

    def copies(self, published: Published | None = None) -> list[Copy]:
        """The PUBLISHes of ``published`` (every QoS 1 one if None) on the SUT's connections."""
        copies = [c for v in self.connections() for c in pair_acks(v)]
        if published is None:
            return copies
        wanted = hash(published.payload)
        return [
            c
            for c in copies
            if c.publish.payload_hash == wanted and c.publish.topic == published.topic
        ]

    def acked(self, published: Published) -> bool:
        return any(c.acked_real_s is not None for c in self.copies(published))

    def wait_acked(
        self, events: list[Published], timeout: float = RECEIPT_WAIT_S, *, any_copy: bool = True
    ) -> None:
        """Wait (bounded) until each event has an acknowledged copy (``any_copy``) or every copy
        of it is acknowledged; returns early if the SUT process exits."""

        def done(views: list[ConnectionView]) -> bool:
            if self.exited():
                return True
            copies = [c for v in views for c in pair_acks(v)]
            for event in events:
                mine = [
                    c
                    for c in copies
                    if c.publish.payload_hash == hash(event.payload)
                    and c.publish.topic == event.topic
                ]
                acks = [c.acked_real_s is not None for c in mine]
                if not mine or not (any(acks) if any_copy else all(acks)):
                    return False
            return True

        self.sim.wait_for(done, timeout)

    def drop(self) -> list[str]:
        """Close every live connection of the SUT as a network failure would; the client ids."""
        ids = self.client_ids()
        for client_id in ids:
            self.perform(Disconnect(client_id=client_id))
        return ids

    # --- the observer -------------------------------------------------------------------------

    def reports(self, published: Published) -> int:
        """How many times the SUT reported processing ``published``."""
        key = published.key
        return sum(1 for r in self.records() if key in vendor("ivanti").observer_keys(r))

    def count_reports(
        self, events: Iterable[Published], timeout: float, *, more_than: int = 0
    ) -> dict[str, int]:
        """Reports per event key, waiting (at most ``timeout``) until every event was reported
        more than ``more_than`` times (in any order: a SUT may process concurrently)."""
        return self.count_keyed(
            {e.key: e.key for e in events if e.key}, timeout, more_than=more_than
        )

    def fence(self, check: Check | None, awaiting: Iterable[Published] = ()) -> Problem:
        """Wait for the reports of ``awaiting``, then for a marker event's
        (:meth:`VendorDriver.fence_with`); ``check`` is None for an exploration."""

        def marker() -> dict[str, str]:
            if check is not None:
                name = self.event_type(check)
            elif types := self.subscribed_types():
                name = types[0]
            else:
                raise MarkerRefused("the SUT subscribes to none of the topics it consumes")
            published = self.publish(name)
            self.wait_acked([published])
            if not self.acked(published) or not published.key:
                raise MarkerRefused(
                    "the SUT did not acknowledge a marker event, so reports cannot be awaited"
                )
            return {published.key: published.key}

        return self.fence_with({e.key: e.key for e in awaiting if e.key}, marker)

    # --- reproducers ----------------------------------------------------------------------------

    def reproduce(self, check: Check, topic: str, payload: bytes) -> None:
        """Offer ``check`` a command that publishes the same message again, as the vendor's
        event source, to ``conformance-sim serve ivanti`` run with the same --pki-dir (from
        the report's folder: a large or binary payload is written to ``bodies/``)."""
        check.reproducer(self.mosquitto_pub(topic, payload), size=len(payload))

    def reproduce_offline(self, check: Check, events: Iterable[Published]) -> None:
        """Offer ``check`` the commands that publish ``events`` again while the SUT is
        stopped: its persistent session must get them once it is started again (IVT-SESS-02)."""
        events = list(events)
        commands = " && ".join(self.mosquitto_pub(e.topic, e.payload) for e in events)
        check.reproducer(
            f"{commands}  # with the SUT stopped; then start it: it must receive each",
            size=sum(len(e.payload) for e in events),
        )

    def mosquitto_pub(self, topic: str, payload: bytes) -> str:
        """The ``mosquitto_pub`` command that publishes ``payload`` to ``topic`` at QoS 1 as the
        vendor's event source (:meth:`reproduce`)."""
        source = self.sim.broker.event_source(self.sim.tenant).cert
        parts = [
            "mosquitto_pub", "-h", "$CONFORMANCE_IVANTI_BROKER_HOST",
            "-p", "$CONFORMANCE_IVANTI_BROKER_PORT", "--cafile", "$CONFORMANCE_CA_FILE",
            "--cert", str(source.cert), "--key", str(source.key), "--tls-version", "tlsv1.2",
            "-V", "mqttv311", "-q", "1", "-t", topic,
        ]  # fmt: skip
        text = inline_text(payload)
        if text is not None:
            parts += ["-m", text]
        else:
            parts += ["-f", self.harness.body_file(payload)]
        return " ".join(p if p.startswith("$") else shlex.quote(p) for p in parts)
