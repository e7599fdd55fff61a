"""The WebSocket channel over real TLS on 127.0.0.1 (SIM-PEL-WS, SIM-PEL-REMOVE): the channel
REST, the connect handshake and its refusals, frames, pings, close codes. Clients: the
``websockets`` library and aiohttp."""

from __future__ import annotations

import asyncio
import json
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.typing import Subprotocol

from simulators.pelion.channels import ChannelOptions
from simulators.pelion.delivery import WEBSOCKET_UNBOUND_LIMIT_S, CloseCode
from simulators.pelion.operations import DelayHandshakes
from simulators.pelion.simulator import PelionConfig, PelionSimulator
from simulators.pki import PKI
from tests.sim.pelion_support import AUTH, KEY, call, client, notification, running, target

PROTOCOLS = [Subprotocol("wss"), Subprotocol(f"pelion_{KEY}")]


def context(pki: PKI) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(pki.ca))


@asynccontextmanager
async def socket(
    sim: PelionSimulator, pki: PKI, protocols: list[Subprotocol] | None = PROTOCOLS, **kw: Any
) -> AsyncIterator[ClientConnection]:
    async with connect(
        sim.websocket_url, ssl=context(pki), subprotocols=protocols, max_size=None,
        ping_interval=None, open_timeout=5, close_timeout=2, **kw,
    ) as ws:  # fmt: skip
        yield ws


async def put_channel(
    session: aiohttp.ClientSession, sim: PelionSimulator, body: Any = None
) -> int:
    status, _, _ = await call(session, sim, "PUT", "/v2/notification/websocket", json=body)
    return status


async def closed_with(ws: ClientConnection, timeout: float = 5.0) -> tuple[int | None, str]:
    """Read until the server closes: (close code, reason); None when no close frame came."""
    try:
        async with asyncio.timeout(timeout):
            while True:
                await ws.recv()
    except ConnectionClosed as exc:
        return (exc.rcvd.code, exc.rcvd.reason) if exc.rcvd else (None, "")
    raise AssertionError("not closed")


async def until(sim: PelionSimulator, predicate: Any, timeout: float = 5.0) -> None:
    """Wait (bounded) for a condition of the simulator: it is looked at after every change."""
    assert await sim.drive(predicate, timeout_real_s=timeout), "the condition never held"


@pytest.mark.sim("SIM-PEL-WS")
def test_channel_rest_201_200_status_and_delete(pki: PKI) -> None:
    """SIM-PEL-WS: PUT creates (201) then updates (200) with a status body; GET shows
    ``disconnected`` / ``connected``; DELETE 204 then 404."""

    async def scenario() -> None:
        async with running(pki) as sim, client(pki) as session:
            status, _, data = await call(session, sim, "GET", "/v2/notification/websocket")
            assert status == 404 and data["code"] == 404
            status, _, data = await call(session, sim, "PUT", "/v2/notification/websocket")
            assert (status, data) == (201, {"queue_size": 0, "status": "disconnected"})
            body = {"serialization": {"max_chunk_size": 500, "cfg": {"include_uid": True}}}
            status, _, data = await call(
                session, sim, "PUT", "/v2/notification/websocket", json=body
            )
            assert status == 200 and data["serialization"]["max_chunk_size"] == 500
            async with socket(sim, pki):
                await until(sim, lambda: sim.bound_connection() is not None)
                status, _, data = await call(session, sim, "GET", "/v2/notification/websocket")
                assert (status, data["status"]) == (200, "connected")
                status, _, data = await call(session, sim, "GET", "/v2/notification/channel")
                assert data == {"delivery_mechanism": "WEB_SOCKET"}
            await until(sim, lambda: sim.registry.mechanism(KEY) is None)  # the client closed it
            assert (await call(session, sim, "DELETE", "/v2/notification/websocket"))[0] == 404
            assert await put_channel(session, sim) == 201
            assert (await call(session, sim, "DELETE", "/v2/notification/websocket"))[0] == 204

    asyncio.run(scenario())


@pytest.mark.sim("SIM-PEL-WS")
@pytest.mark.parametrize(
    "how", ["websockets: wss, pelion_", "websockets: pelion_, wss", "aiohttp: wss,pelion_",
            "websockets: bearer", "aiohttp: bearer"],
)  # fmt: skip
def test_connect_authenticates_by_subprotocol_or_bearer(pki: PKI, how: str) -> None:
    """SIM-PEL-WS: the key comes as ``pelion_<key>`` among the subprotocols (with ``wss``, in
    either order, with or without a space after the comma) or as a bearer header; one text
    frame per NotificationMessage follows."""

    async def scenario() -> None:
        async with running(pki) as sim, client(pki) as session:
            assert await put_channel(session, sim) == 201
            await sim.inject("notifications", [notification(1), notification(2)])
            if how.startswith("aiohttp"):
                kwargs: dict[str, Any] = (
                    {"headers": AUTH}
                    if how.endswith("bearer")
                    else {"protocols": ("wss", f"pelion_{KEY}")}
                )
                async with session.ws_connect(sim.websocket_url, **kwargs) as ws:
                    message = await ws.receive(timeout=5)
                    assert message.type is aiohttp.WSMsgType.TEXT
                    frame = message.data
                    protocol = ws.protocol
            else:
                if how.endswith("bearer"):
                    ctx = socket(sim, pki, protocols=None, additional_headers=AUTH)
                elif "pelion_, wss" in how:
                    ctx = socket(sim, pki, protocols=PROTOCOLS[::-1])
                else:
                    ctx = socket(sim, pki)
                async with ctx as ws:
                    frame = await asyncio.wait_for(ws.recv(), 5)
                    protocol = ws.subprotocol
            assert isinstance(frame, str)
            assert [n["payload"] for n in json.loads(frame)["notifications"]] == ["MQ==", "Mg=="]
            [info] = sim.connections()
            assert info.status == 101 and info.key_valid
            assert info.auth == ("bearer" if how.endswith("bearer") else "subprotocol")
            assert protocol == (None if how.endswith("bearer") else "wss")
            assert info.frames_sent == 1 and info.items_sent == 2

    asyncio.run(scenario())


@pytest.mark.sim("SIM-PEL-WS")
@pytest.mark.parametrize("mode", ["close-1008", "401"])
def test_a_missing_or_invalid_key(pki: PKI, mode: str) -> None:
    """SIM-PEL-WS: the vendor doc: "1008 Policy violation: Authentication fails due to an
    invalid or missing API key header when connecting" (the default); SPEC20/21 refuse the
    handshake with 401 instead (``ws_auth_failure="401"``)."""

    async def scenario() -> None:
        async with running(pki, ws_auth_failure=mode) as sim, client(pki) as session:
            assert await put_channel(session, sim) == 201
            for protocols in ([Subprotocol("wss"), Subprotocol("pelion_ak_wrong")], None):
                if mode == "401":
                    with pytest.raises(InvalidStatus) as refused:
                        async with socket(sim, pki, protocols=protocols):
                            pass
                    assert refused.value.response.status_code == 401
                else:
                    async with socket(sim, pki, protocols=protocols) as ws:
                        code, reason = await closed_with(ws)
                        assert code == 1008 and "API key" in reason
            infos = sim.connections()
            assert [i.status for i in infos] == ([401, 401] if mode == "401" else [101, 101])
            assert [i.auth for i in infos] == ["subprotocol", None]
            state = sim.channel_state()
            assert state is not None and state.status == "disconnected"

    asyncio.run(scenario())


@pytest.mark.sim("SIM-PEL-WS")
def test_handshake_refusals_426_400_429(pki: PKI) -> None:
    """SIM-PEL-WS: 426 without the upgrade headers, 400 without ``Sec-WebSocket-Key`` /
    ``-Version: 13``, 429 while a handshake with the same key is in progress."""

    async def scenario() -> None:
        async with running(pki) as sim, client(pki) as session:
            assert await put_channel(session, sim) == 201
            path = "/v2/notification/websocket-connect"
            status, _, data = await call(session, sim, "GET", path)
            assert status == 426 and data["code"] == 426
            upgrade = {**AUTH, "Upgrade": "websocket", "Connection": "Upgrade"}
            status, _, data = await call(session, sim, "GET", path, headers=upgrade)
            assert status == 400 and "Sec-WebSocket-Key" in data["message"]
            await DelayHandshakes(seconds=0.5).apply(target(sim))
            first = asyncio.ensure_future(
                connect(sim.websocket_url, ssl=context(pki), subprotocols=PROTOCOLS)
            )
            await until(sim, lambda: KEY in sim.api.websocket_connects.handshaking)
            with pytest.raises(InvalidStatus) as refused:
                async with socket(sim, pki):
                    pass
            assert refused.value.response.status_code == 429
            ws = await asyncio.wait_for(first, 5)
            await ws.close()
            assert [i.status for i in sim.connections()] == [426, 400, 429, 101]
            assert [c.status for c in sim.calls()] == [201, 426, 400, 429, 101]

    asyncio.run(scenario())


@pytest.mark.sim("SIM-PEL-WS")
def test_close_codes_1011_1001_1000(pki: PKI) -> None:
    """SIM-PEL-WS: connecting without a channel gives 1011; a second socket closes the first
    with 1001 (and gets the frames); a REST delete closes with 1001 (the vendor doc)."""

    async def scenario() -> None:
        async with running(pki) as sim, client(pki) as session:
            async with socket(sim, pki) as ws:
                assert (await closed_with(ws))[0] == 1011
            assert await put_channel(session, sim) == 201
            async with socket(sim, pki) as first:
                await until(sim, lambda: sim.bound_connection() is not None)
                async with socket(sim, pki) as second:
                    code, reason = await closed_with(first)
                    assert code == 1001 and "another WebSocket" in reason
                    await sim.inject("notifications", [notification(5)])
                    assert "notifications" in json.loads(await asyncio.wait_for(second.recv(), 5))
                    assert (await call(session, sim, "DELETE", "/v2/notification/websocket"))[
                        0
                    ] == 204
                    assert (await closed_with(second))[0] == 1001
            assert [i.close_sent[0] if i.close_sent else None for i in sim.connections()] == [
                1011, 1001, 1001
            ]  # fmt: skip

    asyncio.run(scenario())


@pytest.mark.sim("SIM-PEL-WS")
def test_rest_delete_closes_with_1000_as_an_option(pki: PKI) -> None:
    """SIM-PEL-WS: SPEC20/21 close with 1000 when the channel is deleted over REST."""

    async def scenario() -> None:
        async with (
            running(
                pki, channel=ChannelOptions(websocket_delete_close_code=CloseCode.NORMAL)
            ) as sim,
            client(pki) as session,
        ):
            assert await put_channel(session, sim) == 201
            async with socket(sim, pki) as ws:
                await until(sim, lambda: sim.bound_connection() is not None)
                assert (await call(session, sim, "DELETE", "/v2/notification/websocket"))[0] == 204
                assert (await closed_with(ws))[0] == 1000

    asyncio.run(scenario())


@pytest.mark.sim("SIM-PEL-WS")
def test_a_revoked_key_closes_with_1008(pki: PKI) -> None:
    """SIM-PEL-WS: a key invalidated after the handshake closes the socket with 1008; REST
    calls with it get 401."""

    async def scenario() -> None:
        async with running(pki) as sim, client(pki) as session:
            assert await put_channel(session, sim) == 201
            async with socket(sim, pki) as ws:
                await until(sim, lambda: sim.bound_connection() is not None)
                [closed] = await sim.revoke_key()
                assert closed.number == 1
                assert (await closed_with(ws))[0] == 1008
            status, _, data = await call(session, sim, "GET", "/v2/notification/websocket")
            assert status == 401 and data["type"] == "invalid_auth"

    asyncio.run(scenario())


@pytest.mark.sim("SIM-PEL-WS")
def test_a_server_close_waits_for_the_clients_answer(pki: PKI) -> None:
    """SIM-PEL-WS: the server closes TCP only after the client's close frame (RFC 6455 §7.1.1),
    so a client that reads the 1008 late still answers it and learns 1008, not 1006; the
    client's close code is the one it sent."""

    async def scenario() -> None:
        async with running(pki) as sim, client(pki) as session:
            assert await put_channel(session, sim) == 201
            ws = await session.ws_connect(
                sim.websocket_url, protocols=[str(p) for p in PROTOCOLS], ssl=context(pki)
            )
            await until(sim, lambda: sim.bound_connection() is not None)
            await sim.revoke_key()  # the client is not reading yet
            [info] = sim.connections()
            assert info.close_sent is not None and info.close_sent[0] == 1008
            ended = await sim.drive(
                lambda: sim.connections()[0].end is not None, timeout_real_s=0.5
            )
            assert not ended, "the server closed TCP before the client answered its close"
            msg = await ws.receive(timeout=5)
            assert (msg.type, msg.data) == (aiohttp.WSMsgType.CLOSE, 1008)
            await ws.close()
            assert ws.close_code == 1008
            await until(sim, lambda: sim.connections()[0].end is not None)
            [info] = sim.connections()
            assert (info.end, info.close_received) == ("server-close", 1000)

    asyncio.run(scenario())


@pytest.mark.sim("SIM-PEL-WS")
def test_pings_are_four_bytes_and_a_missing_pong_closes_1001(pki: PKI) -> None:
    """SIM-PEL-WS: the server pings with 4 bytes a client must echo; ``websockets`` answers
    and stays; an aiohttp client that never reads (so never pongs) is closed with 1001 "ping
    timeout" after the pong deadline (5 s by default; shortened here)."""
    assert PelionConfig(api_key=KEY).pong_timeout_s == 5.0

    async def scenario() -> None:
        async with (
            running(pki, ping_interval_s=0.05, pong_timeout_s=0.3) as sim,
            client(pki) as session,
        ):
            assert await put_channel(session, sim) == 201
            async with socket(sim, pki):
                await until(sim, lambda: sim.connections()[-1].pongs_matched >= 3)
            info = sim.connections()[-1]
            assert all(len(bytes.fromhex(p.payload_hex)) == 4 for p in info.pings)
            assert all(p.latency_real_s is not None and p.latency_real_s < 0.3 for p in info.pings)
            await until(sim, lambda: sim.registry.mechanism(KEY) is None)  # closed by the client
            assert await put_channel(session, sim) == 201
            async with session.ws_connect(
                sim.websocket_url, protocols=("wss", f"pelion_{KEY}"), autoping=False
            ) as ws:
                await until(sim, lambda: sim.connections()[-1].close_sent is not None, timeout=5)
                message = await ws.receive(timeout=5)
                while message.type is aiohttp.WSMsgType.PING:  # read past the unanswered pings
                    message = await ws.receive(timeout=5)
                assert message.type is aiohttp.WSMsgType.CLOSE
                assert (message.data, message.extra) == (1001, "ping timeout")
            await until(sim, lambda: sim.connections()[-1].end is not None)
            last = sim.connections()[-1]
            assert last.pings[-1].timed_out and last.close_sent == (1001, "ping timeout")

    asyncio.run(scenario())


@pytest.mark.sim("SIM-PEL-WS")
def test_pings_can_be_switched_off(pki: PKI) -> None:
    """SIM-PEL-WS: with pings off (a negative check's mode), no ping is sent and none is
    expected: a client that never pongs stays connected."""

    async def scenario() -> None:
        async with (
            running(pki, ping_interval_s=0.05, pong_timeout_s=0.1) as sim,
            client(pki) as session,
        ):
            sim.pings_enabled = False
            assert await put_channel(session, sim) == 201
            async with session.ws_connect(
                sim.websocket_url, protocols=("wss", f"pelion_{KEY}"), autoping=False
            ) as ws:
                with pytest.raises(TimeoutError):  # nothing comes for 10 ping intervals
                    await ws.receive(timeout=0.5)
                info = sim.connections()[-1]
                assert (info.pings_sent, info.end) == (0, None)
                sim.pings_enabled = True
                await until(sim, lambda: sim.connections()[-1].pings_sent > 0)

    asyncio.run(scenario())


@pytest.mark.sim("SIM-PEL-WS")
def test_a_10000_item_message_is_one_text_frame(pki: PKI) -> None:
    """SIM-PEL-WS: one NotificationMessage per text frame, up to 10,000 items."""

    async def scenario() -> None:
        async with running(pki) as sim, client(pki) as session:
            assert await put_channel(session, sim) == 201
            await sim.inject("notifications", [notification(i) for i in range(10_001)])
            async with socket(sim, pki) as ws:
                frames = [json.loads(await asyncio.wait_for(ws.recv(), 10)) for _ in range(2)]
            assert [len(f["notifications"]) for f in frames] == [10_000, 1]
            assert [a.items for a in sim.attempts()] == [10_000, 1]

    asyncio.run(scenario())


@pytest.mark.sim("SIM-PEL-WS")
def test_faults_close_with_a_code_and_drop_without_close_frame(pki: PKI) -> None:
    """SIM-PEL-WS: the simulator closes a socket with a chosen code, or drops it without a
    close frame (the client sees 1006); the channel stays, its queue is kept for the next
    socket."""

    async def scenario() -> None:
        async with running(pki) as sim, client(pki) as session:
            assert await put_channel(session, sim) == 201
            async with socket(sim, pki) as ws:
                await until(sim, lambda: sim.bound_connection() is not None)
                assert await sim.close_socket(1011, "simulated server error")
                assert await closed_with(ws) == (1011, "simulated server error")
            async with socket(sim, pki) as ws:
                await until(sim, lambda: sim.bound_connection() is not None)
                assert await sim.drop_socket()
                assert (await closed_with(ws))[0] is None
            await sim.inject("notifications", [notification(9)])
            state = sim.channel_state()
            assert state is not None and (state.status, state.queue.queued) == ("disconnected", 1)
            async with socket(sim, pki) as ws:
                assert "notifications" in json.loads(await asyncio.wait_for(ws.recv(), 5))
            await until(sim, lambda: sim.connections()[-1].end is not None)
            assert [i.end for i in sim.connections()] == ["server-close", "dropped", "client-close"]

    asyncio.run(scenario())


@pytest.mark.sim("SIM-PEL-REMOVE")
def test_client_close_removes_the_channel_and_24h_without_socket_too(pki: PKI) -> None:
    """SIM-PEL-REMOVE: "Closing the socket from client closes the channel, too" (vendor doc);
    a channel with no socket for 24 h (simulated) is removed with its queue."""

    async def scenario() -> None:
        async with running(pki) as sim, client(pki) as session:
            assert await put_channel(session, sim) == 201
            async with socket(sim, pki):
                await until(sim, lambda: sim.bound_connection() is not None)
            await until(sim, lambda: sim.registry.mechanism(KEY) is None)
            assert sim.removed_channels()[-1].reason == "client-close"
            assert await put_channel(session, sim) == 201
            async with socket(sim, pki):
                await until(sim, lambda: sim.bound_connection() is not None)
                assert await sim.drop_socket()  # lost, not closed: the channel waits 24 h
            await sim.inject("notifications", [notification(1)])
            lost_at = sim.clock.now()
            with sim.clock.autojump():
                assert await sim.drive(
                    lambda: sim.registry.mechanism(KEY) is None, timeout_real_s=5
                )
            gone = sim.removed_channels()[-1]
            assert (gone.reason, gone.dropped_items) == ("unbound-24h", 1)
            assert gone.at - lost_at == pytest.approx(WEBSOCKET_UNBOUND_LIMIT_S, abs=1.0)
            assert (await call(session, sim, "GET", "/v2/notification/websocket"))[0] == 404

    asyncio.run(scenario())


@pytest.mark.sim("SIM-PEL-WS")
def test_a_put_whose_body_comes_late_is_answered_at_the_time_it_came(pki: PKI) -> None:
    """SIM-PEL-WS: a second PUT whose body arrives after items were queued meanwhile is a 200,
    not a 500 (the channel's queue has seen a later time than the request's start; time never
    goes back in the cores). Found by exploring the reference SUT."""

    async def scenario() -> None:
        async with running(pki) as sim, client(pki) as session:
            assert await put_channel(session, sim) == 201
            queued = asyncio.Event()

            async def body() -> AsyncIterator[bytes]:
                yield b'{"serialization": '
                await queued.wait()  # the headers are in: the request has started
                yield b'{"cfg": {"include_uid": true}}}'

            def second_put_started() -> bool:
                started = [
                    e
                    for e in sim.recorder.timeline().events()
                    if e.kind == "api-request" and e.summary == "PUT /v2/notification/websocket"
                ]
                return len(started) == 2

            async def queue_meanwhile() -> None:
                await until(sim, second_put_started)
                await sim.inject("notifications", [notification(1)], key=KEY)
                queued.set()

            async def slow_put() -> int:
                headers = {**AUTH, "Content-Type": "application/json"}
                async with session.put(
                    sim.base_url + "/v2/notification/websocket", data=body(), headers=headers
                ) as response:
                    return response.status

            status, _ = await asyncio.gather(slow_put(), queue_meanwhile())
            assert status == 200
            assert sim.errors() == []

    asyncio.run(scenario())
