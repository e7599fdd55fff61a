"""simulators.faults: one-shot faults per target, in order; the context manager disarms."""

from __future__ import annotations

from simulators.faults import FaultKind, FaultPlan


def test_faults_apply_in_order_then_run_out() -> None:
    plan = FaultPlan()
    plan.add("deliver", FaultKind.DROP_BEFORE_ACK, times=2)
    plan.add("deliver", FaultKind.DELAY, seconds=30)
    taken = [plan.take("deliver") for _ in range(4)]
    assert [f.kind if f else None for f in taken] == [
        FaultKind.DROP_BEFORE_ACK,
        FaultKind.DROP_BEFORE_ACK,
        FaultKind.DELAY,
        None,
    ]
    assert taken[2] is not None and taken[2].get("seconds") == 30
    assert plan.take("api") is None


def test_arm_disarms_what_was_not_used_and_keeps_the_rest() -> None:
    plan = FaultPlan()
    plan.add("api", FaultKind.STATUS, status=429)
    with plan.arm("api", FaultKind.STATUS, times=3, status=503) as fault:
        assert plan.take("api").get("status") == 429  # type: ignore[union-attr]
        assert plan.take("api") is fault
    assert plan.take("api") is None  # the two unused 503s were disarmed


def test_clear_one_target_or_all() -> None:
    plan = FaultPlan()
    plan.add("api", FaultKind.STATUS)
    plan.add("deliver", FaultKind.DUPLICATE)
    plan.clear("api")
    assert plan.take("api") is None and plan.take("deliver") is not None
    plan.add("api", FaultKind.STATUS)
    plan.clear()
    assert plan.take("api") is None
