"""Scenario exploration's parts that need no SUT (docs/exploration.md): the sleep notes that
tell a quiet point, the budget, saved scenarios and the Apple steps' JSON. The exploration
itself, against live SUTs, is proven by the self-test (tests/selftest/test_selftest.py)."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from pathlib import Path

import pytest

from conformance.apple.explorer import AppleExplorer
from conformance.exploration import Budget, BudgetSpent, load_scenario
from simulators.apple.operations import Deliver, FailDeliveries
from simulators.clock import Clock, SleepNote
from simulators.operations import AdvanceClock


def test_a_sleep_note_shows_a_task_asleep_until_the_clock_reaches_its_deadline() -> None:
    async def scenario() -> list[bool]:
        clock = Clock()
        changed = asyncio.Event()
        note = SleepNote(changed)
        with clock.noting(note):
            task = asyncio.create_task(clock.sleep(60))
        await changed.wait()
        seen = [clock.asleep(note)]  # sleeps until +60 s
        changed.clear()
        clock.advance(60)
        seen.append(clock.asleep(note))  # due: no longer quiet, though not yet woken
        await asyncio.wait_for(task, 5)
        seen += [note.deadline is None, changed.is_set()]
        return seen

    assert asyncio.run(scenario()) == [True, False, True, True]


def test_a_spent_budget_runs_nothing() -> None:
    async def never() -> None:
        raise AssertionError("ran")

    budget = Budget(time.monotonic() - 1)
    with pytest.raises(BudgetSpent):
        budget.check()
    with pytest.raises(BudgetSpent):
        budget.run(None, never())  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("not json", "is not JSON"),
        ('{"schema": "other"}', "is not a scenario file"),
        ('{"schema": "conformance-scenario/1", "vendor": "apple"}', "names no vendor"),
        (
            '{"schema": "conformance-scenario/1", "vendor": "apple", "requirement": "X", '
            '"steps": []}',
            "has no steps",
        ),
    ],
)
def test_a_bad_scenario_file_is_one_clear_message(
    tmp_path: Path, content: str, message: str
) -> None:
    path = tmp_path / "s.json"
    path.write_text(content)
    with pytest.raises(ValueError, match=message):
        load_scenario(path)


def test_apple_steps_parse_from_their_own_json() -> None:
    explorer = AppleExplorer(driver=None)  # type: ignore[arg-type]  # parse needs no driver
    steps = [
        FailDeliveries(kind="drop-before-ack"),
        explorer.name(Deliver.model_validate(_deliver("n")), 2),
        AdvanceClock(seconds=60),
    ]
    wire = json.loads(json.dumps([s.model_dump(mode="json") for s in steps]))
    assert [explorer.parse(w) for w in wire] == steps
    assert wire[1]["notification"]["notificationId"] == "n2"
    with pytest.raises(ValueError, match="advance-clock"):
        explorer.parse({"op": "advance-clock", "seconds": -1})
    with pytest.raises(ValueError):
        explorer.parse({"op": "format-disk"})


def test_ivanti_steps_name_the_sut_client_and_parse_from_their_own_json() -> None:
    from conformance.ivanti.explorer import HOLDER, IvantiExplorer
    from simulators.ivanti.operations import LosePuback, Publish, Redeliver

    explorer = IvantiExplorer(driver=None, holder="sut-1")  # type: ignore[arg-type]
    steps = [
        explorer.name(LosePuback(client_id=HOLDER), 1),
        Publish(event_type="device_check_in"),
        explorer.name(Redeliver(client_id=HOLDER), 3),
        AdvanceClock(seconds=11400),
    ]
    assert [getattr(s, "client_id", "sut-1") for s in steps] == ["sut-1"] * 4
    wire = json.loads(json.dumps([s.model_dump(mode="json") for s in steps]))
    assert [explorer.parse(w) for w in wire] == steps
    assert explorer.boundaries(steps[3]) == ["clock past the 3 h retention"]
    with pytest.raises(ValueError):
        explorer.parse({"op": "begin-outage"})  # not a step of an exploration


def test_pelion_websocket_steps_name_fresh_devices_and_parse_from_their_own_json() -> None:
    from conformance.pelion.explorer import PelionCallbackExplorer, PelionWebSocketExplorer
    from simulators.pelion.operations import (
        CloseSocket,
        DelayHandshakes,
        DeleteChannel,
        DropSocket,
        FailDeliveries,
        Inject,
    )

    explorer = PelionWebSocketExplorer(driver=None)  # type: ignore[arg-type]
    item = {"ep": "x", "path": "/3200/0/5501", "ct": "text/plain", "payload": "MQ==", "max-age": 0}
    steps = [
        explorer.name(Inject(kind="notifications", items=[item, item]), 1),
        CloseSocket(code=1011, reason="exploration"),
        DeleteChannel(),
        DropSocket(),
        DelayHandshakes(seconds=0.5),
        AdvanceClock(seconds=3600),
    ]
    assert [i["ep"] for i in steps[0].items] == ["d1-0", "d1-1"]  # type: ignore[attr-defined]
    wire = json.loads(json.dumps([s.model_dump(mode="json") for s in steps]))
    assert [explorer.parse(w) for w in wire] == steps
    assert explorer.part == "websocket"
    assert explorer.boundaries(steps[3]) == ["socket dropped (1006)"]
    with pytest.raises(ValueError):  # a callback fault is not a WebSocket step
        explorer.parse(FailDeliveries().model_dump(mode="json"))
    callback = PelionCallbackExplorer(driver=None)  # type: ignore[arg-type]
    assert callback.part == "callback"
    with pytest.raises(ValueError):
        callback.parse(wire[1])


def test_a_scenario_file_names_its_part_as_text(tmp_path: Path) -> None:
    path = tmp_path / "s.json"
    path.write_text(
        '{"schema": "conformance-scenario/1", "vendor": "pelion", "part": 3, '
        '"requirement": "PEL-MSG-01", "steps": [{"op": "drop-socket"}]}'
    )
    with pytest.raises(ValueError, match="names its part as 3"):
        load_scenario(path)
    path.write_text(path.read_text().replace('"part": 3', '"part": "websocket"'))
    assert load_scenario(path).part == "websocket"


def _deliver(nid: str) -> dict[str, object]:
    return {
        "op": "deliver",
        "notification": {
            "notification": {"adamId": "1", "countDelta": 1, "pricingParam": "STDQ"},
            "notificationId": nid,
            "notificationType": "ASSET_COUNT",
        },
    }


# The engine against an explorer whose "SUT" is a few lines of Python: generation, shrinking,
# the replay that tells a steady failure from a flaky one, and the budget, with no sockets.


class _Harness:
    """What the engine reads of a harness: the evidence, the running check, the SUT's life."""

    def __init__(self) -> None:
        from simulators.evidence import Recorder

        self.recorder = Recorder(Clock())
        self.cause = ""
        self.sut_down: str | None = None

    def sut_alive(self) -> None:
        return None


class _LastIdExplorer:
    """Steps ``deliver`` (an id) and ``advance-clock``; the SUT dedupes on the last id only,
    so delivering x, y, x processes x twice (APL-OBS-01). ``flaky`` makes every violation
    a coin toss; ``stall`` makes every step take that long."""

    part = "receiver"

    def __init__(self, *, flaky: bool = False, stall: float = 0.0) -> None:
        self.flaky, self.stall = flaky, stall
        self.last: str | None = None
        self.processed: list[str] = []
        self.toss = 0

    def rules(self) -> dict[str, object]:
        from hypothesis import strategies as st

        deliver = st.sampled_from(["a", "b"]).map(lambda nid: _delivery(nid))
        clock = st.just(AdvanceClock(seconds=60))
        return {"deliver": deliver, "advance_clock": clock}

    def parse(self, step: dict[str, object]) -> object:
        return AppleExplorer(driver=None).parse(step)  # type: ignore[arg-type]

    def name(self, operation: object, number: int) -> object:
        return operation

    def boundaries(self, operation: object) -> list[str]:
        return [type(operation).__name__]

    def begin(self, budget: Budget) -> None:
        self.last, self.processed = None, []

    def perform(self, operation: object, budget: Budget) -> None:
        threading.Event().wait(self.stall)  # a step that hangs, as a hostile SUT makes it
        if isinstance(operation, Deliver):
            nid = operation.notification.notificationId
            if nid != self.last:
                self.processed.append(nid)
            self.last = nid

    def finish(self, budget: Budget) -> object:
        from conformance.exploration import Judgement, Violation

        again = sorted({n for n in self.processed if self.processed.count(n) > 1})
        self.toss += 1
        if not again or (self.flaky and self.toss % 2 == 0):
            return Judgement()
        return Judgement((Violation("APL-OBS-01", f"processed more than once: {again}"),))


def _delivery(nid: str) -> Deliver:
    return Deliver.model_validate(_deliver(nid))


def _explore(tmp_path: Path, explorer: object, budget_s: float) -> object:
    from conformance.exploration import explore

    return explore(
        _Harness(),  # type: ignore[arg-type]
        "apple",
        explorer,  # type: ignore[arg-type]
        budget_s,
        seed=1,
        database=None,
        scenarios_dir=tmp_path / "scenarios",
        report_dir=tmp_path,
    )


def test_a_failure_is_shrunk_confirmed_and_saved(tmp_path: Path) -> None:
    stats = _explore(tmp_path, _LastIdExplorer(), 20)
    assert [f.violation.requirement for f in stats.failures] == ["APL-OBS-01"]  # type: ignore[attr-defined]
    failure = stats.failures[0]  # type: ignore[attr-defined]
    assert [s.notification.notificationId for s in failure.steps] == ["a", "b", "a"] or [
        s.notification.notificationId for s in failure.steps
    ] == ["b", "a", "b"]
    saved = load_scenario(tmp_path / failure.file)
    assert saved.requirement == "APL-OBS-01" and len(saved.steps) == 3
    assert saved.part == "receiver"  # --replay picks the explorer of the same part
    assert stats.to_json()["part"] == "receiver"  # type: ignore[attr-defined]
    assert stats.flaky == []  # type: ignore[attr-defined]


def test_a_failure_that_does_not_come_back_is_flaky(tmp_path: Path) -> None:
    stats = _explore(tmp_path, _LastIdExplorer(flaky=True), 3)
    assert stats.failures == []  # type: ignore[attr-defined]
    assert {f.violation.requirement for f in stats.flaky} == {"APL-OBS-01"}  # type: ignore[attr-defined]


def test_the_budget_bounds_wall_time_whatever_a_step_takes(tmp_path: Path) -> None:
    started = time.monotonic()
    stats = _explore(tmp_path, _LastIdExplorer(stall=3.0), 2)
    assert time.monotonic() - started < 2 + 1.5
    assert stats.spent_s < 3.5  # type: ignore[attr-defined]
