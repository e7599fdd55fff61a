"""The channels as a check reads and adjusts them (vendor doc, "The event notification
channel": state, queue, failures, removal times, serialization)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from simulators.clock import Clock
from simulators.evidence import Recorder
from simulators.pelion.channels import ChannelRemoved
from simulators.pelion.config import ACTOR, PEER, PelionConfig
from simulators.pelion.delivery import CallbackDelivery, WebSocketDelivery
from simulators.pelion.models import (
    DEFAULT_SERIALIZATION,
    ChannelMetadata,
    RegisterWebsocketChannel,
    SerializationConfig,
    Webhook,
    WebsocketChannel,
)
from simulators.pelion.records import ChannelSnapshot
from simulators.pelion.schedule import Schedule
from simulators.pelion.sending import Sending
from simulators.pelion.websocket import Connection

__all__ = ["ChannelView"]


class ChannelView:
    """Reads of the channels (any thread) and the check aids that change them."""

    def __init__(self, schedule: Schedule, config: PelionConfig, sending: Sending) -> None:
        self.schedule = schedule
        self.clock: Clock = schedule.clock
        self.recorder: Recorder = schedule.recorder
        self.config = config
        self.sending = sending

    def discard_queue(self, key: str | None = None) -> int:
        """Drop every item still queued on ``key``'s channel (counted as deleted), so a batch
        the SUT cannot take does not hold up what follows (a check aid). Returns how many."""

        def clear() -> int:
            core = self.schedule.registry.core(key or self.config.api_key)
            return 0 if core is None else core.queue.clear()

        dropped = self.schedule.in_loop(clear)
        if dropped:
            self.recorder.record(
                ACTOR, "--", PEER, "discard", f"{dropped} queued item(s) discarded"
            )
        return dropped

    def serialize_with(
        self, config: Mapping[str, Any] | None, key: str | None = None
    ) -> SerializationConfig | None:
        """Serialize ``key``'s next batches with ``config`` (None: the vendor default), as a
        second registration with another ``serialization`` would; returns the config it had
        (to restore). A check aid: e.g. de-registrations as objects for a callback the SUT
        registered itself. None when the key has no callback or WebSocket channel."""
        parsed = None if config is None else SerializationConfig.model_validate(dict(config))

        def swap() -> SerializationConfig | None:
            target = key or self.config.api_key
            callback = self.schedule.registry.callback(target)
            if callback is not None:
                before = callback.config
                callback.config = parsed or DEFAULT_SERIALIZATION
                return before
            websocket = self.schedule.registry.websocket(target)
            if websocket is not None:
                before = websocket.config
                websocket.configure(parsed)
                return before
            return None

        return self.schedule.in_loop(swap)

    def serialization(self, key: str | None = None) -> SerializationConfig | None:
        """The serialization ``key``'s callback or WebSocket channel delivers with now (any
        thread); None when the key has neither."""

        def read() -> SerializationConfig | None:
            core = self.schedule.registry.core(key or self.config.api_key)
            if isinstance(core, CallbackDelivery | WebSocketDelivery):
                return core.config
            return None

        return self.schedule.in_loop(read)

    def channel_state(self, key: str | None = None) -> ChannelSnapshot | None:
        """``key``'s channel now (any thread), None when it has none."""
        return self.schedule.in_loop(lambda: self._snapshot(key or self.config.api_key))

    def removed_channels(self) -> list[ChannelRemoved]:
        """Every channel the service removed or the application deleted, in order."""
        return self.schedule.in_loop(lambda: list(self.schedule.registry.removed))

    def _snapshot(self, key: str) -> ChannelSnapshot | None:
        self.schedule.carry_out(
            self.schedule.registry.handle_timeout(self.clock.now())
        )  # removed by now: gone
        core = self.schedule.registry.core(key)
        mechanism = self.schedule.registry.mechanism(key)
        if core is None or mechanism is None:
            return None
        in_flight = len(core.in_flight) if core.in_flight is not None else None
        common: dict[str, Any] = {
            "key": key,
            "mechanism": mechanism,
            "state": core.state.value,
            "queue": core.queue.stats(),
            "in_flight": in_flight,
            "batches_sent": core.batches_sent,
            "items_delivered": core.items_delivered,
        }
        if isinstance(core, CallbackDelivery):
            registered = self.sending.webhooks.get(key)
            webhook = registered[1] if registered else None
            return ChannelSnapshot(
                **common,
                failures=core.failures,
                last_failure=core.last_failure,
                failing_since_sim_s=core.failing_since,
                retry_at_sim_s=core.retry_at,
                remove_at_sim_s=core.remove_at,
                url=webhook.url if webhook else None,
                headers=dict(webhook.headers or {}) if webhook else {},
            )
        if isinstance(core, WebSocketDelivery):
            conn = core.socket
            return ChannelSnapshot(
                **common,
                status=core.status,
                remove_at_sim_s=(
                    core.disconnected_since + core.unbound_limit_s
                    if core.disconnected_since is not None
                    else None
                ),
                connection=conn.info.number if isinstance(conn, Connection) else None,
            )
        return ChannelSnapshot(**common, remove_at_sim_s=core.last_poll_at + core.idle_limit_s)

    # --- the REST calls on a channel (``now`` as the call read it) ------------------------

    def webhook(self, key: str, now: float) -> Webhook | None:
        """``GET /v2/notification/callback``: the registered callback, None (404) without."""
        return self.schedule.registry.webhook(key, now)

    def delete_callback(self, key: str, now: float) -> bool:
        """``DELETE /v2/notification/callback``: False (404) when there was none."""
        found, effects = self.schedule.registry.delete_callback(key, now)
        self.schedule.carry_out(effects)
        return found

    def websocket_status(self, key: str, now: float) -> WebsocketChannel | None:
        """``GET /v2/notification/websocket``: the channel's status, None (404) without."""
        return self.schedule.registry.websocket_status(key, now)

    def delete_websocket(self, key: str, now: float) -> bool:
        """``DELETE /v2/notification/websocket``: False (404) when there was none."""
        found, effects = self.schedule.registry.delete_websocket(key, now)
        self.schedule.carry_out(effects)
        return found

    def register_websocket(
        self, key: str, body: RegisterWebsocketChannel | None, now: float
    ) -> tuple[bool, WebsocketChannel]:
        """``PUT /v2/notification/websocket``: (created, status); raises ``ChannelConflict``
        (400) when the key has another channel type."""
        created, effects = self.schedule.registry.register_websocket(key, body, now)
        self.schedule.carry_out(effects)
        status = self.schedule.registry.websocket_status(key, now)
        assert status is not None
        return created, status

    def delete_pull(self, key: str, now: float) -> Literal["REMOVED", "ALREADY_DELETED"]:
        """``DELETE /v2/notification/pull``: always 200, with what happened."""
        result, effects = self.schedule.registry.delete_pull(key, now)
        self.schedule.carry_out(effects)
        return result

    def metadata(self, key: str, now: float) -> ChannelMetadata | None:
        """``GET /v2/notification/channel``: the delivery mechanism, None (404) without."""
        return self.schedule.registry.metadata(key, now)
