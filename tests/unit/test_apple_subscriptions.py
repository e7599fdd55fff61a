"""SIM-APL-SUBS: the subscription seats core, without I/O, on a simulated ``now``."""

from __future__ import annotations

from typing import Any

import pytest

from simulators.apple.errors import ApiError
from simulators.apple.models import SubscriptionCount, SubscriptionManagement
from simulators.apple.service import AppsAndBooks
from simulators.apple.subscriptions import BILLING_PERIOD_S, SubscriptionLedger

pytestmark = pytest.mark.sim("SIM-APL-SUBS")
DAY = 24 * 3600.0


def ledger() -> SubscriptionLedger:
    return SubscriptionLedger("uid", billing_period_s=30 * DAY)


def everyone(_user: str) -> bool:
    return True


def test_association_notifies_the_seat_and_absolute_counts_without_assigned() -> None:
    subs = ledger()
    change = subs.associate(
        {"adamIds": [12345], "clientUserIds": ["u1", "u2"], "renewing": False}, "e1", everyone
    )
    management, count = change.notifications
    body = management.body()
    assert isinstance(body, SubscriptionManagement)
    assert (body.type, body.result, body.eventId) == ("ASSOCIATE", "SUCCESS", "e1")
    assert [(a.adamId, a.clientUserId, a.renewing) for a in body.assignments] == [
        (12345, "u1", False),
        (12345, "u2", False),
    ]
    assert isinstance(management.notification["assignments"][0]["adamId"], int)
    counts = count.body()
    assert isinstance(counts, SubscriptionCount)
    assert count.notification["counts"] == {
        "available": {"renewing": 100, "expiring": 18},
        "total": {"renewing": 100, "expiring": 20},
    }
    assert (change.requested, change.failed, change.deferred) == (2, 0, False)


def test_failures_unregistered_user_9609_and_too_few_seats_9709() -> None:
    subs = ledger()
    change = subs.associate(
        {"adamIds": [12346], "clientUserIds": [f"u{i}" for i in range(11)] + ["ghost"]},
        "e1",
        lambda user: user != "ghost",
    )
    results = [
        (n.notification["result"], n.notification.get("error", {})) for n in change.notifications
    ]
    assert [(r, e.get("errorNumber")) for r, e in results] == [("FAILURE", 9609), ("FAILURE", 9709)]
    assert change.failed == 12 and [f["errorNumber"] for f in change.failures] == [9609, 9709]
    assert subs.seats == {}


@pytest.mark.parametrize(
    ("request_body", "number"),
    [
        ({"adamIds": ["12345"], "clientUserIds": ["u"]}, 9602),
        ({"adamIds": [True], "clientUserIds": ["u"]}, 9602),
        ({"adamIds": [99], "clientUserIds": ["u"]}, 9602),
        ({"adamIds": list(range(26)), "clientUserIds": ["u"]}, 9816),
        ({"adamIds": [12345], "clientUserIds": []}, 9602),
        ({"adamIds": [12345], "clientUserIds": [f"u{i}" for i in range(1001)]}, 9602),
        ({"adamIds": [12345], "clientUserIds": ["u"], "renewing": "yes"}, 9602),
    ],
)
def test_synchronous_errors(request_body: dict[str, Any], number: int) -> None:
    with pytest.raises(ApiError) as info:
        ledger().associate(request_body, "e", everyone)
    assert info.value.number == number


def test_deferred_disassociation_is_released_and_notified_at_the_end_of_the_period() -> None:
    subs = ledger()
    subs.seat(12345, "u1")
    change = subs.disassociate(
        {"adamIds": [12345], "clientUserIds": ["u1"], "deferred": True}, "e-late", 3 * DAY
    )
    assert change.notifications == [] and change.deferred and change.requested == 1
    assert subs.next_deadline() == 30 * DAY
    assert subs.due(30 * DAY - 1) == [] and (12345, "u1") in subs.seats
    management, count = subs.due(30 * DAY)
    assert management.notification == {
        "assignments": [{"adamId": 12345, "clientUserId": "u1", "renewing": True}],
        "eventId": "e-late",
        "result": "SUCCESS",
        "type": "DISASSOCIATE",
    }
    assert count.notification["counts"]["available"]["renewing"] == 100
    assert subs.seats == {} and subs.next_deadline() is None and subs.due(90 * DAY) == []


def test_immediate_disassociation_and_period_boundaries() -> None:
    subs = ledger()
    subs.seat(12345, "u1")
    change = subs.disassociate({"adamIds": [12345], "clientUserIds": ["u1", "u9"]}, "e", 0.0)
    assert change.notifications[0].notification["assignments"] == [
        {"adamId": 12345, "clientUserId": "u1", "renewing": True}
    ]
    assert change.requested == 2 and subs.seats == {}
    assert subs.period_end(0.0) == 30 * DAY
    assert subs.period_end(30 * DAY) == 60 * DAY
    assert BILLING_PERIOD_S == 30 * DAY


def test_releases_due_names_the_notifications_before_they_are_built() -> None:
    subs = ledger()
    subs.seat(12345, "u1")
    subs.disassociate({"adamIds": [12345], "clientUserIds": ["u1"], "deferred": True}, "e", 0.0)
    (release,) = subs.releases_due(subs.period_end(0.0))
    assert subs.due(release.due_at)[0].notificationId == release.notification_id


def test_disable_with_seats_is_9818_and_disabled_refuses_calls() -> None:
    subs = ledger()
    subs.seat(12345, "u1")
    with pytest.raises(ApiError) as info:
        subs.set_enabled(False)
    assert info.value.number == 9818
    subs.disassociate({"adamIds": [12345], "clientUserIds": ["u1"]}, "e", 0.0)
    assert subs.set_enabled(False) == {"subscriptionManagement": False}
    with pytest.raises(ApiError):
        subs.associate({"adamIds": [12345], "clientUserIds": ["u1"]}, "e", everyone)


def test_service_event_of_a_deferred_disassociation_completes_and_is_notified_weeks_later() -> None:
    """SIM-APL-STATUS and SIM-APL-SUBS together: the event completes once the deferral is
    recorded; its notification is handed out at the end of the billing period."""
    service = AppsAndBooks(stoken="s", billing_period_s=30 * DAY)
    service.client_config = {"subscribedNotificationTypes": ["SUBSCRIPTION_MANAGEMENT"]}
    service.users["u1"] = {"clientUserId": "u1", "status": "Registered"}
    associate = service.mutate(
        "subscriptions/associate", {"adamIds": [12345], "clientUserIds": ["u1"]}, 0.0
    )
    assert [n.notificationType for n in service.handle_timeout(2.0)] == ["SUBSCRIPTION_MANAGEMENT"]
    assert service.status(associate["eventId"], 2.0)["eventStatus"] == "COMPLETE"
    answer = service.mutate(
        "subscriptions/disassociate",
        {"adamIds": [12345], "clientUserIds": ["u1"], "deferred": True},
        DAY,
    )
    assert service.handle_timeout(DAY + 2) == []
    assert service.status(answer["eventId"], DAY + 2)["eventStatus"] == "COMPLETE"
    assert service.events[answer["eventId"]].deferred
    assert service.next_deadline() == 30 * DAY
    (late,) = service.handle_timeout(30 * DAY)
    assert late.notification["eventId"] == answer["eventId"]
    assert late.notification["type"] == "DISASSOCIATE"
