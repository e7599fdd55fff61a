"""The Apps and Books API stays faithful under stress (SIM-APL-*): event notifications retry,
counts stay right, limits hold, and every bad request gets a documented error body (4xx, JSON
``errorNumber``/``errorMessage``), never a plain-text 500; a rejected request changes nothing."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
import pytest

from simulators.apple.delivery import DeliveryState
from simulators.pki import PKI
from tests.sim.receiver_support import receiver
from tests.sim.test_apple_api import AUTH, api, call, configure, event_status

APP = {"adamId": "408709785", "pricingParam": "STDQ"}
BOOK = {"adamId": "329103948", "pricingParam": "STDQ"}


async def post(session: aiohttp.ClientSession, url: str, body: Any) -> tuple[int, Any]:
    status, data, _ = await call(session, "POST", url, headers=AUTH, json=body)
    return status, data


async def create_user(session: aiohttp.ClientSession, base: str, user: str) -> None:
    status, data = await post(session, f"{base}/users/create", {"users": [{"clientUserId": user}]})
    assert status == 200, data


def test_event_notifications_follow_the_retry_schedule(pki: PKI) -> None:
    """Only TEST_NOTIFICATION is one synchronous attempt; an event's notification that is not
    answered 2xx is tried again on the schedule."""

    async def scenario() -> list[str]:
        answers = iter([200, 500, 200])  # TEST_NOTIFICATION, then the event: 500, then 200
        async with api(pki) as (server, session), receiver(pki, lambda n: next(answers)) as rec:
            await configure(session, server, rec.url, ["USER_MANAGEMENT"])
            await create_user(session, server.base_url, "u1")
            server.clock.advance(server.service.processing_delay_s)
            while len(rec.requests) < 2:
                rec.arrived.clear()
                await asyncio.wait_for(rec.arrived.wait(), 5)
            rec.arrived.clear()
            server.clock.advance(60)  # the second attempt is due at +60 s
            await asyncio.wait_for(rec.arrived.wait(), 5)
            return [r.body["notificationType"] for r in rec.requests]

    assert asyncio.run(scenario()) == ["TEST_NOTIFICATION", "USER_MANAGEMENT", "USER_MANAGEMENT"]


def test_reconfiguring_does_not_fail_a_delivery_under_way(pki: PKI) -> None:
    async def scenario() -> DeliveryState:
        async with api(pki) as (server, session), receiver(pki) as first, receiver(pki) as second:
            await configure(session, server, first.url, ["USER_MANAGEMENT"])
            old = server.notifier
            assert old is not None
            from simulators.apple.models import association

            delivery = asyncio.ensure_future(old.deliver(association(1)))
            await asyncio.sleep(0)
            await configure(session, server, second.url, ["USER_MANAGEMENT"])
            done = await asyncio.wait_for(delivery, 5)
            return done.state

    assert asyncio.run(scenario()) is DeliveryState.DELIVERED


def test_counts_with_several_assets_and_an_unknown_user(pki: PKI) -> None:
    """2 assets x (a registered user, an unknown one): 4 requested, 2 completed."""

    async def scenario() -> dict[str, Any]:
        async with api(pki) as (server, session):
            await create_user(session, server.base_url, "known")
            _, data = await post(
                session,
                f"{server.base_url}/assets/associate",
                {"assets": [APP, BOOK], "clientUserIds": ["known", "ghost"]},
            )
            server.clock.advance(60)
            _, status = await event_status(session, server, data["eventId"])
            return dict(status)

    status = asyncio.run(scenario())
    assert (status["eventStatus"], status["numRequested"], status["numCompleted"]) == (
        "FAILED",
        4,
        2,
    )


def test_associations_do_not_pile_up_and_counts_follow(pki: PKI) -> None:
    async def scenario() -> tuple[list[Any], list[dict[str, Any]], list[dict[str, Any]]]:
        async with api(pki) as (server, session):
            base = server.base_url
            body = {"assets": [APP], "serialNumbers": ["DEVICE1"]}
            for _ in range(2):
                assert (await post(session, f"{base}/assets/associate", body))[0] == 200
            _, assignments, _ = await call(session, "GET", f"{base}/assignments", headers=AUTH)
            _, after_associate, _ = await call(session, "GET", f"{base}/assets", headers=AUTH)
            await post(session, f"{base}/assets/disassociate", body)
            _, after_disassociate, _ = await call(session, "GET", f"{base}/assets", headers=AUTH)
            return (
                assignments["assignments"],
                after_associate["assets"],
                after_disassociate["assets"],
            )

    assignments, associated, disassociated = asyncio.run(scenario())
    assert assignments == [
        {"adamId": "408709785", "pricingParam": "STDQ", "serialNumber": "DEVICE1"}
    ]
    app = next(a for a in associated if a["adamId"] == APP["adamId"])
    assert (app["assignedCount"], app["availableCount"]) == (1, 499)
    app = next(a for a in disassociated if a["adamId"] == APP["adamId"])
    assert (app["assignedCount"], app["availableCount"]) == (0, 500)


def test_a_rejected_request_leaves_no_state_behind(pki: PKI) -> None:
    """Regression: a rejected associate left state behind that made a later revoke a 500."""

    async def scenario() -> tuple[int, int, int]:
        async with api(pki) as (server, session):
            base = server.base_url
            bad = {
                "assets": [APP, {"adamId": "408709785", "pricingParam": 7}],
                "serialNumbers": ["S1"],
            }
            rejected, _ = await post(session, f"{base}/assets/associate", bad)
            events = len(server.service.events)
            revoked, _ = await post(session, f"{base}/assets/revoke", {"serialNumbers": ["S1"]})
            return rejected, events, revoked

    assert asyncio.run(scenario()) == (400, 0, 200)


HOSTILE: dict[str, tuple[str, dict[str, str], bytes]] = {
    "bogus-charset": (
        "assets/associate",
        {"Content-Type": "application/json; charset=no-such-charset"},
        json.dumps({"assets": [APP], "serialNumbers": ["S1"]}).encode(),
    ),
    "deep-nesting": ("users/create", {}, b"[" * 100_000 + b"]" * 100_000),
    "non-string-pricing": (
        "assets/associate",
        {},
        json.dumps(
            {"assets": [{"adamId": "408709785", "pricingParam": ["STDQ"]}], "serialNumbers": ["S1"]}
        ).encode(),
    ),
    "lone-surrogate-serial": (
        "assets/associate",
        {},
        b'{"assets": [{"adamId": "408709785", "pricingParam": "STDQ"}], "serialNumbers": ["\\ud800"]}',
    ),
    "too-many-users": (
        "assets/associate",
        {},
        json.dumps({"assets": [APP], "clientUserIds": [f"u{i}" for i in range(4000)]}).encode(),
    ),
    "bad-notification-port": (
        "client/config",
        {},
        json.dumps(
            {"notificationUrl": "https://127.0.0.1:99999/n", "notificationAuthToken": "t"}
        ).encode(),
    ),
    "no-notification-host": (
        "client/config",
        {},
        json.dumps({"notificationUrl": "https:///n", "notificationAuthToken": "t"}).encode(),
    ),
    "token-with-crlf": (
        "client/config",
        {},
        json.dumps(
            {"notificationUrl": "https://127.0.0.1:9/n", "notificationAuthToken": "t\r\nX: 1"}
        ).encode(),
    ),
    "token-with-nul": (
        "client/config",
        {},
        json.dumps(
            {"notificationUrl": "https://127.0.0.1:9/n", "notificationAuthToken": "t\u0000"}
        ).encode(),
    ),
    "oversized-body": ("users/create", {}, b'{"users": "' + b"x" * (2 << 20) + b'"}'),
    "unknown-endpoint": ("no/such/thing", {}, b"{}"),
}


@pytest.mark.parametrize("case", list(HOSTILE))
def test_every_bad_request_gets_a_documented_error(pki: PKI, case: str) -> None:
    path, headers, body = HOSTILE[case]

    async def scenario() -> tuple[int, str, Any, int]:
        async with api(pki) as (server, session):
            async with session.post(
                f"{server.base_url}/{path}",
                data=body,
                headers={**AUTH, "Content-Type": "application/json", **headers},
            ) as answer:
                text = await answer.text()
                kind = answer.content_type
            return answer.status, kind, json.loads(text), len(server.fault_log.errors())

    status, kind, data, harness_errors = asyncio.run(scenario())
    assert 400 <= status < 500, (status, data)
    assert kind == "application/json" and set(data) >= {"errorNumber", "errorMessage"}, data
    assert harness_errors == 0


def test_unknown_path_outside_the_api_is_a_json_404(pki: PKI) -> None:
    async def scenario() -> tuple[int, Any]:
        async with api(pki) as (server, session):
            root = server.base_url.removesuffix("/mdm/v2")
            status, data, _ = await call(session, "GET", f"{root}/favicon.ico")
            return status, data

    status, data = asyncio.run(scenario())
    assert status == 404 and "errorNumber" in data


def test_a_client_that_sends_headers_too_slowly_is_disconnected(pki: PKI) -> None:
    """A slow-headers peer (slowloris) cannot hold a connection open."""

    async def scenario() -> tuple[bytes, float]:
        async with api(pki) as (server, _):
            await server.stop()
            server.request_timeout_s = 1.0
            await server.start()
            reader, writer = await asyncio.open_connection(
                "127.0.0.1", server.port, ssl=pki.client_context(), server_hostname="localhost"
            )
            loop = asyncio.get_running_loop()
            started = loop.time()
            writer.write(b"GET /mdm/v2/assets HTTP/1.1\r\nHost: x\r\n")
            got = b"never closed"
            for _ in range(20):  # a header line every half second, never the end of headers
                try:
                    await writer.drain()
                    got = await asyncio.wait_for(reader.read(100), timeout=0.5)
                    break
                except TimeoutError:
                    writer.write(b"X-Slow: 1\r\n")
                except ConnectionError:  # the server closed while a header line was in flight
                    got = b""
                    break
            writer.close()
            return got, loop.time() - started

    closed_with, elapsed = asyncio.run(scenario())
    assert closed_with == b"" and elapsed < 5.0, (closed_with, elapsed)


def test_a_large_association_of_unknown_users_is_linear(pki: PKI) -> None:
    """Regression: 1,000 unknown users x 25 assets was quadratic (minutes of a blocked loop);
    it is answered at once and its event fails with 9609 for every target."""

    async def scenario() -> tuple[int, dict[str, Any], float]:
        async with api(pki) as (server, session):
            server.service.assets.update(
                {
                    (str(1000 + i), "STDQ"): {
                        **server.service.assets[("408709785", "STDQ")],
                        "adamId": str(1000 + i),
                    }
                    for i in range(24)
                }
            )
            assets = [APP, *({"adamId": str(1000 + i), "pricingParam": "STDQ"} for i in range(24))]
            users = [f"ghost-{i}" for i in range(1000)]
            loop = asyncio.get_running_loop()
            started = loop.time()
            status, data = await post(
                session,
                f"{server.base_url}/assets/associate",
                {"assets": assets, "clientUserIds": users},
            )
            took = loop.time() - started
            server.clock.advance(60)
            _, st = await event_status(session, server, data["eventId"])
            return status, dict(st), took

    status, st, took = asyncio.run(scenario())
    assert status == 200
    assert (st["eventStatus"], st["numRequested"], st["numCompleted"]) == ("FAILED", 25_000, 0)
    assert took < 10.0  # generous: the quadratic version took minutes


def test_client_config_with_text_that_is_not_unicode_is_refused(pki: PKI) -> None:
    """A notificationUrl or mdmInfo with a lone surrogate (JSON ``"\\ud800"``) cannot be sent
    on (the URL to connect to, every notification's mdmInfo): 9712 / 9723 with the documented
    error body, not a simulator fault, and nothing is stored."""

    async def scenario() -> list[tuple[int, Any]]:
        async with api(pki) as (server, session), receiver(pki) as rec:
            answers = []
            for body in [
                b'{"notificationUrl": "' + rec.url.encode() + b'/\\ud800", '
                b'"notificationAuthToken": "nt"}',
                b'{"mdmInfo": {"id": "m", "name": "\\udfff", "metadata": ""}}',
            ]:
                status, data, _ = await call(
                    session, "POST", f"{server.base_url}/client/config", data=body,
                    headers={**AUTH, "Content-Type": "application/json"},
                )  # fmt: skip
                answers.append((status, data.get("errorNumber")))
            assert server.service.client_config == {}
            assert server.fault_log.errors() == []
            return answers

    assert asyncio.run(scenario()) == [(400, 9712), (400, 9723)]
