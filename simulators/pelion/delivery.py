"""Delivery state machines of one notification channel, without I/O (vendor doc, "Callback
interface", "WebSocket interface", "Pull interface" and "Notification sending logic").

Theory of operation. Each channel core owns nothing but state: the adapter passes ``now``
(simulated seconds) into every call, performs the I/O the core decides on, reports the outcome
back, and sleeps until :meth:`next_deadline` (a deadline at or before ``now`` means "call
me now"). Every state change goes through the channel's transition table (``*_TRANSITIONS``),
which is the whole of what can happen; a move the table does not list is a ``RuntimeError``.

Callback (:class:`CallbackDelivery`):

- "Notifications are delivered in batches of up to 10,000 items. When the web application
  responds with 200 OK to the current notification batch, Device Management sends the next
  batch." → at most one batch in flight, of at most ``max_chunk_size`` items; any 2xx
  acknowledges it.
- "If the notification batch sending fails, Device Management tries to resend with progressive
  back off of 2 s, 4 s, 8 s, 16 s… up to 2 minutes." → :class:`BackOff` (first delay 2 s,
  configurable to the 1 s of later Pelion docs). A failure is a non-2xx answer, a timeout
  (:data:`REQUEST_TIMEOUT_S`, owned by the adapter) or a connection error; the delay counts
  from the answer or from the end of the timeout, i.e. from the ``now`` of the report.
- "If the sending does not succeed within 24 hours, the event notification channel will be
  closed." → removed :data:`FAILURE_LIMIT_S` after the first failure of an unbroken streak;
  any 2xx ends the streak and resets the back-off.

WebSocket (:class:`WebSocketDelivery`):

- "The WebSocket interface does not wait for an application level ACK but sends the next
  patch when the transport level has succeeded." → :meth:`WebSocketDelivery.batch_sent`
  acknowledges.
- "When opening the channel, its status is disconnected and it changes to connected whenever
  the channel has an active WebSocket bound to it."
- "If the WebSocket is closed but the channel remains, it keeps receiving and storing messages
  until the WebSocket is connected again or for 24 hours, after which the channel will be
  removed."
- "The server closes automatically after 24 hours of inactivity, or if an error occurs.
  Closing the socket from client closes the channel, too." (the latter is an option, on by
  default: SPEC20/21 only remove a channel after 24 h without a socket).
- "If the channel is deleted with a REST call or the server is shutting down or if a
  WebSocket is already opened with the given API key, the first created socket will be
  closed with this code [1001]." (SPEC20/21 close with 1000 on a REST delete: an option.)

Pull (:class:`PullDelivery` in :mod:`simulators.pelion.pull_delivery`, deprecated by the vendor but used by the official SDKs): "when a
new pull request is sent, Device Management Connect responds with a batch of notifications";
one concurrent poll per key (409), 204 when a poll ends empty, the channel is created by the
first GET and expires after 10 minutes without a poll (SPEC20).
"""

from __future__ import annotations

import enum
import itertools
from collections.abc import Hashable, Mapping
from typing import Literal

from simulators.pelion.delivery_terms import (
    FAILURE_LIMIT_S,
    FIRST_DELAY_S,
    LATER_DOCS_FIRST_DELAY_S,
    MAX_DELAY_S,
    PING_PAYLOAD_BYTES,
    PULL_IDLE_LIMIT_S,
    REASON_BAD_KEY,
    REASON_DELETED,
    REASON_IDLE,
    REASON_NO_CHANNEL,
    REASON_PING_TIMEOUT,
    REASON_REPLACED,
    REQUEST_TIMEOUT_S,
    WEBSOCKET_IDLE_CLOSE_S,
    WEBSOCKET_UNBOUND_LIMIT_S,
    BackOff,
    Batch,
    CloseCode,
    CloseSocket,
    PollAnswer,
    WsAuthFailure,
    move,
)
from simulators.pelion.models import (
    DEFAULT_SERIALIZATION,
    SerializationConfig,
    WebsocketChannel,
)
from simulators.pelion.pull_delivery import PULL_TRANSITIONS, PullDelivery, PullState
from simulators.pelion.queue import NotificationQueue

__all__ = [
    "CALLBACK_TRANSITIONS",
    "FAILURE_LIMIT_S",
    "FIRST_DELAY_S",
    "LATER_DOCS_FIRST_DELAY_S",
    "MAX_DELAY_S",
    "PING_PAYLOAD_BYTES",
    "PULL_IDLE_LIMIT_S",
    "PULL_TRANSITIONS",
    "REASON_BAD_KEY",
    "REASON_DELETED",
    "REASON_IDLE",
    "REASON_NO_CHANNEL",
    "REASON_PING_TIMEOUT",
    "REASON_REPLACED",
    "REQUEST_TIMEOUT_S",
    "WEBSOCKET_IDLE_CLOSE_S",
    "WEBSOCKET_TRANSITIONS",
    "WEBSOCKET_UNBOUND_LIMIT_S",
    "BackOff",
    "Batch",
    "CallbackDelivery",
    "CallbackState",
    "CloseCode",
    "CloseSocket",
    "PollAnswer",
    "PullDelivery",
    "PullState",
    "WebSocketDelivery",
    "WebSocketState",
    "WsAuthFailure",
]

# --- Callback ------------------------------------------------------------------------------


class CallbackState(enum.Enum):
    IDLE = "idle"  # nothing in flight; sends as soon as the queue has items
    SENDING = "sending"  # one batch in flight
    BACKING_OFF = "backing-off"  # the last send failed; waiting for retry_at
    REMOVED = "removed"  # failures lasted 24 h: the service removed the channel
    DELETED = "deleted"  # deleted or replaced by the application (REST)


_I, _S, _B, _R, _D = (
    CallbackState.IDLE,
    CallbackState.SENDING,
    CallbackState.BACKING_OFF,
    CallbackState.REMOVED,
    CallbackState.DELETED,
)
CALLBACK_TRANSITIONS: Mapping[CallbackState, Mapping[str, CallbackState]] = {
    _I: {"send": _S, "failing-24h": _R, "delete": _D},
    _S: {"2xx": _I, "failure": _B, "failing-24h": _R, "delete": _D},
    # A retry that finds the queue empty (every item expired) goes idle, keeping the streak.
    _B: {"retry": _S, "retry-nothing-queued": _I, "failing-24h": _R, "delete": _D},
    _R: {},
    _D: {},
}
_TERMINAL_CALLBACK = frozenset((_R, _D))


class CallbackDelivery:
    """The callback channel of one API key: batches, back-off and removal.

    Adapter loop: ``batch = next_batch(now)``; PUT ``batch.to_bytes()`` with the registered
    headers; report ``receive_response(batch, status, now)`` or ``receive_failure(batch, now,
    reason)`` (timeout after :data:`REQUEST_TIMEOUT_S`, connection error); sleep until
    :meth:`next_deadline` or until the registry queues an item.
    """

    def __init__(
        self,
        queue: NotificationQueue,
        *,
        config: SerializationConfig | None = None,
        backoff: BackOff | None = None,
        failure_limit_s: float = FAILURE_LIMIT_S,
    ) -> None:
        self.queue = queue
        self.config = config or DEFAULT_SERIALIZATION
        self.backoff = backoff or BackOff()
        self.failure_limit_s = failure_limit_s
        self.state = CallbackState.IDLE
        self.in_flight: Batch | None = None
        self.failures = 0  # consecutive failed sends (the streak)
        self.failing_since: float | None = None  # the first failure of the streak
        self.retry_at: float | None = None
        self.last_failure: str | None = None
        self.removed_at: float | None = None
        self.removed_by: str | None = None  # the trigger that removed the channel
        self.batches_sent = 0
        self.items_delivered = 0
        self._numbers = itertools.count(1)

    def _go(self, trigger: str) -> None:
        self.state = move(CALLBACK_TRANSITIONS, self.state, trigger)
        if self.state is CallbackState.REMOVED:
            self.removed_by = trigger

    @property
    def remove_at(self) -> float | None:
        """When the channel is removed unless a send succeeds first."""
        return None if self.failing_since is None else self.failing_since + self.failure_limit_s

    def next_batch(self, now: float) -> Batch | None:
        """The batch to PUT now, if one is due: the channel is idle (or its back-off has
        elapsed) and the queue has items."""
        self.handle_timeout(now)
        if self.state is CallbackState.BACKING_OFF:
            assert self.retry_at is not None
            if now < self.retry_at:
                return None
            items = self.queue.head(self.config.max_chunk_size, now)
            if not items:
                self._go("retry-nothing-queued")
                return None
            self._go("retry")
        elif self.state is CallbackState.IDLE:
            items = self.queue.head(self.config.max_chunk_size, now)
            if not items:
                return None
            self._go("send")
        else:
            return None
        self.retry_at = None
        kinds = self.queue.kinds(items)
        batch = Batch(next(self._numbers), items, now, self.failures + 1, self.config, kinds)
        self.in_flight = batch
        self.batches_sent += 1
        return batch

    def _answer_for(self, batch: Batch, now: float) -> bool:
        self.handle_timeout(now)
        if self.state in _TERMINAL_CALLBACK:
            return False  # the channel is gone: a late answer changes nothing
        if batch is not self.in_flight:
            raise RuntimeError(f"batch {batch.number} is not the batch in flight")
        self.in_flight = None
        return True

    def receive_response(self, batch: Batch, status: int, now: float) -> CallbackState:
        """The application answered ``status``: any 2xx acknowledges the batch."""
        if self._answer_for(batch, now):
            if 200 <= status < 300:
                self.items_delivered += self.queue.acknowledge(batch.items)
                self.failures = 0
                self.failing_since = None
                self.last_failure = None
                self._go("2xx")
            else:
                self._fail(f"HTTP {status}", now)
        return self.state

    def receive_failure(self, batch: Batch, now: float, reason: str = "timeout") -> CallbackState:
        """No answer: the request timed out (report at its end) or the connection failed."""
        if self._answer_for(batch, now):
            self._fail(reason, now)
        return self.state

    def _fail(self, reason: str, now: float) -> None:
        self.failures += 1
        if self.failing_since is None:
            self.failing_since = now
        self.last_failure = reason
        self.retry_at = now + self.backoff.delay_s(self.failures)
        self._go("failure")

    def handle_timeout(self, now: float) -> CallbackState:
        """Apply the timers: items expire; a streak of 24 h removes the channel."""
        if self.state in _TERMINAL_CALLBACK:
            return self.state
        self.queue.expire(now)
        remove_at = self.remove_at
        if remove_at is not None and now >= remove_at:
            self.in_flight = None
            self.retry_at = None
            self.removed_at = now
            self._go("failing-24h")
        return self.state

    def delete(self) -> None:
        """The application deleted the channel or registered another URL."""
        if self.state not in _TERMINAL_CALLBACK:
            self.in_flight = None
            self._go("delete")

    def next_deadline(self) -> float | None:
        if self.state in _TERMINAL_CALLBACK:
            return None
        candidates = [self.queue.next_deadline(), self.remove_at]
        if self.state is CallbackState.BACKING_OFF:
            candidates.append(self.retry_at)
        elif self.state is CallbackState.IDLE:
            candidates.append(self.queue.oldest_queued_at())  # due now when items wait
        return min((c for c in candidates if c is not None), default=None)


# --- WebSocket -----------------------------------------------------------------------------


class WebSocketState(enum.Enum):
    DISCONNECTED = "disconnected"
    CONNECTED = "connected"
    REMOVED = "removed"  # no socket for 24 h, or the client closed its socket
    DELETED = "deleted"  # deleted by the application (REST)


_WD, _WC, _WR, _WX = (
    WebSocketState.DISCONNECTED,
    WebSocketState.CONNECTED,
    WebSocketState.REMOVED,
    WebSocketState.DELETED,
)
WEBSOCKET_TRANSITIONS: Mapping[WebSocketState, Mapping[str, WebSocketState]] = {
    _WD: {"bind": _WC, "unbound-24h": _WR, "delete": _WX},
    _WC: {
        "bind": _WC,  # a second socket replaces the first (closed with 1001)
        "socket-lost": _WD,  # no close frame from the client, or the server closed it
        "client-close": _WR,  # "Closing the socket from client closes the channel, too."
        "idle-close": _WD,
        "delete": _WX,
    },
    _WR: {},
    _WX: {},
}
_TERMINAL_WEBSOCKET = frozenset((_WR, _WX))


class WebSocketDelivery:
    """The WebSocket channel of one API key: status, the bound socket and batches."""

    def __init__(
        self,
        queue: NotificationQueue,
        now: float,
        *,
        config: SerializationConfig | None = None,
        unbound_limit_s: float = WEBSOCKET_UNBOUND_LIMIT_S,
        idle_close_s: float | None = WEBSOCKET_IDLE_CLOSE_S,
        client_close_removes_channel: bool = True,
        delete_close_code: CloseCode = CloseCode.GOING_AWAY,
    ) -> None:
        self.queue = queue
        self.requested_config = config  # as registered (echoed by GET), None when absent
        self.unbound_limit_s = unbound_limit_s
        self.idle_close_s = idle_close_s
        self.client_close_removes_channel = client_close_removes_channel
        self.delete_close_code = delete_close_code
        self.state = WebSocketState.DISCONNECTED
        self.socket: Hashable | None = None
        self.disconnected_since: float | None = now
        self.last_activity_at = now
        self.in_flight: Batch | None = None
        self.removed_at: float | None = None
        self.removed_by: str | None = None  # the trigger that removed the channel
        self.batches_sent = 0
        self.items_delivered = 0
        self._numbers = itertools.count(1)

    def _go(self, trigger: str) -> None:
        self.state = move(WEBSOCKET_TRANSITIONS, self.state, trigger)
        if self.state is WebSocketState.REMOVED:
            self.removed_by = trigger

    @property
    def config(self) -> SerializationConfig:
        return self.requested_config or DEFAULT_SERIALIZATION

    @property
    def status(self) -> Literal["connected", "disconnected"]:
        """``connected`` or ``disconnected``, as ``GET /v2/notification/websocket`` says."""
        return "connected" if self.state is WebSocketState.CONNECTED else "disconnected"

    def status_body(self) -> WebsocketChannel:
        return WebsocketChannel(
            queue_size=len(self.queue), status=self.status, serialization=self.requested_config
        )

    def configure(self, config: SerializationConfig | None) -> None:
        """A second ``PUT /v2/notification/websocket`` (200): new serialization, same queue."""
        self.requested_config = config

    def bind(self, socket: Hashable, now: float) -> list[CloseSocket]:
        """A WebSocket was accepted for this channel; an older one is closed with 1001."""
        self.handle_timeout(now)
        if self.state in _TERMINAL_WEBSOCKET:
            raise RuntimeError(f"cannot bind a socket to a {self.state.name} channel")
        closes = []
        if self.socket is not None:
            closes.append(CloseSocket(self.socket, CloseCode.GOING_AWAY, REASON_REPLACED))
        self.socket = socket
        self.in_flight = None  # a batch on the old socket was not confirmed: its items stay
        self.disconnected_since = None
        self.last_activity_at = now
        self._go("bind")
        return closes

    def socket_closed(self, socket: Hashable, now: float, *, by_client: bool) -> WebSocketState:
        """The bound socket is gone. ``by_client``: the client sent a close frame (which, by
        default, closes the channel too); otherwise it was lost or closed by the server."""
        self.handle_timeout(now)
        if self.state is not WebSocketState.CONNECTED or socket != self.socket:
            return self.state  # a replaced socket, or a channel already gone
        self.socket = None
        self.in_flight = None
        if by_client and self.client_close_removes_channel:
            self.removed_at = now
            self._go("client-close")
        else:
            self.disconnected_since = now
            self._go("socket-lost")
        return self.state

    def next_batch(self, now: float) -> Batch | None:
        """The next frame to send: a socket is bound, the previous frame went out, items wait."""
        self.handle_timeout(now)
        if self.state is not WebSocketState.CONNECTED or self.in_flight is not None:
            return None
        items = self.queue.head(self.config.max_chunk_size, now)
        if not items:
            return None
        self.in_flight = Batch(
            next(self._numbers), items, now, 1, self.config, self.queue.kinds(items)
        )
        self.batches_sent += 1
        return self.in_flight

    def batch_sent(self, batch: Batch, now: float) -> None:
        """The transport accepted the frame: that is the acknowledgement."""
        self.handle_timeout(now)
        if batch is self.in_flight:
            self.in_flight = None
            self.items_delivered += self.queue.acknowledge(batch.items)
            self.last_activity_at = now

    def batch_failed(self, batch: Batch, now: float) -> None:
        """The frame could not be written: its items stay queued (the adapter reports the
        socket's end with :meth:`socket_closed`)."""
        if batch is self.in_flight:
            self.in_flight = None

    def handle_timeout(self, now: float) -> list[CloseSocket]:
        """Apply the timers: item expiry, the 24 h idle close, removal after 24 h unbound."""
        if self.state in _TERMINAL_WEBSOCKET:
            return []
        self.queue.expire(now)
        closes = []
        if (
            self.state is WebSocketState.CONNECTED
            and self.idle_close_s is not None
            and now >= self.last_activity_at + self.idle_close_s
        ):
            assert self.socket is not None
            closes.append(CloseSocket(self.socket, CloseCode.GOING_AWAY, REASON_IDLE))
            self.socket = None
            self.in_flight = None
            self.disconnected_since = self.last_activity_at + self.idle_close_s
            self._go("idle-close")
        if (
            self.state is WebSocketState.DISCONNECTED
            and self.disconnected_since is not None
            and now >= self.disconnected_since + self.unbound_limit_s
        ):
            self.removed_at = now
            self._go("unbound-24h")
        return closes

    def delete(self) -> list[CloseSocket]:
        """``DELETE /v2/notification/websocket`` (or a channel of this key being removed)."""
        if self.state in _TERMINAL_WEBSOCKET:
            return []
        closes = []
        if self.socket is not None:
            closes.append(CloseSocket(self.socket, self.delete_close_code, REASON_DELETED))
        self.socket = None
        self.in_flight = None
        self._go("delete")
        return closes

    def next_deadline(self) -> float | None:
        if self.state in _TERMINAL_WEBSOCKET:
            return None
        candidates = [self.queue.next_deadline()]
        if self.state is WebSocketState.DISCONNECTED and self.disconnected_since is not None:
            candidates.append(self.disconnected_since + self.unbound_limit_s)
        if self.state is WebSocketState.CONNECTED:
            if self.idle_close_s is not None:
                candidates.append(self.last_activity_at + self.idle_close_s)
            if self.in_flight is None:
                candidates.append(self.queue.oldest_queued_at())
        return min((c for c in candidates if c is not None), default=None)
