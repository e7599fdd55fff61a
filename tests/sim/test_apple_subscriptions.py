"""SIM-APL-SUBS: the subscriptions part of the Apps and Books API over real HTTPS (aiohttp as the
client), its notifications to a real receiver, and a deferred disassociation notified at the end
of the billing period on the simulated clock."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from simulators.apple.notifier import AttemptLog
from simulators.apple.operations import AppleTarget, EndBillingPeriod
from simulators.pki import PKI
from tests.sim.receiver_support import RecordingReceiver, receiver
from tests.sim.test_apple_api import AUTH, api, call, configure, event_status

pytestmark = pytest.mark.sim("SIM-APL-SUBS")
TYPES = ["SUBSCRIPTION_MANAGEMENT", "SUBSCRIPTION_COUNT", "USER_MANAGEMENT"]


async def notifications_of(rec: RecordingReceiver, count: int) -> list[dict[str, Any]]:
    """Wait (bounded) until the receiver holds ``count`` notifications; return their bodies."""
    async with asyncio.timeout(10):
        while len(rec.requests) < count:
            rec.arrived.clear()
            await rec.arrived.wait()
    return [r.body for r in rec.requests]


def test_seats_are_listed_associated_and_disassociated_with_their_notifications(
    pki: PKI,
) -> None:
    async def scenario() -> None:
        async with api(pki) as (server, session), receiver(pki) as rec:
            base = server.base_url
            await configure(session, server, rec.url, TYPES)
            await call(
                session, "POST", f"{base}/users/create", headers=AUTH,
                json={"users": [{"clientUserId": "u1"}]},
            )  # fmt: skip
            status, listing, _ = await call(session, "GET", f"{base}/subscriptions", headers=AUTH)
            assert status == 200 and listing["subscriptions"][0]["counts"]["assigned"] == {
                "renewing": 0,
                "expiring": 0,
            }
            adam = listing["subscriptions"][0]["adamId"]
            status, answer, _ = await call(
                session, "POST", f"{base}/subscriptions/associate", headers=AUTH,
                json={"adamIds": [adam], "clientUserIds": ["u1"], "renewing": True},
            )  # fmt: skip
            assert status == 200 and answer["eventId"]
            server.clock.advance(server.service.processing_delay_s)
            bodies = await notifications_of(rec, 4)  # TEST, USER_MANAGEMENT, SUB_MGMT, SUB_COUNT
            kinds = [b["notificationType"] for b in bodies]
            assert kinds[-2:] == ["SUBSCRIPTION_MANAGEMENT", "SUBSCRIPTION_COUNT"]
            assert bodies[-2]["notification"]["eventId"] == answer["eventId"]
            assert "assigned" not in bodies[-1]["notification"]["counts"]
            status, seats, _ = await call(
                session, "GET", f"{base}/subscriptions/assignments", headers=AUTH,
                params={"clientUserId": "u1"},
            )  # fmt: skip
            assert seats["assignments"] == [
                {"adamId": adam, "clientUserId": "u1", "renewing": True}
            ]
            status, refused, _ = await call(
                session, "POST", f"{base}/subscriptions/disable", headers=AUTH
            )
            assert (status, refused["errorNumber"]) == (400, 9818)
            status, refused, _ = await call(
                session, "POST", f"{base}/subscriptions/associate", headers=AUTH,
                json={"adamIds": list(range(26)), "clientUserIds": ["u1"]},
            )  # fmt: skip
            assert (status, refused["errorNumber"]) == (400, 9816)
            status, refused, _ = await call(
                session, "GET", f"{base}/subscriptions", headers=AUTH, params={"adamId": "x" * 99}
            )
            assert (status, refused["errorNumber"]) == (400, 9602)

    asyncio.run(scenario())


def test_deferred_disassociation_is_notified_at_the_end_of_the_billing_period(pki: PKI) -> None:
    async def scenario() -> None:
        async with api(pki) as (server, session), receiver(pki) as rec:
            base = server.base_url
            await configure(session, server, rec.url, TYPES)
            server.service.users["u1"] = {"clientUserId": "u1", "status": "Registered"}
            server.service.subscriptions.seat(12345, "u1")
            status, answer, _ = await call(
                session, "POST", f"{base}/subscriptions/disassociate", headers=AUTH,
                json={"adamIds": [12345], "clientUserIds": ["u1"], "deferred": True},
            )  # fmt: skip
            assert status == 200
            server.clock.advance(3600.0)  # an hour later: complete, but nothing sent yet
            _, st = await event_status(session, server, answer["eventId"])
            assert (st["eventStatus"], st["eventType"]) == ("COMPLETE", "DISASSOCIATE")
            await asyncio.sleep(0)
            assert len(rec.requests) == 1  # the TEST_NOTIFICATION only
            target = AppleTarget(None, server, AttemptLog(), server.clock)
            (released,) = await EndBillingPeriod(timeout_s=20).apply(target)
            assert released.event_id == answer["eventId"]
            assert released.released_sim_s == server.service.billing_period_s
            assert released.deliveries[0].attempts[-1].succeeded
            late = next(
                r.body
                for r in rec.requests
                if r.body["notificationId"] == released.notification.notificationId
            )
            assert late["notification"]["eventId"] == answer["eventId"]
            assert late["notification"]["type"] == "DISASSOCIATE"
            assert not server.service.subscriptions.seats

    asyncio.run(scenario())
