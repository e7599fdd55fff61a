"""A Hypothesis state machine over the notification queue and the callback delivery core:
whatever the application answers (2xx, non-2xx, nothing for 20 s, a refused connection) and
however time moves (seconds to days, outages of hours), the vendor rules hold:

- "Notifications are delivered in batches of up to 10,000 items" (``max_chunk_size``), one
  batch in flight; the next only after a 2xx; a batch is the head of the queue at send time.
- "progressive back off of 2 s, 4 s, 8 s, 16 s… up to 2 minutes": a retry is never sent before
  its back-off, and no back-off exceeds 120 s.
- "If the sending does not succeed within 24 hours, the event notification channel will be
  closed": removed exactly 24 h after the first failure of an unbroken streak, never earlier.
- "Notification items are cached for 24 hours in a queue of up to 50,000 items": a queued or
  sent item is never 24 h old, the queue never exceeds its limit, and every item enqueued is
  queued, acknowledged, or counted as dropped for exactly one reason (checked against a shadow
  queue kept by this test).
- An item whose batch was acknowledged is never sent again.

The machine plays a punctual adapter: it wakes at every ``next_deadline()``, calls
``handle_timeout`` and ``next_batch``, and answers a batch within the 20 s request timeout.
"""

from __future__ import annotations

import itertools
from collections import deque

from hypothesis import event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from simulators.pelion.delivery import (
    REQUEST_TIMEOUT_S,
    BackOff,
    Batch,
    CallbackDelivery,
    CallbackState,
)
from simulators.pelion.models import Event, NotificationData, SerializationConfig
from simulators.pelion.queue import MAX_ITEMS, DropReason, NotificationQueue

DAY = 24 * 3600.0
EVENT = Event.of(
    "notifications",
    NotificationData(ep="0172b9ba5409000000000001001117f5", path="/3200/0/5501", payload=""),
)
OK = st.sampled_from([200, 201, 202, 204])
NOT_OK = st.sampled_from([301, 400, 401, 404, 409, 429, 500, 502, 503])
durations = st.one_of(
    st.floats(0, 10), st.floats(0, 300), st.floats(0, 6 * 3600), st.floats(0, 2 * DAY)
)


class CallbackRules(RuleBasedStateMachine):
    MAX_ITEMS = 40
    CHUNK = 100  # the smallest max_chunk_size the schema allows
    BURST = 60

    def __init__(self) -> None:
        super().__init__()
        self.now = 1_000.0
        self.first_s = 2.0
        self.queue = NotificationQueue(max_items=self.MAX_ITEMS)
        self.delivery = CallbackDelivery(
            self.queue, config=SerializationConfig(max_chunk_size=self.CHUNK)
        )
        # the test's own model
        self.shadow: deque[tuple[int, float]] = deque()  # (seq, queued_at)
        self.expected = dict.fromkeys(DropReason, 0)
        self.enqueued = 0
        self.acknowledged: set[str] = set()
        self.in_flight: Batch | None = None
        self.sent_at = 0.0
        self.streak = 0  # consecutive failures
        self.streak_start: float | None = None
        self.retry_at: float | None = None
        self.removal_seen = False

    # --- the punctual adapter ---------------------------------------------------------------

    def _configure(self, first_s: float) -> None:
        self.first_s = first_s
        self.delivery.backoff = BackOff(first_s=first_s)

    def _shadow_expire(self) -> None:
        while self.shadow and self.shadow[0][1] + DAY <= self.now:
            self.shadow.popleft()
            self.expected[DropReason.EXPIRED] += 1

    def _advance(self, target: float) -> None:
        """Wake at every deadline up to ``target``; stop early when a batch is sent."""
        for _ in range(10_000):
            deadline = self.delivery.next_deadline()
            if deadline is None or deadline > target:
                break
            self.now = max(self.now, deadline)
            self.delivery.handle_timeout(self.now)
            self._shadow_expire()
            self._check_removal()
            if self._send():
                return
        else:  # pragma: no cover - a livelock in next_deadline()
            raise AssertionError("next_deadline() never moved past the target")
        self.now = max(self.now, target)
        self.delivery.handle_timeout(self.now)
        self._shadow_expire()
        self._check_removal()

    def _send(self) -> bool:
        batch = self.delivery.next_batch(self.now)
        self._shadow_expire()
        if batch is None:
            return False
        # at most one batch in flight
        assert self.in_flight is None, "a second batch while one is in flight"
        # never more than max_chunk_size items; the head of the queue at send time
        assert 1 <= len(batch) <= self.CHUNK
        head = itertools.islice(self.shadow, len(batch))
        assert [i.seq for i in batch.items] == [seq for seq, _ in head]
        assert len(batch) == min(len(self.shadow), self.CHUNK)
        # an item whose batch was acknowledged is never sent again
        assert not self.acknowledged & {i.uid for i in batch.items}
        # nothing older than 24 h is sent
        assert all(i.queued_at + DAY > self.now for i in batch.items)
        # a retry is never sent before its back-off
        if self.retry_at is not None:
            assert self.now >= self.retry_at, f"retry at {self.now} before {self.retry_at}"
        assert batch.attempt == self.streak + 1
        if batch.attempt > 1:
            event("retry sent")
        self.in_flight = batch
        self.sent_at = self.now
        return True

    def _answer(self, at: float, status: int | None) -> None:
        batch = self.in_flight
        assert batch is not None
        self._advance(at)  # deadlines up to the answer (removal, expiry); nothing is sent
        assert self.in_flight is batch
        if self.delivery.state is CallbackState.REMOVED:
            self.delivery.receive_response(batch, 200, self.now)  # too late: ignored
            self.in_flight = None
            return
        self.in_flight = None
        if status is not None and 200 <= status < 300:
            self.delivery.receive_response(batch, status, self.now)
            last = batch.items[-1].seq
            while self.shadow and self.shadow[0][0] <= last:
                self.shadow.popleft()
            self.acknowledged |= {i.uid for i in batch.items}
            self.streak, self.streak_start, self.retry_at = 0, None, None
        else:
            if status is None:
                self.delivery.receive_failure(batch, self.now, "timeout")
            else:
                self.delivery.receive_response(batch, status, self.now)
            self.streak += 1
            if self.streak_start is None:
                self.streak_start = self.now
            delay = min(self.first_s * 2 ** (self.streak - 1), 120.0)
            self.retry_at = self.now + delay
            assert self.delivery.retry_at == self.retry_at
        self._advance(self.now)  # the adapter sends the next batch if one is due

    def _check_removal(self) -> None:
        removed = self.delivery.state is CallbackState.REMOVED
        due = self.streak_start is not None and self.now >= self.streak_start + DAY
        assert removed == due, f"removed={removed} at {self.now}, streak since {self.streak_start}"
        if removed:
            assert self.streak_start is not None
            assert self.delivery.removed_at == self.streak_start + DAY  # exactly 24 h
            if not self.removal_seen:  # the registry drops a removed channel's queue
                self.removal_seen = True
                event("channel removed after 24 h of failures")
                self.expected[DropReason.DELETED] += self.queue.clear()
                self.shadow.clear()

    # --- rules ------------------------------------------------------------------------------

    @precondition(lambda self: self.enqueued == 0)
    @rule(first_s=st.sampled_from([2.0, 1.0]))
    def configure_first_delay(self, first_s: float) -> None:
        self._configure(first_s)

    @precondition(lambda self: self.delivery.state is not CallbackState.REMOVED)
    @rule(n=st.integers(1, 5), burst=st.booleans())
    def enqueue(self, n: int, burst: bool) -> None:
        count = self.BURST if burst else n
        for _ in range(count):
            item = self.queue.append(EVENT, self.now)
            self._shadow_expire()
            self.shadow.append((item.seq, item.queued_at))
            if len(self.shadow) > self.MAX_ITEMS:
                self.shadow.popleft()
                self.expected[DropReason.OVERFLOW] += 1
            self.enqueued += 1
        self._advance(self.now)

    @precondition(lambda self: self.in_flight is None)
    @rule(seconds=durations)
    def time_passes(self, seconds: float) -> None:
        self._advance(self.now + seconds)

    @precondition(lambda self: self.in_flight is not None)
    @rule(status=OK, after=st.floats(0, REQUEST_TIMEOUT_S - 0.001))
    def answer_2xx(self, status: int, after: float) -> None:
        self._answer(self.sent_at + after, status)

    @precondition(lambda self: self.in_flight is not None)
    @rule(status=NOT_OK, after=st.floats(0, REQUEST_TIMEOUT_S - 0.001))
    def answer_error(self, status: int, after: float) -> None:
        self._answer(self.sent_at + after, status)

    @precondition(lambda self: self.in_flight is not None)
    @rule()
    def no_answer_within_the_timeout(self) -> None:
        self._answer(self.sent_at + REQUEST_TIMEOUT_S, None)

    @precondition(lambda self: self.in_flight is not None)
    @rule(hours=st.floats(0.5, 30), timeout=st.booleans())
    def outage(self, hours: float, timeout: bool) -> None:
        """The application is down: every batch fails (refused at once, or after 20 s) until
        the outage ends or the channel is removed."""
        end = self.now + hours * 3600
        while self.in_flight is not None and self.now < end:
            after = REQUEST_TIMEOUT_S if timeout else 0.0
            self._answer(self.sent_at + after, None if timeout else 503)
            if self.in_flight is None:
                self._advance(min(end, self.retry_at or end))

    # --- invariants -------------------------------------------------------------------------

    @invariant()
    def queue_matches_the_shadow(self) -> None:
        assert [i.seq for i in self.queue] == [s for s, _ in self.shadow]
        assert len(self.queue) <= self.MAX_ITEMS <= MAX_ITEMS
        stats = self.queue.stats()
        assert stats.dropped[DropReason.OVERFLOW] == self.expected[DropReason.OVERFLOW]
        assert stats.dropped[DropReason.EXPIRED] == self.expected[DropReason.EXPIRED]
        assert stats.dropped[DropReason.DELETED] == self.expected[DropReason.DELETED]
        assert stats.enqueued == self.enqueued
        assert stats.enqueued == stats.queued + stats.acknowledged + sum(stats.dropped.values())

    @invariant()
    def note_drops(self) -> None:
        for reason, n in self.expected.items():
            if n:
                event(f"items dropped: {reason.value}")

    @invariant()
    def nothing_queued_is_24_h_old(self) -> None:
        assert all(i.queued_at + DAY > self.now for i in self.queue)

    @invariant()
    def back_off_is_at_most_2_minutes(self) -> None:
        d = self.delivery
        if d.state is CallbackState.BACKING_OFF:
            assert d.retry_at is not None and self.streak_start is not None
            assert 0 < d.retry_at - self.now <= 120.0
            assert d.in_flight is None and self.in_flight is None

    @invariant()
    def at_most_one_batch_in_flight(self) -> None:
        d = self.delivery
        assert (d.state is CallbackState.SENDING) == (d.in_flight is not None)
        assert d.in_flight is self.in_flight or d.state is CallbackState.REMOVED

    @invariant()
    def removed_exactly_after_24_h_of_failures(self) -> None:
        self._check_removal()


@settings(max_examples=60, stateful_step_count=40, deadline=None)
class CallbackMachine(CallbackRules):
    """Small sizes (40 items, batches of 100), so that overflow and partial batches happen."""


TestCallbackDelivery = CallbackMachine.TestCase


@settings(max_examples=6, stateful_step_count=12, deadline=None)
class VendorLimitsMachine(CallbackRules):
    """The same rules at the vendor's own sizes: 50,000 items, batches of 10,000 (shorter
    outages: each retry of a 10,000-item batch is checked item by item)."""

    MAX_ITEMS = MAX_ITEMS
    CHUNK = 10_000
    BURST = 20_000

    @precondition(lambda self: self.in_flight is not None)
    @rule(hours=st.floats(0.05, 1), timeout=st.booleans())
    def outage(self, hours: float, timeout: bool) -> None:
        super().outage(hours, timeout)


TestVendorLimits = VendorLimitsMachine.TestCase
