"""End-to-end latency of one 10,000-item callback batch, against a plain aiohttp PUT of the same
body, in the same run.

A minimal aiohttp receiver runs over HTTPS (trustme certificate) in its own process on
127.0.0.1 and answers 204 after reading the body. Each round:

- ours: 10,000 ``notifications`` items (made by devices beforehand) are put in the callback
  channel's queue; the batch is formed, serialized into one NotificationMessage and PUT with
  the registered headers, and the 204 is read;
- baseline: a plain ``aiohttp.ClientSession.put`` of the same bytes to the same receiver.

Rounds alternate, so drift hits both alike. Prints the median of each and their ratio (target:
ours <= 1.3 x the plain PUT): ours runs from the items being queued to the receiver's answer
read; the queueing of the items before, and the acknowledgement and logging after, are
printed apart.

    python benchmarks/bench_pelion_batch.py [--rounds 15] [--items 10000]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import ssl
import statistics
import tempfile
import time
from pathlib import Path

import aiohttp
from https_receiver import receiver

from simulators.clock import Clock
from simulators.evidence import Recorder
from simulators.pelion.delivery import Batch
from simulators.pelion.models import Event
from simulators.pelion.records import AttemptLog
from simulators.pelion.simulator import DeliveryAttempt, PelionConfig, PelionSimulator
from simulators.pki import PKI

KEY = "ak_bench"
EP = "0172b9ba5409000000000001001117f5"
TARGET = 1.3


def events(count: int, offset: int) -> list[Event]:
    """What devices produced: text/plain counter notifications."""
    return [
        Event(
            "notifications",
            {
                "ep": EP,
                "path": "/3200/0/5501",
                "ct": "text/plain",
                "payload": base64.b64encode(str(offset + i).encode()).decode(),
                "max-age": 60,
            },
        )
        for i in range(count)
    ]


class _TimedLog(AttemptLog):
    """The attempt log, noting the real time at which a batch attempt is acknowledged and
    logged (rather than when a waiting caller would wake up)."""

    logged: asyncio.Event | None = None
    logged_at = 0.0

    def add(self, attempt: DeliveryAttempt, batch: Batch, body: bytes | None = None) -> None:
        super().add(attempt, batch, body)
        self.logged_at = time.perf_counter()
        if self.logged is not None:
            self.logged.set()


class _Timed(PelionSimulator):
    """The simulator with a :class:`_TimedLog`."""

    attempt_log_type = _TimedLog

    @property
    def timed(self) -> _TimedLog:
        assert isinstance(self.attempt_log, _TimedLog)
        return self.attempt_log


async def measure(url: str, pki: PKI, rounds: int, items: int) -> None:
    clock = Clock()
    config = PelionConfig(api_key=KEY, cafiles=(str(pki.ca),))
    sim = _Timed(clock, Recorder(clock), pki.server_context(), config)
    await sim.start()
    context = ssl.create_default_context(cafile=str(pki.ca))
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context))
    headers = {"Content-Type": "application/json", "x-callback-secret": "bench"}
    ours: list[float] = []
    plain: list[float] = []
    queueing: list[float] = []
    exchanges: list[float] = []  # the PUT alone, as the simulator timed it
    bookkeeping: list[float] = []  # after the answer: acknowledged, logged, evidenced
    size = 0

    async def one_of_ours(round_: int) -> None:
        batch = events(items, round_ * items)
        sim.timed.logged = asyncio.Event()
        started = time.perf_counter()
        await sim.queue(batch)
        queued, queued_real = time.perf_counter(), clock.real()
        await asyncio.wait_for(sim.timed.logged.wait(), 30)
        attempt = sim.attempts()[-1]
        assert attempt.succeeded and attempt.items == items, attempt
        if round_ >= 2:
            answered = attempt.started_real_s + attempt.elapsed_real_s  # the clock's real time
            queueing.append(queued - started)
            ours.append(answered - queued_real)
            exchanges.append(attempt.elapsed_real_s)
            bookkeeping.append(sim.timed.logged_at - queued - (answered - queued_real))

    async def one_plain(round_: int) -> None:
        nonlocal size
        payload = _same_body(events(items, round_ * items))  # a fresh body, as ours is
        size = len(payload)
        started = time.perf_counter()
        async with session.put(url, data=payload, headers=headers) as response:
            await response.read()
            assert response.status == 204
        if round_ >= 2:
            plain.append(time.perf_counter() - started)

    try:
        await sim.register_callback(url, {"x-callback-secret": "bench"})
        for round_ in range(rounds + 2):  # two warm-up rounds; then who goes first alternates
            first, second = (one_of_ours, one_plain) if round_ % 2 else (one_plain, one_of_ours)
            await first(round_)
            await second(round_)
    finally:
        await session.close()
        await sim.stop()
    o, p, q = statistics.median(ours), statistics.median(plain), statistics.median(queueing)
    print(f"batch of {items} items, {size} B, median of {rounds} rounds:")
    print(f"  plain aiohttp PUT of the same body:  {p * 1000:7.2f} ms")
    print(f"  ours, queued -> answered:            {o * 1000:7.2f} ms "
          "(batch formed, serialized, PUT with its headers, 204 read)")  # fmt: skip
    print(f"    of which the PUT and its answer:   {statistics.median(exchanges) * 1000:7.2f} ms")
    print(f"  then acknowledged, logged, evidenced: "
          f"{statistics.median(bookkeeping) * 1000:.2f} ms (not in the ratio)")  # fmt: skip
    print(f"  (queueing the {items} items beforehand: {q * 1000:.2f} ms; not in the ratio)")
    print(f"ratio={o / p:.2f} target=<={TARGET}")


def _same_body(batch: list[Event]) -> bytes:
    """The NotificationMessage the simulator sends for ``batch`` (default serialization)."""
    from simulators.pelion.models import QueuedItem, serialize

    return serialize(QueuedItem(i, event, "", 0.0) for i, event in enumerate(batch))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--items", type=int, default=10_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        pki = PKI.load_or_create(Path(tmp))
        with receiver(tmp, "PUT", "/cb", 204) as url:
            asyncio.run(measure(url, pki, args.rounds, args.items))


if __name__ == "__main__":
    main()
