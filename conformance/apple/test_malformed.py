"""Malformed input: a fixed corpus, a Hypothesis campaign and a Schemathesis campaign, then a
health check (APL-BAD-01, APL-BAD-02). Runs after the other Apple checks: a SUT that crashes
here must not take the rest of the verdicts down with it."""

from __future__ import annotations

import json
import uuid

import pytest
from hypothesis import given

from conformance.apple import openapi
from conformance.apple.driver import AppleDriver, answer, example, fresh
from conformance.apple.strategies import malformed_bodies
from conformance.fuzzing import campaign_settings
from conformance.verdicts import Check, HarnessError
from simulators.apple.models import association

pytestmark = pytest.mark.run_last(2)
requirement = pytest.mark.requirement

CAMPAIGN_BUDGET_S = 60.0  # real seconds a generated campaign may take; the rest is skipped


def _valid() -> dict[str, object]:
    return fresh(example("asset-management-associate")).to_wire()


CORPUS: dict[str, bytes] = {
    "empty-body": b"",
    "not-json": b"this is not json",
    "truncated-json": json.dumps(_valid()).encode()[:-7],
    "invalid-utf8": b'{"notificationId": "\xff\xfe", "notificationType": "ASSET_COUNT"}',
    "json-array": b"[]",
    "json-string": b'"ASSET_COUNT"',
    "null": b"null",
    "missing-notification": json.dumps(
        {"notificationId": "x", "notificationType": "ASSET_COUNT"}
    ).encode(),
    "missing-id": json.dumps({k: v for k, v in _valid().items() if k != "notificationId"}).encode(),
    "wrong-types": json.dumps(
        {"notification": [], "notificationId": 7, "notificationType": None, "uId": {}}
    ).encode(),
    "huge-array": json.dumps(
        {
            "notification": {"assignments": [{}] * 200_000},
            "notificationId": 1,
            "notificationType": 2,
        }
    ).encode(),
    "deep-nesting": b'{"notification": ' + b"[" * 50_000 + b"]" * 50_000 + b"}",
    "two-mebibytes": json.dumps({"notificationId": "x", "pad": "x" * (2 << 20)}).encode(),
}


def _judge(apple: AppleDriver, check: Check, body: bytes, what: str) -> None:
    """5xx fails, and so does a connection the receiver broke on the body (it crashed or
    dropped it); an answer that is only late is APL-LAT-01's to judge, noted here."""
    attempt = apple.post(body, timeout=10)
    check.observe(f"{answer(attempt)} for {what}")
    if attempt.timed_out:
        check.note(f"{what}: no answer within 10 s (judged by APL-LAT-01)")
        return
    if attempt.status is None or attempt.status >= 500:
        apple.reproduce(check, body)
    assert attempt.status is not None, (
        f"the receiver broke the connection on {what}: {attempt.error}"
    )
    assert attempt.status < 500, f"answered {attempt.status} to {what}"
    if attempt.status != 400:
        check.note(f"{what}: answered {attempt.status}; 400 is recommended")


@requirement("APL-BAD-01")
@pytest.mark.parametrize("name", list(CORPUS))
def test_malformed_corpus(apple: AppleDriver, check: Check, name: str) -> None:
    check.expect("never 5xx (400 recommended)")
    _judge(apple, check, CORPUS[name], name)


@requirement("APL-BAD-01")
def test_malformed_campaign(apple: AppleDriver, check: Check) -> None:
    """Hypothesis: bodies from conformance.apple.strategies.malformed_bodies()."""
    check.expect("never 5xx for any generated malformed body")
    clock = apple.harness.clock
    ends = clock.real() + CAMPAIGN_BUDGET_S
    skipped = []

    @campaign_settings(apple.harness.settings.fuzz_profile)
    @given(malformed_bodies())
    def campaign(body: bytes) -> None:
        if clock.real() > ends:
            skipped.append(len(body))
            return
        _judge(apple, check, body, f"a generated body of {len(body)} B")

    campaign()
    if skipped:
        check.note(
            f"{len(skipped)} generated bodies not sent: the campaign's {CAMPAIGN_BUDGET_S:g} s budget ran out"
        )


@requirement("APL-BAD-01")
def test_schemathesis_campaign(apple: AppleDriver, check: Check) -> None:
    """Schemathesis: negative cases from the receiver's OpenAPI description (pydantic models)."""
    check.expect("never 5xx for schema-violating notifications")
    cases = openapi.negative_cases(
        campaign_settings(apple.harness.settings.fuzz_profile, max_examples=15)
    )
    if not cases:
        raise HarnessError("Schemathesis generated no negative case")
    check.note(f"{len(cases)} negative bodies generated from the OpenAPI description")
    for body in cases:
        _judge(apple, check, body, f"a schema-violating body of {len(body)} B")


@requirement("APL-BAD-02")
def test_still_healthy_after_campaign(apple: AppleDriver, check: Check) -> None:
    body = association(2).to_wire()
    check.expect("2xx for a valid notification, and 4xx for a wrong token, after the campaign")
    apple.reproduce(check, body)  # after APL-BAD-01's reproducers
    harness = apple.harness
    if harness.sut_down and (harness.down_in or "").startswith(__name__.replace(".", "/")):
        check.observe(harness.sut_down)  # it went down in this module: staying up is the point
        raise AssertionError(
            f"the SUT did not stay up through the malformed input: {harness.sut_down}"
        )
    good = apple.post(body)
    bad = apple.post(
        {**body, "notificationId": str(uuid.uuid4())},
        headers={"Authorization": "Bearer wrong", "Content-Type": "application/json"},
    )
    check.observe(f"a valid notification: {answer(good)}; a wrong token: {answer(bad)}")
    assert good.status is not None and 200 <= good.status < 300, (
        f"a valid notification got {good.status or good.error} after the campaign"
    )
    assert bad.status is not None, f"no answer after the campaign: {bad.error}"
    alive = apple.harness.sut_alive()
    assert alive is None, alive
