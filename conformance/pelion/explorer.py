"""Scenario exploration of a Pelion SUT (conformance/exploration.py, docs/exploration.md): the
operations a scenario is made of, and its judgement, for each channel the SUT claims.

**Callback receiver** (:class:`PelionCallbackExplorer`). Steps: queue 1–3 notifications on the
SUT's callback channel; arm a fault for the next callback attempts (answered 500, sent and the
answer dropped, never sent); advance the simulated clock across the back-off (2 s doubling to
the 2-minute cap). The service's delivery schedule runs between steps: a failed batch waits out
its back-off, and the items queued in the meantime join it when it is formed again (one batch
in flight per channel). No step reaches the 24-hour removal: a removed channel would end the
SUT's session for the rest of the run. Judged once quiet, with the scripted PEL-OBS-01 code
(``processed_once``): every item the SUT acknowledged (a 2xx to a batch carrying it) reported
exactly once, none more than once. Items the service still held at the end are dropped and
never held against the SUT.

**WebSocket client** (:class:`PelionWebSocketExplorer`). Steps: queue 1–3 notifications on the
SUT's WebSocket channel (sent as a frame at once when a socket is bound, kept for the next one
otherwise: "the events bundle is delivered once the socket is eventually opened"); close the
socket with 1001 (going away) or 1011 (an unexpected condition); end it without a close frame
(the client sees 1006); delete the channel (its socket is closed 1001, and the SUT's reconnect
is refused with 1011 until it creates the channel again); hold the next handshake 0.5 s
before its 101; advance the simulated clock by a minute, an hour, or past 24 hours ("The server
closes automatically after 24 hours of inactivity"; a channel without a socket is removed after
24 hours, items older than that are dropped). Only a close or a drop waits (bounded) for the SUT's
socket and for what is queued to go out on it; the other steps do not, so items queued while
the SUT reconnects go out in the bundle on its next socket, and a channel can be deleted while
a reconnect is under way. The 1008 of a revoked key is left out: after it the SUT must wait
10 s of its own real time (PEL-WS-05, a scripted check).

Judged once the SUT holds a socket again and the channel's queue is empty:

- PEL-WS-04: the SUT tries to connect again within the scripted check's bound (130 s) after
  its socket was ended, and never connected after a 1011 for "no channel" without creating its
  channel first.
- PEL-MSG-01 (as the scripted check judges a message on the WebSocket): every item the SUT
  took is reported. An item is taken when its frame was written to a socket still open, closed
  afterwards by the service with a close frame (the frames before it arrive first), or that
  lived :data:`SETTLE_S` after the frame: the vendor's acknowledgement on a WebSocket is the
  transport's ("sends the next batch when the transport level has succeeded"), so such an item
  is never sent again. An item whose socket was dropped within :data:`SETTLE_S` of its frame
  may have been lost by the network, and one the service discarded with a deleted channel was
  never sent: neither is held against the SUT. A second report is not judged (PEL-OBS-01
  belongs to the callback profile).
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Final

from conformance.driver import DUPLICATE_SETTLE_S, processed_once
from conformance.exploration import (
    AWAITING_S,
    Budget,
    BudgetSpent,
    Judgement,
    Violation,
    parse_step,
)
from conformance.pelion.driver import (
    RECONNECT_WAIT_S,
    SETTLE_S,
    Channel,
    PelionDriver,
    new_ep,
)
from conformance.verdicts import NotVerified
from simulators.faults import FaultKind
from simulators.operations import AdvanceClock, Operation
from simulators.pelion.channels import ItemQueued
from simulators.pelion.delivery_terms import FIRST_DELAY_S, MAX_DELAY_S
from simulators.pelion.operations import (
    CloseSocket,
    DelayHandshakes,
    DeleteChannel,
    DropSocket,
    FailDeliveries,
    Inject,
)

if TYPE_CHECKING:
    from hypothesis.strategies import SearchStrategy

__all__ = ["PelionCallbackExplorer", "PelionWebSocketExplorer"]

# Clock steps on either side of the first back-off (2 s), its doubling and its cap (120 s).
CLOCK_STEPS_S = (1.0, 5.0, 30.0, 120.0, 600.0)
SETTLE_SIM_S = 3600.0  # at the end, the back-off may jump this far (well short of 24 h)
SETTLE_REAL_S = 30.0
# WebSocket: the close codes the service sends a bound socket ("1001 Going away", "1011
# Unexpected condition"), the handshake holds (real s), and clock steps well inside 24 h.
CLOSE_CODES = (1001, 1011)
HANDSHAKE_HOLDS_S = (0.5,)
# "The server closes automatically after 24 hours of inactivity"; a channel with no socket is
# removed after 24 hours: a step past them (which closes an idle socket 1001, or removes the
# channel of a SUT still reconnecting, whose reconnect then meets 1011).
DAY_S: Final = 24 * 3600.0
WS_CLOCK_STEPS_S = (60.0, 3600.0, DAY_S + 60.0)


Problem = str | None


def _notifications(count: int) -> Inject:
    items = [
        {
            "ep": f"explore-{i}",
            "path": "/3200/0/5501",
            "ct": "text/plain",
            "payload": base64.b64encode(f"value-{i}".encode()).decode(),
            "max-age": 0,
        }
        for i in range(count)
    ]
    return Inject(kind="notifications", items=items)


@dataclass
class _ChannelExplorer:
    """What both channels' explorers share: the items a scenario queued, each play's fresh
    devices, and the quiet point of the service's delivery schedule."""

    driver: PelionDriver
    queued: list[ItemQueued] = field(default_factory=list)
    eps: dict[str, str] = field(default_factory=dict)  # symbolic device name -> this play's
    channel: ClassVar[Channel]

    @property
    def part(self) -> str:
        return self.channel

    @property
    def key(self) -> str:
        return self.driver.key(self.channel)

    def name(self, operation: Operation, number: int) -> Operation:
        """Step ``number``'s devices are ``d<number>-<i>`` (each play maps them to fresh
        ones); the service gives every queued item a fresh uid."""
        if isinstance(operation, Inject):
            items = [{**item, "ep": f"d{number}-{i}"} for i, item in enumerate(operation.items)]
            return operation.model_copy(update={"items": items})
        return operation

    def _inject(self, operation: Inject, budget: Budget) -> None:
        """Queue the step's items on this channel, each play's own devices (the observer also
        knows an item by its address)."""
        items = [{**item, "ep": self._ep(str(item.get("ep")))} for item in operation.items]
        aimed = operation.model_copy(update={"key": self.key, "items": items})
        self.queued += budget.run(self.driver.harness, self.driver.sim.perform(aimed))

    def _ep(self, symbolic: str) -> str:
        return self.eps.setdefault(symbolic, new_ep())

    async def _quiet(self, remaining: float) -> None:
        """Run the delivery schedule until nothing is in flight and what is queued waits for a
        later simulated time (a back-off, an item's lifetime), or nothing is queued."""
        schedule = self.driver.service.schedule
        clock = self.driver.harness.clock

        def quiet() -> bool:
            if schedule.busy:
                return False
            due = schedule.next_deadline()
            return schedule.idle() or (due is not None and due > clock.now())

        await self.driver.service.drive(quiet, timeout_real_s=max(remaining, 0.1))

    def _count(self, delivered: set[str], budget: Budget) -> Problem:
        """PEL-OBS-01 as the scripted check judges it: fence (awaiting the ``delivered``
        items), then count each queued item's reports; a ``NotVerified`` when the reports
        cannot be awaited."""
        budget.check()
        unverifiable = self.driver.fence(
            self.channel, awaiting=[q for q in self.queued if q.item.uid in delivered]
        )
        if unverifiable:
            raise NotVerified(unverifiable)
        budget.check()
        counts = self.driver.count_reports(self.queued, DUPLICATE_SETTLE_S, more_than=1)
        return processed_once(counts, delivered)


@dataclass
class PelionCallbackExplorer(_ChannelExplorer):
    """The callback channel: queued items, failed batches and back-off time interleaved."""

    channel: ClassVar[Channel] = "callback"
    first_seq: int = 0  # the first delivery attempt of the scenario (attempt log number)

    def rules(self) -> dict[str, SearchStrategy[Operation]]:
        from hypothesis import strategies as st

        return {
            "inject": st.integers(1, 3).map(_notifications),
            "fail_deliveries": st.builds(
                FailDeliveries,
                kind=st.sampled_from(
                    [FaultKind.STATUS, FaultKind.DROP_BEFORE_ACK, FaultKind.UNSENT]
                ),
                times=st.integers(1, 3),
            ),
            "advance_clock": st.sampled_from(CLOCK_STEPS_S).map(lambda s: AdvanceClock(seconds=s)),
        }

    def parse(self, step: Mapping[str, Any]) -> Operation:
        return parse_step(step, Inject | FailDeliveries | AdvanceClock)

    def boundaries(self, operation: Operation) -> list[str]:
        if isinstance(operation, Inject):
            return [f"{len(operation.items)} item(s) queued"]
        if isinstance(operation, FailDeliveries):
            return [f"fault {operation.kind}"]
        if isinstance(operation, AdvanceClock):
            if operation.seconds < FIRST_DELAY_S:
                return [f"clock short of the first back-off ({FIRST_DELAY_S:g} s)"]
            if operation.seconds < MAX_DELAY_S:
                return ["clock past the first back-off"]
            return [f"clock past the back-off cap ({MAX_DELAY_S:g} s)"]
        return []

    # Playing a scenario.

    def begin(self, budget: Budget) -> None:
        self.driver.awaiting_s, self.driver.deadline = AWAITING_S, budget.deadline
        self.queued, self.eps = [], {}
        self.first_seq = max((a.seq for a in self.driver.service.attempts()), default=0) + 1
        budget.run(self.driver.harness, self._reset())

    def perform(self, operation: Operation, budget: Budget) -> None:
        harness = self.driver.harness
        if isinstance(operation, Inject):
            self._inject(operation, budget)
        else:
            budget.run(harness, self.driver.sim.perform(operation))  # type: ignore[arg-type]
        budget.run(harness, self._quiet(budget.remaining()))

    def finish(self, budget: Budget) -> Judgement:
        harness = self.driver.harness
        service = self.driver.service
        budget.run(harness, self._clear_faults())

        async def drained() -> bool:
            return await service.drive(
                timeout_real_s=min(SETTLE_REAL_S, max(budget.remaining(), 0.1)),
                max_sim_s=SETTLE_SIM_S,
            )

        drained_all = budget.run(harness, drained(), autojump=True)
        if not drained_all:
            service.discard_queue(self.key)  # still held by the vendor: not the SUT's to answer
        if not self.queued:
            return Judgement()
        return self._judge(budget)

    def _unanswered(self) -> Violation | None:
        """PEL-CB-03: every batch PUT of this scenario no fault of ours touched was answered 2xx
        within the delivery timeout. None while the SUT is down: GEN-LIVE-01 judges that."""
        if self.driver.harness.sut_alive() is not None:
            return None
        for attempt in self.driver.service.attempts():
            if (
                attempt.seq < self.first_seq
                or attempt.key != self.key
                or attempt.channel != "callback"
                or attempt.fault is not None
                or attempt.succeeded
            ):
                continue
            answer = (
                f"answered {attempt.answered}"
                if attempt.answered is not None
                else f"no answer ({attempt.error})"
            )
            return Violation(
                "PEL-CB-03",
                f"a notification batch PUT of {attempt.items} item(s) got {answer} "
                f"after {attempt.elapsed_real_s:.1f} s",
            )
        return None

    def _judge(self, budget: Budget) -> Judgement:
        """PEL-OBS-01: every item the SUT acknowledged (a 2xx to a batch carrying it);
        PEL-CB-03: every batch answered."""
        serialization = self.driver.service.serialization(self.key)
        if serialization is None or not serialization.cfg.include_uid:
            return Judgement(not_judged="the SUT's callback carries no uid (include_uid)")
        uids = {q.item.uid for q in self.queued}
        acknowledged = {
            uid
            for a in self.driver.service.attempts()
            if a.key == self.key and a.succeeded and a.uids
            for uid in a.uids
            if uid in uids
        }
        unanswered = self._unanswered()  # before the fence adds its marker's batches
        try:
            problem = self._count(acknowledged, budget)
        except NotVerified as exc:
            return Judgement((unanswered,) if unanswered else (), str(exc))
        violations = [Violation("PEL-OBS-01", problem)] if problem else []
        return Judgement((*violations, *([unanswered] if unanswered else [])))

    async def _reset(self) -> None:
        """Nothing left over from the last scenario: faults cleared, the queue empty."""
        await self._clear_faults()
        self.driver.service.discard_queue(self.key)

    async def _clear_faults(self) -> None:
        self.driver.service.faults.clear("callback")


@dataclass
class PelionWebSocketExplorer(_ChannelExplorer):
    """The WebSocket channel: queued items, closes, drops, refused reconnects (a deleted
    channel), slow handshakes and simulated time interleaved."""

    channel: ClassVar[Channel] = "websocket"
    started_real_s: float = 0.0
    ended: list[str] = field(default_factory=list)  # this scenario's ends of the SUT's socket

    def rules(self) -> dict[str, SearchStrategy[Operation]]:
        """Four rules, so that an end of the socket is as likely as queued items: the ends
        (closes, a deleted channel, a drop) are one rule. Named so that Hypothesis, which
        favours the first rules by name, shrinks towards queued items and ends."""
        from hypothesis import strategies as st

        ends: list[Operation] = [
            *(CloseSocket(code=code, reason="exploration") for code in CLOSE_CODES),
            DeleteChannel(),
            DropSocket(),
        ]
        return {
            "a_items_queued": st.integers(1, 3).map(_notifications),
            "b_socket_ended": st.sampled_from(ends),
            "c_handshake_held": st.sampled_from(HANDSHAKE_HOLDS_S).map(
                lambda s: DelayHandshakes(seconds=s, times=1)
            ),
            "d_clock_advanced": st.sampled_from(WS_CLOCK_STEPS_S).map(
                lambda s: AdvanceClock(seconds=s)
            ),
        }

    def parse(self, step: Mapping[str, Any]) -> Operation:
        return parse_step(
            step,
            Inject | CloseSocket | DeleteChannel | DropSocket | DelayHandshakes | AdvanceClock,
        )

    def boundaries(self, operation: Operation) -> list[str]:
        if isinstance(operation, Inject):
            return [f"{len(operation.items)} item(s) queued"]
        if isinstance(operation, CloseSocket):
            return [f"close {operation.code}"]
        if isinstance(operation, DeleteChannel):
            return ["channel deleted: close 1001, then a reconnect refused with 1011"]
        if isinstance(operation, DropSocket):
            return ["socket dropped (1006)"]
        if isinstance(operation, DelayHandshakes):
            return [f"handshake held {operation.seconds:g} s"]
        if isinstance(operation, AdvanceClock):
            if operation.seconds >= DAY_S:
                return ["clock past 24 h: an idle socket closed, an unbound channel removed"]
            return ["clock within the 24 h an idle socket and an unbound channel are kept"]
        return []

    # Playing a scenario.

    def begin(self, budget: Budget) -> None:
        """A socket to start from (the last scenario's reconnect, awaited, bounded), no fault
        armed, nothing queued."""
        self.driver.awaiting_s, self.driver.deadline = AWAITING_S, budget.deadline
        self.queued, self.eps, self.ended = [], {}, []
        harness = self.driver.harness
        budget.run(harness, self._reset())
        if not self._back(budget):
            raise BudgetSpent(
                "the SUT holds no WebSocket to explore: " + self.driver.describe_connections()[:300]
            )
        self.started_real_s = harness.clock.real()

    def perform(self, operation: Operation, budget: Budget) -> None:
        harness = self.driver.harness
        if isinstance(operation, Inject):
            self._inject(operation, budget)
            budget.run(harness, self._quiet(budget.remaining()))
            return
        if isinstance(operation, CloseSocket | DropSocket):
            self._back(budget)  # the SUT's socket: after its reconnect, if one is under way
        bound = self._bound()
        budget.run(harness, self.driver.sim.perform(operation))  # type: ignore[arg-type]
        budget.run(harness, self._quiet(budget.remaining()))
        if bound is not None and self._bound() != bound:  # this step ended the SUT's socket
            self.ended.append(operation.describe())

    def finish(self, budget: Budget) -> Judgement:
        harness = self.driver.harness
        budget.run(harness, self._clear_faults())
        back = self._back(budget)
        violations: list[Violation] = []
        if unregistered := self.driver.unregistered_reconnects(self.started_real_s):
            closed, again = unregistered[0]
            violations.append(
                Violation(
                    "PEL-WS-04",
                    f"connection {closed.number} was closed 1011 and the SUT connected again "
                    f"({again.number}) without creating its channel first",
                )
            )
        if not back:
            if budget.remaining() <= 0:
                raise BudgetSpent
            if harness.sut_alive() is not None or not self.ended:
                return Judgement(tuple(violations), "the SUT holds no WebSocket")
            since = harness.clock.real() - RECONNECT_WAIT_S
            if any(c.connected_real_s >= since for c in self.driver.service.connections()):
                # Still trying (a back-off that outgrew the bound): PEL-WS-04 names no bound.
                return Judgement(tuple(violations), "the SUT is still reconnecting")
            violations.append(
                Violation(
                    "PEL-WS-04",
                    f"no connect in {RECONNECT_WAIT_S:g} s after: {self.ended[-1]}",
                )
            )
            return Judgement(tuple(violations))
        if self.queued:
            try:
                if problem := self._unreported(self._delivered(), budget):
                    violations.append(Violation("PEL-MSG-01", problem))
            except NotVerified as exc:
                return Judgement(tuple(violations), str(exc))
        return Judgement(tuple(violations))

    def _unreported(self, delivered: set[str], budget: Budget) -> Problem:
        """PEL-MSG-01 as the scripted check judges a message on the WebSocket: taken, so
        reported (after a fence awaiting it; a straggler of a SUT processing concurrently
        still has :data:`DUPLICATE_SETTLE_S` after the marker's report)."""
        budget.check()
        taken = [q for q in self.queued if q.item.uid in delivered]
        unverifiable = self.driver.fence(self.channel, awaiting=taken)
        if unverifiable:
            raise NotVerified(unverifiable)
        budget.check()
        counts = self.driver.count_reports(taken, DUPLICATE_SETTLE_S)
        if missing := [q for q in taken if not counts.get(q.item.uid)]:
            return (
                f"the SUT took {len(taken)} notification item(s) on its WebSocket (their frames "
                f"reached it before the socket ended) but never reported {len(missing)}: "
                + ", ".join(f"{q.item.uid} ({q.item.event.body.get('ep')})" for q in missing[:3])
            )
        return None

    def _delivered(self) -> set[str]:
        """The items of this scenario that reached the SUT for sure: each in a frame the
        transport took, on a socket still open, closed by the service with a close frame (the
        frames before it arrive first), or that ended otherwise :data:`SETTLE_S` or more after
        the frame."""
        service = self.driver.service
        conns = {c.number: c for c in service.connections()}
        uids = {q.item.uid for q in self.queued}
        delivered: set[str] = set()
        for attempt in service.attempts():
            if attempt.key != self.key or not attempt.succeeded or not attempt.uids:
                continue
            conn = conns.get(attempt.connection) if attempt.connection is not None else None
            if conn is None:
                continue
            sent = attempt.started_real_s + attempt.elapsed_real_s
            ended = conn.ended_real_s
            if conn.end in (None, "server-close") or (
                ended is not None and ended - sent >= SETTLE_S
            ):
                delivered.update(uid for uid in attempt.uids if uid in uids)
        return delivered

    def _bound(self) -> int | None:
        """The number of the connection bound to the channel now (None: no socket)."""
        state = self.driver.service.channel_state(self.key)
        return None if state is None else state.connection

    def _back(self, budget: Budget) -> bool:
        """Wait (bounded by the scripted PEL-WS-04 check's 130 s and the budget) until the SUT
        holds a socket and the channel has sent everything queued."""
        service = self.driver.service
        key = self.key

        def settled() -> bool:
            if self.driver.harness.sut_down is not None:
                return True
            state = service.channel_state(key)
            return (
                self.driver.socket_bound()
                and state is not None
                and state.queue.queued == 0
                and not state.in_flight
            )

        async def wait() -> bool:
            return await service.drive(
                settled, timeout_real_s=min(RECONNECT_WAIT_S, max(budget.remaining(), 0.1))
            )

        return budget.run(self.driver.harness, wait()) and self.driver.harness.sut_down is None

    async def _reset(self) -> None:
        await self._clear_faults()
        self.driver.service.discard_queue(self.key)

    async def _clear_faults(self) -> None:
        self.driver.service.faults.clear("handshake")
