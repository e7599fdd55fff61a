"""The Device Management API subset over real HTTPS on 127.0.0.1: authentication and the
documented error bodies, subscriptions, device requests and their async responses, simulated
devices, and bounds against a hostile client (SIM-PEL-WS, SIM-PEL-PULL, SIM-PEL-QUEUE)."""

from __future__ import annotations

import asyncio
import base64
import ssl
from typing import Any

import aiohttp

from simulators.pelion.devices import TLV, decode_tlv
from simulators.pelion.simulator import PelionSimulator
from simulators.pki import PKI
from tests.sim.pelion_support import AUTH, EP, KEY, call, client, running

PULL = "/v2/notification/pull"


def error_shape(data: Any, code: int) -> None:
    assert isinstance(data, dict)
    assert data["object"] == "error" and data["code"] == code
    assert isinstance(data["type"], str) and data["message"]
    assert len(data["request_id"]) == 32


async def pull(session: aiohttp.ClientSession, sim: PelionSimulator) -> list[tuple[str, Any]]:
    """Every item of one poll (none on 204)."""
    status, _, data = await call(session, sim, "GET", PULL)
    assert status in (200, 204)
    return [(kind, item) for kind, items in (data or {}).items() for item in items]


def test_authentication_and_documented_error_bodies(pki: PKI) -> None:
    """Every call needs ``Bearer ak_…``: 401 missing, malformed or unknown, 403 for a token that
    is not an API key; 404 and 405 answer the same JSON error shape with ``x-request-id``."""

    async def scenario() -> None:
        async with running(pki) as sim, client(pki) as session:
            path = "/v2/notification/channel"
            for headers, code in [
                ({}, 401),
                ({"Authorization": f"Basic {KEY}"}, 401),
                ({"Authorization": "Bearer ak_unknown"}, 401),
                ({"Authorization": "Bearer eyJhbGciOiJIUzI1NiJ9.user.token"}, 403),
                ({"Authorization": f"bearer {KEY}"}, 404),  # the scheme is case-insensitive
            ]:
                async with session.get(sim.base_url + path, headers=headers) as response:
                    data = await response.json()
                    assert response.status == code, headers
                    error_shape(data, code)
                    assert response.headers["x-request-id"] == data["request_id"]
            _, _, data = await call(session, sim, "GET", "/v2/nothing/here")
            error_shape(data, 404)
            _, _, data = await call(session, sim, "POST", "/v2/notification/callback")
            error_shape(data, 405)
            assert [c.auth for c in sim.calls()][:4] == [
                "missing", "missing", "invalid", "not-an-api-key"
            ]  # fmt: skip

    asyncio.run(scenario())


def test_devices_register_update_deregister_expire_and_notify(pki: PKI) -> None:
    """Simulated devices drive every message kind: registration events go to every key's
    channel, value changes (base64, text/plain and TLV) to the subscribed keys; a lifetime
    that runs out is a ``registrations-expired`` on the simulated clock."""

    async def scenario() -> None:
        async with running(pki, pull_timeout_s=0.2) as sim, client(pki) as session:
            assert await pull(session, sim) == []  # creates the pull channel
            device = sim.add_device(EP, lifetime_s=300)
            await sim.register(EP)
            status, _, _ = await call(session, sim, "PUT", f"/v2/subscriptions/{EP}/3303/0/5700")
            assert status == 200
            status, _, _ = await call(
                session, sim, "PUT", f"/v2/subscriptions/{EP}/3304%2F0%2F5700"
            )
            assert status == 200  # the Python SDK escapes the slashes of the path
            await sim.set_value(EP, "/3303/0/5700", 22.5)
            await sim.set_value(EP, "/3304/0/5700", 45)
            await sim.set_value(EP, "/3200/0/5501", 1)  # not subscribed: nothing
            await sim.update_registration(EP)
            await sim.deregister(EP)
            await sim.register(EP)
            items = await pull(session, sim)
            kinds = [kind for kind, _ in items]
            assert kinds == ["notifications", "notifications", "registrations", "registrations",
                             "reg-updates", "de-registrations"]  # fmt: skip
            text, tlv = items[0][1], items[1][1]
            assert (text["ct"], base64.b64decode(text["payload"])) == ("text/plain", b"22.5")
            assert tlv["ct"] == TLV
            assert decode_tlv(base64.b64decode(tlv["payload"])) == {5700: b"\x2d"}
            assert items[5][1] == EP  # de-registrations are bare device ids by default
            assert device.registered
            assert await sim.drive(timeout_real_s=5)  # idle: an expiry to come is not work
            sim.clock.advance(300)  # (the pull channel itself lasts 10 minutes unpolled)
            assert await sim.drive(lambda: not device.registered, timeout_real_s=5)
            assert await pull(session, sim) == [("registrations-expired", EP)]

    asyncio.run(scenario())


def test_subscriptions_and_presubscriptions(pki: PKI) -> None:
    """Resource subscriptions (200 / 404 ``DEVICE_NOT_FOUND`` / ``URI_PATH_DOES_NOT_EXISTS``,
    GET as ``text/uri-list``) and pre-subscriptions applied at registration."""

    async def scenario() -> None:
        async with running(pki, pull_timeout_s=0.2) as sim, client(pki) as session:
            assert await pull(session, sim) == []  # creates the pull channel
            sim.add_device(EP, ept="Light")
            status, _, data = await call(session, sim, "PUT", f"/v2/subscriptions/{EP}/3/0/0")
            assert status == 404 and data["message"] == "DEVICE_NOT_FOUND"
            await sim.register(EP)
            status, _, data = await call(session, sim, "PUT", f"/v2/subscriptions/{EP}/9/9/9")
            assert status == 404 and data["message"] == "URI_PATH_DOES_NOT_EXISTS"
            assert (await call(session, sim, "PUT", f"/v2/subscriptions/{EP}/3200/0/5501"))[
                0
            ] == 200
            assert (await call(session, sim, "GET", f"/v2/subscriptions/{EP}/3200/0/5501"))[
                0
            ] == 200
            assert (await call(session, sim, "GET", f"/v2/subscriptions/{EP}/3303/0/5700"))[
                0
            ] == 404
            status, text, _ = await call(session, sim, "GET", f"/v2/subscriptions/{EP}")
            assert (status, text) == (200, "/3200/0/5501")
            assert (await call(session, sim, "DELETE", f"/v2/subscriptions/{EP}"))[0] == 204
            assert (await call(session, sim, "GET", f"/v2/subscriptions/{EP}"))[1] == ""
            rules = [{"endpoint-type": "Light", "resource-path": ["/3303/*"]}]
            assert (await call(session, sim, "PUT", "/v2/subscriptions", json=rules))[0] == 204
            status, _, data = await call(session, sim, "GET", "/v2/subscriptions")
            assert (status, data) == (200, rules)
            bad: list[dict[str, Any]] = [{"resource-path": []}]
            status, _, data = await call(session, sim, "PUT", "/v2/subscriptions", json=bad)
            assert status == 400 and data["type"] == "validation_error"
            assert await pull(session, sim) == [
                ("registrations", sim.devices.devices[EP].endpoint_data().to_wire())
            ]
            await sim.update_registration(EP)  # pre-subscriptions apply at a registration update
            await sim.set_value(EP, "/3303/0/5700", 30)
            assert [kind for kind, _ in await pull(session, sim)] == [
                "notifications",
                "reg-updates",
            ]
            assert (await call(session, sim, "DELETE", "/v2/subscriptions"))[0] == 204
            assert (await call(session, sim, "GET", "/v2/subscriptions"))[2] == []

    asyncio.run(scenario())


def test_device_requests_answer_202_then_an_async_response(pki: PKI) -> None:
    """``POST /v2/device-requests/{device}?async-id=…``: 202, then the result as an
    ``async-responses`` item with that id (status an integer, payload base64); refusals are
    plain text (400) or the 404 error body."""

    async def scenario() -> None:
        async with running(pki, pull_timeout_s=0.3) as sim, client(pki) as session:
            sim.add_device(EP)
            await sim.register(EP)
            assert [kind for kind, _ in await pull(session, sim)] == []  # created after: none
            base = f"/v2/device-requests/{EP}"
            status, text, _ = await call(
                session,
                sim,
                "POST",
                base + "?async-id=read-1",
                json={"method": "GET", "uri": "/3/0/0"},
            )
            assert (status, text) == (202, "")
            put = {"method": "PUT", "uri": "/3200/0/5501", "content-type": "text/plain",
                   "payload-b64": base64.b64encode(b"17").decode()}  # fmt: skip
            assert (await call(session, sim, "POST", base + "?async-id=write-1", json=put))[
                0
            ] == 202
            items: list[tuple[str, Any]] = []
            while len(items) < 2:  # each device answer comes after its delay (simulated)
                items += await pull(session, sim)
            read, write = (item for _, item in items)
            assert (read["id"], read["status"], base64.b64decode(read["payload"])) == (
                "read-1", 200, b"Conformance Ltd"
            )  # fmt: skip
            assert (write["id"], write["status"]) == ("write-1", 200)
            assert sim.devices.devices[EP].resources["/3200/0/5501"].value == "17"
            for query, body, expected in [
                ("", {"method": "GET", "uri": "/3/0/0"}, "MALFORMED_ASYNC_ID"),
                (
                    "?async-id=x%20y",
                    {"method": "GET", "uri": "/3/0/0"},
                    "MALFORMED_ASYNC_ID",
                ),
                ("?async-id=ok", "not json", "MALFORMED_JSON_CONTENT"),
            ]:
                kwargs: dict[str, Any] = (
                    {"json": body} if isinstance(body, dict) else {"data": body}
                )
                status, text, _ = await call(session, sim, "POST", base + query, **kwargs)
                assert (status, text) == (400, expected)
            status, _, data = await call(
                session, sim, "POST", "/v2/device-requests/ffffffffffffffffffffffffffffffff?async-id=z",
                json={"method": "GET", "uri": "/3/0/0"},
            )  # fmt: skip
            error_shape(data, 404)
            assert data["message"] == "DEVICE_NOT_FOUND"

    asyncio.run(scenario())


def test_bounded_against_a_hostile_client(pki: PKI) -> None:
    """Bodies over 1 MiB get 413 and invalid JSON 400 (both the error body); a connection
    that never completes its request head is closed after the slow-request cutoff, and a body
    that never completes is answered 408 then; every call is in the (bounded) call log."""

    async def scenario() -> None:
        async with running(pki, slow_request_s=0.3) as sim, client(pki) as session:
            big = {"url": "https://127.0.0.1:1/cb", "pad": "x" * (1024 * 1024)}
            _, _, data = await call(session, sim, "PUT", "/v2/notification/callback", json=big)
            error_shape(data, 413)
            _, _, data = await call(
                session, sim, "PUT", "/v2/notification/callback", data=b"{not json",
                headers={"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"},
            )  # fmt: skip
            error_shape(data, 400)
            context = ssl.create_default_context(cafile=str(pki.ca))
            reader, writer = await asyncio.open_connection("127.0.0.1", sim.port, ssl=context)
            writer.write(b"GET /v2/notification/pull HTTP/1.1\r\nHost: x\r\n")  # never finished
            await writer.drain()
            assert await asyncio.wait_for(reader.read(), 5) == b""  # closed by the simulator
            writer.close()
            reader, writer = await asyncio.open_connection("127.0.0.1", sim.port, ssl=context)
            writer.write(
                b"PUT /v2/subscriptions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + KEY.encode()
                + b"\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n[{"
            )  # fmt: skip
            await writer.drain()
            answer = await asyncio.wait_for(reader.read(4096), 5)  # the body never comes
            assert answer.startswith(b"HTTP/1.1 408") and b'"code": 408' in answer
            writer.close()
            calls = sim.calls()
            assert [(c.method, c.status) for c in calls] == [
                ("PUT", 413),
                ("PUT", 400),
                ("PUT", 408),
            ]
            assert calls[1].body == "{not json"

    asyncio.run(scenario())


def test_hostile_device_request_bodies_are_a_400_with_the_reason(pki: PKI) -> None:
    """``POST /v2/device-requests/{device}``: a body nested deeper than any parser recurses,
    one with a lone surrogate, or one of another shape is the client's mistake: 400
    ``MALFORMED_JSON_CONTENT`` (plain text, as the vendor answers), never a simulator fault."""

    async def scenario() -> None:
        async with running(pki) as sim, client(pki) as session:
            sim.add_device(EP)
            await sim.register(EP)
            base = f"/v2/device-requests/{EP}?async-id=deep-1"
            for body in [
                b"[" * 100_000 + b"]" * 100_000,
                b'{"method": "GET", "uri": ' + b'{"a": ' * 50_000 + b"1" + b"}" * 50_001,
                b'{"method": "GET", "uri": "/3/0/0\\ud800"}',
                b'{"method": "GET", "uri": "/3/0/0", "payload-b64": "\\udfff"}',
                b'{"method": ["GET"], "uri": 7}',
            ]:
                status, text, _ = await call(
                    session, sim, "POST", base, data=body,
                    headers={**AUTH, "Content-Type": "application/json"},
                )  # fmt: skip
                assert (status, text) == (400, "MALFORMED_JSON_CONTENT"), body[:40]

    asyncio.run(scenario())


def test_a_callback_registration_that_is_not_unicode_is_a_400(pki: PKI) -> None:
    """``PUT /v2/notification/callback`` with a lone surrogate in the URL or a header value
    (JSON ``"\\ud800"``): 400 with the error body, never a simulator fault; nothing is
    registered."""

    async def scenario() -> None:
        async with running(pki) as sim, client(pki) as session:
            for body in [
                b'{"url": "https://127.0.0.1:9/cb/\\ud800"}',
                b'{"url": "https://127.0.0.1:9/cb", "headers": {"x-secret": "\\udcff"}}',
            ]:
                status, _, data = await call(
                    session, sim, "PUT", "/v2/notification/callback", data=body,
                    headers={**AUTH, "Content-Type": "application/json"},
                )  # fmt: skip
                assert status == 400, data
                error_shape(data, 400)
            status, _, _ = await call(session, sim, "GET", "/v2/notification/callback")
            assert status == 404

    asyncio.run(scenario())
