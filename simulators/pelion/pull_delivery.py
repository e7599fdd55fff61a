"""The long-poll channel's state machine, without I/O (vendor doc, "Pull interface",
deprecated by the vendor but used by the official SDKs): "when a new pull request is sent,
Device Management Connect responds with a batch of notifications"; one concurrent poll per key
(409), 204 when a poll ends empty, the channel is created by the first GET and expires after 10
minutes without a poll (SPEC20)."""

from __future__ import annotations

import enum
import itertools
from collections.abc import Hashable, Mapping

from simulators.pelion.delivery_terms import PULL_IDLE_LIMIT_S, Batch, PollAnswer, move
from simulators.pelion.models import DEFAULT_SERIALIZATION, SerializationConfig
from simulators.pelion.queue import NotificationQueue

__all__ = ["PULL_TRANSITIONS", "PullDelivery", "PullState"]


class PullState(enum.Enum):
    IDLE = "idle"  # no poll open
    WAITING = "waiting"  # a poll is open and nothing is queued
    ANSWERING = "answering"  # a poll was answered with a batch; the write is not confirmed yet
    REMOVED = "removed"  # not polled for 10 minutes
    DELETED = "deleted"  # DELETE /v2/notification/pull


_PI, _PW, _PA, _PR, _PX = (
    PullState.IDLE,
    PullState.WAITING,
    PullState.ANSWERING,
    PullState.REMOVED,
    PullState.DELETED,
)
PULL_TRANSITIONS: Mapping[PullState, Mapping[str, PullState]] = {
    _PI: {"poll-wait": _PW, "poll-answer": _PA, "unpolled-10min": _PR, "delete": _PX},
    _PW: {"items": _PA, "poll-timeout": _PI, "delete": _PX},
    _PA: {"sent": _PI, "send-failed": _PI, "delete": _PX},
    _PR: {},
    _PX: {},
}
_TERMINAL_PULL = frozenset((_PR, _PX))


class PullDelivery:
    """The long-poll channel of one API key (created by its first ``GET``).

    A poll stays open until its batch is written (:meth:`batch_sent` / :meth:`batch_failed`)
    or its real-time timeout, owned by the adapter, ends it (:meth:`poll_timed_out`, 204).
    A batch is acknowledged when the adapter has written the 200 answer.
    """

    def __init__(
        self,
        queue: NotificationQueue,
        now: float,
        *,
        config: SerializationConfig | None = None,
        idle_limit_s: float = PULL_IDLE_LIMIT_S,
    ) -> None:
        self.queue = queue
        self.config = config or DEFAULT_SERIALIZATION
        self.idle_limit_s = idle_limit_s
        self.state = PullState.IDLE
        self.poll: Hashable | None = None
        self.in_flight: Batch | None = None
        self.last_poll_at = now
        self.removed_at: float | None = None
        self.removed_by: str | None = None  # the trigger that removed the channel
        self.batches_sent = 0
        self.items_delivered = 0
        self._numbers = itertools.count(1)

    def _go(self, trigger: str) -> None:
        self.state = move(PULL_TRANSITIONS, self.state, trigger)
        if self.state is PullState.REMOVED:
            self.removed_by = trigger

    def _answer(self, now: float) -> PollAnswer | None:
        items = self.queue.head(self.config.max_chunk_size, now)
        if not items:
            return None
        assert self.poll is not None
        self.in_flight = Batch(
            next(self._numbers), items, now, 1, self.config, self.queue.kinds(items)
        )
        self.batches_sent += 1
        return PollAnswer(self.poll, 200, self.in_flight)

    def receive_poll(self, poll: Hashable, now: float) -> PollAnswer | None:
        """``GET /v2/notification/pull``: 200 with a batch at once when items are queued, 409
        when another poll is open, else None (the poll waits)."""
        self.handle_timeout(now)
        if self.state in _TERMINAL_PULL:
            raise RuntimeError(f"poll on a {self.state.name} pull channel")
        if self.state is not PullState.IDLE:
            return PollAnswer(poll, 409)
        self.poll = poll
        self.last_poll_at = now
        answer = self._answer(now)
        self._go("poll-wait" if answer is None else "poll-answer")
        return answer

    def next_answer(self, now: float) -> PollAnswer | None:
        """After items were queued: the waiting poll's 200 answer, if a poll waits."""
        self.handle_timeout(now)
        if self.state is not PullState.WAITING:
            return None
        answer = self._answer(now)
        if answer is not None:
            self._go("items")
        return answer

    def poll_timed_out(self, poll: Hashable, now: float) -> PollAnswer | None:
        """The adapter's (real-time) poll timeout ended a waiting poll: 204."""
        self.handle_timeout(now)
        if self.state is not PullState.WAITING or poll != self.poll:
            return None  # already answered, or not this channel's poll
        self._end_poll(now, "poll-timeout")
        return PollAnswer(poll, 204)

    def _end_poll(self, now: float, trigger: str) -> None:
        self.poll = None
        self.in_flight = None
        self.last_poll_at = now
        self._go(trigger)

    def batch_sent(self, batch: Batch, now: float) -> None:
        """The 200 answer was written: the batch is acknowledged and the poll ends."""
        self.handle_timeout(now)
        if batch is self.in_flight and self.state is PullState.ANSWERING:
            self.items_delivered += self.queue.acknowledge(batch.items)
            self._end_poll(now, "sent")

    def batch_failed(self, batch: Batch, now: float) -> None:
        """The answer could not be written: its items stay queued."""
        self.handle_timeout(now)
        if batch is self.in_flight and self.state is PullState.ANSWERING:
            self._end_poll(now, "send-failed")

    def handle_timeout(self, now: float) -> PullState:
        """Apply the timers: item expiry, removal 10 minutes after the last poll ended."""
        if self.state in _TERMINAL_PULL:
            return self.state
        self.queue.expire(now)
        if self.state is PullState.IDLE and now >= self.last_poll_at + self.idle_limit_s:
            self.removed_at = now
            self._go("unpolled-10min")
        return self.state

    def delete(self) -> list[PollAnswer]:
        """``DELETE /v2/notification/pull``: a waiting poll is answered 410."""
        if self.state in _TERMINAL_PULL:
            return []
        answers = [PollAnswer(self.poll, 410)] if self.state is PullState.WAITING else []
        self.poll = None
        self.in_flight = None
        self._go("delete")
        return answers

    def next_deadline(self) -> float | None:
        if self.state in _TERMINAL_PULL:
            return None
        candidates = [self.queue.next_deadline()]
        if self.state is PullState.IDLE:
            candidates.append(self.last_poll_at + self.idle_limit_s)
        elif self.state is PullState.WAITING:
            candidates.append(self.queue.oldest_queued_at())
        return min((c for c in candidates if c is not None), default=None)
