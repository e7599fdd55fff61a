"""The observer's waits for the reports of given items (Observer.count_reports): in any order,
once per item however many of its keys a record names, bounded, over real HTTP on loopback; and
what it refuses (docs/sut-contract.md §4)."""

from __future__ import annotations

import json
import threading
import time
import tracemalloc
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from pydantic import BaseModel, ConfigDict

from conformance.observer import MAX_VENDOR_BYTES, Observer, Route, footprint
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


def send(obs: Observer, vendor: str, body: bytes) -> tuple[int, str]:
    """POST ``body`` as it is; the status and the answer's text."""
    request = urllib.request.Request(
        f"{obs.base_url}/{vendor}", data=body, headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as refused:
        return refused.code, refused.read().decode()


@contextmanager
def running(routes: dict[str, Route], **fields: Any) -> Iterator[Observer]:
    clock = Clock()
    loop = LoopThread("observer-test")
    obs = Observer(clock, Recorder(clock), routes, **fields)
    loop.run(obs.start())
    try:
        yield obs
    finally:
        loop.run(obs.stop())
        loop.stop()


def test_records_past_the_byte_budget_are_refused_and_counted() -> None:
    """docs/sut-contract.md §4: besides 8 MB a body and 200,000 records, a vendor's records may
    take MAX_VENDOR_BYTES in all (as held in memory): large valid records past it get 413,
    counted like the other limits, and nothing of them is kept."""
    big = json.dumps({"id": "big", "pad": "x" * 1_000_000}).encode()
    with running({"v": Route(Record)}, max_vendor_bytes=4_500_000) as obs:
        answers = [send(obs, "v", big)[0] for _ in range(8)]
        assert answers == [204] * 4 + [413] * 4
        assert obs.refusals("v").counts == {"too-much": 4}
        assert "4500000 bytes" in obs.refusals("v").first["too-much"]
        assert len(obs.records("v")) == 4
        assert send(obs, "v", b'{"id": "small"}')[0] == 204  # room is left for small ones
    assert MAX_VENDOR_BYTES <= 64 * 1024 * 1024


def test_a_record_with_a_lone_surrogate_is_refused_before_it_is_kept() -> None:
    """docs/sut-contract.md §4: a record whose text is not Unicode (JSON "\\ud800", a lone
    surrogate) is malformed: 400 with the reason, counted, never kept, so no later check
    meets it; every vendor's keys take any record."""
    from conformance.vendors import discover

    vendors = discover()
    routes = {
        name: Route(v.observer_record_model(), v.observer_keys) for name, v in vendors.items()
    }
    bodies = {
        "ivanti": b'{"topic": "t/device/check_in", "message": {"eventType": "\\ud800"}}',
        "apple": b'{"notification": {"notificationId": "\\udfff", "notificationType": "X"}}',
        "pelion": b'[{"kind": "notifications", "item": {"ep": "d", "uid": "\\ud800x"}}]',
    }
    with running(routes) as obs:
        for name, body in bodies.items():
            status, text = send(obs, name, body)
            assert status == 400, (name, status, text)
            assert "surrogate" in text
            assert obs.records(name) == []
            assert obs.refusals(name).counts == {"invalid-text": 1}
        raw = b'{"topic": "t", "message": "\xed\xa0\x80"}'  # the surrogate as UTF-8 bytes
        assert send(obs, "ivanti", raw)[0] == 400


SHAPES: dict[str, Any] = {
    "small objects": [{}] * 200_000,
    "objects of one number": [{"a": 1.5}] * 100_000,
    "arrays of one number": [[1.5]] * 100_000,
    "nested arrays": [[[[[1.5]]]]] * 50_000,
    "numbers": [1.5] * 300_000,
    "short strings": ["ab"] * 300_000,
    "unique keys": [{f"k{i}": "ab" for i in range(1_000)} for _ in range(100)],
    "one long string": {"x": "y" * 2_000_000},
    "apple records": [{"notification": {"notificationId": "x", "notificationType": "A"}}] * 50_000,
}


@pytest.mark.parametrize("separators", [None, (",", ":")], ids=["spaced", "compact"])
@pytest.mark.parametrize("shape", list(SHAPES))
def test_footprint_is_at_least_what_the_parsed_body_takes(
    shape: str, separators: tuple[str, str] | None
) -> None:
    """The byte budget is charged before parsing, from the body alone; for the shapes that make
    the most objects per byte it is no less than what json.loads then holds."""
    raw = json.dumps(SHAPES[shape], separators=separators).encode()
    tracemalloc.start()
    try:
        parsed = json.loads(raw)
        held, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    del parsed
    assert held <= footprint(raw) <= 4 * max(held, len(raw))
