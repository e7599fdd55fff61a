"""The observer's waits for the reports of given items (Observer.count_reports): in any order,
once per item however many of its keys a record names, bounded, over real HTTP on loopback."""

from __future__ import annotations

import json
import threading
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from pydantic import BaseModel, ConfigDict

from conformance.observer import Observer, Route
from simulators.clock import Clock
from simulators.evidence import Recorder
from simulators.loop import LoopThread


class Record(BaseModel):
    model_config = ConfigDict(extra="allow")


@pytest.fixture
def observer() -> Iterator[Observer]:
    clock = Clock()
    loop = LoopThread("observer-test")
    obs = Observer(clock, Recorder(clock), {"v": Route(Record)})
    loop.run(obs.start())
    try:
        yield obs
    finally:
        loop.run(obs.stop())
        loop.stop()


def post(obs: Observer, *records: dict[str, Any]) -> None:
    request = urllib.request.Request(
        f"{obs.base_url}/v",
        data=json.dumps(list(records)).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=5) as answer:
        assert answer.status == 204


def keys(record: Any) -> list[str]:
    """A record names an item by its id and by its address, like a Pelion item."""
    return [f"{k}:{record[k]}" for k in ("id", "ep") if isinstance(record.get(k), str)]


WANTED = {"id:a": "A", "ep:dev-a": "A", "id:b": "B", "ep:dev-b": "B"}


def test_reports_arriving_in_any_order_while_waiting_are_all_counted(observer: Observer) -> None:
    def report_later() -> None:
        post(observer, {"id": "x"})  # another item first
        post(observer, {"id": "b", "ep": "dev-b"})  # B before A: processed concurrently
        post(observer, {"ep": "dev-a"})  # A named only by its address

    sender = threading.Thread(target=report_later)
    started = time.monotonic()
    sender.start()
    counts = observer.count_reports("v", WANTED, keys, 10.0)
    sender.join()
    assert counts == {"A": 1, "B": 1}  # a record naming both keys of B counts once
    assert time.monotonic() - started < 5.0  # woken by the reports, not by the timeout


def test_a_wait_ends_at_its_timeout_with_what_was_seen(observer: Observer) -> None:
    post(observer, {"id": "a"}, {"id": "a"})
    started = time.monotonic()
    counts = observer.count_reports("v", WANTED, keys, 0.3)
    assert 0.3 <= time.monotonic() - started < 3.0
    assert counts == {"A": 2, "B": 0}


def test_records_already_there_satisfy_a_wait_at_once(observer: Observer) -> None:
    post(observer, {"id": "a"}, {"ep": "dev-b"}, {"id": "b"})
    started = time.monotonic()
    counts = observer.count_reports("v", WANTED, keys, 10.0)
    assert counts == {"A": 1, "B": 2}
    assert time.monotonic() - started < 5.0


def test_more_than_waits_for_every_item_to_be_reported_again(observer: Observer) -> None:
    post(observer, {"id": "a"}, {"id": "b"}, {"ep": "dev-b"})
    threading.Timer(0.2, post, (observer, {"ep": "dev-a"})).start()
    started = time.monotonic()
    counts = observer.count_reports("v", WANTED, keys, 10.0, more_than=1)
    assert counts == {"A": 2, "B": 2}
    assert time.monotonic() - started < 5.0
