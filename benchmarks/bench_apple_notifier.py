"""Notifier throughput against a plain aiohttp client loop, in the same run.

A minimal aiohttp receiver runs over HTTPS (trustme certificate) in its own process on
127.0.0.1. The same notification bodies are POSTed (a) by a plain aiohttp ClientSession loop
and (b) by simulators.apple.notifier.Notifier.deliver(), at the same concurrency. Prints
notifications/s for both and the ratio (target: notifier >= 0.8 x plain loop).

    python benchmarks/bench_apple_notifier.py [--count 3000] [--concurrency 1 16] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
from https_receiver import receiver

from simulators.apple.models import Notification
from simulators.apple.notifier import Notifier, Receiver
from simulators.clock import Clock
from simulators.evidence import Recorder
from simulators.pki import PKI

TOKEN = "bench-token"


def bodies(count: int) -> list[Notification]:
    example = json.loads(
        (
            Path(__file__).resolve().parents[1]
            / "fixtures/apple/examples/asset-management-associate.json"
        ).read_text()
    )
    base = Notification.model_validate(example)
    return [base.model_copy(update={"notificationId": f"bench-{i}"}) for i in range(count)]


async def run_concurrently(
    count: int, concurrency: int, one: Callable[[int], Awaitable[None]]
) -> float:
    queue = list(range(count))

    async def worker() -> None:
        while queue:
            await one(queue.pop())

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return count / (time.perf_counter() - started)


async def plain_loop(url: str, ca: str, notes: list[Notification], concurrency: int) -> float:
    import ssl

    payloads = [json.dumps(n.to_wire()).encode() for n in notes]
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
    connector = aiohttp.TCPConnector(ssl=ssl.create_default_context(cafile=ca), limit=32)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def one(i: int) -> None:
            async with session.post(url, data=payloads[i], headers=headers) as r:
                await r.read()
                assert r.status == 200

        return await run_concurrently(len(notes), concurrency, one)


async def notifier_loop(url: str, ca: str, notes: list[Notification], concurrency: int) -> float:
    clock = Clock()
    notifier = Notifier(Receiver(url, TOKEN, (ca,)), clock, Recorder(clock))
    await notifier.start()

    async def one(i: int) -> None:
        delivery = await notifier.deliver(notes[i])
        assert delivery.state.value == "delivered"

    try:
        return await run_concurrently(len(notes), concurrency, one)
    finally:
        await notifier.close()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--count", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        pki = PKI.load_or_create(Path(tmp))
        notes = bodies(args.count)
        with receiver(tmp, "POST", "/notify", 200, TOKEN) as url:
            for concurrency in args.concurrency:
                asyncio.run(plain_loop(url, str(pki.ca), notes[:200], concurrency))  # warm-up
                plain, ours = [], []
                for _ in range(args.rounds):  # interleaved, so drift hits both alike
                    plain.append(asyncio.run(plain_loop(url, str(pki.ca), notes, concurrency)))
                    ours.append(asyncio.run(notifier_loop(url, str(pki.ca), notes, concurrency)))
                p, o = statistics.median(plain), statistics.median(ours)
                print(
                    f"concurrency {concurrency:>2}: plain aiohttp loop {p:8.0f} notifications/s, "
                    f"notifier {o:8.0f} notifications/s, ratio {o / p:.2f} (target >= 0.80)"
                )


if __name__ == "__main__":
    main()
