"""Ivanti broker throughput against mosquitto, in the same run, and the 3-hour retention
scenario's real time.

QoS 1 end to end over mutual TLS 1.2 with ~500-byte JSON events: one paho-mqtt publisher (the
tenant's event-source identity, max 20 in flight) and one paho-mqtt durable subscriber (the SUT's
identity, clean session off, QoS 1), both in this process, against (a) our broker in its own
process and (b) Debian's mosquitto started here on 127.0.0.1 with a config written to a temp
folder (TLS 1.2, require_certificate, the same CA and server certificate). Rounds are
interleaved so machine drift hits both alike. Prints messages/s for both, our broker's CPU time
per message (from /proc, goal <= 0.1 ms), the retention scenario's real seconds, and last
``ratio=<ours/mosquitto> target=>=0.9``.

    python benchmarks/bench_ivanti_broker.py [--count 5000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import multiprocessing
import os
import shutil
import socket
import ssl
import statistics
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from conformance.ports import spare_port
from simulators.clock import Clock
from simulators.evidence import Recorder
from simulators.ivanti.broker import IvantiBroker
from simulators.loop import LoopThread
from simulators.pki import PKI

TICKS = os.sysconf("SC_CLK_TCK")


def serve(pki_dir: str, out: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    """Our broker, alone in this process."""

    async def main() -> None:
        pki = PKI.load_or_create(Path(pki_dir))
        clock = Clock()
        broker = IvantiBroker(clock, Recorder(clock), pki, impostors=False)
        tenant = broker.add_tenant("bench")
        sut = broker.login(tenant, "sut")
        source = broker.event_source(tenant)
        await broker.start()
        out.put(
            {
                "port": broker.port,
                "topic": tenant.topic("device_check_in"),
                "filter": f"{tenant.prefix}device/#",
                "sub": [str(sut.cert.cert), str(sut.cert.key)],
                "pub": [str(source.cert.cert), str(source.cert.key)],
            }
        )
        await asyncio.Event().wait()

    asyncio.run(main())


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime + stime


def start_mosquitto(pki: PKI, folder: Path) -> tuple[subprocess.Popen[bytes], int]:
    port = spare_port()
    config = folder / "mosquitto.conf"
    config.write_text(
        f"listener {port} 127.0.0.1\n"
        f"cafile {pki.ca}\ncertfile {pki.server.cert}\nkeyfile {pki.server.key}\n"
        "require_certificate true\ntls_version tlsv1.2\nallow_anonymous true\n"
        "persistence false\nmax_queued_messages 0\nlog_dest none\n"
        # Run as whoever runs this (as root it would switch to "mosquitto", who cannot read
        # the keys in our private temp folder).
        f"user {getpass.getuser()}\n"
    )
    process = subprocess.Popen(["mosquitto", "-c", str(config)])
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return process, port
        except OSError:
            threading.Event().wait(0.05)
    process.kill()
    raise RuntimeError("mosquitto did not start")


def context(pki: PKI, cert: str, key: str) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(pki.ca))
    ctx.minimum_version = ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(cert, key)
    return ctx


def client(client_id: str, ctx: ssl.SSLContext, *, clean: bool) -> paho.Client:
    c = paho.Client(
        CallbackAPIVersion.VERSION2,
        client_id=client_id,
        clean_session=clean,
        protocol=paho.MQTTv311,
    )
    c.tls_set_context(ctx)
    return c


def payloads(count: int) -> list[bytes]:
    device = {
        "compliant": True, "quarantined": False, "blocked": False, "compromised": False,
        "status": "ACTIVE", "lastCheckInTime": 1582796171062, "registrationTime": 1582608427870,
        "identifier": "f2e01873c6d96d87f1a34ff72e0e4143e42ee089", "macAddress": "74:81:14:d6:f5:b7",
        "manufacturer": "Apple Inc.", "model": "iPad5,3", "os": "IOS", "osVersion": "12.2",
        "serialNumber": "DMPPK6YVG5VT", "userId": "user@example.com",
        "userUuid": "5159964d-95a7-466f-9677-1b90877f045f",
        "deviceGuid": "1d71e131-0487-4d1d-9a0d-89f2bd1a888d",
    }  # fmt: skip
    out = []
    for i in range(count):
        event = {
            "timestamp": 1582796173229 + i,
            "eventType": "device.check_in",
            "devices": [device],
        }
        out.append(json.dumps(event, separators=(",", ":")).encode())
    return out


def run_once(pki: PKI, port: int, info: dict[str, Any], bodies: list[bytes], tag: str) -> float:
    """Messages per second, first publish to last delivery."""
    done = threading.Event()
    subscribed = threading.Event()
    received = 0
    started = 0.0

    def on_message(c: paho.Client, userdata: Any, msg: paho.MQTTMessage) -> None:
        nonlocal received
        received += 1
        if received == len(bodies):
            done.set()

    def on_subscribe(c: paho.Client, *args: Any) -> None:
        subscribed.set()

    def on_connect(c: paho.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        c.subscribe(info["filter"], qos=1)

    sub = client(f"bench-sub-{tag}", context(pki, *info["sub"]), clean=False)
    sub.on_message, sub.on_subscribe, sub.on_connect = on_message, on_subscribe, on_connect
    sub.connect("127.0.0.1", port, keepalive=60)
    sub.loop_start()
    assert subscribed.wait(10), "the subscriber did not subscribe"
    pub = client(f"bench-pub-{tag}", context(pki, *info["pub"]), clean=True)
    pub.max_inflight_messages_set(20)
    pub.max_queued_messages_set(0)
    pub.connect("127.0.0.1", port, keepalive=60)
    pub.loop_start()
    try:
        started = time.perf_counter()
        for body in bodies:
            pub.publish(info["topic"], body, qos=1)
        assert done.wait(120), f"only {received} of {len(bodies)} delivered"
        return len(bodies) / (time.perf_counter() - started)
    finally:
        for c in (pub, sub):
            c.disconnect()
            c.loop_stop()


def retention_scenario(pki_dir: Path, events: int = 100) -> float:
    """Real seconds for: a durable paho subscriber away, events published, 2 h, more events,
    1 h 1 s (the first ones expire), reconnect and receive the later ones."""
    pki = PKI.load_or_create(pki_dir)
    clock = Clock()
    loop = LoopThread("bench-retention")
    broker = IvantiBroker(clock, Recorder(clock), pki, impostors=False)
    tenant = broker.add_tenant("retention")
    login = broker.login(tenant, "sut")
    loop.run(broker.start())
    ctx = context(pki, str(login.cert.cert), str(login.cert.key))
    got: list[bytes] = []
    all_in = threading.Event()
    subscribed = threading.Event()

    def connect() -> paho.Client:
        c = client("retained", ctx, clean=False)

        def on_message(cl: paho.Client, userdata: Any, msg: paho.MQTTMessage) -> None:
            got.append(bytes(msg.payload))
            if len(got) == events:
                all_in.set()

        c.on_message = on_message
        c.on_subscribe = lambda *a: subscribed.set()
        c.connect("127.0.0.1", broker.port)
        c.subscribe(f"{tenant.prefix}device/#", qos=1)
        c.loop_start()
        return c

    started = time.perf_counter()
    try:
        c = connect()
        assert subscribed.wait(10)
        c.disconnect()
        c.loop_stop()
        broker.server.wait_for(lambda cs: not [v for v in cs if v.open], 10)
        for _ in range(events):
            loop.run(broker.publish(tenant, "device_check_in"))
        clock.advance(2 * 3600)
        later = [loop.run(broker.publish(tenant, "device_wiped")).payload for _ in range(events)]
        clock.advance(3600 + 1)
        c = connect()
        assert all_in.wait(30), f"{len(got)} of {events} delivered"
        assert got == later
        c.disconnect()
        c.loop_stop()
        return time.perf_counter() - started
    finally:
        loop.run(broker.stop())
        loop.stop()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--count", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    if shutil.which("mosquitto") is None:
        raise SystemExit("needs mosquitto: run .ci/install-peers")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        pki = PKI.load_or_create(folder / "pki")
        queue: multiprocessing.Queue[dict[str, Any]] = multiprocessing.Queue()
        ours_process = multiprocessing.Process(
            target=serve, args=(str(folder / "pki"), queue), daemon=True
        )
        ours_process.start()
        info = queue.get(timeout=60)
        assert ours_process.pid is not None
        mosquitto, mosquitto_port = start_mosquitto(pki, folder)
        bodies = payloads(args.count)
        size = statistics.mean(len(b) for b in bodies)
        try:
            run_once(pki, info["port"], info, bodies[:500], "warm")  # warm-up, both
            run_once(pki, mosquitto_port, info, bodies[:500], "warm")
            ours, theirs, cpu = [], [], []
            for round_ in range(args.rounds):
                before = cpu_seconds(ours_process.pid)
                ours.append(run_once(pki, info["port"], info, bodies, f"r{round_}"))
                cpu.append((cpu_seconds(ours_process.pid) - before) / args.count * 1000)
                theirs.append(run_once(pki, mosquitto_port, info, bodies, f"r{round_}"))
        finally:
            mosquitto.terminate()
            mosquitto.wait(10)
            ours_process.terminate()
        o, m = statistics.median(ours), statistics.median(theirs)
        print(
            f"{args.count} QoS 1 messages of {size:.0f} B over mutual TLS 1.2, paho publisher and durable subscriber, {args.rounds} rounds"
        )
        print(f"our broker:  {o:8.0f} msgs/s (rounds: {', '.join(f'{x:.0f}' for x in ours)})")
        print(f"mosquitto:   {m:8.0f} msgs/s (rounds: {', '.join(f'{x:.0f}' for x in theirs)})")
        print(
            f"our broker CPU: {statistics.median(cpu):.3f} ms/msg (goal <= 0.1; rounds: {', '.join(f'{x:.3f}' for x in cpu)})"
        )
        seconds = retention_scenario(folder / "pki")
        print(f"3-hour retention scenario (100 expired, 100 delivered): {seconds:.2f} s real")
        print(f"ratio={o / m:.2f} target=>=0.9")


if __name__ == "__main__":
    main()
