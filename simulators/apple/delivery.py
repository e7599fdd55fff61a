"""Apple notification delivery rules, without I/O (vendor doc, "Subscribing to notifications").

- "The server attempts delivery up to three times over 1–5 minutes. An HTTP 2xx response status
  from an MDM server indicates a successful notification delivery." → :class:`RetrySchedule`,
  :class:`Delivery`.
- "There is a limit of 100 elements in the notification. Any request for more than 100 discrete
  tasks results in multiple notifications." → :func:`split_notification`.

Retries of one notification reuse its ``notificationId``; each part of a split event gets its own.
"""

from __future__ import annotations

import enum
import itertools
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from simulators.apple.models import ELEMENT_FIELDS, MAX_ELEMENTS, Notification, new_notification_id

if TYPE_CHECKING:  # the outcome of an attempt, as the sender reports it (no I/O here)
    from simulators.http_sender import Exchange

__all__ = ["Delivery", "DeliveryState", "RetrySchedule", "split_notification"]

# The vendor window: every attempt falls within 5 minutes of the first.
MAX_ATTEMPTS = 3
MAX_WINDOW_S = 300.0
# How long the notifier waits for an answer before it counts the attempt as failed.
DEFAULT_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class RetrySchedule:
    """Attempt offsets in simulated seconds from the first attempt (default +0, +60, +300)."""

    offsets: tuple[float, ...] = (0.0, 60.0, 300.0)

    def __post_init__(self) -> None:
        offsets = self.offsets
        if not 1 <= len(offsets) <= MAX_ATTEMPTS:
            raise ValueError(f"1 to {MAX_ATTEMPTS} attempts in all, got {len(offsets)}")
        if offsets[0] != 0:
            raise ValueError("the first attempt is immediate (offset 0)")
        if any(b <= a for a, b in itertools.pairwise(offsets)):
            raise ValueError(f"offsets must increase: {offsets}")
        if offsets[-1] > MAX_WINDOW_S:
            raise ValueError(f"every attempt falls within {MAX_WINDOW_S:.0f} s, got {offsets[-1]}")

    @classmethod
    def parse(cls, text: str) -> RetrySchedule:
        """``"0,60,300"`` → RetrySchedule((0, 60, 300))."""
        try:
            return cls(tuple(float(part) for part in text.split(",")))
        except ValueError as exc:
            raise ValueError(f"bad retry schedule {text!r}: {exc}") from None


class DeliveryState(enum.Enum):
    DUE = "due"  # an attempt is due at next_deadline()
    IN_FLIGHT = "in-flight"
    DELIVERED = "delivered"
    GAVE_UP = "gave-up"


@dataclass(slots=True)
class Delivery:
    """The retry state of one notification: feed attempt outcomes and ``now``; read deadlines.

    ``attempts`` are the outcomes in order (attempt ``n`` is ``attempts[n - 1]``); each one's
    ``started_sim_s`` is on the retry schedule's clock."""

    notification_id: str
    first_sim_s: float
    schedule: RetrySchedule = field(default_factory=RetrySchedule)
    attempts: list[Exchange] = field(default_factory=list)
    state: DeliveryState = DeliveryState.DUE

    def next_deadline(self) -> float | None:
        """When the next attempt is due, or None when none will be made."""
        if self.state is not DeliveryState.DUE:
            return None
        return self.first_sim_s + self.schedule.offsets[len(self.attempts)]

    def start_attempt(self, now: float) -> int:
        """Mark an attempt as started; return its number (1-based)."""
        deadline = self.next_deadline()
        if deadline is None or now < deadline:
            raise RuntimeError(f"no attempt due at {now} (state {self.state}, due {deadline})")
        self.state = DeliveryState.IN_FLIGHT
        return len(self.attempts) + 1

    def finish_attempt(self, attempt: Exchange) -> DeliveryState:
        """Record the outcome; any 2xx delivers, otherwise retry while attempts remain."""
        if self.state is not DeliveryState.IN_FLIGHT:
            raise RuntimeError("finish_attempt() without start_attempt()")
        self.attempts.append(attempt)
        if attempt.succeeded:
            self.state = DeliveryState.DELIVERED
        elif len(self.attempts) >= len(self.schedule.offsets):
            self.state = DeliveryState.GAVE_UP
        else:
            self.state = DeliveryState.DUE
        return self.state


def split_notification(notification: Notification, limit: int = MAX_ELEMENTS) -> list[Notification]:
    """Split a notification whose element list exceeds ``limit`` into parts of at most ``limit``.

    Every part keeps the rest of the body (``eventId``, ``type``, ``result``…) and gets its own
    ``notificationId``; a notification within the limit is returned unchanged.
    """
    if limit < 1:
        raise ValueError("limit must be at least 1")
    field_name = ELEMENT_FIELDS.get(notification.notificationType)
    items = notification.elements()
    if field_name is None or len(items) <= limit:
        return [notification]
    parts = []
    for start in range(0, len(items), limit):
        body = dict(notification.notification)
        body[field_name] = items[start : start + limit]
        parts.append(
            notification.model_copy(
                update={"notification": body, "notificationId": new_notification_id()}
            )
        )
    return parts
