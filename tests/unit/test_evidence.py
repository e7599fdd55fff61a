"""simulators.evidence: events go to the timeline of the check that caused them, bounded."""

from __future__ import annotations

import asyncio

from simulators.clock import Clock
from simulators.evidence import RUN, Recorder


def test_events_follow_their_cause_into_tasks() -> None:
    recorder = Recorder(Clock())

    async def simulator_work() -> None:
        recorder.record("sim", "->", "sut", "request", "sent")

    async def scenario() -> None:
        with recorder.attributed("check-a"):
            task = asyncio.ensure_future(simulator_work())  # the task inherits the cause
        await task
        recorder.record("sut", "->", "sim", "keepalive", "ping")  # nobody's: run-level

    asyncio.run(scenario())
    assert [e.summary for e in recorder.timeline("check-a").events()] == ["sent"]
    assert [e.summary for e in recorder.timeline(RUN).events()] == ["ping"]
    assert recorder.timeline("check-b").events() == []


def test_a_reply_elsewhere_is_tied_to_its_cause() -> None:
    recorder = Recorder(Clock())
    with recorder.attributed("check-a"):
        recorder.remember_cause("notification-1")
    assert recorder.cause_of("notification-1") == "check-a"
    assert recorder.cause_of("notification-2") is None
    recorder.record("sut", "->", "observer", "observed", "processed", cause="check-a")
    assert recorder.timeline("check-a").total == 1


def test_timelines_keep_head_and_tail_and_count_the_cut() -> None:
    recorder = Recorder(Clock(), check_head=3, check_tail=2)
    with recorder.attributed("busy"):
        for i in range(10):
            recorder.record("sim", "->", "sut", "request", str(i))
    timeline = recorder.timeline("busy")
    assert [e.summary for e in timeline.events()] == ["0", "1", "2", "8", "9"]
    assert timeline.cut == 5 and timeline.total == 10


def test_memory_is_bounded_by_the_number_of_causes() -> None:
    recorder = Recorder(Clock(), check_head=1, check_tail=0, max_causes=3)
    for cause in ["a", "b", "c", "d", "e"]:
        recorder.record("sim", "->", "sut", "request", cause, cause=cause)
    assert recorder.causes() == [RUN, "c", "d", "e"]
    assert recorder.dropped == 2 and recorder.total() == 5


def test_every_event_carries_real_and_simulated_time() -> None:
    clock = Clock()
    recorder = Recorder(clock)
    clock.advance(3600)
    recorder.record("sim", "--", "sut", "retry-wait", "an hour later")
    event = recorder.timeline().events()[0]
    assert event.sim_s - event.real_s >= 3600
    assert {"real_s", "sim_s"} <= set(event.to_json())


def test_an_event_recorded_later_is_made_into_text_only_when_read() -> None:
    made: list[int] = []

    def render(n: int) -> tuple[str, dict[str, object]]:
        made.append(n)
        return f"request {n}", {"n": n}

    sunk: list[str] = []
    recorder = Recorder(Clock(), check_head=1, check_tail=1)
    with recorder.attributed("busy"):
        for n in range(5):
            recorder.record_later("sim", "->", "sut", "request", render, n)
        recorder.record("sim", "--", "sut", "note", "plain", n=9)
    assert made == []  # recorded: time and place taken, no text made
    events = recorder.timeline("busy").events()
    assert [(e.seq, e.summary, e.detail) for e in events] == [
        (0, "request 0", {"n": 0}),
        (5, "plain", {"n": 9}),
    ]
    assert made == [0]  # the cut events never were
    recorder.sink = lambda event: sunk.append(event.summary)
    recorder.record_later("sim", "->", "sut", "request", render, 7)
    assert sunk == ["request 7"]
