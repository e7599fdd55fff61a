"""The SUT as an Apple notification receiver: transport, authentication, every type, duplicates
and split events (APL-TLS, APL-AUTH, APL-TYPE, APL-DUP, APL-OBS)."""

from __future__ import annotations

import base64
import functools
import uuid
from collections.abc import Callable
from typing import Any

import pytest

from conformance.apple.conftest import AppleDriver, example, fresh
from conformance.verdicts import Check, HarnessError
from simulators.apple.models import association

requirement = pytest.mark.requirement


def _ok(status: int | None) -> bool:
    return status is not None and 200 <= status < 300


@requirement("APL-TLS-01")
def test_notification_url_is_https(apple: AppleDriver, check: Check) -> None:
    """The vendor only delivers to an HTTPS notification URL (error 9712 otherwise)."""
    check.expect("an https:// URL whose certificate verifies against the declared CA")
    scheme = apple.url.split("://", 1)[0]
    attempt = apple.post(example("test-notification") | {"notificationId": str(uuid.uuid4())})
    check.observe(f"{scheme}:// URL; answer {attempt.status or attempt.error}")
    assert scheme == "https", f"the notification URL {apple.url} is not HTTPS"
    assert attempt.status is not None, f"no HTTPS answer: {attempt.error}"


@requirement("APL-AUTH-01")
def test_accepts_bearer_token(apple: AppleDriver, check: Check) -> None:
    body = association(2).to_wire()
    check.expect("2xx for Authorization: Bearer <notificationAuthToken>")
    attempt = apple.post(body)
    check.observe(str(attempt.status or attempt.error))
    check.reproduce.append(apple.curl(body))
    assert _ok(attempt.status), f"answered {attempt.status or attempt.error} to a correct token"


@requirement("APL-AUTH-02")
def test_rejects_missing_authorization(apple: AppleDriver, check: Check) -> None:
    body = fresh(example("asset-count")).to_wire()
    headers = {"Content-Type": "application/json"}
    check.expect("non-2xx (401 or 403) without an Authorization header")
    attempt = apple.post(body, headers=headers)
    check.observe(str(attempt.status or attempt.error))
    check.reproduce.append(apple.curl(body, headers))
    assert attempt.status is not None, f"no answer: {attempt.error}"
    assert not _ok(attempt.status), f"accepted ({attempt.status}) a notification with no token"
    if attempt.status not in (401, 403):
        check.note(f"rejected with {attempt.status}; 401 or 403 is expected")


def _auth_variants(token: str) -> dict[str, str]:
    basic = base64.b64encode(f"apple:{token}".encode()).decode()
    return {
        "wrong-token": f"Bearer {uuid.uuid4().hex}",
        "basic-scheme": f"Basic {basic}",
        "case-differs": f"Bearer {token.swapcase() if token.swapcase() != token else token + 'X'}",
        "prefix": f"Bearer {token[:-1]}",
        "suffix": f"Bearer {token}x",
    }


@requirement("APL-AUTH-03")
@pytest.mark.parametrize(
    "variant", ["wrong-token", "basic-scheme", "case-differs", "prefix", "suffix"]
)
def test_rejects_wrong_authorization(apple: AppleDriver, check: Check, variant: str) -> None:
    body = fresh(example("asset-count")).to_wire()
    header = _auth_variants(apple.token)[variant]
    headers = {"Authorization": header, "Content-Type": "application/json"}
    check.expect(f"non-2xx for {variant}")
    attempt = apple.post(body, headers=headers)
    check.observe(str(attempt.status or attempt.error))
    check.reproduce.append(apple.curl(body, headers))
    assert attempt.status is not None, f"no answer: {attempt.error}"
    assert not _ok(attempt.status), f"accepted ({attempt.status}) a {variant} Authorization header"


def _asset_count(delta: int) -> dict[str, Any]:
    wire = example("asset-count")
    wire["notification"] = {**wire["notification"], "countDelta": delta}
    return wire


def _type_case(rid: str, name: str, wire: Callable[[], dict[str, Any]]) -> Any:
    return pytest.param(wire, id=name, marks=requirement(rid))


# Every documented type, from the vendor doc's own examples (fixtures/apple/examples).
DOCUMENTED = [
    _type_case("APL-TYPE-01", "test-notification", lambda: example("test-notification")),
    _type_case("APL-TYPE-02", "asset-count-positive", lambda: _asset_count(12)),
    _type_case("APL-TYPE-02", "asset-count-negative", lambda: _asset_count(-12)),
    *(
        _type_case(rid, name, functools.partial(example, name))
        for rid, names in [
            (
                "APL-TYPE-03",
                [
                    "asset-management-associate",
                    "asset-management-disassociate",
                    "asset-management-revoke",
                    "asset-management-failure-mixed",
                ],
            ),
            (
                "APL-TYPE-04",
                [
                    "subscription-count",
                    "subscription-management-associate",
                    "subscription-management-disassociate",
                ],
            ),
            (
                "APL-TYPE-05",
                [
                    "user-management-create",
                    "user-management-update",
                    "user-management-retire",
                    "user-associated",
                ],
            ),
        ]
        for name in names
    ),
]


@pytest.mark.parametrize("wire", DOCUMENTED)
def test_documented_type(
    apple: AppleDriver, check: Check, wire: Callable[[], dict[str, Any]]
) -> None:
    _answers_2xx(apple, check, fresh(wire()).to_wire())


def _answers_2xx(apple: AppleDriver, check: Check, body: dict[str, Any]) -> None:
    body["notificationId"] = str(uuid.uuid4())
    check.expect(f"2xx for {body.get('notificationType')}")
    attempt = apple.post(body)
    check.observe(str(attempt.status or attempt.error))
    check.reproduce.append(apple.curl(body))
    assert _ok(attempt.status), (
        f"answered {attempt.status or attempt.error} to a valid {body.get('notificationType')}"
    )


@requirement("APL-TYPE-06")
@pytest.mark.parametrize("variant", ["unknown-type", "unknown-fields"])
def test_type_forward_compatible(apple: AppleDriver, check: Check, variant: str) -> None:
    wire: dict[str, Any]
    if variant == "unknown-type":
        wire = {
            "notification": {"futureField": 1},
            "notificationId": "",
            "notificationType": "UNLIMITED_ASSET",
            "uId": "2049025000431439",
        }
    else:
        wire = example("asset-management-associate")
        wire["notification"] = {**wire["notification"], "futureField": {"nested": [1, 2]}}
        wire["futureEnvelopeField"] = "value"
    _answers_2xx(apple, check, wire)


@requirement("APL-DUP-01")
@pytest.mark.parametrize("how", ["sent-twice", "retry-after-dropped-answer"])
def test_repeated_delivery_is_acknowledged(apple: AppleDriver, check: Check, how: str) -> None:
    """Retries reuse the notificationId: the repeat must still be answered 2xx."""
    n = association(2)
    if how == "sent-twice":
        check.expect("2xx for both copies of one notificationId")
        first, second = apple.post(n.to_wire()), apple.post(n.to_wire())
        check.observe(f"{first.status or first.error}, then {second.status or second.error}")
        check.reproduce.append(apple.curl(n.to_wire()) + "   # run twice")
        assert _ok(first.status), f"first copy answered {first.status or first.error}"
        assert _ok(second.status), (
            f"repeated notificationId answered {second.status or second.error}"
        )
    else:
        check.expect("attempt 1 dropped after the request was sent; the retry (+60 s) gets 2xx")
        apple.arm("drop_after_send")
        delivery = apple.deliver(n)
        outcomes = [a.status or a.error for a in delivery.attempts]
        check.observe(f"attempts: {outcomes}")
        assert len(delivery.attempts) >= 2, f"the dropped attempt was not retried: {outcomes}"
        assert delivery.attempts[-1].succeeded, f"the retry was not answered 2xx: {outcomes}"


@requirement("APL-OBS-01")
def test_repeated_notification_processed_once(apple: AppleDriver, check: Check) -> None:
    """notificationId is the dedupe key: a copy and a retry must not be processed again."""
    twice, retried = association(2), association(2)
    apple.arm("duplicate")
    apple.deliver(twice)
    apple.arm("drop_after_send")
    apple.deliver(retried)
    check.expect("one observer report per notificationId after a duplicate and a retry")
    if unverifiable := apple.fence():
        raise check.not_verified(unverifiable)
    reports = apple.reports_of([twice.notificationId, retried.notificationId])
    counts = {
        nid: sum(1 for r in reports if r.get("notificationId") == nid)
        for nid in (twice.notificationId, retried.notificationId)
    }
    check.observe(f"reports per notificationId: {list(counts.values())}")
    assert all(c >= 1 for c in counts.values()), (
        f"a delivered notification was never reported: {counts}"
    )
    assert all(c == 1 for c in counts.values()), f"processed more than once: {counts}"


@requirement("APL-OBS-02")
def test_split_event_processed_completely(apple: AppleDriver, check: Check) -> None:
    """150 assignments of one event arrive as two notifications (100 + 50)."""
    event = association(150)
    deliveries = apple.deliver_event(event)
    check.expect("observer sees all 150 assignments of the event, from both parts")
    if len(deliveries) != 2:
        raise HarnessError(f"the simulator split 150 elements into {len(deliveries)} parts")
    assert all(d.state.value == "delivered" for d in deliveries), (
        f"a part was not acknowledged: {[d.state.value for d in deliveries]}"
    )
    if unverifiable := apple.fence():
        raise check.not_verified(unverifiable)
    reports = apple.reports_of(d.notification_id for d in deliveries)
    seen = {r["notificationId"] for r in reports}
    elements = sum(
        len(next(r for r in reports if r["notificationId"] == nid)["notification"]["assignments"])
        for nid in seen
    )
    check.observe(f"{len(seen)} of 2 parts reported, {elements} of 150 assignments")
    assert len(seen) == 2 and elements == 150, (
        f"only {len(seen)} of 2 parts ({elements} of 150 assignments) were processed"
    )
