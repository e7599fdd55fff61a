"""The long-poll channel's open polls (vendor doc, "Long polling": ``GET
/v2/notification/pull`` waits for items; one open poll per key, a second one gets 409)."""

from __future__ import annotations

import asyncio
import contextlib

from simulators.clock import Clock
from simulators.evidence import Recorder
from simulators.pelion.config import ACTOR, PEER, PelionConfig
from simulators.pelion.delivery import PollAnswer, PullDelivery
from simulators.pelion.records import AttemptLog, DeliveryAttempt
from simulators.pelion.schedule import Schedule

__all__ = ["LongPolls"]


class LongPolls:
    """The polls waiting for an answer (one owner of ``waiting``)."""

    def __init__(self, schedule: Schedule, config: PelionConfig, log: AttemptLog) -> None:
        self.schedule = schedule
        self.clock: Clock = schedule.clock
        self.recorder: Recorder = schedule.recorder
        self.config = config
        self.log = log
        self.waiting: dict[object, asyncio.Future[PollAnswer]] = {}

    def answer(self, effect: PollAnswer) -> None:
        """A core answered a poll: hand the answer to the request waiting for it."""
        waiter = self.waiting.get(effect.poll)
        if waiter is not None and not waiter.done():
            waiter.set_result(effect)

    async def poll(self, key: str, *, wait: bool = True) -> tuple[PollAnswer, PullDelivery | None]:
        """``GET /v2/notification/pull``: the answer (200 with a batch, 204, 409, 410) and the
        pull core it came from. Waits at most ``pull_timeout_s`` (real) for items. Raises
        ``ChannelConflict`` (400) when the key has another channel type. The caller reports
        the 200 answer's write with :meth:`answer_written`."""
        poll = object()
        waiter: asyncio.Future[PollAnswer] = asyncio.get_running_loop().create_future()
        self.waiting[poll] = waiter
        handed_over = False
        try:
            self.schedule.carry_out(self.schedule.registry.poll(key, poll, self.clock.now()))
            if not waiter.done() and wait:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(waiter), self.config.pull_timeout_s)
            if not waiter.done():
                self.schedule.carry_out(
                    self.schedule.registry.poll_timed_out(key, poll, self.clock.now())
                )
            if not waiter.done():  # already ended elsewhere (the channel went away)
                waiter.set_result(PollAnswer(poll, 204))
            answer = waiter.result()
            core = self.schedule.registry.pull(key)
            if answer.batch is not None:
                self.schedule.busy += 1
            handed_over = True
            return answer, core
        finally:
            del self.waiting[poll]
            if not handed_over:  # refused, or cancelled (the client went away): end the poll
                now = self.clock.now()
                if waiter.done() and not waiter.cancelled():
                    unsent = waiter.result().batch
                    core = self.schedule.registry.pull(key)
                    if unsent is not None and core is not None:
                        core.batch_failed(unsent, now)
                else:
                    waiter.cancel()
                    self.schedule.carry_out(self.schedule.registry.poll_timed_out(key, poll, now))
            self.schedule.poke()

    def answer_written(
        self,
        key: str,
        core: PullDelivery | None,
        answer: PollAnswer,
        body: bytes,
        error: str | None,
        started_real_s: float,
    ) -> None:
        """A 200 answer to a poll was written (``error`` None) or not."""
        batch = answer.batch
        assert batch is not None
        self.schedule.busy -= 1
        now = self.clock.now()
        if core is not None:
            if error is None:
                core.batch_sent(batch, now)
            else:
                core.batch_failed(batch, now)
        self.log.add(
            DeliveryAttempt.of_batch(
                batch,
                key=key,
                channel="pull",
                attempt=1,
                body_bytes=len(body),
                started_real_s=started_real_s,
                started_sim_s=batch.formed_at,
                elapsed_real_s=self.clock.real() - started_real_s,
                succeeded=error is None,
                status=200,
                error=error,
            ),
            batch,
        )
        self.recorder.record(
            ACTOR,
            "->",
            PEER,
            "pull-answer",
            f"200 to a poll: batch {batch.number}, {len(batch)} item(s), {len(body)} B"
            + (f": not written ({error})" if error else ""),
            cause=self.schedule.cause_of(batch),
        )
        self.schedule.poke()
