"""Answer times over the whole run (APL-LAT-01, APL-LAT-02), judged after the other checks."""

from __future__ import annotations

import statistics

import pytest

from conformance.apple.conftest import AppleDriver
from conformance.verdicts import Check

pytestmark = pytest.mark.run_last(3)
requirement = pytest.mark.requirement

P95_LIMIT_S = 0.5
MIN_SAMPLES = 20


@requirement("APL-LAT-01")
def test_every_answer_within_timeout(apple: AppleDriver, check: Check) -> None:
    limit = apple.sim.settings.timeout_s
    answers = [e.attempt for e in apple.sim.attempts.entries() if e.attempt.status is not None]
    check.expect(f"every notification answered within {limit:g} s")
    if not answers:
        raise check.not_verified("the SUT answered no notification in this run")
    late = [a for a in answers if (a.elapsed_real_s or 0) > limit]
    slowest = max(a.elapsed_real_s or 0 for a in answers)
    check.observe(f"{len(answers)} answers; slowest {slowest:.3f} s; {len(late)} over {limit:g} s")
    assert not late, f"{len(late)} answer(s) took longer than {limit:g} s (slowest {slowest:.1f} s)"


@requirement("APL-LAT-02")
def test_p95_answer_time(apple: AppleDriver, check: Check) -> None:
    times = list(apple.sim.attempts.answer_times_real_s)
    check.expect(f"p95 answer time under {P95_LIMIT_S * 1000:.0f} ms")
    if len(times) < MIN_SAMPLES:
        raise check.not_verified(f"only {len(times)} answers (need {MIN_SAMPLES})")
    p95 = statistics.quantiles(times, n=20)[-1]
    check.observe(f"p95 {p95 * 1000:.1f} ms over {len(times)} answers")
    assert p95 < P95_LIMIT_S, (
        f"p95 answer time {p95 * 1000:.0f} ms (limit {P95_LIMIT_S * 1000:.0f})"
    )
