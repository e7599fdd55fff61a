"""Scenario exploration of an Apple receiver (conformance/exploration.py, docs/exploration.md):
the operations a scenario is made of, and its judgement.

Steps: deliver a notification of every documented type (the vendor doc's examples) or an event
split at 100 elements; arm a fault for the next attempts (a duplicate copy, the answer dropped
before it is read, an attempt held on the simulated clock); advance the simulated clock across
the vendor's retry times (+60 s, +300 s). A delivery runs in the background with its retries on
the simulated clock, so the steps after it interleave with its retries.

Judged once quiet, with the scripted APL-OBS-01 code: every acknowledged notification was
processed exactly once, and no notification (a split event's part neither) more than once
(APL-OBS-01); every acknowledged part of a split event was processed (APL-OBS-02). One the vendor gave up on (every
attempt failed) may be missing: that is the vendor's loss, not the SUT's.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from conformance.apple.driver import AppleDriver, example
from conformance.driver import DUPLICATE_SETTLE_S, processed_once
from conformance.exploration import AWAITING_S, Budget, Judgement, Violation, parse_step
from conformance.verdicts import NotVerified
from simulators.apple.delivery import MAX_ATTEMPTS, Delivery, split_notification
from simulators.apple.models import Notification, association
from simulators.apple.operations import Attempts, Deliver, DeliverEvent, FailDeliveries
from simulators.clock import SleepNote
from simulators.faults import FaultKind
from simulators.operations import AdvanceClock, Operation

if TYPE_CHECKING:
    from hypothesis.strategies import SearchStrategy

__all__ = ["AppleExplorer"]

PLACEHOLDER = "n"  # a generated notification's id until the scenario names it
SPLIT_ELEMENTS = 150  # an event the vendor splits into two notifications (100 + 50)
# Clock steps that fall on either side of the vendor's retry offsets (+60 s, +300 s).
CLOCK_STEPS_S = (30.0, 60.0, 240.0, 300.0, 3600.0)


def _examples() -> list[str]:
    from conformance.apple.driver import EXAMPLES

    return sorted(p.stem for p in EXAMPLES.glob("*.json"))


def _placeholder(wire: dict[str, Any]) -> Notification:
    return Notification.model_validate({**wire, "notificationId": PLACEHOLDER})


@dataclass
class _Pending:
    task: asyncio.Task[Any]
    note: SleepNote


@dataclass
class AppleExplorer:
    """The Apple part of an exploration, over the run's Apple driver."""

    part = "receiver"  # what of the SUT it explores (not a field: no instance differs)

    driver: AppleDriver
    names: dict[str, str] = field(default_factory=dict)  # symbolic id -> this play's id
    pending: list[_Pending] = field(default_factory=list)
    changed: asyncio.Event | None = None  # set when a delivery sleeps, wakes or ends

    def rules(self) -> dict[str, SearchStrategy[Operation]]:
        from hypothesis import strategies as st

        def deliver(name: str) -> Operation:
            return Deliver(notification=_placeholder(example(name)))

        split = DeliverEvent(notification=_placeholder(association(SPLIT_ELEMENTS).to_wire()))
        return {
            "deliver": st.sampled_from(_examples()).map(deliver),
            "deliver_event": st.just(split),
            "fail_deliveries": st.one_of(
                st.builds(
                    FailDeliveries,
                    kind=st.sampled_from([FaultKind.DROP_BEFORE_ACK, FaultKind.DUPLICATE]),
                    times=st.integers(1, 2),
                ),
                st.builds(
                    FailDeliveries,
                    kind=st.just(FaultKind.DELAY),
                    seconds=st.sampled_from([30.0, 120.0]),
                ),
            ),
            "advance_clock": st.sampled_from(CLOCK_STEPS_S).map(lambda s: AdvanceClock(seconds=s)),
        }

    def parse(self, step: Mapping[str, Any]) -> Operation:
        return parse_step(step, Deliver | DeliverEvent | FailDeliveries | AdvanceClock)

    def name(self, operation: Operation, number: int) -> Operation:
        if isinstance(operation, Deliver | DeliverEvent):
            n = operation.notification.model_copy(update={"notificationId": f"n{number}"})
            return operation.model_copy(update={"notification": n})
        return operation

    def boundaries(self, operation: Operation) -> list[str]:
        if isinstance(operation, Deliver):
            return [f"type {operation.notification.notificationType}"]
        if isinstance(operation, DeliverEvent):
            return ["an event split at 100 elements"]
        if isinstance(operation, FailDeliveries):
            return [f"fault {operation.kind}"]
        if isinstance(operation, AdvanceClock):
            offsets = self.driver.notifier.schedule.offsets
            crossed = [o for o in offsets[1:] if operation.seconds >= o]
            return [
                f"clock past the retry at +{crossed[-1]:g} s"
                if crossed
                else f"clock short of the first retry (+{offsets[1]:g} s)"
                if len(offsets) > 1
                else "clock (no retries)"
            ]
        return []

    # Playing a scenario.

    def begin(self, budget: Budget) -> None:
        self.driver.awaiting_s, self.driver.deadline = AWAITING_S, budget.deadline
        self.names = {}
        self.pending = []
        budget.run(self.driver.harness, self._clear_faults())

    def perform(self, operation: Operation, budget: Budget) -> None:
        harness = self.driver.harness
        if isinstance(operation, Deliver | DeliverEvent):
            budget.run(harness, self._start(self._renamed(operation)))
        else:
            budget.run(harness, self.driver.sim.perform(operation))  # type: ignore[arg-type]
        budget.run(harness, self._quiet())

    def finish(self, budget: Budget) -> Judgement:
        harness = self.driver.harness
        for _ in range(MAX_ATTEMPTS + 1):  # let every retry fall due
            asleep = [p.note.deadline for p in self.pending if not p.task.done()]
            due = [d for d in asleep if d is not None]
            if not due:
                break
            seconds = max(due) - harness.clock.now()
            if seconds > 0:
                budget.run(harness, self.driver.sim.perform(AdvanceClock(seconds=seconds)))
            budget.run(harness, self._quiet())
        budget.run(harness, self._clear_faults())
        deliveries: list[Delivery] = []
        for pending in self.pending:
            if not pending.task.done():
                return Judgement(not_judged="a delivery had not ended after its last retry")
            if pending.task.cancelled() or pending.task.exception() is not None:
                return Judgement(not_judged=f"the simulator broke: {pending.task!r}")
            deliveries.append(pending.task.result())
        if not deliveries:
            return Judgement()
        return self._judge(deliveries, budget)

    def _judge(self, deliveries: list[Delivery], budget: Budget) -> Judgement:
        """APL-OBS-01 (and APL-OBS-02 for the parts of a split event), as the scripted checks
        judge them: fence, then count each notificationId's reports."""
        budget.check()
        ids = list(dict.fromkeys(d.notification_id for d in deliveries))
        acknowledged = [nid for nid in ids if self.driver.acknowledged(nid)]
        try:
            unverifiable = self.driver.fence(awaiting=acknowledged)
        except NotVerified as exc:
            return Judgement(not_judged=str(exc))
        if unverifiable:
            return Judgement(not_judged=unverifiable)
        budget.check()
        counts = self.driver.count_reports(ids, DUPLICATE_SETTLE_S, more_than=1)
        parts = {d.notification_id for d in deliveries} - set(self.names.values())
        plain = {nid: c for nid, c in counts.items() if nid not in parts}
        split = {nid: c for nid, c in counts.items() if nid in parts}
        # A repeated notificationId processed again is APL-OBS-01, a split event's part too; a
        # part acknowledged and never processed leaves the event incomplete: APL-OBS-02.
        once = processed_once(plain, [n for n in acknowledged if n not in parts])
        once = once or processed_once(split, ())
        complete = processed_once(
            {nid: min(c, 1) for nid, c in split.items()}, [n for n in acknowledged if n in parts]
        )
        violations = [
            Violation(rid, problem)
            for rid, problem in (("APL-OBS-01", once), ("APL-OBS-02", complete))
            if problem
        ]
        if refused := self._repeat_refused(ids):
            violations.append(refused)
        return Judgement(tuple(violations))

    def _repeat_refused(self, ids: list[str]) -> Violation | None:
        """APL-DUP-01: once the SUT answered 2xx to a notification, every later copy or retry
        of it (the same notificationId) it answered is answered 2xx too. Only answers count:
        one that never came is the latency requirements' (SHOULD) or the SUT's death
        (GEN-LIVE-01), and a refusal of the first copy is the type's requirement."""
        entries = self.driver.perform(Attempts())
        for nid in ids:
            accepted = False
            for entry in (e for e in entries if e.label.endswith(f" {nid}")):
                exchange = entry.attempt
                status = (
                    exchange.answered
                    if exchange.answered is not None
                    else (exchange.dropped_status)
                )
                if status is None:
                    continue
                if accepted and not 200 <= status < 300:
                    return Violation(
                        "APL-DUP-01",
                        f"answered {status} to a repeated delivery of {nid} after answering "
                        "2xx to an earlier one",
                    )
                accepted = accepted or 200 <= status < 300
        return None

    def _renamed(self, operation: Deliver | DeliverEvent) -> Deliver | DeliverEvent:
        """The operation with this play's own notificationId for its symbolic one (a replay
        or a later scenario must not look like a repeat of an earlier one)."""
        from simulators.apple.models import new_notification_id

        symbolic = operation.notification.notificationId
        real = self.names.setdefault(symbolic, new_notification_id())
        n = operation.notification.model_copy(update={"notificationId": real})
        return operation.model_copy(update={"notification": n})

    async def _start(self, operation: Deliver | DeliverEvent) -> None:
        """Start the delivery in the background, one task (and sleep note) per notification:
        an event is split here as :class:`DeliverEvent` splits it, each part with its own
        retries. A part's first attempt waits until the one before it has ended or sleeps
        (the simulator's own :class:`DeliverEvent` sends them at once), so that a replay sends
        the parts in the same order: a scenario must re-drive exactly."""
        changed = self.changed = self.changed or asyncio.Event()
        parts = (
            split_notification(operation.notification)
            if isinstance(operation, DeliverEvent)
            else [operation.notification]
        )
        for part in parts:
            note = SleepNote(changed)
            with self.driver.harness.clock.noting(note):
                task = asyncio.create_task(self.driver.sim.perform(Deliver(notification=part)))
            task.add_done_callback(lambda _: changed.set())
            self.pending.append(_Pending(task, note))
            await self._quiet()

    async def _quiet(self) -> None:
        """Until every delivery started has ended or sleeps until a later simulated time."""
        clock = self.driver.harness.clock
        changed = self.changed
        while changed is not None:
            changed.clear()
            if all(p.task.done() or clock.asleep(p.note) for p in self.pending):
                return
            await changed.wait()

    async def _clear_faults(self) -> None:
        if self.driver.sim.notifier is not None:
            self.driver.sim.notifier.faults.clear("deliver")
