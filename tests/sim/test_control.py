"""The control plane of ``conformance-sim serve`` and ``conformance-sim ctl`` (docs/sut-contract.md
§6, "Driving the simulators"): scenarios with third-party clients, and hostile requests."""

from __future__ import annotations

import json
import queue
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from simulators.loop import LoopThread
from simulators.pki import PKI

Env = dict[str, str]
MOSQUITTO = pytest.mark.external_tool("mosquitto_sub")


def _bounded(look: Callable[[], Any], timeout: float = 30.0) -> Any:
    """Look again (every 0.1 s, at most ``timeout`` s) until ``look()`` is true."""
    deadline = time.monotonic() + timeout
    while not (value := look()):
        assert time.monotonic() < deadline, f"not seen within {timeout} s"
        threading.Event().wait(0.1)
    return value


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Env, Path]]:
    """``conformance-sim serve apple ivanti pelion`` without generated traffic; its log (every
    event) goes to a file, which must never show the control token."""
    tmp = tmp_path_factory.mktemp("control")
    env_file = tmp / "sim.env"
    log = tmp / "serve.log"
    with log.open("w") as log_file:
        proc = subprocess.Popen(
            [sys.executable, "-m", "conformance.cli", "serve", "apple", "ivanti", "pelion",
             f"--pki-dir={tmp / 'pki'}", f"--env-file={env_file}",
             "--ivanti-events-per-s=0", "--pelion-events-per-s=0"],
            stdout=subprocess.DEVNULL, stderr=log_file, text=True,
        )  # fmt: skip
    try:
        _bounded(lambda: env_file.is_file() or proc.poll() is not None)
        assert env_file.is_file(), log.read_text()
        env = {}
        for line in env_file.read_text().splitlines():
            key, _, value = line.removeprefix("export ").partition("=")
            env[key] = shlex.split(value)[0]
        yield env, env_file
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=20)
    text = log.read_text()
    assert "control -> " in text  # the operations are logged…
    assert env["CONFORMANCE_CONTROL_TOKEN"] not in text  # …never the token
    assert (tmp / "pki" / "control-token").stat().st_mode & 0o077 == 0  # owner-only


def ctl(env_file: Path, *args: str, check: bool = True) -> Any:
    """``conformance-sim ctl --env-file … ARGS``: its JSON answer (or the refusal)."""
    done = subprocess.run(
        [sys.executable, "-m", "conformance.cli", "ctl", f"--env-file={env_file}", *args],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    if not check:
        return done
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def call(env: Env, method: str, path: str, body: bytes | None = None,
         headers: dict[str, str] | None = None) -> tuple[int, Any]:  # fmt: skip
    """One raw request to the control plane (the token unless ``headers`` say otherwise)."""
    sent = {"Authorization": f"Bearer {env['CONFORMANCE_CONTROL_TOKEN']}", **(headers or {})}
    request = urllib.request.Request(
        env["CONFORMANCE_CONTROL_URL"] + path, data=body, method=method, headers=sent
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as refused:
        return refused.code, json.loads(refused.read())


# --- Ivanti: mosquitto_sub -------------------------------------------------------------------


def _mosquitto_sub(env: Env, topic: str, client_id: str, wait_s: int) -> subprocess.Popen[str]:
    return subprocess.Popen(
        ["mosquitto_sub", "-h", env["CONFORMANCE_IVANTI_BROKER_HOST"],
         "-p", env["CONFORMANCE_IVANTI_BROKER_PORT"], "--cafile", env["CONFORMANCE_CA_FILE"],
         "--cert", env["CONFORMANCE_IVANTI_CLIENT_CERT"],
         "--key", env["CONFORMANCE_IVANTI_CLIENT_KEY"], "-u", env["CONFORMANCE_IVANTI_USERNAME"],
         "--tls-version", "tlsv1.2", "-V", "mqttv311", "-i", client_id, "-c", "-q", "1",
         "-t", topic, "-C", "1", "-W", str(wait_s)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def _subscribed(env: Env, client_id: str) -> bool:
    _, answer = call(env, "POST", "/vendors/ivanti/operations",
                     json.dumps({"op": "connections", "open_only": True}).encode())  # fmt: skip
    return any(c["client_id"] == client_id and c["subscriptions"] for c in answer["result"])


@MOSQUITTO
def test_mosquitto_sub_gets_a_published_event_and_a_kept_one_is_gone_after_3h(
    served: tuple[Env, Path],
) -> None:
    env, env_file = served
    topic = ctl(env_file, "ivanti", "publish", "device_check_in")["result"]["topic"]
    sub = _mosquitto_sub(env, topic, "durable-ctl", 60)
    _bounded(lambda: _subscribed(env, "durable-ctl"))
    published = ctl(env_file, "ivanti", "publish", "device_check_in")["result"]
    assert published["delivered_to"] == ["durable-ctl"]
    out, err = sub.communicate(timeout=30)
    assert json.loads(out)["eventType"] == "device.check_in", err
    # The durable session is offline now: the next event is kept for it, for 3 hours.
    _bounded(lambda: not _subscribed(env, "durable-ctl"))
    kept = ctl(env_file, "ivanti", "publish", "device_check_in")["result"]
    assert kept["kept_for"] == ["durable-ctl"] and kept["delivered_to"] == []
    assert ctl(env_file, "clock", "advance", "3h")["advanced_s"] == 3 * 3600
    again = _mosquitto_sub(env, topic, "durable-ctl", 3)
    out, _ = again.communicate(timeout=30)
    assert out == "" and again.returncode == 27, out  # -W timed out: nothing was kept


# --- Apple: a receiver-only SUT --------------------------------------------------------------


class Receiver:
    """An HTTPS receiver (aiohttp) answering ``status``; records every notification."""

    def __init__(self, pki: PKI) -> None:
        self.pki = pki
        self.status = 200
        self.bodies: list[dict[str, Any]] = []
        self.loop = LoopThread("receiver")
        self.url = self.loop.run(self._start())

    async def _start(self) -> str:
        async def handle(request: web.Request) -> web.Response:
            self.bodies.append(json.loads(await request.read()))
            return web.Response(status=self.status)

        app = web.Application()
        app.router.add_post("/apple", handle)
        app.router.add_put("/pelion", handle)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0,
                           ssl_context=self.pki.server_context(self.pki.sut_server))  # fmt: skip
        await site.start()
        return f"https://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"  # type: ignore[union-attr]

    def close(self) -> None:
        self.loop.run(self.runner.cleanup())
        self.loop.stop()


@pytest.fixture
def receiver(served: tuple[Env, Path]) -> Iterator[Receiver]:
    env, _ = served
    made = Receiver(PKI.load_or_create(Path(env["CONFORMANCE_CA_FILE"]).parent))
    yield made
    made.close()


def test_apple_notify_150_elements_reaches_a_receiver_as_100_and_50_and_retries_on_the_clock(
    served: tuple[Env, Path], receiver: Receiver
) -> None:
    env, env_file = served
    refused = ctl(env_file, "apple", "notify", "ASSET_COUNT", check=False)
    assert refused.returncode == 1 and "no receiver is registered" in refused.stderr
    ctl(env_file, "apple", "receiver", receiver.url + "/apple", "--token", "sut-token",
        "--ca", env["CONFORMANCE_CA_FILE"])  # fmt: skip
    sent = ctl(env_file, "apple", "notify", "ASSET_MANAGEMENT", "--elements", "150")["result"]
    assert [(n["elements"], n["state"]) for n in sent] == [(100, "delivered"), (50, "delivered")]
    assert sorted(len(b["notification"]["assignments"]) for b in receiver.bodies) == [50, 100]
    # A receiver that fails: the first attempt now, the other two once 5 minutes have passed.
    receiver.status = 500
    first = ctl(env_file, "apple", "notify", "ASSET_COUNT")["result"][0]
    assert first["state"] == "due" and len(first["attempts"]) == 1
    ctl(env_file, "clock", "advance", "5m")

    def attempts() -> int:
        return sum(b["notificationId"] == first["notificationId"] for b in receiver.bodies)

    _bounded(lambda: attempts() >= 3)
    assert attempts() == 3


# --- Pelion: a callback that keeps failing ---------------------------------------------------


def test_a_pelion_callback_that_keeps_failing_is_removed_after_24h(
    served: tuple[Env, Path], receiver: Receiver
) -> None:
    env, env_file = served
    request = urllib.request.Request(
        env["CONFORMANCE_PELION_API_URL"] + "/v2/notification/callback",
        data=json.dumps({"url": receiver.url + "/pelion"}).encode(),
        method="PUT",
        headers={"Authorization": f"Bearer {env['CONFORMANCE_PELION_API_KEY']}",
                 "Content-Type": "application/json"},
    )  # fmt: skip
    import ssl

    context = ssl.create_default_context(cafile=env["CONFORMANCE_CA_FILE"])
    with urllib.request.urlopen(request, timeout=30, context=context) as answer:
        assert answer.status in (200, 204)
    receiver.status = 500
    assert ctl(env_file, "pelion", "notify", "--value", "7")["result"]["queued"] == 1
    _bounded(lambda: ctl(env_file, "pelion", "channel")["result"]["channel"]["failures"] >= 1)
    ctl(env_file, "clock", "advance", "24h")
    report = _bounded(lambda: (r := ctl(env_file, "pelion", "channel")["result"])["removed"] and r)
    assert report["channel"] is None
    assert [r["reason"] for r in report["removed"]] == ["failing-24h"]


# --- hostile input ---------------------------------------------------------------------------


def test_hostile_requests_change_nothing_and_are_answered_clearly(
    served: tuple[Env, Path],
) -> None:
    env, _ = served
    advance = json.dumps({"seconds": 3600}).encode()
    before = call(env, "GET", "/clock")[1]["sim_s"]
    for headers, status in [({"Authorization": ""}, 401),
                            ({"Authorization": "Bearer wrong"}, 401),
                            ({"Authorization": "Basic " + env["CONFORMANCE_CONTROL_TOKEN"]}, 401)]:  # fmt: skip
        code, answer = call(env, "POST", "/clock/advance", advance, headers)
        assert code == status and "Bearer" in answer["error"]
    code, answer = call(env, "POST", "/clock/advance", b"\xff{garbage")
    assert code == 400 and "not JSON" in answer["error"]
    code, answer = call(env, "POST", "/clock/advance", b'{"seconds": -5}')
    assert code == 400 and answer["fields"][0]["field"] == "seconds"
    code, answer = call(env, "POST", "/clock/advance", b"x" * (1024 * 1024))
    assert code == 413 and "limit" in answer["error"]
    code, answer = call(env, "POST", "/vendors/apple/operations",
                        b'{"op": "notify", "notification_type": "ASSET_MANAGEMENT", "elements": 1000000}')  # fmt: skip
    assert code == 400 and "10000" in answer["error"] and "elements" in answer["error"]
    code, answer = call(env, "POST", "/vendors/ivanti/operations",
                        b'{"op": "publish", "event_type": "device_exploded"}')  # fmt: skip
    assert code == 400 and "device_check_in" in answer["error"]
    code, answer = call(env, "POST", "/vendors/nokia/operations", b"{}")
    assert code == 404 and "served" in answer["error"]
    # A slow client that never finishes its body holds only its own connection.
    url = env["CONFORMANCE_CONTROL_URL"].removeprefix("http://")
    host, port = url.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=30) as slow:
        slow.sendall(
            b"POST /clock/advance HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n"
            b"Authorization: Bearer " + env["CONFORMANCE_CONTROL_TOKEN"].encode() + b"\r\n\r\n{"
        )
        assert call(env, "GET", "/clock")[0] == 200  # others are answered meanwhile
        answer_bytes = slow.recv(4096)
    assert b" 408 " in answer_bytes.split(b"\r\n", 1)[0]
    # A follower of the log that never reads: the simulators and the other clients go on.
    with socket.create_connection((host, int(port)), timeout=30) as absent:
        absent.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        absent.sendall(
            b"GET /log?follow=1 HTTP/1.1\r\nHost: x\r\n"
            b"Authorization: Bearer " + env["CONFORMANCE_CONTROL_TOKEN"].encode() + b"\r\n\r\n"
        )
        for _ in range(50):
            code, _ = call(env, "POST", "/vendors/pelion/operations", b'{"op": "reset"}')
            assert code == 200
    assert call(env, "GET", "/clock")[1]["sim_s"] - before < 600  # no hour was advanced


def test_ctl_log_follow_prints_each_operation_as_it_happens(served: tuple[Env, Path]) -> None:
    env, env_file = served
    follow = subprocess.Popen(
        [sys.executable, "-m", "conformance.cli", "ctl", f"--env-file={env_file}", "log",
         "--follow", "--since", str(_next_seq(env))],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    lines: queue.Queue[str] = queue.Queue()
    stdout = follow.stdout
    assert stdout is not None

    def read() -> None:
        for line in stdout:
            lines.put(line)

    threading.Thread(target=read, daemon=True).start()
    try:
        ctl(env_file, "fault", "pelion", "timeout", "--times", "2")
        while True:
            event = json.loads(lines.get(timeout=30))  # queue.Empty: not followed in time
            if event.get("kind") == "operation" and "timeout" in event["summary"]:
                assert event["actor"] == "control" and event["sim_s"] >= 0
                break
    finally:
        follow.terminate()
        follow.wait(timeout=10)
    ctl(env_file, "reset")


def _next_seq(env: Env) -> int:
    request = urllib.request.Request(
        env["CONFORMANCE_CONTROL_URL"] + "/log",
        headers={"Authorization": f"Bearer {env['CONFORMANCE_CONTROL_TOKEN']}"},
    )
    with urllib.request.urlopen(request, timeout=30) as answer:
        lines = answer.read().decode().splitlines()
    return int(json.loads(lines[-1])["seq"]) + 1 if lines else 0


def test_the_control_plane_describes_itself_with_openapi(served: tuple[Env, Path]) -> None:
    env, _ = served
    code, document = call(env, "GET", "/openapi.json")
    assert code == 200 and document["openapi"].startswith("3.")
    for vendor in ("apple", "ivanti", "pelion"):
        body = document["paths"][f"/vendors/{vendor}/operations"]["post"]["requestBody"]
        ref = body["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]
        assert "notify" in json.dumps(document["components"]["schemas"][ref]) or vendor == "ivanti"
    assert call(env, "GET", "/openapi.json", headers={"Authorization": ""})[0] == 401
