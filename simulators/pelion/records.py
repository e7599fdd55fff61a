"""What the simulated service kept of what happened: batch attempts, verification PUTs,
channel snapshots, and the bounded log of attempts (vendor doc, "The event notification
channel": a batch is one NotificationMessage; a callback registration starts with a
verification PUT ``{}``)."""

from __future__ import annotations

import operator
from collections import OrderedDict, deque
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Literal

from simulators.adapter import StateChanges
from simulators.http_sender import Exchange
from simulators.pelion.delivery import Batch
from simulators.pelion.queue import QueueStats

__all__ = [
    "ATTEMPTS_KEPT",
    "BODIES_KEPT_BYTES",
    "UIDS_KEPT",
    "VERIFICATIONS_KEPT",
    "AttemptLog",
    "ChannelSnapshot",
    "DeliveryAttempt",
    "Verification",
    "VerificationFailed",
]

ATTEMPTS_KEPT = 20_000
UIDS_KEPT = 200_000  # item uids kept across the attempt log (older attempts lose theirs)
VERIFICATIONS_KEPT = 1_000
# Bytes of the latest batch bodies kept, exactly as sent (a reproducer sends one again); an
# older attempt loses its body first.
BODIES_KEPT_BYTES = 16 * 1024 * 1024
_UID = operator.itemgetter(2)  # QueuedItem.uid


class VerificationFailed(Exception):
    """The verification PUT was not answered 2xx: the registration is refused (400)."""

    def __init__(self, exchange: Exchange) -> None:
        self.exchange = exchange
        what = f"answered {exchange.status}" if exchange.status is not None else exchange.error
        super().__init__(f"the verification PUT was {what}")


@dataclass(frozen=True, slots=True)
class DeliveryAttempt:
    """One batch sent (or tried) on a channel.

    ``status`` is the HTTP status the simulator acted on (a callback's answer, after any
    ``status`` fault; 200 for a long-poll answer; None for a WebSocket frame or a failure
    without an answer), ``answered`` what the receiver really answered. ``succeeded`` is the
    simulator's conclusion (the batch was acknowledged). ``retry_in_sim_s`` is the back-off
    wait scheduled after a failure (simulated seconds); ``channel_removed`` is set when this
    failure ended the channel. ``uids`` are the items' message ids in order (None once the log
    dropped them to stay bounded). ``client_cert``: the caller chain a callback PUT presented
    (``genuine``, ``untrusted``; None: none).
    """

    seq: int
    key: str
    channel: Literal["callback", "websocket", "pull"]
    batch: int
    attempt: int
    items: int
    kinds: Mapping[str, int]
    bytes: int
    started_real_s: float
    started_sim_s: float
    elapsed_real_s: float
    succeeded: bool
    status: int | None = None
    answered: int | None = None
    error: str | None = None
    fault: str | None = None
    retry_in_sim_s: float | None = None
    channel_removed: bool = False
    url: str | None = None
    connection: int | None = None  # the WebSocket connection's number
    uids: tuple[str, ...] | None = None
    client_cert: str | None = None

    @classmethod
    def of_batch(
        cls,
        batch: Batch,
        *,
        key: str,
        channel: Literal["callback", "websocket", "pull"],
        attempt: int,
        body_bytes: int,
        started_real_s: float,
        started_sim_s: float,
        elapsed_real_s: float,
        succeeded: bool,
        status: int | None = None,
        answered: int | None = None,
        error: str | None = None,
        fault: str | None = None,
        retry_in_sim_s: float | None = None,
        channel_removed: bool = False,
        url: str | None = None,
        connection: int | None = None,
        client_cert: str | None = None,
    ) -> DeliveryAttempt:
        """The attempt of sending ``batch`` (its number, size and kinds come from it); ``seq``
        is 0 until :meth:`AttemptLog.add` numbers it."""
        return cls(
            seq=0,
            key=key,
            channel=channel,
            batch=batch.number,
            attempt=attempt,
            items=len(batch),
            kinds=dict(batch.kinds),
            bytes=body_bytes,
            started_real_s=started_real_s,
            started_sim_s=started_sim_s,
            elapsed_real_s=elapsed_real_s,
            succeeded=succeeded,
            status=status,
            answered=answered,
            error=error,
            fault=fault,
            retry_in_sim_s=retry_in_sim_s,
            channel_removed=channel_removed,
            url=url,
            connection=connection,
            client_cert=client_cert,
        )


@dataclass(frozen=True, slots=True)
class Verification:
    """One verification PUT ``{}`` of a callback registration."""

    key: str
    url: str
    header_names: tuple[str, ...]
    real_s: float
    sim_s: float
    exchange: Exchange

    @property
    def accepted(self) -> bool:
        return self.exchange.succeeded


@dataclass(frozen=True)
class ChannelSnapshot:
    """One API key's channel as the cores see it (times are simulated seconds)."""

    key: str
    mechanism: Literal["CALLBACK", "LONG_POLLING", "WEB_SOCKET"]
    state: str
    queue: QueueStats
    in_flight: int | None  # items of the batch in flight
    batches_sent: int
    items_delivered: int
    failures: int = 0
    last_failure: str | None = None
    failing_since_sim_s: float | None = None
    retry_at_sim_s: float | None = None
    remove_at_sim_s: float | None = None
    url: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    status: str | None = None  # a WebSocket channel's "connected" / "disconnected"
    connection: int | None = None  # the bound WebSocket connection's number


@dataclass
class _Uids:
    """Item uids of the attempt log, bounded in total."""

    by_seq: OrderedDict[int, tuple[str, ...]] = field(default_factory=OrderedDict)
    total: int = 0

    def add(self, seq: int, uids: tuple[str, ...]) -> None:
        self.by_seq[seq] = uids
        self.total += len(uids)
        while self.total > UIDS_KEPT and len(self.by_seq) > 1:
            _, dropped = self.by_seq.popitem(last=False)
            self.total -= len(dropped)


@dataclass
class _Bodies:
    """The bodies of the latest attempts, bounded in total bytes."""

    by_seq: OrderedDict[int, bytes] = field(default_factory=OrderedDict)
    total: int = 0

    def add(self, seq: int, body: bytes) -> None:
        if len(body) > BODIES_KEPT_BYTES:
            return
        self.by_seq[seq] = body
        self.total += len(body)
        while self.total > BODIES_KEPT_BYTES:
            _, dropped = self.by_seq.popitem(last=False)
            self.total -= len(dropped)


class AttemptLog:
    """The bounded logs of batch attempts and verification PUTs; every entry wakes
    :meth:`StateChanges.wait_for` (readable from any thread)."""

    def __init__(self, changed: StateChanges) -> None:
        self.changed = changed
        self._attempts: deque[DeliveryAttempt] = deque(maxlen=ATTEMPTS_KEPT)
        self._uids = _Uids()
        self._bodies = _Bodies()
        self._verifications: deque[Verification] = deque(maxlen=VERIFICATIONS_KEPT)
        self.total = 0

    def add(self, attempt: DeliveryAttempt, batch: Batch, body: bytes | None = None) -> None:
        """Log ``attempt`` of ``batch``: numbered in order, its uids and its ``body`` (the bytes
        sent) kept while they fit."""
        with self.changed:
            self.total += 1
            self._attempts.append(replace(attempt, seq=self.total))
            self._uids.add(self.total, tuple(map(_UID, batch.items)))
            if body is not None:
                self._bodies.add(self.total, body)
            self.changed.notify_all()

    def attempts(self) -> list[DeliveryAttempt]:
        """Every attempt kept so far, in order, with the uids still kept."""
        with self.changed:
            uids = self._uids.by_seq
            return [replace(a, uids=uids.get(a.seq)) for a in self._attempts]

    def body(self, seq: int) -> bytes | None:
        """The bytes attempt ``seq`` sent, while they are kept."""
        with self.changed:
            return self._bodies.by_seq.get(seq)

    def add_verification(self, verification: Verification) -> None:
        with self.changed:
            self._verifications.append(verification)
            self.changed.notify_all()

    def verifications(self) -> list[Verification]:
        with self.changed:
            return list(self._verifications)
