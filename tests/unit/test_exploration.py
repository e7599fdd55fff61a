"""Scenario exploration's parts that need no SUT (docs/exploration.md): the sleep notes that
tell a quiet point, the budget, saved scenarios and the Apple steps' JSON. The exploration
itself, against live SUTs, is proven by the self-test (tests/selftest/test_selftest.py)."""

from __future__ import annotations

import asyncio
import json
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
        FailDeliveries(kind="drop-before-ack"),  # type: ignore[arg-type]
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


def _deliver(nid: str) -> dict[str, object]:
    return {
        "op": "deliver",
        "notification": {
            "notification": {"adamId": "1", "countDelta": 1, "pricingParam": "STDQ"},
            "notificationId": nid,
            "notificationType": "ASSET_COUNT",
        },
    }
