"""Notifier throughput against a plain aiohttp client loop, in the same run.

A minimal aiohttp receiver runs over HTTPS (trustme certificate) in its own process on
127.0.0.1. The same notifications (pydantic models) are POSTed (a) by a plain aiohttp
ClientSession loop that serializes each with json.dumps while timed, and (b) by
simulators.apple.notifier.Notifier.deliver(), at the same concurrency. Prints, per
concurrency, notifications/s for both, the client's CPU time per notification while timed
(steadier than the rates on a shared machine) and the ratio of the medians; last,
``ratio=<the lowest ratio> target=>=0.95`` (the notifier keeps pace with aiohttp at every
concurrency).

    python benchmarks/bench_apple_notifier.py [--count 3000] [--concurrency 1 16] [--rounds 3]

``--only notifier`` (or ``plain``) runs one side alone, e.g. under a sampling profiler:
``py-spy record -f raw -o notifier.txt -- python benchmarks/bench_apple_notifier.py --only
notifier --concurrency 16 --rounds 6``.
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
TARGET = 0.95


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
) -> tuple[float, float]:
    """Notifications/s, and the client's CPU seconds per notification, while timed."""
    queue = list(range(count))

    async def worker() -> None:
        while queue:
            await one(queue.pop())

    started, cpu = time.perf_counter(), time.process_time()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return count / (time.perf_counter() - started), (time.process_time() - cpu) / count


async def plain_loop(
    url: str, ca: str, notes: list[Notification], concurrency: int
) -> tuple[float, float]:
    import ssl

    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
    connector = aiohttp.TCPConnector(ssl=ssl.create_default_context(cafile=ca), limit=32)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def one(i: int) -> None:
            # Like for like: both sides get the same notifications as models and serialize
            # each while timed (json.dumps, as a plain client would).
            data = json.dumps(notes[i].to_wire()).encode()
            async with session.post(url, data=data, headers=headers) as r:
                await r.read()
                assert r.status == 200

        return await run_concurrently(len(notes), concurrency, one)


async def notifier_loop(
    url: str, ca: str, notes: list[Notification], concurrency: int
) -> tuple[float, float]:
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
    parser.add_argument("--only", choices=["plain", "notifier"], help="run one side alone")
    args = parser.parse_args()
    loops = {"plain": plain_loop, "notifier": notifier_loop}
    if args.only:
        loops = {args.only: loops[args.only]}
    ratios = []
    with tempfile.TemporaryDirectory() as tmp:
        pki = PKI.load_or_create(Path(tmp))
        notes = bodies(args.count)
        with receiver(tmp, "POST", "/notify", 200, TOKEN) as url:
            for concurrency in args.concurrency:
                asyncio.run(plain_loop(url, str(pki.ca), notes[:200], concurrency))  # warm-up
                runs: dict[str, list[tuple[float, float]]] = {name: [] for name in loops}
                for _ in range(args.rounds):  # interleaved, so drift hits both alike
                    for name, loop in loops.items():
                        runs[name].append(asyncio.run(loop(url, str(pki.ca), notes, concurrency)))
                rate = {name: statistics.median(r for r, _ in rows) for name, rows in runs.items()}
                cpu = {name: statistics.median(c for _, c in rows) for name, rows in runs.items()}
                figures = ", ".join(
                    f"{name} {rate[name]:6.0f} notifications/s ({cpu[name] * 1e6:5.1f} µs CPU each)"
                    for name in loops
                )
                if args.only:
                    print(f"concurrency {concurrency:>2}: {figures}")
                    continue
                ratios.append(rate["notifier"] / rate["plain"])
                print(
                    f"concurrency {concurrency:>2}: {figures}, "
                    f"ratio {ratios[-1]:.2f} (target >= {TARGET:.2f})"
                )
    if ratios:
        print(f"ratio={min(ratios):.2f} target=>={TARGET}")


if __name__ == "__main__":
    main()
