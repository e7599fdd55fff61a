"""SIM-APL-CONFIG, SIM-APL-STATUS: the Apps and Books API over real HTTPS, with aiohttp as client."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import pytest

from simulators.apple.api import AppsAndBooksServer
from simulators.apple.notifier import Notifier, Receiver
from simulators.apple.service import AppsAndBooks
from simulators.clock import Clock
from simulators.evidence import Recorder
from simulators.faults import FaultKind
from simulators.pki import PKI
from tests.sim.receiver_support import ca, receiver

AUTH = {"Authorization": "Bearer stoken"}


@asynccontextmanager
async def api(pki: PKI) -> AsyncIterator[tuple[AppsAndBooksServer, aiohttp.ClientSession]]:
    clock = Clock()
    rec = Recorder(clock)
    server = AppsAndBooksServer(
        AppsAndBooks(stoken="stoken"),
        clock,
        rec,
        pki,
        lambda r: Notifier(Receiver(r.url, r.token, ca(pki)), clock, rec, timeout_s=2),
    )
    await server.start()
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=pki.client_context()))
    try:
        yield server, session
    finally:
        await session.close()
        await server.stop()


async def call(
    session: aiohttp.ClientSession, method: str, url: str, **kw: Any
) -> tuple[int, Any, Any]:
    async with session.request(method, url, **kw) as r:
        return r.status, await r.json(), r.headers


async def event_status(
    session: aiohttp.ClientSession, server: AppsAndBooksServer, event_id: str
) -> tuple[int, Any]:
    status, data, _ = await call(
        session, "GET", f"{server.base_url}/status", headers=AUTH, params={"eventId": event_id}
    )
    return status, data


async def configure(
    session: aiohttp.ClientSession, server: AppsAndBooksServer, url: str, types: list[str]
) -> None:
    status, data, _ = await call(
        session,
        "POST",
        f"{server.base_url}/client/config",
        headers=AUTH,
        json={"notificationUrl": url, "notificationAuthToken": "nt", "notificationTypes": types},
    )
    assert status == 200, data


@pytest.mark.sim("SIM-APL-CONFIG")
@pytest.mark.parametrize(
    "body, number",
    [
        ({"notificationUrl": "https://x.example/n"}, 9710),
        ({"notificationAuthToken": "t"}, 9710),
        ({"notificationUrl": "https://x.example/" + "a" * 600, "notificationAuthToken": "t"}, 9711),
        ({"notificationUrl": "http://x.example/n", "notificationAuthToken": "t"}, 9712),
        ({"mdmInfo": {"id": "1", "name": "n"}}, 9723),
        ({"mdmInfo": {"id": "i" * 101, "name": "n", "metadata": "m"}}, 9724),
        ({"mdmInfo": {"id": "1", "name": "n" * 101, "metadata": "m"}}, 9725),
    ],
)
def test_client_config_validation(pki: PKI, body: dict[str, Any], number: int) -> None:
    async def scenario() -> None:
        async with api(pki) as (server, session):
            status, data, _ = await call(
                session, "POST", f"{server.base_url}/client/config", json=body, headers=AUTH
            )
            assert (status, data["errorNumber"]) == (400, number)

    asyncio.run(scenario())


@pytest.mark.sim("SIM-APL-CONFIG")
def test_client_config_sends_test_notification_synchronously(pki: PKI) -> None:
    async def scenario() -> None:
        async with api(pki) as (server, session), receiver(pki) as rec:
            status, data, _ = await call(
                session,
                "POST",
                f"{server.base_url}/client/config",
                headers=AUTH,
                json={
                    "notificationUrl": rec.url,
                    "notificationAuthToken": "nt",
                    "notificationTypes": ["TEST_NOTIFICATION", "USER_MANAGEMENT"],
                },
            )
            assert status == 200
            assert rec.requests and rec.requests[0].body["notificationType"] == "TEST_NOTIFICATION"
            assert rec.requests[0].headers["Authorization"] == "Bearer nt"
            assert data["subscribedNotificationTypes"] == ["USER_MANAGEMENT"]

    asyncio.run(scenario())


@pytest.mark.sim("SIM-APL-CONFIG")
def test_client_config_rejected_with_9728_when_test_fails(pki: PKI) -> None:
    async def scenario() -> None:
        async with api(pki) as (server, session), receiver(pki, answer=lambda n: 401) as rec:
            status, data, _ = await call(
                session,
                "POST",
                f"{server.base_url}/client/config",
                headers=AUTH,
                json={"notificationUrl": rec.url, "notificationAuthToken": "nt"},
            )
            assert (status, data["errorNumber"]) == (400, 9728)
            assert "notificationUrl" not in server.service.client_config

    asyncio.run(scenario())


@pytest.mark.sim("SIM-APL-STATUS")
def test_event_status_pending_then_complete_with_notification(pki: PKI) -> None:
    async def scenario() -> None:
        async with api(pki) as (server, session), receiver(pki) as rec:
            await configure(session, server, rec.url, ["USER_MANAGEMENT"])
            _status, data, _ = await call(
                session,
                "POST",
                f"{server.base_url}/users/create",
                headers=AUTH,
                json={"users": [{"clientUserId": "u1"}]},
            )
            event_id = data["eventId"]
            _, st = await event_status(session, server, event_id)
            assert (st["eventStatus"], st["numRequested"], st["numCompleted"]) == ("PENDING", 1, 0)
            rec.arrived.clear()
            server.clock.advance(server.service.processing_delay_s)
            await asyncio.wait_for(rec.arrived.wait(), 5)
            assert rec.requests[-1].body["notificationType"] == "USER_MANAGEMENT"
            assert rec.requests[-1].body["notification"]["eventId"] == event_id
            _, st = await event_status(session, server, event_id)
            assert (st["eventStatus"], st["numCompleted"], st["failures"]) == ("COMPLETE", 1, [])

    asyncio.run(scenario())


@pytest.mark.sim("SIM-APL-STATUS")
def test_unknown_event_and_bad_token(pki: PKI) -> None:
    async def scenario() -> None:
        async with api(pki) as (server, session):
            status, data = await event_status(session, server, "nope")
            assert (status, data["errorNumber"]) == (400, 9708)
            status, data, _ = await call(
                session,
                "GET",
                f"{server.base_url}/assets",
                headers={"Authorization": "Bearer wrong"},
            )
            assert status == 401 and set(data) == {"errorNumber", "errorMessage"}
            status, data, _ = await call(session, "GET", f"{server.base_url}/service/config")
            assert status == 200 and "eventStatus" in data["urls"]

    asyncio.run(scenario())


def test_faults_429_and_503_with_retry_after(pki: PKI) -> None:
    async def scenario() -> None:
        async with api(pki) as (server, session):
            server.faults.add(
                "api:GET assets", FaultKind.STATUS, status=503, error=9729, retry_after=120
            )
            server.faults.add("api", FaultKind.STATUS, status=429, error=9646)
            status, data, headers = await call(
                session, "GET", f"{server.base_url}/assets", headers=AUTH
            )
            assert (status, data["errorNumber"], headers["Retry-After"]) == (503, 9729, "120")
            status, data, _ = await call(session, "GET", f"{server.base_url}/users", headers=AUTH)
            assert (status, data["errorNumber"]) == (429, 9646)
            status, data, _ = await call(session, "GET", f"{server.base_url}/assets", headers=AUTH)
            assert status == 200 and data["assets"]

    asyncio.run(scenario())


@pytest.mark.sim("SIM-APL-STATUS")
def test_association_to_unknown_user_fails_with_9609(pki: PKI) -> None:
    """SIM-APL-STATUS: FAILED with numCompleted, numRequested and failures; the failed part
    arrives in its own FAILURE notification."""

    async def scenario() -> None:
        async with api(pki) as (server, session), receiver(pki) as rec:
            await configure(session, server, rec.url, ["ASSET_MANAGEMENT", "USER_MANAGEMENT"])
            await call(
                session,
                "POST",
                f"{server.base_url}/users/create",
                headers=AUTH,
                json={"users": [{"clientUserId": "known"}]},
            )
            _, data, _ = await call(
                session,
                "POST",
                f"{server.base_url}/assets/associate",
                headers=AUTH,
                json={
                    "assets": [{"adamId": "408709785", "pricingParam": "STDQ"}],
                    "clientUserIds": ["known", "ghost"],
                },
            )
            server.clock.advance(60)
            for _ in range(3):  # TEST, USER_MANAGEMENT, then the two ASSET_MANAGEMENT parts
                rec.arrived.clear()
                if sum(r.body["notificationType"] == "ASSET_MANAGEMENT" for r in rec.requests) == 2:
                    break
                await asyncio.wait_for(rec.arrived.wait(), 5)
            _, st = await event_status(session, server, data["eventId"])
            assert (st["eventStatus"], st["numRequested"], st["numCompleted"]) == ("FAILED", 2, 1)
            assert st["failures"][0]["errorNumber"] == 9609
            assert st["failures"][0]["errorInfo"] == {"clientUserIds": ["ghost"]}
            parts = [
                r.body["notification"]
                for r in rec.requests
                if r.body["notificationType"] == "ASSET_MANAGEMENT"
            ]
            assert sorted(p["result"] for p in parts) == ["FAILURE", "SUCCESS"]
            failure = next(p for p in parts if p["result"] == "FAILURE")
            assert failure["error"]["errorNumber"] == 9609
            assert [a["clientUserId"] for a in failure["assignments"]] == ["ghost"]

    asyncio.run(scenario())
