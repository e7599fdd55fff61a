"""Run-wide facts of a listener's connections, tallied as each packet goes by: no I/O.

The packet log (:mod:`simulators.mqtt.packetlog`) keeps the latest connections only, so a check
that judged the whole run on it could be blinded: a client that published once to an event topic
and then made thousands of short connections would push that connection out of the log. These
tallies are updated for every connection, whatever the log keeps, and stay bounded: counters,
the first example of each finding, and per-connection state for live connections only (the
listener bounds those). The same idea as the Pelion simulator's ``ForgottenConnections``, here
kept for every connection from the start rather than for the forgotten ones.

A :class:`RunFacts` is changed in the listener's loop only (:meth:`RunFacts.connect`,
:meth:`RunFacts.accepted`, :meth:`RunFacts.published`, :meth:`RunFacts.closed`); readers take a
frozen :class:`ConnectionFacts` per tenant (:meth:`RunFacts.of`) under the listener's lock.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

from simulators.mqtt.text import excerpt

__all__ = ["CLIENT_IDS_KEPT", "PENDING_KEPT", "ConnectionFacts", "RunFacts", "Watched"]

CLIENT_IDS_KEPT = 10  # distinct client IDs named (the rest are counted)
DISTINCT_COUNTED = 10_000  # distinct client IDs counted exactly; beyond, "at least"
PENDING_KEPT = 10_000  # ended sessions awaiting their client's return (oldest settled first)

Watched = Callable[[str | None, str], bool]  # (tenant, topic) -> a topic the vendor watches


def _nothing_watched(tenant: str | None, topic: str) -> bool:
    return False


@dataclass(frozen=True)
class ConnectionFacts:
    """What one tenant's connections did over the whole run (every connection counted)."""

    connects: int = 0  # CONNECT packets received, accepted or refused
    accepted: int = 0  # connections answered CONNACK 0
    peak_live: int = 0  # most accepted connections live at once
    client_ids: tuple[str, ...] = ()  # the first distinct client IDs of accepted connections
    distinct_client_ids: int = 0  # counted exactly up to DISTINCT_COUNTED
    # CONNECTs by how many accepted connections with another client ID were live then:
    # (number live, CONNECTs, the first one's client ID), sorted by number live
    crowding: tuple[tuple[int, int, str], ...] = ()
    shared: int = 0  # CONNECTs with the client ID of a live accepted connection
    first_shared: str | None = None
    clean: int = 0  # accepted connections with clean session = 1
    first_clean: str | None = None
    resumed: int = 0  # accepted connections that ended and whose client ID connected again
    abandoned: int = 0  # ended; the tenant connected again since, never with that client ID
    first_abandoned: str | None = None
    publishes: int = 0  # PUBLISH packets received
    watched_publishes: int = 0  # of them, to a watched topic
    first_watched_topic: str | None = None
    watched_wills: int = 0  # CONNECTs with a Will on a watched topic
    first_watched_will: str | None = None

    def connects_beside(self, others: int) -> tuple[int, str | None]:
        """CONNECTs made while at least ``others`` accepted connections with another client ID
        were live, and the first such CONNECT's client ID."""
        crowded = [(count, first) for live, count, first in self.crowding if live >= others]
        return sum(c for c, _ in crowded), crowded[0][1] if crowded else None


@dataclass
class _Live:
    client_id: str
    clean_session: bool
    accepted: bool = False


@dataclass
class _Tenant:
    """The mutable tally behind one tenant's :class:`ConnectionFacts`."""

    connects: int = 0
    accepted: int = 0
    peak_live: int = 0
    client_ids: list[str] = field(default_factory=list)
    distinct: set[str] = field(default_factory=set)
    crowding: dict[int, list[int | str]] = field(default_factory=dict)  # live → [count, first]
    shared: int = 0
    first_shared: str | None = None
    clean: int = 0
    first_clean: str | None = None
    resumed: int = 0
    abandoned: int = 0  # settled: pushed out of ``pending`` after another client connected
    first_abandoned: str | None = None
    # client ID of an ended accepted connection → ``connects`` when it ended: any CONNECT since
    # had another client ID (one with this ID takes it out)
    pending: OrderedDict[str, int] = field(default_factory=OrderedDict)
    publishes: int = 0
    watched_publishes: int = 0
    first_watched_topic: str | None = None
    watched_wills: int = 0
    first_watched_will: str | None = None
    live: dict[int, _Live] = field(default_factory=dict)  # conn id → what it said

    def facts(self) -> ConnectionFacts:
        passed = [cid for cid, seen in self.pending.items() if self.connects > seen]
        return ConnectionFacts(
            connects=self.connects,
            accepted=self.accepted,
            peak_live=self.peak_live,
            client_ids=tuple(self.client_ids),
            distinct_client_ids=len(self.distinct),
            crowding=tuple(
                (live, int(entry[0]), str(entry[1]))
                for live, entry in sorted(self.crowding.items())
            ),
            shared=self.shared,
            first_shared=self.first_shared,
            clean=self.clean,
            first_clean=self.first_clean,
            resumed=self.resumed,
            abandoned=self.abandoned + len(passed),
            first_abandoned=self.first_abandoned or (passed[0] if passed else None),
            publishes=self.publishes,
            watched_publishes=self.watched_publishes,
            first_watched_topic=self.first_watched_topic,
            watched_wills=self.watched_wills,
            first_watched_will=self.first_watched_will,
        )


class RunFacts:
    """The tallies of every tenant (None: connections no certificate identified)."""

    def __init__(self, watched: Watched = _nothing_watched) -> None:
        self.watched = watched
        self._tenants: dict[str | None, _Tenant] = {}

    def _of(self, tenant: str | None) -> _Tenant:
        found = self._tenants.get(tenant)
        if found is None:
            found = self._tenants[tenant] = _Tenant()
        return found

    def of(self, tenant: str | None) -> ConnectionFacts:
        """The facts of ``tenant``'s connections so far (read under the listener's lock)."""
        found = self._tenants.get(tenant)
        return found.facts() if found is not None else ConnectionFacts()

    def connect(
        self,
        conn_id: int,
        tenant: str | None,
        client_id: str,
        clean_session: bool,
        will_topic: str | None,
    ) -> None:
        """A CONNECT arrived on ``conn_id``, before the broker answers it."""
        t = self._of(tenant)
        client_id = excerpt(client_id)
        t.connects += 1
        live = [c for c in t.live.values() if c.accepted]
        others = sum(1 for c in live if c.client_id != client_id)
        entry = t.crowding.setdefault(others, [0, client_id])
        entry[0] = int(entry[0]) + 1
        if any(c.client_id == client_id for c in live):
            t.shared += 1
            t.first_shared = t.first_shared or client_id
        if will_topic is not None and self.watched(tenant, will_topic):
            t.watched_wills += 1
            t.first_watched_will = t.first_watched_will or excerpt(will_topic)
        if t.pending.pop(client_id, None) is not None:
            t.resumed += 1
        t.live[conn_id] = _Live(client_id, clean_session)

    def accepted(self, conn_id: int, tenant: str | None) -> None:
        """The broker answered ``conn_id``'s CONNECT with CONNACK 0."""
        t = self._of(tenant)
        conn = t.live.get(conn_id)
        if conn is None or conn.accepted:
            return
        conn.accepted = True
        t.accepted += 1
        if t.pending.pop(conn.client_id, None) is not None:  # back after a take-over
            t.resumed += 1
        t.peak_live = max(t.peak_live, sum(1 for c in t.live.values() if c.accepted))
        if conn.client_id not in t.distinct and len(t.distinct) < DISTINCT_COUNTED:
            t.distinct.add(conn.client_id)
            if len(t.client_ids) < CLIENT_IDS_KEPT:
                t.client_ids.append(conn.client_id)
        if conn.clean_session:  # judged once accepted: a refused CONNECT opens no session
            t.clean += 1
            t.first_clean = t.first_clean or conn.client_id

    def published(self, tenant: str | None, topic: str) -> None:
        """A PUBLISH arrived from a client of ``tenant``."""
        t = self._of(tenant)
        t.publishes += 1
        if self.watched(tenant, topic):
            t.watched_publishes += 1
            t.first_watched_topic = t.first_watched_topic or excerpt(topic)

    def closed(self, conn_id: int, tenant: str | None) -> None:
        """``conn_id`` ended (closed by either side); a second call changes nothing."""
        t = self._tenants.get(tenant)
        conn = t.live.pop(conn_id, None) if t is not None else None
        if t is None or conn is None or not conn.accepted:
            return
        t.pending.pop(conn.client_id, None)
        t.pending[conn.client_id] = t.connects
        while len(t.pending) > PENDING_KEPT:  # settle the oldest: it is not coming back
            client_id, seen = t.pending.popitem(last=False)
            if t.connects > seen:
                t.abandoned += 1
                t.first_abandoned = t.first_abandoned or client_id
