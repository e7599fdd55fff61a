"""The vendor's numbers, close codes and reasons, and the decisions the delivery state machines
of :mod:`simulators.pelion.delivery` return (vendor doc, "Notification sending logic",
"WebSocket interface"; SPEC20/21), without I/O."""

from __future__ import annotations

import enum
from collections.abc import Hashable, Mapping
from dataclasses import dataclass
from typing import Literal, TypeVar

from simulators.pelion.models import QueuedItem, SerializationConfig, serialize

__all__ = [
    "FAILURE_LIMIT_S",
    "FIRST_DELAY_S",
    "LATER_DOCS_FIRST_DELAY_S",
    "MAX_DELAY_S",
    "PING_PAYLOAD_BYTES",
    "PULL_IDLE_LIMIT_S",
    "REASON_BAD_KEY",
    "REASON_DELETED",
    "REASON_IDLE",
    "REASON_NO_CHANNEL",
    "REASON_PING_TIMEOUT",
    "REASON_REPLACED",
    "REQUEST_TIMEOUT_S",
    "WEBSOCKET_IDLE_CLOSE_S",
    "WEBSOCKET_UNBOUND_LIMIT_S",
    "BackOff",
    "Batch",
    "CloseCode",
    "CloseSocket",
    "PollAnswer",
    "State",
    "WsAuthFailure",
    "move",
]

# SPEC20/21: "The request timeout is 20 seconds"; the adapter cancels a callback PUT after it
# and reports receive_failure(batch, now, "timeout").
REQUEST_TIMEOUT_S = 20.0
# "progressive back off of 2 s, 4 s, 8 s, 16 s… up to 2 minutes"
FIRST_DELAY_S = 2.0
LATER_DOCS_FIRST_DELAY_S = 1.0  # SPEC20/21: "the first retry waits 1 s"
MAX_DELAY_S = 120.0
# "If the sending does not succeed within 24 hours, the event notification channel will be closed."
FAILURE_LIMIT_S = 24 * 3600.0
# "...until the WebSocket is connected again or for 24 hours, after which the channel will be removed."
WEBSOCKET_UNBOUND_LIMIT_S = 24 * 3600.0
# "The server closes automatically after 24 hours of inactivity"
WEBSOCKET_IDLE_CLOSE_S = 24 * 3600.0
# SPEC20: the pull channel "expires if not polled for 10 minutes".
PULL_IDLE_LIMIT_S = 600.0


WsAuthFailure = Literal["close-1008", "401"]
"""What a WebSocket connect with a missing or invalid key gets: accepted, then closed 1008 (the
vendor doc), or refused with HTTP 401 (SPEC20/21)."""


class CloseCode(enum.IntEnum):
    """WebSocket close codes and the vendor doc's meanings."""

    NORMAL = 1000  # "Normal close: Socket closed by client."
    GOING_AWAY = 1001  # channel deleted over REST, server shutting down, or a newer socket
    ABNORMAL = 1006  # "The connection is lost without either party sending the close frame.
    # This code is never set by the notification service."
    POLICY_VIOLATION = 1008  # "Authentication fails due to an invalid or missing API key header"
    UNEXPECTED_CONDITION = 1011  # "No channel has been registered for this API key with a prior
    # PUT when connecting", and "any unexpected closing of the WebSocket by the server".


# Close reasons (strings in the close frame); the vendor gives the codes, not the texts.
REASON_REPLACED = "another WebSocket was opened with the same API key"
REASON_DELETED = "the channel was deleted"
REASON_IDLE = "no activity for 24 hours"
REASON_PING_TIMEOUT = "ping timeout"
REASON_NO_CHANNEL = "no channel has been registered for this API key"
REASON_BAD_KEY = "invalid or missing API key"
# "The ping frame from the server consists of four bytes which the server expects the client to
# echo in the response frame ('pong')."
PING_PAYLOAD_BYTES = 4


@dataclass(frozen=True)
class BackOff:
    """Delay before the n-th retry: ``first_s * 2**(n-1)``, capped at ``max_s``."""

    first_s: float = FIRST_DELAY_S
    max_s: float = MAX_DELAY_S

    def __post_init__(self) -> None:
        if not 0 < self.first_s <= self.max_s:
            raise ValueError(f"need 0 < first_s <= max_s, got {self.first_s}, {self.max_s}")

    def delay_s(self, failures: int) -> float:
        """The wait after ``failures`` consecutive failures (1 → ``first_s``)."""
        if failures < 1:
            raise ValueError("no back-off before the first failure")
        return min(self.first_s * 2.0 ** min(failures - 1, 64), self.max_s)


@dataclass(frozen=True, slots=True)
class Batch:
    """One NotificationMessage on its way: the head of the queue when it was formed.

    ``attempt`` is 1 for a first try and n+1 after n consecutive failed sends; ``kinds`` says
    how many items of each kind it carries.
    """

    number: int
    items: tuple[QueuedItem, ...]
    formed_at: float
    attempt: int
    config: SerializationConfig
    kinds: Mapping[str, int]

    def __len__(self) -> int:
        return len(self.items)

    def to_bytes(self, *, epoch_s: float = 0.0) -> bytes:
        """The body: ``serialize(items, config)``; ``epoch_s`` is the Unix time of simulated 0."""
        return serialize(self.items, self.config, epoch_s=epoch_s, kinds=self.kinds)


@dataclass(frozen=True, slots=True)
class CloseSocket:
    """Decision: close this WebSocket with ``code`` and ``reason``."""

    socket: Hashable
    code: CloseCode
    reason: str


@dataclass(frozen=True, slots=True)
class PollAnswer:
    """Decision: answer this long poll: 200 with ``batch``, 204 (ended empty), 409 (a poll is
    already open for the key) or 410 (the channel was deleted while the poll waited)."""

    poll: Hashable
    status: int
    batch: Batch | None = None


State = TypeVar("State", bound=enum.Enum)


def move(table: Mapping[State, Mapping[str, State]], state: State, trigger: str) -> State:
    try:
        return table[state][trigger]
    except KeyError:
        raise RuntimeError(f"no transition from {state.name} on {trigger!r}") from None
