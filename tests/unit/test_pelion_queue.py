"""simulators.pelion.queue: "Notification items are cached for 24 hours in a queue of up to
50,000 items", batches formed from the head of the changing queue, acknowledged exactly."""

from __future__ import annotations

import re
import uuid

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simulators.pelion.models import Event, NotificationData, QueuedItem
from simulators.pelion.queue import (
    ITEM_LIFETIME_S,
    MAX_ITEMS,
    DropReason,
    NotificationQueue,
    uid_factory,
)

EP = "0172b9ba5409000000000001001117f5"
DAY = 24 * 3600.0


def obs(n: int) -> Event:
    """Observation ``Obs-n`` of the vendor doc's diagram (its value is ``n``)."""
    payload = NotificationData(ep=EP, path="/3200/0/5501", ct="text/plain", payload="", max_age=n)
    return Event.of("notifications", payload)


def numbers(items: tuple[QueuedItem, ...] | list[QueuedItem]) -> list[int]:
    return [item.event.body["max-age"] for item in items]


def test_vendor_limits() -> None:
    assert MAX_ITEMS == 50_000
    assert ITEM_LIFETIME_S == DAY


def test_every_item_gets_a_uuid_and_its_enqueue_time() -> None:
    q = NotificationQueue()
    first = q.append(obs(1), now=5.0)
    second = q.append(obs(2), now=6.5)
    assert (first.queued_at, second.queued_at) == (5.0, 6.5)
    assert first.uid != second.uid
    for item in (first, second):
        parsed = uuid.UUID(item.uid)
        assert parsed.version == 4 and str(parsed) == item.uid
    assert second.seq > first.seq


def test_uid_factories_do_not_collide() -> None:
    a, b = uid_factory(), uid_factory()
    ids = {a() for _ in range(1000)} | {b() for _ in range(1000)}
    assert len(ids) == 2000
    assert all(
        re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}", i)
        for i in ids
    )


def test_full_queue_drops_the_oldest_and_counts_overflow() -> None:
    q = NotificationQueue(max_items=3)
    for n in range(1, 6):
        q.append(obs(n), now=float(n))
    assert numbers(list(q)) == [3, 4, 5]
    assert q.dropped[DropReason.OVERFLOW] == 2
    assert q.stats().to_dict() == {
        "queued": 3,
        "enqueued": 5,
        "acknowledged": 0,
        "dropped_overflow": 2,
        "dropped_expired": 0,
        "dropped_deleted": 0,
    }


def test_the_default_queue_holds_50000() -> None:
    q = NotificationQueue()
    event = obs(0)
    for _ in range(MAX_ITEMS + 10):
        q.append(event, now=1.0)
    assert len(q) == MAX_ITEMS
    assert q.dropped[DropReason.OVERFLOW] == 10


def test_items_expire_after_24_hours() -> None:
    q = NotificationQueue()
    q.append(obs(1), now=0.0)
    q.append(obs(2), now=100.0)
    assert q.next_deadline() == DAY
    assert q.expire(DAY - 0.001) == 0
    assert q.expire(DAY) == 1  # 24 h old: gone
    assert numbers(list(q)) == [2]
    assert q.next_deadline() == DAY + 100.0
    assert q.dropped[DropReason.EXPIRED] == 1


def test_an_adapter_woken_at_the_deadline_finds_the_item_expired() -> None:
    """``(t + 24 h) - 24 h`` is not ``t`` for every float: expiry compares the same sum as
    next_deadline(), or an adapter woken at the deadline would find nothing to do, forever."""
    queued_at = 55622.592632477594
    assert not queued_at <= (queued_at + DAY) - DAY  # the rounding this guards against
    q = NotificationQueue()
    q.append(obs(1), now=queued_at)
    deadline = q.next_deadline()
    assert deadline is not None
    assert q.expire(deadline) == 1 and q.next_deadline() is None


def test_expired_items_are_counted_as_expired_not_overflow() -> None:
    q = NotificationQueue(max_items=2)
    q.append(obs(1), now=0.0)
    q.append(obs(2), now=1.0)
    q.append(obs(3), now=DAY + 0.5)  # obs 1 expired first: no overflow
    assert numbers(list(q)) == [2, 3]
    assert q.dropped == {DropReason.OVERFLOW: 0, DropReason.EXPIRED: 1, DropReason.DELETED: 0}


def test_time_cannot_go_backwards() -> None:
    q = NotificationQueue()
    q.append(obs(1), now=10.0)
    with pytest.raises(ValueError, match="backwards"):
        q.append(obs(2), now=9.0)
    with pytest.raises(ValueError, match="backwards"):
        q.head(10, now=9.0)


def test_head_is_a_batch_that_stays_queued_until_acknowledged() -> None:
    q = NotificationQueue()
    for n in range(1, 6):
        q.append(obs(n), now=1.0)
    batch = q.head(3, now=2.0)
    assert numbers(batch) == [1, 2, 3]
    assert len(q) == 5
    assert q.acknowledge(batch) == 3
    assert numbers(list(q)) == [4, 5]
    assert q.stats().acknowledged == 3
    assert q.acknowledge(batch) == 0  # a second acknowledgement removes nothing


def test_vendor_resend_diagram() -> None:
    """ "The application server is notified of a batch of 100 observations. [...] There is no
    response to the notification and therefore, Device Management Connect resends [...]. The new
    batch is formed from the changing queue, so it contains different data: The oldest
    observation Obs-1 exceeds the lifetime and is removed from the queue. [...] The new
    observations Obs-101 and Obs-102 are added to the queue. They are included in the batch,
    because adding them does not exceed the maximum size.\""""
    q = NotificationQueue()
    q.append(obs(1), now=0.0)
    for n in range(2, 101):
        q.append(obs(n), now=3600.0)
    first = q.head(10_000, now=DAY - 10)
    assert numbers(first) == list(range(1, 101))
    q.append(obs(101), now=DAY - 5)
    q.append(obs(102), now=DAY - 4)
    resend = q.head(10_000, now=DAY + 1)  # no answer to the first batch
    assert numbers(resend) == list(range(2, 103))
    assert q.acknowledge(resend) == 101
    assert len(q) == 0
    assert q.dropped[DropReason.EXPIRED] == 1


def test_acknowledge_removes_only_items_still_queued() -> None:
    q = NotificationQueue(max_items=4)
    for n in range(1, 5):
        q.append(obs(n), now=0.0)
    batch = q.head(3, now=1.0)  # obs 1..3 in flight
    q.append(obs(5), now=2.0)  # overflow pushes obs 1 out while in flight
    q.append(obs(6), now=3.0)  # and obs 2
    assert q.acknowledge(batch) == 1  # only obs 3 was still queued
    assert numbers(list(q)) == [4, 5, 6]
    assert q.dropped[DropReason.OVERFLOW] == 2


def test_a_batch_not_formed_from_the_head_is_refused() -> None:
    q = NotificationQueue()
    for n in range(1, 4):
        q.append(obs(n), now=0.0)
    middle = tuple(list(q)[1:2])
    with pytest.raises(ValueError, match="not formed from the head"):
        q.acknowledge(middle)
    assert q.acknowledge(()) == 0


def test_clear_drops_everything_as_deleted() -> None:
    q = NotificationQueue()
    for n in range(3):
        q.append(obs(n), now=0.0)
    assert q.clear() == 3
    assert q.dropped[DropReason.DELETED] == 3
    assert q.next_deadline() is None and q.oldest_queued_at() is None


def test_bad_arguments() -> None:
    with pytest.raises(ValueError):
        NotificationQueue(max_items=0)
    with pytest.raises(ValueError):
        NotificationQueue(lifetime_s=0)
    with pytest.raises(ValueError):
        NotificationQueue().head(0, now=0.0)


@settings(max_examples=100, deadline=None)
@given(
    ops=st.lists(
        st.tuples(st.sampled_from(["append", "batch", "ack", "wait"]), st.integers(1, 30)),
        max_size=60,
    )
)
def test_counts_always_add_up(ops: list[tuple[str, int]]) -> None:
    """Every item enqueued is queued, acknowledged or dropped for exactly one reason; the queue
    is never over its limit, never holds an item 24 h old, and stays in arrival order."""
    q = NotificationQueue(max_items=20, lifetime_s=100.0)
    now = 0.0
    batch: tuple[QueuedItem, ...] = ()
    for op, n in ops:
        if op == "append":
            for _ in range(n):
                q.append(obs(0), now)
        elif op == "batch":
            batch = q.head(n, now)
        elif op == "ack":
            q.acknowledge(batch)
            batch = ()
        else:
            now += n * 5.0
            q.expire(now)
        stats = q.stats()
        assert stats.enqueued == stats.queued + stats.acknowledged + sum(stats.dropped.values())
        assert len(q) <= 20
        assert all(item.queued_at + 100.0 > now for item in q)
        seqs = [item.seq for item in q]
        assert seqs == sorted(seqs)


def _registration(n: int) -> Event:
    return Event("registrations", {"ep": f"{EP[:-4]}{n:04x}", "resources": []})


@settings(max_examples=100, deadline=None)
@given(
    ops=st.lists(
        st.tuples(st.sampled_from(["notification", "registration", "ack"]), st.integers(1, 8)),
        max_size=30,
    ),
    size=st.integers(1, 12),
)
def test_a_batch_says_how_many_items_of_each_kind_it_carries(
    ops: list[tuple[str, int]], size: int
) -> None:
    """``kinds`` (counted without a pass when the batch is of the last kind appended) is what
    counting the batch's items gives, in order of first appearance."""
    q = NotificationQueue()
    for op, n in ops:
        if op == "ack":
            q.acknowledge(q.head(n, 0.0))
        else:
            for i in range(n):
                q.append(obs(i) if op == "notification" else _registration(i), 0.0)
        batch = q.head(size, 0.0)
        expected: dict[str, int] = {}
        for item in batch:
            expected[item.event.kind] = expected.get(item.event.kind, 0) + 1
        assert q.kinds(batch) == expected
        assert list(q.kinds(batch)) == list(expected)
