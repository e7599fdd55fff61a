"""The ``apple_sim``, ``pelion_sim`` and ``ivanti_sim`` fixtures from a user's own project
(docs/sut-contract.md §6, "Simulators in your own tests"): a fresh project (pytester) whose tests
use each fixture with a paho client, an aiohttp receiver and a websockets client."""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys

import pytest

USER_TESTS = r"""
import asyncio, json, ssl, threading

import paho.mqtt.client as mqtt
import websockets
from aiohttp import web


def test_nothing_starts_without_a_fixture():
    import sys
    assert "conformance.simulation" not in sys.modules


def test_ivanti_event_reaches_a_paho_client(ivanti_sim):
    env = ivanti_sim.env
    got = threading.Event()
    received = []
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="user-app", clean_session=False,
                         protocol=mqtt.MQTTv311)
    client.username_pw_set(env["CONFORMANCE_IVANTI_USERNAME"])
    client.tls_set(ca_certs=env["CONFORMANCE_CA_FILE"], certfile=env["CONFORMANCE_IVANTI_CLIENT_CERT"],
                   keyfile=env["CONFORMANCE_IVANTI_CLIENT_KEY"], tls_version=ssl.PROTOCOL_TLSv1_2)
    topic = ivanti_sim.publish("device_check_in").topic  # nobody listens yet: learn the topic
    client.on_connect = lambda c, u, f, rc, p: c.subscribe(topic, qos=1)
    client.on_message = lambda c, u, m: (received.append(json.loads(m.payload)), got.set())
    client.connect(env["CONFORMANCE_IVANTI_BROKER_HOST"], int(env["CONFORMANCE_IVANTI_BROKER_PORT"]))
    client.loop_start()
    try:
        ivanti_sim.wait_connected()
        published = ivanti_sim.publish("device_check_in", devices=[{"serialNumber": "X1"}])
        assert published.delivered_to == ("user-app",)
        assert got.wait(10) and received[0]["devices"] == [{"serialNumber": "X1"}]
        assert ivanti_sim.wait_acknowledged(1)
    finally:
        client.loop_stop()
        client.disconnect()


def test_apple_notifications_reach_an_aiohttp_receiver(apple_sim):
    bodies = []

    async def handle(request):
        bodies.append(await request.json())
        return web.Response(status=200 if request.headers["Authorization"] == "Bearer t0k" else 401)

    async def serve():
        app = web.Application()
        app.router.add_post("/hook", handle)
        runner = web.AppRunner(app)
        await runner.setup()
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(apple_sim.env["CONFORMANCE_SUT_CERT_FILE"], apple_sim.env["CONFORMANCE_SUT_KEY_FILE"])
        site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ctx)
        await site.start()
        return runner, site._server.sockets[0].getsockname()[1]

    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    runner, port = asyncio.run_coroutine_threadsafe(serve(), loop).result(10)
    try:
        apple_sim.receiver(f"https://127.0.0.1:{port}/hook", "t0k", ca=apple_sim.env["CONFORMANCE_CA_FILE"])
        sent = apple_sim.notify("USER_ASSOCIATED", elements=120)
        assert [n.elements for n in sent] == [100, 20]
        assert len(apple_sim.wait_delivered(2)) == 2
        assert sorted(len(b["notification"]["associatedUsers"]) for b in bodies) == [20, 100]
        t0 = apple_sim.clock.now()
        assert apple_sim.clock.advance(300) >= t0 + 300
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)


def test_pelion_notification_reaches_a_websockets_client(pelion_sim):
    import urllib.request

    env = pelion_sim.env
    ctx = ssl.create_default_context(cafile=env["CONFORMANCE_CA_FILE"])
    channel = urllib.request.Request(
        env["CONFORMANCE_PELION_API_URL"] + "/v2/notification/websocket", method="PUT",
        headers={"Authorization": "Bearer " + env["CONFORMANCE_PELION_API_KEY"]})
    assert urllib.request.urlopen(channel, context=ctx, timeout=10).status in (200, 201)

    async def client():
        ctx = ssl.create_default_context(cafile=env["CONFORMANCE_CA_FILE"])
        url = env["CONFORMANCE_PELION_API_URL"].replace("https://", "wss://") + "/v2/notification/websocket-connect"
        async with websockets.connect(url, ssl=ctx, subprotocols=["wss", "pelion_" + env["CONFORMANCE_PELION_API_KEY"]]) as ws:
            await asyncio.to_thread(pelion_sim.wait_connected)
            await asyncio.to_thread(pelion_sim.notify, value="42", count=3)
            items = []
            while len(items) < 3:
                items += json.loads(await asyncio.wait_for(ws.recv(), 10)).get("notifications", [])
            return items

    items = asyncio.run(client())
    assert {i["path"] for i in items} == {"/3200/0/5501"} and len(items) == 3
    assert sum(a.items for a in pelion_sim.wait_delivered(3)) >= 3
"""


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_each_fixture_drives_its_simulators_from_a_users_project(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(test_user_project=USER_TESTS)
    # The pytest11 entry point registers the fixtures; where the installed metadata predates
    # it (an editable install made before), `-p` loads the same module.
    installed = {e.name for e in importlib.metadata.entry_points(group="pytest11")}
    load = [] if "conformance-sims" in installed else ["-p", "conformance.sim_fixtures"]
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", *load,
         "-p", "no:cacheprovider", "-p", "no:schemathesis", str(pytester.path)],
        capture_output=True, text=True, timeout=300, cwd=pytester.path,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "4 passed" in result.stdout
