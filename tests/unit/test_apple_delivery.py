"""simulators.apple.delivery: the retry schedule, the delivery state machine and the splitter,
without I/O (vendor doc: up to 3 attempts over 1–5 minutes; at most 100 elements)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from conformance.apple.strategies import notifications
from simulators.apple.delivery import (
    Delivery,
    DeliveryState,
    RetrySchedule,
    split_notification,
)
from simulators.apple.models import MAX_ELEMENTS, Notification, association
from simulators.http_sender import Exchange


def test_default_schedule_is_three_attempts_within_five_minutes() -> None:
    assert RetrySchedule().offsets == (0.0, 60.0, 300.0)


@pytest.mark.parametrize(
    "text, problem",
    [
        ("0,60,300,400", "1 to 3"),
        ("10,60", "immediate"),
        ("0,60,30", "increase"),
        ("0,60,301", "within 300"),
        ("0,x", "bad retry schedule"),
    ],
)
def test_schedule_rejects_what_the_vendor_would_not_do(text: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        RetrySchedule.parse(text)


def _fail(d: Delivery, now: float, status: int | None = 500) -> DeliveryState:
    n = d.start_attempt(now)
    assert n == len(d.attempts) + 1
    error = None if status else "timeout"
    return d.finish_attempt(Exchange(status, status, error, started_sim_s=now))


def test_any_2xx_delivers() -> None:
    d = Delivery("id", first_sim_s=10.0)
    assert d.next_deadline() == 10.0
    assert _fail(d, 10.0, status=204) is DeliveryState.DELIVERED
    assert d.next_deadline() is None


def test_failures_retry_on_schedule_then_give_up() -> None:
    d = Delivery("id", first_sim_s=10.0)
    assert _fail(d, 10.0) is DeliveryState.DUE
    assert d.next_deadline() == 70.0
    with pytest.raises(RuntimeError):
        d.start_attempt(69.0)  # not due yet
    assert _fail(d, 70.0, status=None) is DeliveryState.DUE
    assert d.next_deadline() == 310.0
    assert _fail(d, 310.0) is DeliveryState.GAVE_UP
    assert d.next_deadline() is None
    assert [a.started_sim_s for a in d.attempts] == [10.0, 70.0, 310.0]


def test_finish_without_start_is_a_harness_error() -> None:
    with pytest.raises(RuntimeError):
        Delivery("id", 0.0).finish_attempt(Exchange(200, 200))


def test_150_elements_split_into_100_and_50_with_their_own_ids() -> None:
    event = association(150, event_id="e1")
    parts = split_notification(event)
    assert [len(p.elements()) for p in parts] == [100, 50]
    assert len({p.notificationId for p in parts} | {event.notificationId}) == 3
    assert all(p.notification["eventId"] == "e1" for p in parts)
    assert [e for p in parts for e in p.elements()] == event.elements()


def test_within_limit_is_unchanged() -> None:
    event = association(100)
    assert split_notification(event) == [event]


@given(notifications(), st.integers(1, 120))
def test_no_part_exceeds_the_limit_and_nothing_is_lost(n: Notification, limit: int) -> None:
    parts = split_notification(n, limit)
    assert all(len(p.elements()) <= limit for p in parts)
    assert [e for p in parts for e in p.elements()] == n.elements()
    if len(n.elements()) > limit:
        assert len({p.notificationId for p in parts}) == len(parts)
    assert len(n.elements()) <= MAX_ELEMENTS  # the strategy stays within the vendor limit


def test_a_status_poll_never_consumes_an_events_notifications() -> None:
    """Regression: status() used to run the timers (handle_timeout) and drop the notifications
    they returned, so a poll landing between an event's deadline and the adapter's
    handle_timeout lost them."""
    from simulators.apple.service import AppsAndBooks

    service = AppsAndBooks(stoken="s", processing_delay_s=2.0)
    service.store_client_config({"notificationTypes": ["USER_MANAGEMENT"]})
    event_id = service.mutate("users/create", {"users": [{"clientUserId": "u1"}]}, now=0.0)[
        "eventId"
    ]
    assert service.status(event_id, now=1.0)["eventStatus"] == "PENDING"
    assert service.status(event_id, now=3.0)["eventStatus"] == "COMPLETE"  # polled first
    sent = service.handle_timeout(now=3.0)
    assert [n.notification["eventId"] for n in sent] == [event_id]
    assert service.handle_timeout(now=4.0) == []  # handed out once
