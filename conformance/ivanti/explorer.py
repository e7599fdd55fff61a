"""Scenario exploration of an Ivanti subscriber (conformance/exploration.py,
docs/exploration.md): the operations a scenario is made of, and its judgement.

Steps: publish an event of a consumed type to the SUT's tenant; lose the SUT's next PUBACK on
the way (its PUBLISH stays in flight on a live connection); redeliver what is in flight in the
session (DUP = 1), as a broker does after its redelivery timeout; drop the connection right
after the next PUBLISH, before its PUBACK; hold the SUT offline for a simulated duration (its
reconnects refused, events queued for its session); advance the simulated clock, across the
3-hour retention too. Between steps the explorer waits (bounded, in real time: the SUT's own
reconnect timers) until every PUBLISH sent was acknowledged or its connection was cut, and the
SUT is connected again unless it is held offline.

Judged once quiet, with the scripted IVT-OBS-01 code (``processed_once``): every event the SUT
acknowledged (a PUBACK to any copy, counted by the broker or lost on the way) is reported
exactly once, none more than once. IVT-SESS-02: every event queued for the SUT's session while
it was offline, whose session resumed inside the 3-hour retention, was received (a PUBACK). At the end the faults are cleared, a hold ends, and what is
still in flight is redelivered in the session, so every event the vendor still holds reaches the
SUT. An event the vendor dropped (queued past the 3-hour retention, never delivered) is never
acknowledged, so it is never held against the SUT; only a second processing of it would count.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

from conformance.driver import DUPLICATE_SETTLE_S, processed_once
from conformance.exploration import AWAITING_S, Budget, Judgement, Violation, parse_step
from conformance.ivanti.driver import ACK_LIMIT_S, RECONNECT_WAIT_S, IvantiDriver, pair_acks
from conformance.verdicts import NotVerified
from simulators.ivanti.broker import Published
from simulators.ivanti.operations import (
    DropBeforeAck,
    HoldOffline,
    LosePuback,
    Publish,
    Redeliver,
    Reset,
    Sessions,
)
from simulators.mqtt.packetlog import ConnectionView
from simulators.operations import AdvanceClock, Operation

if TYPE_CHECKING:
    from hypothesis.strategies import SearchStrategy

__all__ = ["IvantiExplorer"]

HOLDER: Final = "sut"  # a generated step's client id until the SUT's own is known
RETENTION_S: Final = 3 * 3600.0  # "a maximum duration of 3 hours"
# Hold-offline durations and clock steps on either side of the 3-hour retention.
OFFLINE_S = (600.0, RETENTION_S + 600.0)
CLOCK_STEPS_S = (60.0, 3600.0, RETENTION_S + 600.0)


@dataclass
class IvantiExplorer:
    """The Ivanti part of an exploration, over the run's Ivanti driver."""

    part = "subscriber"  # what of the SUT it explores (not a field: no instance differs)

    driver: IvantiDriver
    published: list[Published] = field(default_factory=list)
    holder: str | None = None  # the client id of the SUT's QoS 1 session
    held_until: float = 0.0  # simulated time a hold-offline ends
    started_real_s: float = 0.0

    def rules(self) -> dict[str, SearchStrategy[Operation]]:
        """Hypothesis takes the rules in the order of their names and favours the first ones:
        what the broker does (lose a PUBACK, publish, redeliver) before the clock, the drops and
        the holds, which cost a real-time reconnect each."""
        from hypothesis import strategies as st

        types = sorted(self.driver.sim.consumes)
        return {
            "broker_publishes": st.sampled_from(types).map(lambda t: Publish(event_type=t)),
            "broker_loses_puback": st.integers(1, 2).map(
                lambda n: LosePuback(client_id=HOLDER, times=n)
            ),
            "broker_redelivers": st.just(Redeliver(client_id=HOLDER)),
            "connection_drops_before_ack": st.just(DropBeforeAck(client_id=HOLDER)),
            "held_offline": st.sampled_from(OFFLINE_S).map(
                lambda s: HoldOffline(client_id=HOLDER, duration_sim_s=s)
            ),
            "clock_advances": st.sampled_from(CLOCK_STEPS_S).map(lambda s: AdvanceClock(seconds=s)),
        }

    def parse(self, step: Mapping[str, Any]) -> Operation:
        return parse_step(
            step, Publish | LosePuback | Redeliver | DropBeforeAck | HoldOffline | AdvanceClock
        )

    def name(self, operation: Operation, number: int) -> Operation:
        """The SUT's own client id for the placeholder (a saved scenario names it, so that
        ``conformance-sim ctl run`` aims at the same client)."""
        return self._aimed(operation)

    def boundaries(self, operation: Operation) -> list[str]:
        if isinstance(operation, Publish):
            return [f"type {operation.event_type}"]
        if isinstance(operation, LosePuback):
            return ["a PUBACK lost on a live connection"]
        if isinstance(operation, Redeliver):
            return ["in-session redelivery (DUP = 1)"]
        if isinstance(operation, DropBeforeAck):
            return ["fault drop-before-ack"]
        if isinstance(operation, HoldOffline | AdvanceClock):
            seconds = (
                operation.duration_sim_s
                if isinstance(operation, HoldOffline)
                else operation.seconds
            )
            what = "offline" if isinstance(operation, HoldOffline) else "clock"
            side = "past" if seconds >= RETENTION_S else "within"
            return [f"{what} {side} the 3 h retention"]
        return []

    # Playing a scenario.

    def begin(self, budget: Budget) -> None:
        self.driver.awaiting_s, self.driver.deadline = AWAITING_S, budget.deadline
        self.published = []
        self.held_until = 0.0
        self.started_real_s = self.driver.harness.clock.real()
        budget.run(self.driver.harness, self.driver.sim.perform(Reset()))
        self._quiet(budget)
        self.holder = self.holder or self._holder(budget)

    def perform(self, operation: Operation, budget: Budget) -> None:
        harness = self.driver.harness
        aimed = self._aimed(operation)
        if isinstance(aimed, Publish):
            self.published.append(budget.run(harness, self.driver.sim.perform(aimed)))
        else:
            if isinstance(aimed, HoldOffline):
                self.held_until = harness.clock.now() + aimed.duration_sim_s
            budget.run(harness, self.driver.sim.perform(aimed))  # type: ignore[arg-type]
        self._quiet(budget)

    def finish(self, budget: Budget) -> Judgement:
        harness = self.driver.harness
        budget.run(harness, self.driver.sim.perform(Reset()))  # faults and holds end
        self.held_until = 0.0
        if not self._quiet(budget):
            if late := self._unanswered():
                return Judgement((late,))
            return Judgement(
                not_judged="the SUT was not connected again, or left a PUBLISH unanswered"
            )
        if self.holder is not None:
            budget.run(harness, self.driver.sim.perform(Redeliver(client_id=self.holder)))
            self._quiet(budget)
        if not any(p.key for p in self.published):
            return Judgement()
        return self._judge(budget)

    def _judge(self, budget: Budget) -> Judgement:
        """IVT-OBS-01 as the scripted check judges it: fence, then count each event's reports."""
        budget.check()
        events = [p for p in self.published if p.key]
        acknowledged = [e for e in events if self.driver.acked(e)]
        try:
            unverifiable = self.driver.fence(None, awaiting=acknowledged)
        except NotVerified as exc:
            return Judgement(not_judged=str(exc))
        if unverifiable:
            return Judgement(not_judged=unverifiable)
        budget.check()
        counts = self.driver.count_reports(events, DUPLICATE_SETTLE_S, more_than=1)
        problem = processed_once(counts, [e.key for e in acknowledged if e.key])
        violations = [Violation("IVT-OBS-01", problem)] if problem else []
        if late := self._unanswered():
            violations.append(late)
        if lost := self._lost_within_retention():
            violations.append(
                Violation(
                    "IVT-SESS-02",
                    f"{len(lost)} event(s) kept for the SUT's session and still held when it "
                    f"resumed (inside the {self.retention_s / 3600:g}-hour retention) were not "
                    f"received: {', '.join(e.event_type or e.topic for e in lost[:3])}",
                )
            )
        return Judgement(tuple(violations))

    def _unanswered(self) -> Violation | None:
        """IVT-ACK-01: every PUBLISH of this scenario the broker sent on a connection that
        stayed up got a PUBACK within 10 s; IVT-ACK-02 when a repeat (DUP = 1) got none at all.
        A PUBACK the broker lost on the way counts (the SUT sent it). None while the SUT is
        down: GEN-LIVE-01 judges that."""
        if self.driver.harness.sut_alive() is not None:
            return None
        now = self.driver.harness.clock.real()
        for view in self.driver.connections():
            if (view.closed_real_s or now) < self.started_real_s:
                continue
            for copy in pair_acks(view):
                sent = copy.publish.real_s
                if sent < self.started_real_s or copy.cut_off:
                    continue
                took = (copy.acked_real_s if copy.acked_real_s is not None else now) - sent
                if took <= ACK_LIMIT_S:
                    continue
                if copy.acked_real_s is None and view.closed_real_s is not None:
                    continue  # the SUT closed it itself: judged by its reconnect, not here
                what = "a repeated PUBLISH (DUP = 1)" if copy.dup else "a QoS 1 PUBLISH"
                on = f"{what} on {copy.topic} (packet id {copy.packet_id})"
                if copy.acked_real_s is not None:  # late: the 10 s are IVT-ACK-01's
                    return Violation(
                        "IVT-ACK-01",
                        f"{on} was acknowledged {took:.1f} s later (at most {ACK_LIMIT_S:g} s)",
                    )
                return Violation(
                    "IVT-ACK-02" if copy.dup else "IVT-ACK-01",
                    f"{on} got no PUBACK in {took:.1f} s (at most {ACK_LIMIT_S:g} s)",
                )
        return None

    @property
    def retention_s(self) -> float:
        return self.driver.sim.broker.policy.retention_s

    def _lost_within_retention(self) -> list[Published]:
        """IVT-SESS-02: each event queued for the SUT's session while it was offline, whose
        session resumed before the retention ran out (the broker still held it), must have
        been received (a PUBACK). One the broker dropped first is the vendor's loss; an event
        whose resumption the packet log no longer holds in full is not judged."""
        views = [v for v in self.driver.connections() if v.accepted and v.client_id == self.holder]
        lost = []
        for event in self.published:
            if self.holder not in event.kept_for:
                continue
            after = [v for v in views if v.opened_real_s > event.real_s]
            if not after or not any(v.opened_real_s <= event.real_s for v in views):
                continue  # no resumption seen, or the log lost the connections between
            resumed = min(after, key=lambda v: v.opened_real_s)
            if len(resumed.packets) < resumed.packets_total:
                continue
            if resumed.opened_sim_s >= event.sim_s + self.retention_s:
                continue  # expired before the session resumed: the vendor dropped it
            if not self.driver.acked(event):
                lost.append(event)
        return lost

    def _aimed(self, operation: Operation) -> Operation:
        if self.holder is None or getattr(operation, "client_id", None) != HOLDER:
            return operation
        return operation.model_copy(update={"client_id": self.holder})

    def _holder(self, budget: Budget) -> str | None:
        """The client id of the SUT's live session subscribed at QoS 1 (any live one else)."""
        live = {v.client_id for v in self.driver.live()}
        sessions = budget.run(self.driver.harness, self.driver.sim.perform(Sessions()))
        held = [s.client_id for s in sessions if s.client_id in live]
        qos1 = [
            s.client_id
            for s in sessions
            if s.client_id in live and any(q for _, q in s.subscriptions)
        ]
        return next(iter(qos1 or held), None)

    def _quiet(self, budget: Budget) -> bool:
        """Wait (bounded) until every PUBLISH of this scenario was answered, cut off or left
        unanswered past the 10 s of IVT-ACK-01 (the verdict is known then), and the SUT is
        connected again unless it is held offline. Whether it came to that. A shorter wait
        would let the next step (a redelivery) resend a copy the SUT is still working on."""
        since = self.started_real_s
        clock = self.driver.harness.clock

        def quiet(views: list[ConnectionView]) -> bool:
            if self.driver.exited():
                return True
            if not IvantiDriver.live_of(views) and clock.now() >= self.held_until:
                return False
            now = clock.real()
            return all(
                # answered, cut off, or late already (IVT-ACK-01 judges it: no use waiting)
                c.acked_real_s is not None or c.cut_off or now - c.publish.real_s > ACK_LIMIT_S
                for v in views
                if (v.closed_real_s or now) >= since
                for c in pair_acks(v)
                if c.publish.real_s >= since
            )

        timeout = min(RECONNECT_WAIT_S, max(budget.remaining(), 0.1))
        return bool(self.driver.sim.wait_for(quiet, timeout))
