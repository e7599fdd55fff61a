"""One notification channel per API key, without I/O (vendor doc, "The event notification
channel"; docs/vendors/pelion.md §2).

- "Every single notification channel is bound to the API key of an application. If two
  different application instances uses the same API key, they overwrite the notification
  channel" and "Each API key can only have one callback URL. If you set another callback URL
  with the same API key, the first URL will be overwritten." → registering the same type again
  replaces the channel (keeping its queue); registering another type while one exists is
  400 "other type of channel already exists" (SPEC19/20/21) → :class:`ChannelConflict`.
- Deleting a channel drops its queue and unsent notifications (SPEC20).
- "If the WebSocket is closed but the channel remains, it keeps receiving and storing messages
  until the WebSocket is connected again or for 24 hours" → events are queued whatever the
  channel's state; only a key without a channel loses them (:class:`Undeliverable`).
- Registrations, de-registrations and expirations go to every key's channel ("by default, on
  any device in the account"); notifications and async-responses to one key
  (:class:`~simulators.pelion.models.Outgoing`).

Every method returns the effects the adapter must carry out (:data:`Effect`): wake a sender,
answer a poll, close a socket, report a removed channel. Lookups (``metadata``, ``webhook``,
``websocket_status``) apply the timers too, so that a channel removed by now is a 404; the
effects that produces are returned by the next call that returns effects.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass, field
from typing import Literal, NamedTuple

from simulators.pelion.delivery import (
    FAILURE_LIMIT_S,
    PULL_IDLE_LIMIT_S,
    REASON_NO_CHANNEL,
    WEBSOCKET_IDLE_CLOSE_S,
    WEBSOCKET_UNBOUND_LIMIT_S,
    BackOff,
    CallbackDelivery,
    CloseCode,
    CloseSocket,
    PollAnswer,
    PullDelivery,
    WebSocketDelivery,
)
from simulators.pelion.models import (
    ChannelMetadata,
    Event,
    Outgoing,
    QueuedItem,
    RegisterWebsocketChannel,
    Webhook,
    WebsocketChannel,
)
from simulators.pelion.queue import ITEM_LIFETIME_S, MAX_ITEMS, NotificationQueue, QueueStats

__all__ = [
    "OTHER_TYPE_EXISTS",
    "ChannelConflict",
    "ChannelOptions",
    "ChannelRegistry",
    "ChannelRemoved",
    "Effect",
    "ItemQueued",
    "Mechanism",
    "Undeliverable",
    "Wake",
]

Mechanism = Literal["CALLBACK", "LONG_POLLING", "WEB_SOCKET"]
Core = CallbackDelivery | WebSocketDelivery | PullDelivery

OTHER_TYPE_EXISTS = "Given URL is not accessible, or other type of channel already exists"


class ChannelConflict(Exception):
    """400: the key already has a channel of another type; delete it first."""

    status = 400

    def __init__(self, key: str, existing: Mechanism, wanted: Mechanism) -> None:
        self.existing = existing
        self.wanted = wanted
        self.message = f"other type of channel already exists ({existing}); delete it first"
        super().__init__(f"{key}: cannot register {wanted}: {self.message}")


@dataclass(frozen=True)
class ChannelOptions:
    """The vendor rules' numbers, each with the vendor doc's value as default."""

    max_items: int = MAX_ITEMS
    item_lifetime_s: float = ITEM_LIFETIME_S
    backoff: BackOff = field(default_factory=BackOff)
    failure_limit_s: float = FAILURE_LIMIT_S
    websocket_unbound_limit_s: float = WEBSOCKET_UNBOUND_LIMIT_S
    websocket_idle_close_s: float | None = WEBSOCKET_IDLE_CLOSE_S
    websocket_client_close_removes_channel: bool = True
    websocket_delete_close_code: CloseCode = CloseCode.GOING_AWAY
    pull_idle_limit_s: float = PULL_IDLE_LIMIT_S


class ItemQueued(NamedTuple):
    """An item joined ``key``'s queue: wake that channel's sender. (A named tuple: one is made
    per queued item, and a tuple is built faster than a frozen dataclass.)"""

    key: str
    item: QueuedItem


@dataclass(frozen=True, slots=True)
class Wake:
    """``key``'s channel may have a batch to send (a new URL or socket over a non-empty queue)."""

    key: str


@dataclass(frozen=True, slots=True)
class Undeliverable:
    """``key`` has no channel: the event is lost (counted in ``undeliverable``)."""

    key: str
    event: Event


@dataclass(frozen=True, slots=True)
class ChannelRemoved:
    """A channel is gone with its queue: ``reason`` is ``deleted`` (REST), ``failing-24h``,
    ``unbound-24h``, ``client-close`` or ``unpolled-10min``."""

    key: str
    mechanism: Mechanism
    reason: str
    at: float
    dropped_items: int


Effect = ItemQueued | Wake | Undeliverable | ChannelRemoved | CloseSocket | PollAnswer


@dataclass
class _Channel:
    mechanism: Mechanism
    core: Core
    created_at: float
    webhook: Webhook | None = None
    advanced_at: float | None = None  # the last ``now`` whose timers were applied


class ChannelRegistry:
    """Every API key's channel; inputs and ``now`` in, effects out."""

    def __init__(
        self, options: ChannelOptions | None = None, *, new_uid: Callable[[], str] | None = None
    ) -> None:
        self.options = options or ChannelOptions()
        self._new_uid = new_uid
        self._channels: dict[str, _Channel] = {}
        self.removed: list[ChannelRemoved] = []
        self.undeliverable: Counter[str] = Counter()
        self._pending: list[Effect] = []

    # --- lookups ---------------------------------------------------------------------------

    def keys(self) -> list[str]:
        return list(self._channels)

    def mechanism(self, key: str) -> Mechanism | None:
        channel = self._channels.get(key)
        return None if channel is None else channel.mechanism

    def core(self, key: str) -> Core | None:
        channel = self._channels.get(key)
        return None if channel is None else channel.core

    def metadata(self, key: str, now: float) -> ChannelMetadata | None:
        """``GET /v2/notification/channel``: 200 with this, or 404 for None."""
        self._look(key, now)
        mechanism = self.mechanism(key)
        return None if mechanism is None else ChannelMetadata(delivery_mechanism=mechanism)

    def queue_stats(self, key: str) -> QueueStats | None:
        core = self.core(key)
        return None if core is None else core.queue.stats()

    # --- internals -------------------------------------------------------------------------

    def _new_queue(self) -> NotificationQueue:
        return NotificationQueue(
            max_items=self.options.max_items,
            lifetime_s=self.options.item_lifetime_s,
            new_uid=self._new_uid,
        )

    def _drop(self, key: str, reason: str, now: float) -> ChannelRemoved:
        channel = self._channels.pop(key)
        removed = ChannelRemoved(key, channel.mechanism, reason, now, channel.core.queue.clear())
        self.removed.append(removed)
        return removed

    def _advance(self, key: str, now: float) -> list[Effect]:
        """Apply ``key``'s timers; reap its channel if the service removed it. The effects
        include those a lookup held back (:meth:`_look`)."""
        channel = self._channels.get(key)
        if (
            channel is not None
            and channel.advanced_at == now
            and not self._pending
            and channel.core.removed_by is None
        ):
            return []  # already applied at this instant: no timer can have come due since
        effects, self._pending = self._pending, []
        if channel is None:
            return effects
        channel.advanced_at = now
        core = channel.core
        if isinstance(core, WebSocketDelivery):
            effects.extend(core.handle_timeout(now))
        else:
            core.handle_timeout(now)
        effects.extend(self._reap(key, now))
        return effects

    def _look(self, key: str, now: float) -> None:
        """Apply timers before a lookup; the effects (a socket to close, a channel removed) are
        held back and returned by the next call that returns effects."""
        self._pending = self._advance(key, now)

    def _reap(self, key: str, now: float) -> list[Effect]:
        channel = self._channels[key]
        core = channel.core
        if core.removed_by is None:
            return []
        at = core.removed_at if core.removed_at is not None else now
        return [self._drop(key, core.removed_by, at)]

    def _check_type(self, key: str, wanted: Mechanism) -> _Channel | None:
        channel = self._channels.get(key)
        if channel is not None and channel.mechanism != wanted:
            raise ChannelConflict(key, channel.mechanism, wanted)
        return channel

    def _delete(self, key: str, mechanism: Mechanism, now: float) -> tuple[bool, list[Effect]]:
        effects = self._advance(key, now)
        channel = self._channels.get(key)
        if channel is None or channel.mechanism != mechanism:
            return False, effects
        core = channel.core
        if isinstance(core, WebSocketDelivery | PullDelivery):
            effects.extend(core.delete())
        else:
            core.delete()
        effects.append(self._drop(key, "deleted", now))
        return True, effects

    # --- callback --------------------------------------------------------------------------

    def register_callback(self, key: str, webhook: Webhook, now: float) -> list[Effect]:
        """``PUT /v2/notification/callback`` after the verification PUT succeeded (204).

        A second registration replaces the URL, headers and serialization, keeps the queue
        and starts a fresh delivery (no back-off, no failure streak). Raises
        :class:`ChannelConflict` when the key has a WebSocket or pull channel.
        """
        effects = self._advance(key, now)
        channel = self._check_type(key, "CALLBACK")
        if channel is not None:
            old = channel.core
            old.delete()
            queue = old.queue
        else:
            queue = self._new_queue()
        delivery = CallbackDelivery(
            queue,
            config=webhook.serialization,
            backoff=self.options.backoff,
            failure_limit_s=self.options.failure_limit_s,
        )
        self._channels[key] = _Channel("CALLBACK", delivery, now, webhook)
        if len(queue):
            effects.append(Wake(key))
        return effects

    def webhook(self, key: str, now: float) -> Webhook | None:
        """``GET /v2/notification/callback``: the registered body, or None for 404."""
        self._look(key, now)
        channel = self._channels.get(key)
        return channel.webhook if channel is not None and channel.mechanism == "CALLBACK" else None

    def callback(self, key: str) -> CallbackDelivery | None:
        core = self.core(key)
        return core if isinstance(core, CallbackDelivery) else None

    def delete_callback(self, key: str, now: float) -> tuple[bool, list[Effect]]:
        """``DELETE /v2/notification/callback``: ``(True, effects)`` → 204, ``(False, …)`` →
        404 (no callback channel for the key)."""
        return self._delete(key, "CALLBACK", now)

    # --- WebSocket -------------------------------------------------------------------------

    def register_websocket(
        self, key: str, body: RegisterWebsocketChannel | None, now: float
    ) -> tuple[bool, list[Effect]]:
        """``PUT /v2/notification/websocket``: ``(True, …)`` when created (201), ``(False, …)``
        when it existed (200; only its serialization changes)."""
        effects = self._advance(key, now)
        channel = self._check_type(key, "WEB_SOCKET")
        config = body.serialization if body is not None else None
        if channel is not None:
            assert isinstance(channel.core, WebSocketDelivery)
            channel.core.configure(config)
            return False, effects
        options = self.options
        core = WebSocketDelivery(
            self._new_queue(),
            now,
            config=config,
            unbound_limit_s=options.websocket_unbound_limit_s,
            idle_close_s=options.websocket_idle_close_s,
            client_close_removes_channel=options.websocket_client_close_removes_channel,
            delete_close_code=options.websocket_delete_close_code,
        )
        self._channels[key] = _Channel("WEB_SOCKET", core, now)
        return True, effects

    def websocket(self, key: str) -> WebSocketDelivery | None:
        core = self.core(key)
        return core if isinstance(core, WebSocketDelivery) else None

    def websocket_status(self, key: str, now: float) -> WebsocketChannel | None:
        """``GET /v2/notification/websocket``: the status body, or None for 404."""
        self._look(key, now)
        core = self.websocket(key)
        return None if core is None else core.status_body()

    def delete_websocket(self, key: str, now: float) -> tuple[bool, list[Effect]]:
        """``DELETE /v2/notification/websocket``: ``(True, effects)`` → 204 (the bound socket
        is closed), ``(False, …)`` → 404."""
        return self._delete(key, "WEB_SOCKET", now)

    def connect_websocket(self, key: str, socket: Hashable, now: float) -> list[Effect]:
        """A WebSocket authenticated with ``key`` was accepted (101).

        Without a WebSocket channel for the key it is closed with 1011 ("No channel has been
        registered for this API key with a prior PUT when connecting"); otherwise it is bound
        and an older socket is closed with 1001.
        """
        effects = self._advance(key, now)
        core = self.websocket(key)
        if core is None:
            effects.append(CloseSocket(socket, CloseCode.UNEXPECTED_CONDITION, REASON_NO_CHANNEL))
            return effects
        effects.extend(core.bind(socket, now))
        if len(core.queue):
            effects.append(Wake(key))
        return effects

    def socket_closed(
        self, key: str, socket: Hashable, now: float, *, by_client: bool
    ) -> list[Effect]:
        """The socket ended (see :meth:`WebSocketDelivery.socket_closed`)."""
        effects = self._advance(key, now)
        core = self.websocket(key)
        if core is not None:
            core.socket_closed(socket, now, by_client=by_client)
            effects.extend(self._reap(key, now))
        return effects

    # --- pull ------------------------------------------------------------------------------

    def poll(self, key: str, poll: Hashable, now: float) -> list[Effect]:
        """``GET /v2/notification/pull``: creates the channel on first use. The effects hold
        the poll's answer when it is immediate (200 with a batch, 409); otherwise the poll
        waits. Raises :class:`ChannelConflict` (400) when the key has another channel type."""
        effects = self._advance(key, now)
        channel = self._check_type(key, "LONG_POLLING")
        if channel is None:
            core = PullDelivery(self._new_queue(), now, idle_limit_s=self.options.pull_idle_limit_s)
            self._channels[key] = _Channel("LONG_POLLING", core, now)
        else:
            assert isinstance(channel.core, PullDelivery)
            core = channel.core
        answer = core.receive_poll(poll, now)
        if answer is not None:
            effects.append(answer)
        return effects

    def pull(self, key: str) -> PullDelivery | None:
        core = self.core(key)
        return core if isinstance(core, PullDelivery) else None

    def poll_timed_out(self, key: str, poll: Hashable, now: float) -> list[Effect]:
        """The adapter's poll timeout ended a waiting poll (its 204 is in the effects)."""
        effects = self._advance(key, now)
        core = self.pull(key)
        if core is not None and (answer := core.poll_timed_out(poll, now)) is not None:
            effects.append(answer)
        return effects

    def delete_pull(
        self, key: str, now: float
    ) -> tuple[Literal["REMOVED", "ALREADY_DELETED"], list[Effect]]:
        """``DELETE /v2/notification/pull``: always 200, with ``REMOVED`` or (no pull channel,
        whatever other channel the key has) ``ALREADY_DELETED``. The Python SDK sends this
        before registering a webhook and gives up silently on a 404."""
        found, effects = self._delete(key, "LONG_POLLING", now)
        return ("REMOVED" if found else "ALREADY_DELETED"), effects

    # --- events ----------------------------------------------------------------------------

    def route(self, key: str, event: Event, now: float) -> list[Effect]:
        """Queue ``event`` on ``key``'s channel, whatever its state."""
        channel = self._channels.get(key)
        if channel is None or channel.advanced_at != now or self._pending:
            effects = self._advance(key, now)
            channel = self._channels.get(key)
        else:
            effects = []  # the hot path: timers already applied at this instant
        if channel is None:
            self.undeliverable[key] += 1
            effects.append(Undeliverable(key, event))
            return effects
        core = channel.core
        item = core.queue.append(event, now)
        effects.append(ItemQueued(key, item))
        if isinstance(core, PullDelivery) and (answer := core.next_answer(now)) is not None:
            effects.append(answer)
        return effects

    def broadcast(self, event: Event, now: float) -> list[Effect]:
        """Queue ``event`` on every key's channel (each copy gets its own ``uid``)."""
        effects: list[Effect] = []
        for key in list(self._channels):
            effects.extend(self.route(key, event, now))
        return effects

    def dispatch(self, outgoing: Iterable[Outgoing], now: float) -> list[Effect]:
        """Route what the devices produced: to one key, or to every key when ``key`` is None."""
        effects: list[Effect] = []
        for out in outgoing:
            if out.key is None:
                effects.extend(self.broadcast(out.event, now))
            else:
                effects.extend(self.route(out.key, out.event, now))
        return effects

    # --- timers ----------------------------------------------------------------------------

    def handle_timeout(self, now: float) -> list[Effect]:
        """Apply every channel's timers; removed channels are dropped with their queues."""
        effects, self._pending = self._pending, []
        for key in list(self._channels):
            effects.extend(self._advance(key, now))
        return effects

    def next_deadline(self) -> float | None:
        """The earliest deadline of any channel (sending due, retry, expiry, removal)."""
        deadlines = (channel.core.next_deadline() for channel in self._channels.values())
        return min((d for d in deadlines if d is not None), default=None)
