"""SIM-APL-RETRY, SIM-APL-SPLIT, SIM-APL-AUTH: the notifier over real HTTPS on 127.0.0.1."""

from __future__ import annotations

import asyncio

import pytest

from simulators.apple.delivery import DeliveryState, RetrySchedule
from simulators.apple.models import Notification, TestNotification, association
from simulators.apple.notifier import AttemptLog, Notifier, Receiver
from simulators.clock import Clock
from simulators.evidence import Recorder
from simulators.faults import FaultKind
from simulators.http_sender import Exchange
from simulators.pki import PKI
from tests.sim.receiver_support import ca, receiver


def _notifier(pki: PKI, url: str, **kw: object) -> Notifier:
    clock = Clock()
    return Notifier(Receiver(url, "s3cret", ca(pki)), clock, Recorder(clock), **kw)  # type: ignore[arg-type]


@pytest.mark.sim("SIM-APL-AUTH")
def test_headers_are_bearer_and_json(pki: PKI) -> None:
    """SIM-APL-AUTH"""

    async def scenario() -> None:
        async with receiver(pki) as rec:
            notifier = _notifier(pki, rec.url)
            delivery = await notifier.deliver(Notification.of(TestNotification()))
            await notifier.close()
            assert delivery.state is DeliveryState.DELIVERED
            headers = rec.requests[0].headers
            assert headers["Authorization"] == "Bearer s3cret"
            assert headers["Content-Type"] == "application/json"

    asyncio.run(scenario())


@pytest.mark.sim("SIM-APL-RETRY")
@pytest.mark.parametrize("failure", ["status-500", "timeout", "connection-dropped"])
def test_three_attempts_within_five_minutes_same_id(pki: PKI, failure: str) -> None:
    """SIM-APL-RETRY: non-2xx, timeout and connection errors are retried at +60 s, +300 s."""

    async def scenario() -> None:
        async with receiver(pki, answer=lambda n: 500) as rec:
            notifier = _notifier(pki, rec.url, timeout_s=0.5)
            if failure == "timeout":
                notifier.faults.add("deliver", FaultKind.STALL, times=3)
            elif failure == "connection-dropped":
                rec.answer = lambda n: 200
                notifier.faults.add("deliver", FaultKind.DROP_BEFORE_ACK, times=3)
            note = association(3, target="serialNumber")
            with notifier.clock.autojump():
                delivery = await notifier.deliver(note)
            await notifier.close()
            assert delivery.state is DeliveryState.GAVE_UP
            assert [round(a.started_sim_s) for a in delivery.attempts] == [0, 60, 300]
            if failure != "timeout":
                assert {r.body["notificationId"] for r in rec.requests} == {note.notificationId}
                assert len(rec.requests) == 3

    asyncio.run(scenario())


@pytest.mark.sim("SIM-APL-RETRY")
def test_schedule_is_configurable_and_success_stops_retries(pki: PKI) -> None:
    async def scenario() -> None:
        async with receiver(pki, answer=lambda n: 503 if n == 1 else 202) as rec:
            notifier = _notifier(pki, rec.url, schedule=RetrySchedule((0, 90)))
            with notifier.clock.autojump():
                delivery = await notifier.deliver(association(1, target="serialNumber"))
            await notifier.close()
            assert delivery.state is DeliveryState.DELIVERED
            assert [round(a.started_sim_s) for a in delivery.attempts] == [0, 90]

    asyncio.run(scenario())


@pytest.mark.sim("SIM-APL-RETRY")
def test_retry_waits_for_the_simulated_clock(pki: PKI) -> None:
    """Without autojump the retry fires only when the clock is advanced (no real 60 s wait)."""

    async def scenario() -> None:
        async with receiver(pki, answer=lambda n: 500 if n == 1 else 200) as rec:
            notifier = _notifier(pki, rec.url)
            task = asyncio.ensure_future(notifier.deliver(association(1, target="serialNumber")))
            await asyncio.wait_for(rec.arrived.wait(), 5)
            rec.arrived.clear()
            await asyncio.sleep(0.1)
            assert len(rec.requests) == 1 and not task.done()
            notifier.clock.advance(60)
            delivery = await asyncio.wait_for(task, 5)
            await notifier.close()
            assert delivery.state is DeliveryState.DELIVERED and len(rec.requests) == 2

    asyncio.run(scenario())


@pytest.mark.sim("SIM-APL-SPLIT")
def test_events_over_100_elements_are_split(pki: PKI) -> None:
    """SIM-APL-SPLIT"""

    async def scenario() -> None:
        async with receiver(pki) as rec:
            notifier = _notifier(pki, rec.url)
            deliveries = await notifier.deliver_event(association(250, target="serialNumber"))
            await notifier.close()
            sizes = sorted(len(r.body["notification"]["assignments"]) for r in rec.requests)
            assert sizes == [50, 100, 100]
            assert len({r.body["notificationId"] for r in rec.requests}) == 3
            assert all(d.state is DeliveryState.DELIVERED for d in deliveries)

    asyncio.run(scenario())


def test_duplicate_fault_sends_the_same_notification_twice(pki: PKI) -> None:
    async def scenario() -> None:
        async with receiver(pki) as rec:
            notifier = _notifier(pki, rec.url)
            notifier.faults.add("deliver", FaultKind.DUPLICATE)
            await notifier.deliver(association(1, target="serialNumber"))
            await notifier.close()
            assert len(rec.requests) == 2
            assert rec.requests[0].body == rec.requests[1].body

    asyncio.run(scenario())


def test_untrusted_receiver_certificate_is_a_failed_attempt(pki: PKI) -> None:
    async def scenario() -> None:
        async with receiver(pki) as rec:
            clock = Clock()
            notifier = Notifier(
                Receiver(rec.url, "t", (str(pki.impostor_ca),)),
                clock,
                Recorder(clock),
                schedule=RetrySchedule((0,)),
            )
            delivery = await notifier.deliver(association(1, target="serialNumber"))
            await notifier.close()
            assert delivery.state is DeliveryState.GAVE_UP
            assert "CERTIFICATE" in (delivery.attempts[0].error or "").upper()
            assert rec.requests == []

    asyncio.run(scenario())


def test_delay_fault_holds_the_attempt_on_the_simulated_clock(pki: PKI) -> None:
    async def scenario() -> None:
        async with receiver(pki) as rec:
            notifier = _notifier(pki, rec.url)
            notifier.faults.add("deliver", FaultKind.DELAY, seconds=45)
            task = asyncio.ensure_future(notifier.deliver(association(1)))
            await asyncio.sleep(0.2)
            assert rec.requests == [] and not task.done()  # held, not sent
            notifier.clock.advance(45)
            delivery = await asyncio.wait_for(task, 5)
            await notifier.close()
            assert delivery.state is DeliveryState.DELIVERED and len(rec.requests) == 1
            assert delivery.attempts[0].started_sim_s >= 45

    asyncio.run(scenario())


def test_autojump_delay_takes_no_real_time(pki: PKI) -> None:
    """Regression: with autojump, a delay advanced the clock and then slept its duration again
    in real time."""

    async def scenario() -> float:
        async with receiver(pki) as rec:
            notifier = _notifier(pki, rec.url, timeout_s=30.0)
            notifier.faults.add("deliver", FaultKind.DELAY, seconds=120)
            started = asyncio.get_running_loop().time()
            with notifier.clock.autojump():
                await asyncio.wait_for(notifier.deliver(association(1)), 10)
            await notifier.close()
            return asyncio.get_running_loop().time() - started

    assert asyncio.run(scenario()) < 5.0


def test_stall_lasts_the_real_timeout_even_under_autojump(pki: PKI) -> None:
    """A stalled request keeps the receiver waiting in real time: autojump does not cut it."""

    async def scenario() -> tuple[float, str | None]:
        async with receiver(pki) as rec:
            notifier = _notifier(pki, rec.url, timeout_s=0.5, schedule=RetrySchedule((0,)))
            notifier.faults.add("deliver", FaultKind.STALL)
            started = asyncio.get_running_loop().time()
            with notifier.clock.autojump():
                delivery = await asyncio.wait_for(notifier.deliver(association(1)), 10)
            await notifier.close()
            return asyncio.get_running_loop().time() - started, delivery.attempts[0].fault

    elapsed, fault = asyncio.run(scenario())
    assert 0.5 <= elapsed < 5.0
    assert fault == "stall"  # the failure is the simulator's doing, not the receiver's


def test_attempt_log_keeps_order_and_limit_across_reads() -> None:
    """Attempts are logged cheaply and made into entries when read; answer times cover all."""
    log = AttemptLog(limit=3)
    for n in range(2):
        log.add(f"TYPE id-{n}", Exchange(200, 200, elapsed_real_s=0.1 * (n + 1)))
    assert [e.label for e in log.entries()] == ["TYPE id-0", "TYPE id-1"]
    for n in range(2, 5):
        log.add(f"TYPE id-{n}", Exchange(None, None, "reset", elapsed_real_s=1.0))
    log.add("TYPE id-5", Exchange(204, 204, elapsed_real_s=0.5))
    entries = log.entries()
    assert [e.label for e in entries] == ["TYPE id-0", "TYPE id-1", "TYPE id-2"]
    assert entries[2].attempt.error == "reset" and log.entries() == entries
    assert log.total == 6 and log.answer_times_real_s == [0.1, 0.2, 0.5]
