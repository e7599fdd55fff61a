"""Peak memory of the harness against three hostile floods, against the 500 MB target.

    python benchmarks/bench_hostile_floods.py [--cycles 4000] [--filters 4500] [--posts 60]

The harness process is ``conformance-sim serve apple ivanti pelion`` (the observer and every
vendor's simulators, as a conformance run starts them) in a subprocess on loopback; this
process is the SUT and does its worst, one flood after the other:

1. **MQTT connect/close storm**: ``--cycles`` TLS connections to the broker, each a CONNECT
   with keep-alive 65,535 s, its CONNACK, a DISCONNECT and a close (4 at a time);
2. **refused SUBSCRIBEs**: ``--filters`` SUBSCRIBEs of one 65,000-character topic filter each
   (refused: SUBACK 0x80), 150 per connection, the connections closed after;
3. **observer posts**: ``--posts`` valid records of about 7.9 MB each, spread over the three
   vendors' observer routes (``/apple``, ``/ivanti``, ``/pelion``);
4. **durable sessions**: ``--sessions`` durable sessions (clean session 0) of the SUT's tenant,
   each subscribed at QoS 1 to all its topics, then offline, while the broker's own event
   source publishes ``--events-per-s`` events to the tenant for ``--seconds``: every event is
   queued once per session (this flood runs against its own ``conformance-sim serve ivanti``,
   the one with the event source on).

After each flood it reads the harness's peak resident memory during the flood (VmHWM, reset
before each flood through ``/proc/<pid>/clear_refs`` where the kernel allows it) and what it
still holds (VmRSS). Each flood stops at its count or after ``--seconds`` (90), whichever
comes first. It prints each flood's figures, then the run's peak and, last,
``ratio=<peak / 500 MB> target=<=1``.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from conformance.ivanti.running import SUT_TENANT  # noqa: E402
from simulators.ivanti.broker import tenant_id_for  # noqa: E402
from simulators.mqtt.codec import Decoder, encode  # noqa: E402
from simulators.mqtt.packets import Connect, Disconnect, Subscribe  # noqa: E402

TARGET_MB = 500.0
FILTER_CHARS = 65_000
SUBSCRIBES_PER_CONNECTION = 150
RECORD_BYTES = 7_900_000


@dataclass(frozen=True)
class Memory:
    """The harness's resident memory, in MB: the peak since the last reset, and now."""

    peak_mb: float
    now_mb: float


class Harness:
    """``conformance-sim serve`` in a subprocess, its environment and its memory."""

    def __init__(
        self,
        folder: Path,
        vendors: tuple[str, ...] = ("apple", "ivanti", "pelion"),
        events_per_s: float = 0.0,
    ) -> None:
        env_file = folder / "sim.env"
        self.process = subprocess.Popen(
            [sys.executable, "-m", "conformance.cli", "serve", *vendors,
             "--pki-dir", str(folder / "pki"), "--env-file", str(env_file), "-q",
             "--ivanti-events-per-s", f"{events_per_s:g}"],
            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        ready = threading.Event()
        deadline = time.monotonic() + 60
        while not env_file.exists():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("conformance-sim serve did not start")
            ready.wait(0.1)
        self.env = dict(
            line.removeprefix("export ").split("=", 1)
            for line in env_file.read_text().splitlines()
            if line.startswith("export ")
        )

    def memory(self) -> Memory:
        fields = {}
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            name, _, value = line.partition(":")
            if name in ("VmHWM", "VmRSS"):
                fields[name] = int(value.split()[0]) / 1024
        return Memory(fields["VmHWM"], fields["VmRSS"])

    def reset_peak(self) -> bool:
        """Reset VmHWM to the current RSS (Linux ``clear_refs`` 5); False where not allowed."""
        try:
            Path(f"/proc/{self.process.pid}/clear_refs").write_text("5")
        except OSError:
            return False
        return True

    def settle(self, seconds: float = 3.0) -> None:
        """Let the harness finish what the flood started (TLS closes time out after 2 s)."""
        threading.Event().wait(seconds)

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(15)


def _mqtt_context(env: dict[str, str]) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=env["CONFORMANCE_CA_FILE"])
    context.minimum_version = context.maximum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(
        env["CONFORMANCE_IVANTI_CLIENT_CERT"], env["CONFORMANCE_IVANTI_CLIENT_KEY"]
    )
    return context


def _mqtt_session(
    env: dict[str, str], context: ssl.SSLContext, client_id: str, *, clean: bool = True
) -> ssl.SSLSocket:
    """A TLS connection to the broker with an accepted CONNECT (keep-alive 65,535 s)."""
    address = (env["CONFORMANCE_IVANTI_BROKER_HOST"], int(env["CONFORMANCE_IVANTI_BROKER_PORT"]))
    raw = socket.create_connection(address, timeout=30)
    sock = context.wrap_socket(raw, server_hostname=address[0])
    sock.sendall(encode(Connect(client_id, clean_session=clean, keepalive_s=65_535)))
    decoder = Decoder("client")
    while not decoder.feed(sock.recv(4096)):
        pass
    return sock


def connect_close_storm(env: dict[str, str], cycles: int, seconds: float) -> str:
    context = _mqtt_context(env)
    deadline = time.monotonic() + seconds
    done = 0
    lock = threading.Lock()

    def worker(lane: int) -> None:
        nonlocal done
        for n in range(lane, cycles, 4):
            if time.monotonic() > deadline:
                return
            with _mqtt_session(env, context, f"storm-{n}") as sock:
                sock.sendall(encode(Disconnect()))
            with lock:
                done += 1

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(worker, range(4)))
    return f"{done} connect/close cycles (keep-alive 65,535 s)"


def refused_subscribes(env: dict[str, str], filters: int, seconds: float) -> str:
    context = _mqtt_context(env)
    deadline = time.monotonic() + seconds
    sent = 0
    connections = 0
    while sent < filters and time.monotonic() < deadline:
        with _mqtt_session(env, context, f"greedy-{connections}") as sock:
            connections += 1
            batch = min(SUBSCRIBES_PER_CONNECTION, filters - sent)
            for n in range(batch):
                topic_filter = f"{sent + n}/" + "x" * FILTER_CHARS
                sock.sendall(encode(Subscribe(n % 65_535 + 1, ((topic_filter, 1),))))
            decoder, answered = Decoder("client"), 0
            while answered < batch:
                answered += len(decoder.feed(sock.recv(65_536)))
            sent += batch
            sock.sendall(encode(Disconnect()))
    return (
        f"{sent} refused SUBSCRIBEs of {FILTER_CHARS:,}-character filters "
        f"({sent * FILTER_CHARS / 1e6:.0f} MB) on {connections} connections"
    )


def _record(vendor: str, n: int) -> bytes:
    pad = "x" * RECORD_BYTES
    record = {
        "apple": {"notification": {"notificationId": f"flood-{n}", "notificationType": "X",
                                   "pad": pad}},
        "ivanti": {"topic": f"flood/{n}", "message": {"pad": pad}},
        "pelion": {"kind": "notifications", "item": {"uid": f"flood-{n}", "pad": pad}},
    }[vendor]  # fmt: skip
    return json.dumps(record).encode()


def observer_posts(env: dict[str, str], posts: int, seconds: float) -> str:
    base = env["CONFORMANCE_OBSERVER_URL"]
    deadline = time.monotonic() + seconds
    answers: dict[int, int] = {}
    vendors = ("apple", "ivanti", "pelion")
    for n in range(posts):
        if time.monotonic() > deadline:
            break
        vendor = vendors[n % len(vendors)]
        request = urllib.request.Request(
            f"{base}/{vendor}",
            data=_record(vendor, n),
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=60) as answer:
                status = answer.status
        except urllib.error.HTTPError as refused:
            status = refused.code
        answers[status] = answers.get(status, 0) + 1
    sent = sum(answers.values())
    statuses = ", ".join(f"{count} x {status}" for status, count in sorted(answers.items()))
    return f"{sent} observer posts of {RECORD_BYTES / 1e6:.1f} MB valid records ({statuses})"


def durable_sessions(env: dict[str, str], sessions: int, seconds: float) -> str:
    """``sessions`` durable subscribers of the tenant's every topic, offline, then ``seconds``
    of the event source's publishing (the harness runs with it on)."""
    context = _mqtt_context(env)
    tenant = tenant_id_for(SUT_TENANT)
    filters = (("#", 1), (f"{tenant}/#", 1))  # one of them is the tenant's (its topic style)
    made = 0
    lock = threading.Lock()

    def worker(lane: int) -> None:
        nonlocal made
        for n in range(lane, sessions, 4):
            with _mqtt_session(env, context, f"durable-{n}", clean=False) as sock:
                sock.sendall(encode(Subscribe(1, filters)))
                decoder = Decoder("client")
                while not decoder.feed(sock.recv(4096)):
                    pass
                sock.sendall(encode(Disconnect()))  # offline; the session stays
            with lock:
                made += 1

    started = time.monotonic()
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(worker, range(4)))
    made_in = time.monotonic() - started
    threading.Event().wait(seconds)  # the event source publishes meanwhile, every copy queued
    return (
        f"{made} durable sessions made in {made_in:.0f} s, then {seconds:.0f} s of the event "
        "source's publishing to them (each event queued once per session)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cycles", type=int, default=4_000)
    parser.add_argument("--filters", type=int, default=4_500)
    parser.add_argument("--posts", type=int, default=60)
    parser.add_argument("--sessions", type=int, default=1_000)
    parser.add_argument("--events-per-s", type=float, default=1_000.0)
    parser.add_argument("--seconds", type=float, default=90.0, help="per flood, at most")
    args = parser.parse_args()
    floods: list[tuple[str, Callable[[dict[str, str], int, float], str], int]] = [
        ("mqtt connect/close storm", connect_close_storm, args.cycles),
        ("refused SUBSCRIBEs", refused_subscribes, args.filters),
        ("observer posts", observer_posts, args.posts),
    ]
    with tempfile.TemporaryDirectory() as tmp:
        harness = Harness(Path(tmp))
        try:
            start = harness.memory()
            print(f"harness (conformance-sim serve) at start: {start.now_mb:.0f} MB")
            peak = start.peak_mb
            resettable = True
            for name, flood, count in floods:
                resettable = harness.reset_peak() and resettable
                started = time.perf_counter()
                what = flood(harness.env, count, args.seconds)
                took = time.perf_counter() - started
                harness.settle()
                memory = harness.memory()
                peak = max(peak, memory.peak_mb)
                print(
                    f"{name}: {what} in {took:.1f} s; peak {memory.peak_mb:.0f} MB"
                    + ("" if resettable else " (since start)")
                    + f", still held {memory.now_mb:.0f} MB"
                )
            alive = harness.process.poll() is None
        finally:
            harness.stop()
        # The durable-sessions flood, against a broker whose event source publishes.
        (Path(tmp) / "durable").mkdir()
        broker = Harness(Path(tmp) / "durable", ("ivanti",), args.events_per_s)
        try:
            start = broker.memory()
            resettable = broker.reset_peak()
            started = time.perf_counter()
            what = durable_sessions(broker.env, args.sessions, args.seconds)
            took = time.perf_counter() - started
            memory = broker.memory()
            peak = max(peak, memory.peak_mb)
            print(
                f"durable sessions ({args.events_per_s:g} events/s; broker at start "
                f"{start.now_mb:.0f} MB): {what} in {took:.1f} s; peak {memory.peak_mb:.0f} MB"
                + ("" if resettable else " (since start)")
                + f", still held {memory.now_mb:.0f} MB"
            )
            alive = alive and broker.process.poll() is None
        finally:
            broker.stop()
    print(f"harness peak resident memory: {peak:.0f} MB (target {TARGET_MB:.0f} MB)"
          + ("" if alive else "; the harness died"))  # fmt: skip
    print(f"ratio={peak / TARGET_MB:.2f} target=<=1")


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
