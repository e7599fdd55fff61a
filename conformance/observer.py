"""The observer endpoint (docs/sut-contract.md §4): the SUT reports what it has processed.

``POST {base}/<vendor>`` with one JSON record or an array of records; answers 204. Each record
is checked against the vendor plug-in's record model; a body with an invalid record is refused
with 400 and counted (the checks then say the SUT reported in a shape they cannot read); so is a
record whose text is not Unicode (a lone surrogate, JSON ``"\ud800"``), before it is kept.
Memory stays bounded whatever the SUT sends: a body over :data:`MAX_BODY_BYTES` gets 413, and so
do records past :data:`MAX_RECORDS` or past :data:`MAX_VENDOR_BYTES` (their size in memory,
:func:`footprint`) per vendor; each is counted for the report.

Checks wait on it with a bounded timeout (:meth:`Observer.wait_for`, or
:meth:`Observer.count_reports` for the reports of given items, in whatever order the SUT
processes them).
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import Callable, Hashable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from aiohttp import web
from pydantic import BaseModel, ValidationError

from simulators.adapter import StateChanges, start_site
from simulators.clock import Clock
from simulators.evidence import Recorder
from simulators.network import Reach

Item = TypeVar("Item", bound=Hashable)

__all__ = [
    "MAX_BODY_BYTES",
    "MAX_RECORDS",
    "MAX_VENDOR_BYTES",
    "Observation",
    "Observer",
    "Route",
    "footprint",
]

MAX_BODY_BYTES = 8 * 1024 * 1024
MAX_RECORDS = 200_000  # per vendor
MAX_VENDOR_BYTES = 64 * 1024 * 1024  # per vendor: the records kept, as held in memory
PARSE_IN_THREAD_BYTES = 256 * 1024  # larger bodies are parsed off the event loop


@dataclass(frozen=True)
class Route:
    """One vendor's observer route: the record model, and the keys that link a record to the
    item it reports (the vendor plug-in's ``observer_keys``)."""

    model: type[BaseModel]
    keys: Callable[[Any], tuple[str, ...]] = lambda record: ()


@dataclass(frozen=True)
class Observation:
    vendor: str
    record: Any  # the record as the SUT sent it (a JSON object that passed the model)
    real_s: float


@dataclass
class Refusals:
    """What the observer refused, per reason, with the first message of each."""

    counts: dict[str, int] = field(default_factory=dict)
    first: dict[str, str] = field(default_factory=dict)

    def add(self, reason: str, message: str) -> None:
        self.counts[reason] = self.counts.get(reason, 0) + 1
        self.first.setdefault(reason, message[:500])

    def total(self) -> int:
        return sum(self.counts.values())


@dataclass
class Observer:
    clock: Clock
    recorder: Recorder
    routes: dict[str, Route]
    port: int = 0
    reach: Reach = field(default_factory=Reach)
    observations: dict[str, list[Observation]] = field(default_factory=dict)
    refused: dict[str, Refusals] = field(default_factory=dict)
    max_vendor_bytes: int = MAX_VENDOR_BYTES
    held: dict[str, int] = field(default_factory=dict)  # footprint() of each vendor's records
    changed: StateChanges = field(init=False)  # notified whenever records are kept
    _runner: web.AppRunner | None = None
    _large: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(1))

    def __post_init__(self) -> None:
        self.changed = StateChanges(self.clock)

    @property
    def base_url(self) -> str:
        return self.reach.url("http", self.port)

    async def start(self) -> None:
        app = web.Application(client_max_size=MAX_BODY_BYTES)
        app.router.add_post("/{vendor}", self._receive)
        self._runner = web.AppRunner(app, access_log=None, keepalive_timeout=15.0)
        await self._runner.setup()
        self.port = await start_site(self._runner, self.reach.listen, self.port)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def _refuse(self, vendor: str, reason: str, status: int, message: str) -> web.Response:
        with self.changed:
            self.refused.setdefault(vendor, Refusals()).add(reason, message)
        self.recorder.record(
            "sut", "->", "observer", "observer-refused", f"{vendor} report refused: {message}"
        )
        return web.json_response({"error": message}, status=status)

    async def _receive(self, request: web.Request) -> web.Response:
        vendor = request.match_info["vendor"]
        route = self.routes.get(vendor)
        if route is None:
            known = ", ".join(f"/{name}" for name in self.routes)
            return web.json_response(
                {"error": f"no observer route /{vendor} in this run (routes: {known})"}, status=404
            )
        try:
            raw = await request.read()
        except web.HTTPRequestEntityTooLarge:
            return self._refuse(
                vendor,
                "too-large",
                413,
                f"body over {MAX_BODY_BYTES} bytes: report in smaller posts",
            )
        # The budget is taken before the body is parsed, so that no body can make the observer
        # hold more than the budget even for a moment; it is given back if the body is refused.
        cost = footprint(raw)
        with self.changed:
            held = self.held.get(vendor, 0)
            over = held + cost > self.max_vendor_bytes
            if not over:
                self.held[vendor] = held + cost
        if over:
            return self._refuse(
                vendor,
                "too-much",
                413,
                f"records over {self.max_vendor_bytes} bytes (held in memory) reported in this "
                f"run; this body would take {cost}",
            )
        if len(raw) > PARSE_IN_THREAD_BYTES:
            async with self._large:  # one large body in memory at a time, off the event loop
                parsed = await asyncio.to_thread(_parse, raw, route.model)
        else:
            parsed = _parse(raw, route.model)
        if isinstance(parsed, tuple):
            self._give_back(vendor, cost)
            return self._refuse(vendor, *parsed)
        records = parsed
        now = self.clock.real()
        with self.changed:
            kept = self.observations.setdefault(vendor, [])
            full = len(kept) + len(records) > MAX_RECORDS
            if not full:
                kept.extend(Observation(vendor, r, now) for r in records)
                self.changed.notify_all()
        if full:
            self._give_back(vendor, cost)
            return self._refuse(
                vendor, "too-many", 413, f"more than {MAX_RECORDS} records reported in this run"
            )
        self._record_evidence(vendor, route, records)
        return web.Response(status=204)

    def _give_back(self, vendor: str, cost: int) -> None:
        with self.changed:
            self.held[vendor] -= cost

    def _record_evidence(self, vendor: str, route: Route, records: list[Any]) -> None:
        causes: dict[str | None, list[Any]] = {}
        if len(records) > 1000:  # attribute a sample; the rest are counted on the run timeline
            self.recorder.record(
                "sut", "->", "observer", "observed", f"reported {len(records)} {vendor} records"
            )
        for record in records[:1000]:
            cause = next(filter(None, map(self.recorder.cause_of, route.keys(record))), None)
            causes.setdefault(cause, []).append(record)
        for cause, group in causes.items():
            self.recorder.record(
                "sut",
                "->",
                "observer",
                "observed",
                f"reported {len(group)} processed {vendor} record(s)",
                cause=cause,
                records=[_short(r) for r in group[:5]],
            )

    # Reading (any thread).

    def records(self, vendor: str) -> list[Any]:
        with self.changed:
            return self._records(vendor)

    def arrivals(self, vendor: str) -> list[Observation]:
        """The records with the real time each arrived, in arrival order (any thread)."""
        with self.changed:
            return list(self.observations.get(vendor, ()))

    def wait_for(
        self, vendor: str, predicate: Callable[[list[Any]], bool], timeout: float
    ) -> list[Any]:
        """Block until ``predicate(records)`` holds or ``timeout`` passes; return the records
        (:meth:`StateChanges.wait_for`)."""
        self.changed.wait_for(lambda: predicate(self.records(vendor)), timeout)
        return self.records(vendor)

    def count_reports(
        self,
        vendor: str,
        wanted: Mapping[str, Item],
        keys: Callable[[Any], Iterable[str]],
        timeout: float,
        *,
        more_than: int = 0,
    ) -> dict[Item, int]:
        """How many records report each wanted item, waiting (at most ``timeout``) until every
        item was reported more than ``more_than`` times, in any order. ``wanted`` maps every
        key of an item (e.g. its id, its address) to the item; ``keys(record)`` gives a
        record's keys; a record counts once per item it names. Each wake-up reads only the
        records that arrived since the last one, so waiting for 10,000 items reported one by
        one stays linear."""
        items = set(wanted.values())
        counts: Counter[Item] = Counter()
        scanned = 0

        def done() -> bool:
            nonlocal scanned
            with self.changed:
                kept = self.observations.get(vendor, [])
                for observation in kept[scanned:]:
                    counts.update({wanted[k] for k in keys(observation.record) if k in wanted})
                scanned = len(kept)
            return all(counts[item] > more_than for item in items)

        self.changed.wait_for(done, timeout)
        done()
        return {item: counts[item] for item in items}

    def refusals(self, vendor: str) -> Refusals:
        with self.changed:
            return self.refused.get(vendor, Refusals())

    def count(self) -> int:
        """Records kept, every vendor."""
        with self.changed:
            return sum(len(kept) for kept in self.observations.values())

    def _records(self, vendor: str) -> list[Any]:
        return [o.record for o in self.observations.get(vendor, ())]


def _parse(raw: bytes, model: type[BaseModel]) -> list[Any] | tuple[str, int, str]:
    """The records of a body, or why it is refused: ``(reason, status, message)``."""
    try:
        body = json.loads(raw)
    except RecursionError:
        return "too-deep", 400, "JSON nested too deeply"
    except ValueError:
        return "not-json", 400, "body is not JSON"
    records = body if isinstance(body, list) else [body]
    try:
        index = _not_unicode(records) if b"\\u" in raw or b"\xed" in raw else None
    except RecursionError:
        return "too-deep", 400, "JSON nested too deeply"
    if index is not None:
        return (
            "invalid-text",
            400,
            f'record {index}: a string with a lone surrogate (e.g. "\\ud800"): not Unicode text',
        )
    for index, record in enumerate(records):
        if not isinstance(record, dict):
            return "not-object", 400, f"record {index} is not a JSON object"
        try:
            model.model_validate(record)
        except ValidationError as exc:
            detail = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or 'record'}: {e['msg']}"
                for e in exc.errors()[:3]
            )
            return "invalid-record", 400, f"record {index}: {detail}"
    return records


def _not_unicode(records: list[Any]) -> int | None:
    """The index of the first record with a lone surrogate in a key or a string (JSON lets
    ``"\\ud800"`` through; no UTF-8 encoder does), else None."""
    try:
        json.dumps(records, ensure_ascii=False).encode()
    except UnicodeEncodeError:
        pass
    else:
        return None
    for index, record in enumerate(records):
        try:
            json.dumps(record, ensure_ascii=False).encode()
        except UnicodeEncodeError:
            return index
    return None


# What json.loads makes of a body, per byte that opens it, at most (CPython 3.11+, 64-bit): an
# object is a dict (184 bytes with its first keys), an array a list (88 as it grows, a slot), a
# string 49 bytes and its characters (two quotes; a new key also grows its dict), a value a
# slot of its container and, for a number, a float (24; the last of a container has no comma,
# its container's charge covers it).
_PER_BRACE, _PER_BRACKET, _PER_QUOTE, _PER_COMMA = 184, 96, 24, 32


def footprint(raw: bytes) -> int:
    """The memory, in bytes, the records of JSON body ``raw`` take once parsed, estimated from
    the body alone (so it is known before parsing) and meant as an upper bound: its length,
    plus the objects its braces, brackets, quotes and commas make. A body of small objects is
    charged several times its length (about twice what they take), one long string about its
    length."""
    return (
        len(raw)
        + _PER_BRACE * raw.count(b"{")
        + _PER_BRACKET * raw.count(b"[")
        + _PER_QUOTE * raw.count(b'"')
        + _PER_COMMA * raw.count(b",")
    )


def _short(record: Any) -> Any:
    text = json.dumps(record)
    return record if len(text) <= 300 else text[:300] + "…"
