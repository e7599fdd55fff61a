"""Scenario exploration of a Pelion callback receiver (conformance/exploration.py,
docs/exploration.md): the operations a scenario is made of, and its judgement.

Steps: queue 1–3 notifications on the SUT's callback channel; arm a fault for the next
callback attempts (answered 500, sent and the answer dropped, never sent); advance the
simulated clock across the back-off (2 s doubling to the 2-minute cap). The service's delivery
schedule runs between steps: a failed batch waits out its back-off, and the items queued in the
meantime join it when it is formed again (one batch in flight per channel). No step reaches the
24-hour removal: a removed channel would end the SUT's session for the rest of the run.

Judged once quiet, with the scripted PEL-OBS-01 code (``processed_once``): every item the SUT
acknowledged (a 2xx to a batch carrying it) reported exactly once, none more than once. Items
the service still held at the end are dropped and never held against the SUT.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Any, Final

from conformance.driver import DUPLICATE_SETTLE_S, processed_once
from conformance.exploration import Budget, Judgement, Violation
from conformance.pelion.driver import PelionDriver, new_ep
from conformance.verdicts import NotVerified
from simulators.faults import FaultKind
from simulators.operations import AdvanceClock, Operation
from simulators.pelion.channels import ItemQueued
from simulators.pelion.delivery_terms import FIRST_DELAY_S, MAX_DELAY_S
from simulators.pelion.operations import FailDeliveries, Inject

if TYPE_CHECKING:
    from hypothesis.strategies import SearchStrategy

__all__ = ["PelionExplorer"]

CHANNEL: Final = "callback"
# Clock steps on either side of the first back-off (2 s), its doubling and its cap (120 s).
CLOCK_STEPS_S = (1.0, 5.0, 30.0, 120.0, 600.0)
SETTLE_SIM_S = 3600.0  # at the end, the back-off may jump this far (well short of 24 h)
SETTLE_REAL_S = 30.0


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
class PelionExplorer:
    """The Pelion part of an exploration, over the run's Pelion driver (callback channel)."""

    driver: PelionDriver
    queued: list[ItemQueued] = field(default_factory=list)
    eps: dict[str, str] = field(default_factory=dict)  # symbolic device name -> this play's

    @property
    def key(self) -> str:
        return self.driver.key(CHANNEL)

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
        from pydantic import Field, TypeAdapter, ValidationError

        steps: TypeAdapter[Operation] = TypeAdapter(
            Annotated[Inject | FailDeliveries | AdvanceClock, Field(discriminator="op")]
        )
        try:
            return steps.validate_python(step)
        except ValidationError as exc:
            raise ValueError(str(exc)) from None

    def name(self, operation: Operation, number: int) -> Operation:
        """Step ``number``'s devices are ``d<number>-<i>`` (each play maps them to fresh
        ones); the service gives every queued item a fresh uid."""
        if isinstance(operation, Inject):
            items = [{**item, "ep": f"d{number}-{i}"} for i, item in enumerate(operation.items)]
            return operation.model_copy(update={"items": items})
        return operation

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
        self.queued, self.eps = [], {}
        budget.run(self.driver.harness, self._reset())

    def perform(self, operation: Operation, budget: Budget) -> None:
        harness = self.driver.harness
        if isinstance(operation, Inject):
            # Each play's own devices: the observer also knows an item by its address.
            items = [{**item, "ep": self._ep(str(item.get("ep")))} for item in operation.items]
            aimed = operation.model_copy(update={"key": self.key, "items": items})
            self.queued += budget.run(harness, self.driver.sim.perform(aimed))
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

    def _judge(self, budget: Budget) -> Judgement:
        """PEL-OBS-01 as the scripted check judges it: fence, then count each item's reports."""
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
        budget.check()
        try:
            unverifiable = self.driver.fence(
                CHANNEL, awaiting=[q for q in self.queued if q.item.uid in acknowledged]
            )
        except NotVerified as exc:
            return Judgement(not_judged=str(exc))
        if unverifiable:
            return Judgement(not_judged=unverifiable)
        budget.check()
        counts = self.driver.count_reports(self.queued, DUPLICATE_SETTLE_S, more_than=1)
        problem = processed_once(counts, acknowledged)
        return Judgement((Violation("PEL-OBS-01", problem),) if problem else ())

    def _ep(self, symbolic: str) -> str:
        return self.eps.setdefault(symbolic, new_ep())

    async def _quiet(self, remaining: float) -> None:
        """Run the delivery schedule until nothing is in flight and what is queued waits for a
        later simulated time (a back-off), or nothing is queued."""
        schedule = self.driver.service.schedule
        clock = self.driver.harness.clock

        def quiet() -> bool:
            if schedule.busy:
                return False
            due = schedule.next_deadline()
            return schedule.idle() or (due is not None and due > clock.now())

        await self.driver.service.drive(quiet, timeout_real_s=max(remaining, 0.1))

    async def _reset(self) -> None:
        """Nothing left over from the last scenario: faults cleared, the queue empty."""
        await self._clear_faults()
        self.driver.service.discard_queue(self.key)

    async def _clear_faults(self) -> None:
        self.driver.service.faults.clear("callback")
