"""The simulated Device Management notification service: the cores put to work over real
sockets, and the Python API a check writer drives (vendor doc, "The event notification
channel"; docs/vendors/pelion.md).

:class:`PelionSimulator` is a facade over components, each the one owner of what it keeps:
:class:`~simulators.pelion.schedule.Schedule` (the cores: every API key's channel and queue, the
devices and subscriptions; the timers; what is under way),
:class:`~simulators.pelion.sending.Sending` (callback PUTs, WebSocket frames, the attempt log),
:class:`~simulators.pelion.longpoll.LongPolls` (open polls),
:class:`~simulators.pelion.sockets.Sockets` (WebSocket connections),
:class:`~simulators.pelion.keys.ApiKeys`, :class:`~simulators.pelion.device_control.DeviceControl`
and :class:`~simulators.pelion.channel_view.ChannelView`. It carries the cores' decisions out:

- the HTTPS API (:mod:`simulators.pelion.api`) feeds requests in;
- a scheduler task (a :class:`~simulators.adapter.DeadlineLoop` over
  :meth:`Schedule.handle_timeout`) wakes at the cores' ``next_deadline()`` on the
  simulated clock (back-off waits, 24 h removals, item expiry, device answers) or when something
  changed, applies the timers and starts what is due: one callback PUT
  (:mod:`simulators.pelion.callback`) or one WebSocket frame (:mod:`simulators.pelion.websocket`)
  per channel at a time;
- effects (a socket to close, a poll to answer, a channel removed) are carried out where they
  arise.

Time: vendor durations pass through the simulated clock; the SUT's pace (the 20 s callback
timeout, the long-poll hold, pings and the 5 s pong deadline) is real time, so
``clock.advance(24 * 3600)`` fires every vendor rule and none of the SUT's.

Evidence: a batch is recorded with the cause of its first item (the check that queued it,
remembered by ``uid``); the SUT's own REST calls go to the run timeline.

The Python API (every ``async`` method runs in the simulators' event loop: from a check,
``harness.run(sim.method(...))``; the plain methods may be called from any thread):

- devices: :meth:`~PelionSimulator.add_device` (any thread; :func:`standard_resources` by
  default: text/plain and OMA-TLV), :meth:`~PelionSimulator.register`,
  :meth:`~PelionSimulator.update_registration`, :meth:`~PelionSimulator.deregister`,
  :meth:`~PelionSimulator.expire`, :meth:`~PelionSimulator.set_value` (a ``notifications``
  item for every subscribed key), :meth:`~PelionSimulator.subscribe` (as the application
  would), :meth:`~PelionSimulator.inject` / :meth:`~PelionSimulator.queue` for raw items
  (unknown fields, several kinds, 10,000 at once). Each returns the items queued
  (:class:`~simulators.pelion.channels.ItemQueued`: ``key`` and ``item.uid``, the v2 message
  id a SUT reports to the observer);
- channels: :meth:`~PelionSimulator.register_callback` (the verification PUT included),
  :meth:`~PelionSimulator.delete_channel` (as a REST delete),
  :meth:`~PelionSimulator.channel_state` (state, queue stats with drops, failures, retry and
  removal times, the bound socket), :meth:`~PelionSimulator.removed_channels`,
  :meth:`~PelionSimulator.idle`;
  :meth:`~PelionSimulator.add_key` / :meth:`~PelionSimulator.revoke_key` (401 for REST, 1008
  for its sockets);
- faults: :meth:`~PelionSimulator.fail_deliveries` (a status or a timeout, sent or not),
  :meth:`~PelionSimulator.stall_deliveries`, :meth:`~PelionSimulator.drop_deliveries`,
  :meth:`~PelionSimulator.close_socket` (any code), :meth:`~PelionSimulator.drop_socket` (no
  close frame), :attr:`~PelionSimulator.pings_enabled` (off: no pings, no pongs expected),
  :meth:`~PelionSimulator.ping` (one now, judged against the 5 s deadline),
  :meth:`~PelionSimulator.delay_handshakes` (429 meanwhile);
- what happened, bounded: :meth:`~PelionSimulator.attempts` (every batch: channel, size,
  uids, status or error, real-time elapsed, the simulated back-off wait scheduled after it),
  :meth:`~PelionSimulator.verifications`, :meth:`~PelionSimulator.connections` (WebSocket
  handshakes: auth, subprotocols, pings and pong latencies, frames, close codes both ways,
  connect and end times), :meth:`~PelionSimulator.calls` (the SUT's REST calls),
  :meth:`~PelionSimulator.wait_for`;
- the schedule: :meth:`~PelionSimulator.drive` runs it in the caller's context, so that
  ``harness.run(sim.drive(...), autojump=True)`` takes back-off waits and 24-hour spans in no
  real time (never while a delivery is under way: the SUT answers at its own pace).
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from simulators.adapter import BackgroundTasks, StateChanges
from simulators.clock import Clock
from simulators.evidence import Recorder
from simulators.faultlog import FaultLog
from simulators.faults import FaultPlan
from simulators.network import LOCAL, Reach
from simulators.pelion.api import Api
from simulators.pelion.callback import CallbackClient
from simulators.pelion.channel_view import ChannelView
from simulators.pelion.channels import ChannelRegistry, ChannelRemoved, Effect, ItemQueued
from simulators.pelion.config import ACTOR, DEFAULT_EPOCH_S, PEER, PelionConfig
from simulators.pelion.delivery import CloseCode, PollAnswer, PullDelivery
from simulators.pelion.device_control import DeviceControl, standard_resources
from simulators.pelion.devices import DEFAULT_RESPONSE_DELAY_S, Device, Devices, Resource, Value
from simulators.pelion.keys import ApiKeys, KeyStatus
from simulators.pelion.longpoll import LongPolls
from simulators.pelion.models import Event, Kind, SerializationConfig, Webhook
from simulators.pelion.records import (
    AttemptLog,
    ChannelSnapshot,
    DeliveryAttempt,
    Verification,
    VerificationFailed,
)
from simulators.pelion.schedule import Schedule
from simulators.pelion.sending import Sending
from simulators.pelion.sockets import ForgottenConnections, Sockets
from simulators.pelion.websocket import Connection, ConnectionInfo, PingRecord

if TYPE_CHECKING:
    from simulators.pelion.traffic import DemoTraffic

__all__ = [
    "ACTOR",
    "DEFAULT_EPOCH_S",
    "PEER",
    "ChannelSnapshot",
    "DeliveryAttempt",
    "PelionConfig",
    "PelionSimulator",
    "Verification",
    "VerificationFailed",
    "standard_resources",
]

WAIT_LOOK_AGAIN_S = 0.05  # wait_for looks at the cores again this often (real seconds)


class PelionSimulator:
    """The simulated service (HTTPS and WSS with the simulators' certificate): a
    facade that wires the components and delegates to them."""

    attempt_log_type: type[AttemptLog] = AttemptLog

    def __init__(
        self,
        clock: Clock,
        recorder: Recorder,
        server_context: ssl.SSLContext,
        config: PelionConfig,
        reach: Reach = LOCAL,
    ) -> None:
        self.clock = clock
        self.reach = reach  # where the API listens, the name SUTs use
        self.recorder = recorder
        self.config = config
        self.server_context = server_context  # ssl.SSLContext of the API's certificate
        self.port = config.port
        self.keys = ApiKeys(config.api_key)
        self.faults = FaultPlan()
        self.fault_log = FaultLog(ACTOR)
        self.tasks = BackgroundTasks(self.fault_log)
        # A check's predicate may read the cores too, which change without a notification.
        self.changed = StateChanges(clock, look_again_s=WAIT_LOOK_AGAIN_S)
        self.schedule = Schedule(clock, recorder, config.channel, self.changed, self.tasks)
        self.attempt_log = self.attempt_log_type(self.changed)
        self.sending = Sending(self.schedule, config, self.faults, self.attempt_log)
        self.long_polls = LongPolls(self.schedule, config, self.attempt_log)
        self.sockets = Sockets(self.schedule, config)
        self.device_control = DeviceControl(self.schedule, config)
        self.channels = ChannelView(self.schedule, config, self.sending)
        self.schedule.start_due = self.sending.start_due
        self.schedule.answer_poll = self.long_polls.answer
        self.schedule.forget_channel = self.sending.forget
        self.api = Api(self)

    # --- life cycle ----------------------------------------------------------------------

    @property
    def api_key(self) -> str:
        return self.config.api_key

    @property
    def base_url(self) -> str:
        """``https://HOST:PORT`` (HOST: the advertised name); the API is ``/v2/...`` below it."""
        return self.reach.url("https", self.port)

    @property
    def websocket_url(self) -> str:
        return self.reach.url("wss", self.port, "/v2/notification/websocket-connect")

    @property
    def registry(self) -> ChannelRegistry:
        return self.schedule.registry

    @property
    def devices(self) -> Devices:
        return self.schedule.devices

    @property
    def client(self) -> CallbackClient:
        """The HTTP client of callback PUTs."""
        return self.sending.client

    @property
    def undeliverable(self) -> int:
        return self.schedule.undeliverable

    async def start(self) -> None:
        self.schedule.loop = asyncio.get_running_loop()
        await self.sending.client.start()
        self.port = await self.api.start(self.config.port)
        self.tasks.spawn(self.schedule.timers.run(), "scheduler")

    async def stop(self) -> None:
        """Close every socket with 1001 ("the server is shutting down"), stop every task."""
        closing = [
            c.close(CloseCode.GOING_AWAY, "the server is shutting down")
            for c in self.sockets.live()
        ]
        if closing:
            await asyncio.wait([asyncio.ensure_future(c) for c in closing], timeout=2)
        await self.tasks.cancel()
        await self.api.stop()
        await self.sending.client.close()

    def errors(self) -> list[str]:
        return self.fault_log.errors()

    def start_traffic(self, events_per_s: float) -> DemoTraffic:
        """Standalone mode: the demo devices register and act on their own."""
        from simulators.pelion.traffic import DEMO_DEVICES, DemoTraffic  # imports this module

        traffic = DemoTraffic(self, events_per_s)
        self.tasks.spawn(traffic.run(), "device traffic")
        self.recorder.record(
            "devices", "--", "pelion", "demo-devices",
            f"demo devices {', '.join(DEMO_DEVICES)} register and act about "
            f"{events_per_s:g}/s; subscribe with PUT /v2/subscriptions/{DEMO_DEVICES[0]}"
            "/3200/0/5501",
        )  # fmt: skip
        return traffic

    @property
    def pings_enabled(self) -> bool:
        """Whether the server pings its sockets. False: no pings are sent, so no pong is
        expected (a negative check: a client that waits for pings to detect a dead link)."""
        return self.sockets.pings_enabled

    @pings_enabled.setter
    def pings_enabled(self, enabled: bool) -> None:
        self.sockets.pings_enabled = enabled

    # --- keys ----------------------------------------------------------------------------

    def key_status(self, token: str | None) -> KeyStatus:
        return self.keys.status(token)

    def add_key(self, key: str) -> None:
        """Accept another API key (an application of the same account)."""
        self.keys.add(key)

    async def revoke_key(self, key: str | None = None) -> list[ConnectionInfo]:
        """Invalidate ``key`` (default: the run's): REST calls get 401 from now on and its open
        sockets are closed with 1008 (SPEC20/21: "the API key was lost or invalidated after a
        successful handshake"). Returns the connections closed."""
        key = key or self.api_key
        self.keys.revoke(key)
        return self.sockets.close_all_of(key)

    async def revoke_key_for(
        self, seconds_real: float, key: str | None = None
    ) -> list[ConnectionInfo]:
        """:meth:`revoke_key` now, and accept the key again after ``seconds_real`` (real time:
        the client's reconnect timers run meanwhile), whatever else happens in between."""
        key = key or self.api_key
        closed = await self.revoke_key(key)

        async def restore() -> None:
            await self.clock.sleep_real(seconds_real)
            if key in self.keys.revoked:
                self.add_key(key)
                self.poke()

        self.tasks.spawn(restore(), "restoring a revoked key")
        return closed

    # --- the schedule (simulators.pelion.schedule) ---------------------------------------

    def poke(self) -> None:
        """Something changed: the scheduler and every :meth:`drive` look again."""
        self.schedule.poke()

    def handle_timeout(self, now: float) -> None:
        self.schedule.handle_timeout(now)

    def next_deadline(self) -> float | None:
        return self.schedule.next_deadline()

    def carry_out(self, effects: Iterable[Effect]) -> list[ItemQueued]:
        """Carry out what the cores decided; return the items queued."""
        return self.schedule.carry_out(effects)

    async def drive(
        self,
        until: Callable[[], bool] | None = None,
        *,
        timeout_real_s: float = 60.0,
        max_sim_s: float | None = None,
    ) -> bool:
        """Run the delivery schedule in the caller's context until ``until()`` holds (default:
        :meth:`idle`, every queue empty and nothing in flight); False when ``timeout_real_s``
        (real) ran out first.

        Under autojump (``harness.run(sim.drive(...), autojump=True)``) each wait for the next
        deadline (a back-off, a device answer, a removal) jumps the clock, but never while a
        delivery, verification or poll answer is under way (those run at the SUT's real pace),
        and never past ``max_sim_s`` simulated seconds from the start (then it waits in real
        time, e.g. for the SUT to reconnect). ``until`` is evaluated in the loop, after every
        change and at least every 50 ms. Bound the jumps with ``max_sim_s`` when a channel
        cannot deliver (a WebSocket channel without a socket keeps its items for 24 h: an
        unbounded autojump would reach its removal).
        """
        return await self.schedule.drive(until, timeout_real_s=timeout_real_s, max_sim_s=max_sim_s)

    def idle(self) -> bool:
        """No item queued on any channel, nothing in flight, no device request pending."""
        return self.schedule.idle()

    # --- channels (simulators.pelion.sending, longpoll, channel_view) ---------------------

    async def register_callback(
        self,
        url: str,
        headers: Mapping[str, str] | None = None,
        *,
        serialization: Mapping[str, Any] | None = None,
        key: str | None = None,
        verify: bool = True,
    ) -> Verification | None:
        """Register a callback as ``PUT /v2/notification/callback`` does
        (:meth:`Sending.register_callback`)."""
        return await self.sending.register_callback(
            url, headers, serialization=serialization, key=key, verify=verify
        )

    async def register_webhook(
        self, key: str, webhook: Webhook, *, verify: bool = True
    ) -> Verification | None:
        """The steps of ``PUT /v2/notification/callback`` after the body was validated."""
        return await self.sending.register_webhook(key, webhook, verify=verify)

    async def delete_channel(self, key: str | None = None) -> str | None:
        """Delete ``key``'s channel as its application would (:meth:`Sending.delete_channel`)."""
        return await self.sending.delete_channel(key)

    async def poll(self, key: str, *, wait: bool = True) -> tuple[PollAnswer, PullDelivery | None]:
        """``GET /v2/notification/pull`` (:meth:`LongPolls.poll`)."""
        return await self.long_polls.poll(key, wait=wait)

    def answer_written(
        self,
        key: str,
        core: PullDelivery | None,
        answer: PollAnswer,
        body: bytes,
        error: str | None,
        started_real_s: float,
    ) -> None:
        """A 200 answer to a poll was written (``error`` None) or not."""
        self.long_polls.answer_written(key, core, answer, body, error, started_real_s)

    def discard_queue(self, key: str | None = None) -> int:
        """Drop every item still queued on ``key``'s channel (:meth:`ChannelView.discard_queue`)."""
        return self.channels.discard_queue(key)

    def serialize_with(
        self, config: Mapping[str, Any] | None, key: str | None = None
    ) -> SerializationConfig | None:
        """Serialize ``key``'s next batches with ``config`` (:meth:`ChannelView.serialize_with`)."""
        return self.channels.serialize_with(config, key)

    def serialization(self, key: str | None = None) -> SerializationConfig | None:
        """The serialization ``key``'s callback or WebSocket channel delivers with now."""
        return self.channels.serialization(key)

    def channel_state(self, key: str | None = None) -> ChannelSnapshot | None:
        """``key``'s channel now (any thread), None when it has none."""
        return self.channels.channel_state(key)

    def removed_channels(self) -> list[ChannelRemoved]:
        """Every channel the service removed or the application deleted, in order."""
        return self.channels.removed_channels()

    # --- WebSocket (simulators.pelion.sockets) -------------------------------------------

    def new_connection_number(self) -> int:
        return self.sockets.new_connection_number()

    def keep_connection(self, conn: Connection | ConnectionInfo) -> None:
        self.sockets.keep_connection(conn)

    def socket_bound(self, key: str, conn: Connection) -> None:
        self.sockets.socket_bound(key, conn)

    def socket_ended(self, key: str, conn: Connection, *, by_client: bool) -> None:
        self.sockets.socket_ended(key, conn, by_client=by_client)

    def bound_connection(self, key: str | None = None) -> Connection | None:
        return self.sockets.bound_connection(key)

    async def close_socket(self, code: int, reason: str = "", key: str | None = None) -> bool:
        """Close the key's bound WebSocket with ``code`` (fault); False when none is bound."""
        return await self.sockets.close_socket(code, reason, key)

    async def drop_socket(self, key: str | None = None) -> bool:
        """End the key's bound WebSocket without a close frame (the client sees 1006)."""
        return await self.sockets.drop_socket(key)

    async def ping(self, key: str | None = None) -> PingRecord | None:
        """Ping the key's bound socket now, wait for the pong (:meth:`Sockets.ping`)."""
        return await self.sockets.ping(key)

    # --- devices (simulators.pelion.device_control) --------------------------------------

    def add_device(
        self,
        ep: str | None = None,
        *,
        resources: Iterable[Resource] | None = None,
        ept: str = "default",
        original_ep: str | None = None,
        lifetime_s: float | None = None,
        queue_mode: bool = False,
        response_delay_s: float = DEFAULT_RESPONSE_DELAY_S,
    ) -> Device:
        """Make a device known (not registered yet): :meth:`DeviceControl.add_device`."""
        return self.device_control.add_device(
            ep, resources=resources, ept=ept, original_ep=original_ep, lifetime_s=lifetime_s,
            queue_mode=queue_mode, response_delay_s=response_delay_s,
        )  # fmt: skip

    async def register(self, ep: str) -> list[ItemQueued]:
        """The device registers: a ``registrations`` item on every key's channel."""
        return await self.device_control.register(ep)

    async def update_registration(
        self, ep: str, resources: Iterable[Resource] | None = None
    ) -> list[ItemQueued]:
        """A registration update: a ``reg-updates`` item on every key's channel."""
        return await self.device_control.update_registration(ep, resources)

    async def deregister(self, ep: str) -> list[ItemQueued]:
        """The device de-registers: a ``de-registrations`` item on every key's channel."""
        return await self.device_control.deregister(ep)

    async def expire(self, ep: str) -> list[ItemQueued]:
        """The registration expires: a ``registrations-expired`` item on every key's channel."""
        return await self.device_control.expire(ep)

    async def set_value(self, ep: str, path: str, value: Value) -> list[ItemQueued]:
        """A resource changes: a ``notifications`` item for every key subscribed to it."""
        return await self.device_control.set_value(ep, path, value)

    def subscribe(self, ep: str, path: str, key: str | None = None) -> None:
        """Subscribe ``key`` (default: the run's) to a resource."""
        self.device_control.subscribe(ep, path, key)

    async def inject(
        self,
        kind: Kind,
        bodies: Iterable[Mapping[str, Any]],
        *,
        key: str | None = None,
        original_ep: str | None = None,
    ) -> list[ItemQueued]:
        """Queue raw items of ``kind`` on ``key``'s channel (:meth:`DeviceControl.inject`)."""
        return await self.device_control.inject(kind, bodies, key=key, original_ep=original_ep)

    async def queue(
        self, events: Iterable[Event], *, key: str | None = None, what: str = "events queued"
    ) -> list[ItemQueued]:
        """Queue ready-made events on ``key``'s channel (default: the run's)."""
        return await self.device_control.queue(events, key=key, what=what)

    # --- what happened -------------------------------------------------------------------

    def attempts(self) -> list[DeliveryAttempt]:
        """Every batch attempt kept so far, in order (any thread)."""
        return self.attempt_log.attempts()

    def verifications(self) -> list[Verification]:
        return self.attempt_log.verifications()

    def attempt_body(self, seq: int) -> bytes | None:
        """The exact bytes batch attempt ``seq`` sent, while the bounded log keeps them."""
        return self.attempt_log.body(seq)

    @property
    def attempts_total(self) -> int:
        """How many batch attempts were logged (kept or not)."""
        return self.attempt_log.total

    @property
    def connections_total(self) -> int:
        return self.sockets.connections_total

    def connections(self) -> list[ConnectionInfo]:
        """Every WebSocket connect attempt kept so far, live ones as of now (any thread)."""
        return self.sockets.connections()

    def forgotten_connections(self) -> ForgottenConnections:
        """The run-wide facts of the connects no longer kept (any thread)."""
        return self.sockets.forgotten_connections()

    def calls(self) -> list[Any]:
        """The REST calls the SUT made (:class:`simulators.pelion.api.ApiCall`), any thread."""
        return self.api.calls()

    def wait_for(self, predicate: Callable[[], Any], timeout: float) -> Any:
        """Block (from a check's thread, never in the loop) until ``predicate()`` is truthy or
        ``timeout`` real seconds passed; returns its last value (:meth:`StateChanges.wait_for`).
        It is evaluated again after every logged attempt, call, connection or verification, and
        at least every 50 ms (outside any lock, so it may call :meth:`channel_state`)."""
        return self.changed.wait_for(predicate, timeout)
