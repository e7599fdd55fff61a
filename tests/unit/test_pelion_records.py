"""simulators.pelion.records: one batch attempt is built in one place
(:meth:`DeliveryAttempt.of_batch`), and the attempt log numbers attempts in order and keeps
their item uids within a bound."""

from __future__ import annotations

import pytest

from simulators.adapter import StateChanges
from simulators.clock import Clock
from simulators.pelion import records
from simulators.pelion.delivery import Batch
from simulators.pelion.models import DEFAULT_SERIALIZATION, Event, QueuedItem
from simulators.pelion.records import AttemptLog, DeliveryAttempt


def batch(number: int, size: int) -> Batch:
    items = tuple(
        QueuedItem(i, Event("registrations", {"ep": "e"}), f"uid-{number}-{i}", 0.0)
        for i in range(size)
    )
    return Batch(number, items, 5.0, 2, DEFAULT_SERIALIZATION, {"registrations": size})


def test_of_batch_takes_number_size_and_kinds_from_the_batch() -> None:
    attempt = DeliveryAttempt.of_batch(
        batch(7, 3), key="ak_1", channel="callback", attempt=2, body_bytes=99,
        started_real_s=1.0, started_sim_s=5.0, elapsed_real_s=0.5, succeeded=False,
        status=500, answered=500, retry_in_sim_s=2.0, url="https://sut/cb",
    )  # fmt: skip
    assert (attempt.seq, attempt.batch, attempt.items, dict(attempt.kinds)) == (
        0, 7, 3, {"registrations": 3},
    )  # fmt: skip
    assert (attempt.status, attempt.retry_in_sim_s, attempt.connection, attempt.uids) == (
        500, 2.0, None, None,
    )  # fmt: skip


def test_the_log_numbers_attempts_and_bounds_the_uids(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(records, "UIDS_KEPT", 4)
    log = AttemptLog(StateChanges(Clock()))
    for number in (1, 2, 3):
        sent = batch(number, 2)
        log.add(
            DeliveryAttempt.of_batch(
                sent, key="ak_1", channel="websocket", attempt=1, body_bytes=10,
                started_real_s=0.0, started_sim_s=0.0, elapsed_real_s=0.0, succeeded=True,
            ),
            sent,
        )  # fmt: skip
    kept = log.attempts()
    assert [a.seq for a in kept] == [1, 2, 3]
    assert log.total == 3
    assert [a.uids for a in kept] == [None, ("uid-2-0", "uid-2-1"), ("uid-3-0", "uid-3-1")]


def test_the_log_keeps_the_latest_bodies_within_a_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    """A reproducer sends a batch's exact bytes again: the newest are kept, the oldest go."""
    monkeypatch.setattr(records, "BODIES_KEPT_BYTES", 10)
    log = AttemptLog(StateChanges(Clock()))
    for number, body in ((1, b"aaaa"), (2, b"bbbb"), (3, b"cccc"), (4, b"x" * 11)):
        sent = batch(number, 1)
        log.add(
            DeliveryAttempt.of_batch(
                sent, key="ak_1", channel="callback", attempt=1, body_bytes=len(body),
                started_real_s=0.0, started_sim_s=0.0, elapsed_real_s=0.0, succeeded=False,
            ),
            sent,
            body,
        )  # fmt: skip
    assert [log.body(seq) for seq in (1, 2, 3, 4)] == [None, b"bbbb", b"cccc", None]
