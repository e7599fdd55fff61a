"""Drain of a full 50,000-item backlog through the callback channel, and the memory of that
full queue.

A minimal aiohttp receiver runs over HTTPS (trustme certificate) in its own process on
127.0.0.1 and answers 204 after reading the body. The simulator's callback channel is held
back by one failed attempt (its back-off) while 50,000 ``notifications`` items fill its queue;
then the clock moves past the back-off and the timer runs until the queue is empty: five
10,000-item batches, each formed, serialized, PUT and acknowledged before the next (the
vendor's rule). Prints items/s (median of the rounds) as a ratio to the 100,000 items/s target
for this 2-core machine, and, measured apart with tracemalloc, the memory of the full queue
(events as the devices made them, queued items and their uids).

    python benchmarks/bench_pelion_drain.py [--rounds 3] [--items 50000]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import statistics
import tempfile
import time
import tracemalloc
from pathlib import Path

from https_receiver import receiver

from simulators.clock import Clock
from simulators.evidence import Recorder
from simulators.faults import FaultKind
from simulators.pelion.models import Event
from simulators.pelion.operations import FailDeliveries, PelionTarget
from simulators.pelion.queue import MAX_ITEMS
from simulators.pelion.simulator import PelionConfig, PelionSimulator
from simulators.pki import PKI

KEY = "ak_bench"
EP = "0172b9ba5409000000000001001117f5"
TARGET_ITEMS_PER_S = 100_000


def events(count: int) -> list[Event]:
    """What devices produced: text/plain counter notifications."""
    return [
        Event(
            "notifications",
            {
                "ep": EP,
                "path": "/3200/0/5501",
                "ct": "text/plain",
                "payload": base64.b64encode(str(i).encode()).decode(),
                "max-age": 60,
            },
        )
        for i in range(count)
    ]


def simulator(pki: PKI) -> PelionSimulator:
    clock = Clock()
    config = PelionConfig(api_key=KEY, cafiles=(str(pki.ca),))
    return PelionSimulator(clock, Recorder(clock), pki.server_context(), config)


async def drain_once(url: str, pki: PKI, items: int) -> tuple[float, int]:
    """Seconds to drain a backlog of ``items``, and how many batches it took."""
    sim = simulator(pki)
    await sim.start()
    try:
        await sim.register_callback(url)
        backlog = events(items)
        # the first attempt fails: the channel backs off
        await FailDeliveries(kind=FaultKind.UNSENT).apply(PelionTarget(sim, sim.api_key))
        await sim.queue(backlog[:1])
        assert await sim.drive(lambda: sim.attempts_total == 1, timeout_real_s=10)
        await sim.queue(backlog[1:])
        state = sim.channel_state()
        assert state is not None and state.queue.queued == items, state
        started = time.perf_counter()
        sim.clock.advance(2.0)  # past the 2 s back-off: the background scheduler sends
        assert await sim.drive(timeout_real_s=60)
        elapsed = time.perf_counter() - started
        sent = [a for a in sim.attempts()[1:] if a.succeeded]
        assert sum(a.items for a in sent) == items, [a.items for a in sent]
        return elapsed, len(sent)
    finally:
        await sim.stop()


async def full_queue_memory(pki: PKI, items: int) -> tuple[int, int]:
    """(current, peak) bytes traced while ``items`` events are made and queued on a WebSocket
    channel without a socket (nothing is sent)."""
    sim = simulator(pki)
    sim.registry.register_websocket(KEY, None, sim.clock.now())
    tracemalloc.start()
    try:
        await sim.queue(events(items))
        current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    state = sim.channel_state()
    assert state is not None and state.queue.queued == items
    return current, peak


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--items", type=int, default=MAX_ITEMS)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        pki = PKI.load_or_create(Path(tmp))
        with receiver(tmp, "PUT", "/cb", 204) as url:
            asyncio.run(drain_once(url, pki, 10_000))  # warm-up
            runs = [asyncio.run(drain_once(url, pki, args.items)) for _ in range(args.rounds)]
        current, peak = asyncio.run(full_queue_memory(pki, args.items))
    seconds = statistics.median(elapsed for elapsed, _ in runs)
    rate = args.items / seconds
    print(f"drain of a {args.items}-item backlog in {runs[0][1]} batches, median of {args.rounds}:")
    print(
        f"  {seconds * 1000:.1f} ms, {rate:,.0f} items/s (target >= {TARGET_ITEMS_PER_S:,} items/s)"
    )
    print(f"  full queue of {args.items} items: {current / 2**20:.1f} MiB held, "
          f"{peak / 2**20:.1f} MiB peak while filling ({current / args.items:.0f} B per item)")  # fmt: skip
    print(f"ratio={rate / TARGET_ITEMS_PER_S:.2f} target=>=1")


if __name__ == "__main__":
    main()
