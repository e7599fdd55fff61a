"""MQTT clients nobody here wrote, driven as durable Ivanti subscribers (clean session off, a
fixed client id, QoS 1, mutual TLS 1.2), each behind one small interface: ``start()`` connects
and subscribes, ``stop()`` ends the client, ``messages`` is what the application received.

- ``mosquitto_sub`` (Debian mosquitto-clients), a subprocess; DUP from its ``-d`` log;
- paho-mqtt, in its own network thread;
- amqtt's client, aiomqtt and gmqtt, each in an event loop of its own thread (gmqtt is left on
  its default, MQTT 5, and falls back to 3.1.1 when the broker answers CONNACK 1);
- MQTT.js 5 (npm ``mqtt``), a Node subprocess running ``peers/mqttjs_subscriber.js``.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import re
import ssl
import subprocess
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

ROOT = Path(__file__).resolve().parents[2]
MQTTJS = ROOT / ".peers" / "node" / "node_modules" / "mqtt"
MQTTJS_SCRIPT = Path(__file__).resolve().parent / "peers" / "mqttjs_subscriber.js"


@dataclass(frozen=True)
class Message:
    """One message as the client's application saw it (``dup`` None: the client hides it)."""

    topic: str
    payload: bytes
    qos: int | None = None
    dup: bool | None = None
    retain: bool | None = None


@dataclass(frozen=True)
class Target:
    """Where and as whom a peer connects."""

    host: str
    port: int
    ca: Path
    cert: Path
    key: Path
    client_id: str
    topic: str
    username: str | None = None
    keepalive_s: int = 30
    qos: int = 1
    clean_session: bool = False

    def context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.ca))
        context.minimum_version = context.maximum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(str(self.cert), str(self.key))
        return context


@dataclass
class Peer:
    """Base: the messages received and a way to wait for them."""

    target: Target
    name: str = "peer"
    messages: list[Message] = field(default_factory=list)
    log: list[str] = field(default_factory=list)  # what the client said (errors, CONNACKs)
    changed: threading.Condition = field(default_factory=threading.Condition)

    def received(self, message: Message) -> None:
        with self.changed:
            self.messages.append(message)
            self.changed.notify_all()

    def note(self, line: str) -> None:
        with self.changed:
            self.log.append(line)
            self.changed.notify_all()

    def wait_for_payloads(self, payloads: list[bytes], timeout: float = 15.0) -> list[Message]:
        """Wait until every payload arrived; the messages carrying them (first of each)."""
        with self.changed:
            self.changed.wait_for(
                lambda: set(payloads) <= {m.payload for m in self.messages}, timeout
            )
            got = {m.payload: m for m in reversed(self.messages)}
        missing = [p[:60] for p in payloads if p not in got]
        assert not missing, f"{self.name} did not receive {missing}; log: {self.log[-5:]}"
        return [got[p] for p in payloads]

    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError


# --- subprocess peers -------------------------------------------------------------------------


class _ProcessPeer(Peer):
    process: subprocess.Popen[str] | None = None
    _reader: threading.Thread | None = None

    def _spawn(self, command: list[str], env: dict[str, str] | None = None) -> None:
        self.process = subprocess.Popen(
            command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, **(env or {})},
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        for line in self.process.stdout:
            if not line.endswith("\n"):  # cut off by stop(): a half-written payload is no message
                self.note(f"<cut off> {line[:80]}")
                break
            self.line(line.rstrip("\n"))
        self.note("<exited>")

    def line(self, line: str) -> None:
        self.note(line)

    def stop(self) -> None:
        process = self.process
        if process is None:
            return
        if process.poll() is None:
            with contextlib.suppress(OSError):
                assert process.stdin is not None
                process.stdin.close()
            process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
        if self._reader is not None:
            self._reader.join(timeout=10)
        self.process = None


class MosquittoSub(_ProcessPeer):
    """``mosquitto_sub -c -q 1 -i ID``: flags from its debug log, payloads from ``-F``."""

    _PUBLISH = re.compile(r"received PUBLISH \(d(\d), q(\d), r(\d), m\d+, '([^']*)'")
    _flags: list[tuple[bool, int, bool]] = []

    def start(self) -> None:
        t = self.target
        self._flags = []
        command = [
            "mosquitto_sub", "-h", t.host, "-p", str(t.port), "--cafile", str(t.ca),
            "--cert", str(t.cert), "--key", str(t.key), "--tls-version", "tlsv1.2",
            "-V", "mqttv311", "-i", t.client_id, "-c", "-q", "1", "-k", str(t.keepalive_s),
            "-t", t.topic, "-d", "-F", "MSG %t %x",
        ]  # fmt: skip
        if t.username:
            command += ["-u", t.username]
        self._spawn(command)

    def line(self, line: str) -> None:
        super().line(line)
        if match := self._PUBLISH.search(line):
            dup, qos, retain, _ = match.groups()
            self._flags.append((dup == "1", int(qos), retain == "1"))
        elif line.startswith("MSG "):
            _, topic, hexpayload = line.split(" ", 2)
            dup, qos, retain = self._flags.pop(0) if self._flags else (None, None, None)
            self.received(Message(topic, bytes.fromhex(hexpayload), qos, dup, retain))


class MqttJs(_ProcessPeer):
    """MQTT.js 5 in Node (``peers/mqttjs_subscriber.js``)."""

    def start(self) -> None:
        t = self.target
        env = {
            "MQTTJS_MODULE": str(MQTTJS),
            "MQTT_HOST": t.host,
            "MQTT_PORT": str(t.port),
            "MQTT_CLIENT_ID": t.client_id,
            "MQTT_TOPIC": t.topic,
            "MQTT_CA": str(t.ca),
            "MQTT_CERT": str(t.cert),
            "MQTT_KEY": str(t.key),
            "MQTT_USERNAME": t.username or "",
        }
        self._spawn(["node", str(MQTTJS_SCRIPT)], env)

    def line(self, line: str) -> None:
        super().line(line)
        with contextlib.suppress(ValueError):
            record = json.loads(line)
            if isinstance(record, dict) and record.get("event") == "message":
                self.received(
                    Message(
                        record["topic"],
                        base64.b64decode(record["payload"]),
                        record["qos"],
                        record["dup"],
                        record["retain"],
                    )
                )


# --- paho (threads) ---------------------------------------------------------------------------


class Paho(Peer):
    client: paho.Client | None = None

    def make_client(self) -> paho.Client:
        t = self.target
        client = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=t.client_id,
            clean_session=t.clean_session,
            protocol=paho.MQTTv311,
        )
        client.tls_set_context(t.context())
        if t.username:
            client.username_pw_set(t.username)
        client.reconnect_delay_set(1, 2)
        return client

    def start(self) -> None:
        t = self.target
        client = self.client = self.make_client()

        def on_connect(c: paho.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
            self.note(f"CONNACK {reason}")
            if not reason.is_failure and t.topic:
                c.subscribe(t.topic, qos=t.qos)

        def on_message(c: paho.Client, userdata: Any, msg: paho.MQTTMessage) -> None:
            self.received(
                Message(msg.topic, bytes(msg.payload), msg.qos, bool(msg.dup), msg.retain)
            )

        client.on_connect = on_connect
        client.on_message = on_message
        client.connect(t.host, t.port, keepalive=t.keepalive_s)
        client.loop_start()

    def stop(self) -> None:
        if self.client is not None:
            self.client.disconnect()
            self.client.loop_stop()
            self.client = None

    def go_silent(self) -> None:
        """Stop the network loop without closing: no PINGREQ, no packet, the socket open."""
        assert self.client is not None
        self.client.loop_stop()


# --- asyncio clients, each in its own thread and loop -----------------------------------------


class _AsyncPeer(Peer):
    _thread: threading.Thread | None = None
    _loop: asyncio.AbstractEventLoop | None = None
    _stop: asyncio.Event | None = None
    _ready: threading.Event | None = None

    def start(self) -> None:
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        assert self._ready.wait(15), f"{self.name}: its event loop did not start"

    def _run(self) -> None:
        async def main() -> None:
            self._loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()
            assert self._ready is not None
            self._ready.set()
            try:
                await self.session(self._stop)
            except Exception as exc:
                self.note(f"<error> {type(exc).__name__}: {exc}")

        asyncio.run(main())

    async def session(self, stop: asyncio.Event) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None and not self._loop.is_closed():
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            self._thread.join(timeout=15)
            assert not self._thread.is_alive(), f"{self.name} did not stop"
        self._thread = None


async def _until(stop: asyncio.Event, receiving: Callable[[], Any]) -> None:
    """Run ``receiving()`` until ``stop`` is set."""
    task = asyncio.ensure_future(receiving())
    stopper = asyncio.ensure_future(stop.wait())
    await asyncio.wait([task, stopper], return_when=asyncio.FIRST_COMPLETED)
    for pending in (task, stopper):
        pending.cancel()
    await asyncio.gather(task, stopper, return_exceptions=True)
    if task.done() and not task.cancelled() and task.exception() is not None:
        raise task.exception()


class Amqtt(_AsyncPeer):
    """amqtt's MQTTClient (it cannot pin TLS 1.2, and negotiates it with this broker)."""

    async def session(self, stop: asyncio.Event) -> None:
        from amqtt.client import MQTTClient

        t = self.target
        client = MQTTClient(
            client_id=t.client_id,
            config={
                "keep_alive": t.keepalive_s,
                "cleansession": False,
                "auto_reconnect": False,
                "connection": {
                    "cafile": str(t.ca),
                    "certfile": str(t.cert),
                    "keyfile": str(t.key),
                },
            },
        )
        await client.connect(f"mqtts://{t.host}:{t.port}/", cleansession=False, cafile=str(t.ca))
        self.note("connected")
        await client.subscribe([(t.topic, 1)])

        async def receive() -> None:
            while True:
                message = await client.deliver_message()
                if message is None:
                    continue
                packet = message.publish_packet
                self.received(
                    Message(
                        message.topic,
                        bytes(message.data or b""),
                        message.qos,
                        bool(packet.dup_flag) if packet is not None else None,
                        message.retain,
                    )
                )

        try:
            await _until(stop, receive)
        finally:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(client.disconnect(), 5)


class Aiomqtt(_AsyncPeer):
    async def session(self, stop: asyncio.Event) -> None:
        import aiomqtt

        t = self.target
        async with aiomqtt.Client(
            t.host,
            t.port,
            identifier=t.client_id,
            clean_session=False,
            protocol=aiomqtt.ProtocolVersion.V311,
            tls_context=t.context(),
            username=t.username,
            keepalive=t.keepalive_s,
        ) as client:
            self.note("connected")
            await client.subscribe(t.topic, qos=1)

            async def receive() -> None:
                async for message in client.messages:
                    payload = message.payload
                    data = payload if isinstance(payload, bytes) else str(payload).encode()
                    self.received(
                        Message(str(message.topic), data, message.qos, None, message.retain)
                    )

            await _until(stop, receive)


class Gmqtt(_AsyncPeer):
    """gmqtt on its default protocol, MQTT 5: the broker's CONNACK 1 makes it fall back."""

    async def session(self, stop: asyncio.Event) -> None:
        import gmqtt

        t = self.target
        client = gmqtt.Client(t.client_id, clean_session=False)
        client.set_config({"reconnect_retries": 3, "reconnect_delay": 1})
        if t.username:
            client.set_auth_credentials(t.username)

        def on_message(c: Any, topic: str, payload: bytes, qos: int, properties: Any) -> int:
            dup = properties.get("dup") if isinstance(properties, dict) else None
            retain = properties.get("retain") if isinstance(properties, dict) else None
            self.received(
                Message(topic, payload, qos, bool(dup) if dup is not None else None, retain)
            )
            return 0

        client.on_message = on_message
        await client.connect(t.host, t.port, ssl=t.context(), keepalive=t.keepalive_s)
        self.note(f"connected with protocol version {client._connection_state.protocol_version}")
        client.subscribe(t.topic, qos=1)
        try:
            await stop.wait()
        finally:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(client.disconnect(), 5)


PEERS: dict[str, type[Peer]] = {
    "mosquitto_sub": MosquittoSub,
    "paho": Paho,
    "amqtt": Amqtt,
    "aiomqtt": Aiomqtt,
    "gmqtt": Gmqtt,
    "mqttjs": MqttJs,
}
# What each peer needs outside Python (pytest.mark.external_tool).
EXTERNAL = {
    "mosquitto_sub": ("mosquitto_sub",),
    "mqttjs": ("node", ".peers/node/node_modules/mqtt"),
}
