"""A Hypothesis state machine over the delivery core: whatever the receiver answers and
whenever time moves, the vendor rules hold (at most 3 attempts, all due within 300 s of the
first, none made before it is due, delivered exactly when an attempt got a 2xx).

An attempt may be made after its due time when time jumps past it (the adapter was late); the
schedule, not the adapter's punctuality, is what the core guarantees."""

from __future__ import annotations

from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from simulators.apple.delivery import Delivery, DeliveryState, RetrySchedule
from simulators.http_sender import Exchange

schedules = st.lists(st.floats(1, 300), min_size=0, max_size=2, unique=True).map(
    lambda rest: RetrySchedule((0.0, *sorted(rest)))
)


class DeliveryMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.now = 1000.0
        self.delivery: Delivery | None = None

    @precondition(lambda self: self.delivery is None)
    @rule(schedule=schedules)
    def start(self, schedule: RetrySchedule) -> None:
        self.delivery = Delivery("n1", self.now, schedule)

    @precondition(lambda self: self.delivery is not None)
    @rule(seconds=st.floats(0, 400))
    def time_passes(self, seconds: float) -> None:
        self.now += seconds

    @precondition(
        lambda self: (
            self.delivery is not None
            and (deadline := self.delivery.next_deadline()) is not None
            and deadline <= self.now
        )
    )
    @rule(status=st.none() | st.sampled_from([200, 202, 204, 301, 400, 401, 429, 500, 503]))
    def attempt(self, status: int | None) -> None:
        assert self.delivery is not None
        number = self.delivery.start_attempt(self.now)
        assert number == len(self.delivery.attempts) + 1
        error = None if status is not None else "timeout"
        self.delivery.finish_attempt(Exchange(status, status, error, started_sim_s=self.now))

    @invariant()
    def vendor_rules_hold(self) -> None:
        d = self.delivery
        if d is None:
            return
        assert len(d.attempts) <= 3
        assert all(offset <= 300 for offset in d.schedule.offsets)
        for a, offset in zip(d.attempts, d.schedule.offsets, strict=False):
            assert a.started_sim_s >= d.first_sim_s + offset  # never early
        succeeded = any(a.succeeded for a in d.attempts)
        assert (d.state is DeliveryState.DELIVERED) == succeeded
        if succeeded:
            assert d.attempts[-1].succeeded  # nothing is sent after a 2xx
        if d.state is DeliveryState.GAVE_UP:
            assert len(d.attempts) == len(d.schedule.offsets)


TestDeliveryMachine = DeliveryMachine.TestCase
