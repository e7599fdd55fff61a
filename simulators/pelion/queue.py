"""The notification queue of one channel, without I/O (vendor doc, "Notification sending logic").

- "Notification items are cached for 24 hours in a queue of up to 50,000 items, so it is
  possible to lose notifications if Device Management cannot deliver for a while." → items
  older than :data:`ITEM_LIFETIME_S` are dropped (``expired``); appending to a full queue drops
  the oldest item (``overflow``). Drops are counted by reason.
- "The new batch is formed from the changing queue, so it contains different data: The oldest
  observation Obs-1 exceeds the lifetime and is removed from the queue. It will not be included
  in the batch. The new observations Obs-101 and Obs-102 are added to the queue. They are
  included in the batch, because adding them does not exceed the maximum size." → a batch is
  the head of the queue *at send time* (:meth:`NotificationQueue.head`); its items stay queued
  until it is acknowledged (:meth:`NotificationQueue.acknowledge`), so a resend carries whatever
  the head is by then.

Research notes say "50 MB" rather than 50,000 items; the item count is the vendor doc's and is
the default, the limit is a constructor argument.

Every structure is a deque in arrival order: since drops and acknowledgements only ever remove
from the head, the items of a batch that are still queued are always a prefix of the queue, so
appending, dropping and acknowledging cost O(1) per item and forming a batch O(batch).
"""

from __future__ import annotations

import enum
import itertools
import uuid
from collections import Counter, deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType

from simulators.pelion.models import Event, QueuedItem

__all__ = [
    "ITEM_LIFETIME_S",
    "MAX_ITEMS",
    "DropReason",
    "NotificationQueue",
    "QueueStats",
    "uid_factory",
]

# "Notification items are cached for 24 hours in a queue of up to 50,000 items"
MAX_ITEMS = 50_000
ITEM_LIFETIME_S = 24 * 3600.0


class DropReason(enum.Enum):
    OVERFLOW = "overflow"  # the queue was full: the oldest item made room
    EXPIRED = "expired"  # older than the 24 h lifetime
    DELETED = "deleted"  # the channel was deleted or removed with the item still queued


@dataclass(frozen=True, slots=True)
class QueueStats:
    """What a report says about one queue."""

    queued: int
    enqueued: int
    acknowledged: int
    dropped: Mapping[DropReason, int]

    def to_dict(self) -> dict[str, int]:
        return {
            "queued": self.queued,
            "enqueued": self.enqueued,
            "acknowledged": self.acknowledged,
            **{f"dropped_{reason.value}": n for reason, n in self.dropped.items()},
        }


def uid_factory() -> Callable[[], str]:
    """A fast source of UUID-formatted (version 4 layout) ids, unique within the factory.

    Each factory draws 74 random bits once and counts in the last 48 bits, so that 50,000 ids
    cost a string format each rather than 50,000 ``uuid4()`` calls.
    """
    rnd = uuid.uuid4().hex
    variant = "89ab"[int(rnd[16], 16) & 3]
    prefix = f"{rnd[:8]}-{rnd[8:12]}-4{rnd[13:16]}-{variant}{rnd[17:20]}-"
    counter = itertools.count(int(rnd[20:], 16))
    mask = (1 << 48) - 1
    return lambda: f"{prefix}{next(counter) & mask:012x}"


class NotificationQueue:
    """Items in arrival order, each with a ``uid`` and the simulated time it entered.

    ``now`` must never go backwards (``ValueError``). Expiry is applied whenever ``now`` is
    given; :meth:`next_deadline` says when the head expires, so an adapter that calls
    :meth:`expire` then keeps the counts current.
    """

    def __init__(
        self,
        *,
        max_items: int = MAX_ITEMS,
        lifetime_s: float = ITEM_LIFETIME_S,
        new_uid: Callable[[], str] | None = None,
    ) -> None:
        if max_items < 1:
            raise ValueError("max_items must be at least 1")
        if lifetime_s <= 0:
            raise ValueError("lifetime_s must be positive")
        self.max_items = max_items
        self.lifetime_s = lifetime_s
        self._new_uid = new_uid or uid_factory()
        self._items: deque[QueuedItem] = deque()
        self._seq = itertools.count(1)
        self._now = float("-inf")
        self._enqueued = 0
        self._acknowledged = 0
        self._dropped = dict.fromkeys(DropReason, 0)
        # Every item from sequence number ``_same_kind_from`` on is of ``_last_kind``: a batch
        # that starts there is known to be of one kind without looking at its items.
        self._last_kind = ""
        self._same_kind_from = 0

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator[QueuedItem]:
        return iter(self._items)

    def _observe(self, now: float) -> None:
        """Take ``now`` as the queue's time, which never goes backwards."""
        if now < self._now:
            raise ValueError(f"time can't go backwards ({now} < {self._now})")
        self._now = now

    def append(self, event: Event, now: float) -> QueuedItem:
        """Queue ``event``; when the queue is full the oldest item is dropped (``overflow``)."""
        items = self._items
        if now < self._now or (items and items[0].queued_at + self.lifetime_s <= now):
            self.expire(now)  # the rare path; the common one costs two comparisons
        self._now = now
        if len(items) >= self.max_items:
            items.popleft()
            self._dropped[DropReason.OVERFLOW] += 1
        seq = next(self._seq)
        if event.kind != self._last_kind:
            self._last_kind, self._same_kind_from = event.kind, seq
        item = QueuedItem(seq, event, self._new_uid(), now)
        items.append(item)
        self._enqueued += 1
        return item

    def expire(self, now: float) -> int:
        """Drop every item whose lifetime has ended by ``now``; return how many."""
        self._observe(now)
        items = self._items
        lifetime = self.lifetime_s
        n = 0
        # The same sum as next_deadline(): ``now - lifetime`` could round differently, and an
        # adapter woken at the deadline would then find nothing to expire.
        while items and items[0].queued_at + lifetime <= now:
            items.popleft()
            n += 1
        self._dropped[DropReason.EXPIRED] += n
        return n

    def head(self, max_items: int, now: float) -> tuple[QueuedItem, ...]:
        """The first ``max_items`` unexpired items (a batch); they stay queued."""
        if max_items < 1:
            raise ValueError("max_items must be at least 1")
        self.expire(now)
        return tuple(itertools.islice(self._items, max_items))

    def kinds(self, batch: Sequence[QueuedItem]) -> dict[str, int]:
        """How many items of each kind ``batch`` (formed by :meth:`head`) carries, in order of
        first appearance; without a pass over the items when they are all of the last kind
        appended (the usual case)."""
        if not batch:
            return {}
        if batch[0].seq >= self._same_kind_from:
            return {self._last_kind: len(batch)}
        return dict(Counter(item.event.kind for item in batch))

    def acknowledge(self, batch: Sequence[QueuedItem]) -> int:
        """Remove the items of ``batch`` (formed by :meth:`head`) that are still queued.

        Returns how many were removed: fewer than ``len(batch)`` when some expired or were
        pushed out while the batch was in flight. A batch that was not formed from the head
        (items queued before its first one are still there) is a harness error.
        """
        if not batch:
            return 0
        first, last = batch[0].seq, batch[-1].seq
        items = self._items
        if items and items[0].seq < first:
            raise ValueError(
                f"batch {first}..{last} was not formed from the head of the queue "
                f"(item {items[0].seq} is still queued before it)"
            )
        # Sequence numbers are consecutive in the queue (appended in order, removed from the
        # head only), so the items of the batch still queued are the first ``n``.
        n = min(len(items), last - items[0].seq + 1) if items and items[0].seq <= last else 0
        if n == len(items):
            items.clear()  # the batch was the whole queue
        else:
            popleft = items.popleft
            for _ in itertools.repeat(None, n):
                popleft()
        self._acknowledged += n
        return n

    def clear(self, reason: DropReason = DropReason.DELETED) -> int:
        """Drop every item (the channel was deleted); return how many."""
        n = len(self._items)
        self._items.clear()
        self._dropped[reason] += n
        return n

    def next_deadline(self) -> float | None:
        """When the oldest item expires, or None when the queue is empty."""
        return self._items[0].queued_at + self.lifetime_s if self._items else None

    def oldest_queued_at(self) -> float | None:
        return self._items[0].queued_at if self._items else None

    @property
    def dropped(self) -> Mapping[DropReason, int]:
        return MappingProxyType(self._dropped)

    def stats(self) -> QueueStats:
        return QueueStats(
            queued=len(self._items),
            enqueued=self._enqueued,
            acknowledged=self._acknowledged,
            dropped=MappingProxyType(dict(self._dropped)),
        )
