"""Answer times over the whole run (APL-LAT-01, APL-LAT-02), judged after the other checks.

Every notification attempt of the run counts: the checks' own and those the Apps and Books API
sent, answered or not. An attempt that got no answer within the delivery timeout is a late
answer; one that failed because the simulator injected a fault is ours and does not count.
"""

from __future__ import annotations

import statistics

import pytest

from conformance.apple.driver import AppleDriver
from conformance.verdicts import Check
from simulators.apple.operations import Attempts

pytestmark = pytest.mark.run_last(3)
requirement = pytest.mark.requirement

P95_LIMIT_S = 0.5
MIN_SAMPLES = 20

_OVER_THE_RUN = (
    "judged over the answer times of every notification of the run (real time, under the "
    "run's load): no single request replays it"
)


@requirement("APL-LAT-01")
def test_every_answer_within_timeout(apple: AppleDriver, check: Check) -> None:
    limit = apple.sim.settings.timeout_s
    check.no_reproducer(_OVER_THE_RUN)
    check.expect(
        f"every notification answered within {limit:g} s (the project's assumption: Apple "
        "publishes no answer time; --apple-timeout)"
    )
    entries = [e for e in apple.perform(Attempts()) if e.attempt.fault is None]
    answered = [e for e in entries if e.attempt.status is not None]
    late = [
        e
        for e in entries
        if e.attempt.timed_out
        or (e.attempt.status is not None and (e.attempt.elapsed_real_s or 0) > limit)
    ]
    if not answered and not late:
        raise check.not_verified("no notification reached the SUT in this run")
    slowest = max((e.attempt.elapsed_real_s or 0 for e in answered), default=0.0)
    check.observe(
        f"{len(answered)} answered (slowest {slowest:.3f} s), {len(late)} late or unanswered "
        f"of {len(entries)} attempts"
    )
    if late:
        first = late[0]
        how = (
            f"no answer within {limit:g} s"
            if first.attempt.timed_out
            else f"answered after {first.attempt.elapsed_real_s:.1f} s"
        )
        for entry in late[1:6]:
            check.note(f"also late: {entry.label}")
        raise AssertionError(
            f"{len(late)} notification(s) not answered within {limit:g} s; first: {first.label} ({how})"
        )


@requirement("APL-LAT-02")
def test_p95_answer_time(apple: AppleDriver, check: Check) -> None:
    times = list(apple.sim.attempts.answer_times_real_s)
    check.no_reproducer(_OVER_THE_RUN)
    check.expect(f"p95 answer time under {P95_LIMIT_S * 1000:.0f} ms")
    if len(times) < MIN_SAMPLES:
        raise check.not_verified(f"only {len(times)} answers (need {MIN_SAMPLES})")
    p95 = statistics.quantiles(times, n=20)[-1]
    check.observe(f"p95 {p95 * 1000:.1f} ms over {len(times)} answers")
    assert p95 < P95_LIMIT_S, (
        f"p95 answer time {p95 * 1000:.0f} ms (limit {P95_LIMIT_S * 1000:.0f})"
    )
