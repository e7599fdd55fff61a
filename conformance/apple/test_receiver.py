"""The SUT as an Apple notification receiver: transport, authentication, every type, duplicates
and split events (APL-TLS, APL-AUTH, APL-TYPE, APL-DUP, APL-OBS)."""

from __future__ import annotations

import functools
import uuid
from collections.abc import Callable
from typing import Any

import pytest

from conformance.apple.driver import (
    EXAMPLES,
    AppleDriver,
    answer,
    example,
    fresh,
)
from conformance.driver import DUPLICATE_SETTLE_S, processed_once, prose
from conformance.verdicts import Check, HarnessError
from simulators.apple.delivery import split_notification
from simulators.apple.models import association
from simulators.faults import FaultKind

requirement = pytest.mark.requirement


def _ok(status: int | None) -> bool:
    return status is not None and 200 <= status < 300


@requirement("APL-TLS-01")
def test_notification_url_is_https(apple: AppleDriver, check: Check) -> None:
    """The vendor only delivers to an HTTPS notification URL (error 9712 otherwise)."""
    check.no_reproducer("the declared URL and its certificate are judged: no request replays them")
    check.expect("an https:// URL whose certificate verifies against the declared CA")
    scheme = apple.url.split("://", 1)[0]
    attempt = apple.post(association(1).to_wire())
    check.observe(f"an {scheme}:// URL; answered {answer(attempt)}")
    assert scheme == "https", f"the notification URL {apple.url} is not HTTPS"
    assert attempt.status is not None, f"no HTTPS answer: {attempt.error}"


@requirement("APL-AUTH-01")
def test_accepts_bearer_token(apple: AppleDriver, check: Check) -> None:
    body = association(2).to_wire()
    check.expect("2xx for Authorization: Bearer <notificationAuthToken>")
    attempt = apple.post(body)
    check.observe(answer(attempt))
    apple.reproduce(check, body)
    assert _ok(attempt.status), f"answered {attempt.status or attempt.error} to a correct token"


# Every type the vendor documents, and one it does not: receivers special-case types (a
# TEST_NOTIFICATION let through during configuration, say), so authentication is judged on each.
EXAMPLE_NAMES = sorted(p.stem for p in EXAMPLES.glob("*.json"))
UNKNOWN_TYPE = "unknown-type"


def _body_of(name: str) -> dict[str, Any]:
    """A fresh notification of a documented example, or of a type no document names."""
    if name == UNKNOWN_TYPE:
        return {
            "notification": {"futureField": 1},
            "notificationId": str(uuid.uuid4()),
            "notificationType": "UNLIMITED_ASSET",
            "uId": "2049025000431439",
        }
    return fresh(example(name)).to_wire()


@requirement("APL-AUTH-02")
@pytest.mark.parametrize("name", [*EXAMPLE_NAMES, UNKNOWN_TYPE])
def test_rejects_missing_authorization(apple: AppleDriver, check: Check, name: str) -> None:
    body = _body_of(name)
    headers = {"Content-Type": "application/json"}
    check.expect("non-2xx (401 or 403) without an Authorization header")
    attempt = apple.post(body, headers=headers)
    check.observe(answer(attempt))
    apple.reproduce(check, body, headers)
    assert attempt.status is not None, f"no answer: {attempt.error}"
    assert not _ok(attempt.status), f"accepted ({attempt.status}) a notification with no token"
    if attempt.status not in (401, 403):
        check.note(f"rejected with {attempt.status}; 401 or 403 is expected")


# APL-AUTH-03, one thing varied at a time: the right token under another scheme, or the right
# scheme with a wrong or altered token. The scheme's letter case is not significant (RFC 7235
# §2.1: "bearer <token>" is a correct header), so no variant changes only that.
AUTH_VARIANTS: dict[str, Callable[[str], str]] = {
    "basic-scheme": lambda token: f"Basic {token}",
    "token-scheme": lambda token: f"Token {token}",
    "no-scheme": lambda token: token,
    "wrong-token": lambda token: f"Bearer {uuid.uuid4().hex}",
    "case-differs": lambda token: f"Bearer {_swapcase(token)}",
    "prefix": lambda token: f"Bearer {token[:-1]}",
    "suffix": lambda token: f"Bearer {token}x",
}


def _swapcase(token: str) -> str:
    swapped = token.swapcase()
    return swapped if swapped != token else token + "X"  # a token with no letters: alter it


@requirement("APL-AUTH-03")
@pytest.mark.parametrize(
    ("variant", "name"),
    [
        *((variant, "asset-count") for variant in AUTH_VARIANTS),
        *(
            ("wrong-token", name)
            for name in [*EXAMPLE_NAMES, UNKNOWN_TYPE]
            if name != "asset-count"
        ),
    ],
)
def test_rejects_wrong_authorization(
    apple: AppleDriver, check: Check, variant: str, name: str
) -> None:
    body = _body_of(name)
    header = AUTH_VARIANTS[variant](apple.token)
    headers = {"Authorization": header, "Content-Type": "application/json"}
    what = variant.replace("-", " ")
    check.expect(f"non-2xx for an Authorization header with {what}")
    attempt = apple.post(body, headers=headers)
    check.observe(answer(attempt))
    apple.reproduce(check, body, headers)
    assert attempt.status is not None, f"no answer: {attempt.error}"
    assert not _ok(attempt.status), (
        f"accepted ({attempt.status}) an Authorization header with {what}"
    )


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
    check.observe(answer(attempt))
    apple.reproduce(check, body)
    assert _ok(attempt.status), (
        f"answered {attempt.status or attempt.error} to a valid {body.get('notificationType')}"
    )


@requirement("APL-TYPE-06")
@pytest.mark.parametrize("variant", [UNKNOWN_TYPE, *(f"unknown-fields-{n}" for n in EXAMPLE_NAMES)])
def test_type_forward_compatible(apple: AppleDriver, check: Check, variant: str) -> None:
    """An unknown type, and every documented type with an unknown field at every level: the
    envelope, the ``notification`` object, each element of its arrays and each nested object
    (``counts``, say), since a receiver may model any of them strictly."""
    if variant == UNKNOWN_TYPE:
        _answers_2xx(apple, check, _body_of(UNKNOWN_TYPE))
        return
    name = variant.removeprefix("unknown-fields-")
    plain = apple.post(_body_of(name))  # one thing varied: the type alone must pass first
    if not _ok(plain.status):
        raise check.not_verified(
            f"the SUT refuses {name} even without unknown fields ({answer(plain)}): judged by "
            "the APL-TYPE check of that type"
        )
    _answers_2xx(apple, check, _with_unknown_fields(example(name)))


# APL-TYPE-07: an asynchronous error of each kind of request that has a ``result``: a user who
# already exists (9716) and too few subscription seats (9709, as the simulator reports it).
FAILURES = {
    "user-management-create": (9716, "A registered user with that clientUserId already exists."),
    "subscription-management-associate": (9709, "There aren't enough seats available."),
}


@requirement("APL-TYPE-07")
@pytest.mark.parametrize("name", sorted(FAILURES))
def test_failure_result_of_other_types(apple: AppleDriver, check: Check, name: str) -> None:
    """One thing varied: the documented example must pass as SUCCESS first, then the same
    notification with ``result`` FAILURE and its ``error``."""
    plain = apple.post(_body_of(name))
    if not _ok(plain.status):
        raise check.not_verified(
            f"the SUT refuses {name} even as SUCCESS ({answer(plain)}): judged by the "
            "APL-TYPE check of that type"
        )
    number, message = FAILURES[name]
    wire = example(name)
    wire["notification"] = {
        **wire["notification"],
        "result": "FAILURE",
        "error": {"errorNumber": number, "errorMessage": message},
    }
    _answers_2xx(apple, check, wire)


def _with_unknown_fields(value: Any) -> Any:
    """``value`` with a field no document names added to every object, at every depth."""
    if isinstance(value, dict):
        return {**{k: _with_unknown_fields(v) for k, v in value.items()}, "futureField": {"x": 1}}
    if isinstance(value, list):
        return [_with_unknown_fields(v) for v in value]
    return value


@requirement("APL-DUP-01")
@pytest.mark.parametrize("how", ["sent-twice", "retry-after-dropped-answer"])
def test_repeated_delivery_is_acknowledged(apple: AppleDriver, check: Check, how: str) -> None:
    """Retries reuse the notificationId: the repeat must still be answered 2xx."""
    n = association(2)
    if how == "sent-twice":
        check.expect("2xx for both copies of one notificationId")
        first, second = apple.post(n.to_wire()), apple.post(n.to_wire())
        check.observe(f"first copy {answer(first)}, then the repeat {answer(second)}")
        apple.reproduce(check, n.to_wire())  # send it twice
        assert _ok(first.status), f"first copy answered {first.status or first.error}"
        assert _ok(second.status), (
            f"repeated notificationId answered {second.status or second.error}"
        )
    else:
        check.expect("attempt 1 dropped after the request was sent; the retry (+60 s) gets 2xx")
        apple.fail_next(FaultKind.DROP_BEFORE_ACK)
        apple.reproduce(check, n.to_wire())  # the retry sends the same notification again
        delivery = apple.deliver(n)
        outcomes = [a.status or a.error for a in delivery.attempts]
        check.observe(
            prose(f"attempt {i}: {answer(a)}" for i, a in enumerate(delivery.attempts, 1))
        )
        assert len(delivery.attempts) >= 2, f"the dropped attempt was not retried: {outcomes}"
        assert delivery.attempts[-1].succeeded, f"the retry was not answered 2xx: {outcomes}"


def _assignments(notification: dict[str, Any]) -> list[Any]:
    inner = notification.get("notification")
    items = inner.get("assignments") if isinstance(inner, dict) else None
    return items if isinstance(items, list) else []


@requirement("APL-OBS-01")
def test_repeated_notification_processed_once(apple: AppleDriver, check: Check) -> None:
    """notificationId is the dedupe key: a copy and a retry must not be processed again. The
    reports are awaited in any order (a SUT may process concurrently), and a second one a
    little longer (:data:`DUPLICATE_SETTLE_S`)."""
    twice, retried = association(2), association(2)
    apple.fail_next(FaultKind.DUPLICATE)
    deliveries = [apple.deliver(twice)]
    apple.fail_next(FaultKind.DROP_BEFORE_ACK)
    deliveries.append(apple.deliver(retried))
    check.expect("one observer report per notificationId after a duplicate and a retry")
    apple.reproduce(check, twice.to_wire())  # send it twice: one report, not two
    ids = [twice.notificationId, retried.notificationId]
    if unverifiable := apple.unacknowledged(deliveries) or apple.fence(awaiting=ids):
        raise check.not_verified(unverifiable)
    counts = apple.count_reports(ids, DUPLICATE_SETTLE_S, more_than=1)
    check.observe(
        "each reported once"
        if set(counts.values()) == {1}
        else f"reported {prose(counts.values())} times (the copy, the retried one)"
    )
    problem = processed_once(counts, ids)
    assert problem is None, problem


@requirement("APL-OBS-02")
def test_split_event_processed_completely(apple: AppleDriver, check: Check) -> None:
    """150 assignments of one event arrive as two notifications (100 + 50)."""
    event = association(150)
    deliveries = apple.deliver_event(event)
    check.expect("observer sees all 150 assignments of the event, from both parts")
    if len(deliveries) != 2:
        raise HarnessError(f"the simulator split 150 elements into {len(deliveries)} parts")
    parts = [d.notification_id for d in deliveries]
    for part in split_notification(event):  # the event's two parts, as the vendor sends them
        apple.reproduce(check, part.to_wire())
    if unverifiable := apple.unacknowledged(deliveries) or apple.fence(awaiting=parts):
        raise check.not_verified(unverifiable)
    reports = {
        r["notificationId"]: r for r in apple.reports_of(d.notification_id for d in deliveries)
    }
    seen = set(reports)
    elements = sum(len(_assignments(report)) for report in reports.values())
    check.observe(f"{len(seen)} of 2 parts reported, {elements} of 150 assignments")
    assert len(seen) == 2 and elements == 150, (
        f"only {len(seen)} of 2 parts ({elements} of 150 assignments) were processed"
    )
