"""The simulated Device Management notification service: the cores put to work over real
sockets, and the Python API a check writer drives (vendor doc, "The event notification
channel"; docs/vendors/pelion.md).

:class:`PelionSimulator` owns the cores (:class:`~simulators.pelion.channels.ChannelRegistry`
for every API key's channel and queue, :class:`~simulators.pelion.devices.Devices` for the
simulated devices and subscriptions) and carries their decisions out:

- the HTTPS API (:mod:`simulators.pelion.api`) feeds requests in;
- a scheduler task (a :class:`~simulators.adapter.DeadlineLoop` over
  :meth:`PelionSimulator.handle_timeout`) wakes at the cores' ``next_deadline()`` on the
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
import contextlib
import ssl
from collections import Counter, deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from simulators.adapter import BackgroundTasks, DeadlineLoop, StateChanges, sleep_until_woken
from simulators.clock import Clock
from simulators.evidence import CAUSE, RUN, Recorder
from simulators.faultlog import FaultLog
from simulators.faults import FaultPlan
from simulators.pelion.callback import CallbackClient
from simulators.pelion.channels import (
    ChannelConflict,
    ChannelOptions,
    ChannelRegistry,
    ChannelRemoved,
    Effect,
    ItemQueued,
    Undeliverable,
    Wake,
)
from simulators.pelion.delivery import (
    REASON_BAD_KEY,
    REQUEST_TIMEOUT_S,
    Batch,
    CallbackDelivery,
    CallbackState,
    CloseCode,
    CloseSocket,
    PollAnswer,
    PullDelivery,
    WebSocketDelivery,
    WsAuthFailure,
)
from simulators.pelion.devices import DEFAULT_RESPONSE_DELAY_S, Device, Devices, Resource, Value
from simulators.pelion.keys import ApiKeys, KeyStatus
from simulators.pelion.models import (
    DEFAULT_SERIALIZATION,
    Event,
    Kind,
    Outgoing,
    SerializationConfig,
    Webhook,
    serialize,
)
from simulators.pelion.records import (
    AttemptLog,
    ChannelSnapshot,
    DeliveryAttempt,
    Verification,
    VerificationFailed,
)
from simulators.pelion.websocket import Connection, ConnectionInfo, PingRecord

if TYPE_CHECKING:
    from simulators.pelion.traffic import DemoTraffic

__all__ = [
    "ACTOR",
    "DEFAULT_EPOCH_S",
    "ChannelSnapshot",
    "DeliveryAttempt",
    "PelionConfig",
    "PelionSimulator",
    "Verification",
    "VerificationFailed",
]

T = TypeVar("T")
ACTOR = "pelion"
PEER = "sut"
CONNECTIONS_KEPT = 2_000
WAIT_LOOK_AGAIN_S = 0.05  # wait_for looks at the cores again this often (real seconds)
# Unix time of simulated 0 when the caller gives none (``timestamp`` of serialization v2).
DEFAULT_EPOCH_S = 1_700_000_000.0


@dataclass(frozen=True)
class PelionConfig:
    """The simulator's settings; every default is the vendor doc's, written once in the core
    that applies it.

    ``channel``: the channel rules' numbers (:class:`ChannelOptions`), among them the callback
    back-off (:class:`BackOff`: the first retry after 2 s in the vendor doc, 1 s in SPEC20/21
    and later Pelion docs) and the close code of a channel deleted over REST (1001 in the vendor
    doc, 1000 in SPEC20/21). ``ws_auth_failure``: a WebSocket connect with a missing or invalid
    key is accepted and closed 1008 (vendor doc: "Authentication fails due to an invalid or
    missing API key header when connecting") or refused with HTTP 401 (SPEC20/21).
    ``cafiles``: CAs trusted for callback URLs besides the system's. ``epoch_s``: the Unix time
    of simulated 0.
    """

    api_key: str
    port: int = 0
    channel: ChannelOptions = field(default_factory=ChannelOptions)
    ws_auth_failure: WsAuthFailure = "close-1008"
    request_timeout_s: float = REQUEST_TIMEOUT_S
    pull_timeout_s: float = 30.0
    ping_interval_s: float | None = 30.0
    pong_timeout_s: float = 5.0
    cafiles: tuple[str, ...] = ()
    epoch_s: float = DEFAULT_EPOCH_S
    slow_request_s: float = 15.0  # a connection without a whole request by then is closed


class PelionSimulator:
    """The simulated service on 127.0.0.1 (HTTPS and WSS with the simulators' certificate)."""

    attempt_log_type: type[AttemptLog] = AttemptLog

    def __init__(
        self, clock: Clock, recorder: Recorder, server_context: ssl.SSLContext, config: PelionConfig
    ) -> None:
        self.clock = clock
        self.recorder = recorder
        self.config = config
        self.server_context = server_context  # ssl.SSLContext of the API's certificate
        self.registry = ChannelRegistry(config.channel)
        self.devices = Devices()
        self.keys = ApiKeys(config.api_key)
        self.faults = FaultPlan()
        self.fault_log = FaultLog(ACTOR)
        self.client = CallbackClient(
            clock, cafiles=config.cafiles, timeout_s=config.request_timeout_s
        )
        self.port = config.port
        self._pings_enabled = True
        # A check's predicate may read the cores too, which change without a notification.
        self.changed = StateChanges(clock, look_again_s=WAIT_LOOK_AGAIN_S)
        self.attempt_log = self.attempt_log_type(self.changed)
        self._connections: deque[Connection | ConnectionInfo] = deque(maxlen=CONNECTIONS_KEPT)
        self.connections_total = 0
        self._webhooks: dict[str, tuple[CallbackDelivery, Webhook]] = {}
        self._sending: set[object] = set()  # channel cores with a batch in flight
        self._busy = 0  # deliveries, verifications and poll answers under way
        self._polls: dict[object, asyncio.Future[PollAnswer]] = {}
        self._wakers: set[asyncio.Event] = set()  # drive() calls waiting for a poke
        self.tasks = BackgroundTasks(self.fault_log)
        self.timers = DeadlineLoop(clock, self)  # the scheduler
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: Any = None
        self._uid_seq = 0
        self.undeliverable = 0
        from simulators.pelion.api import Api  # the HTTP layer (imports this module)

        self.api = Api(self)

    # --- life cycle ----------------------------------------------------------------------

    @property
    def api_key(self) -> str:
        return self.config.api_key

    @property
    def base_url(self) -> str:
        """``https://127.0.0.1:PORT``; the API is ``/v2/...`` below it."""
        return f"https://127.0.0.1:{self.port}"

    @property
    def websocket_url(self) -> str:
        return f"wss://127.0.0.1:{self.port}/v2/notification/websocket-connect"

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        await self.client.start()
        self.port = await self.api.start(self.config.port)
        self.tasks.spawn(self.timers.run(), "scheduler")

    async def stop(self) -> None:
        """Close every socket with 1001 ("the server is shutting down"), stop every task."""
        closing = [
            c.close(CloseCode.GOING_AWAY, "the server is shutting down")
            for c in self._live_connections()
        ]
        if closing:
            await asyncio.wait([asyncio.ensure_future(c) for c in closing], timeout=2)
        await self.tasks.cancel()
        await self.api.stop()
        await self.client.close()

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

    def _in_loop(self, fn: Callable[[], T]) -> T:
        """``fn()`` in the simulators' loop (at once when already there)."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return fn()
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            return fn()

        async def call() -> T:
            return fn()

        return asyncio.run_coroutine_threadsafe(call(), loop).result(timeout=30)

    @property
    def pings_enabled(self) -> bool:
        """Whether the server pings its sockets. False: no pings are sent, so no pong is
        expected (a negative check: a client that waits for pings to detect a dead link)."""
        return self._pings_enabled

    @pings_enabled.setter
    def pings_enabled(self, enabled: bool) -> None:
        self._pings_enabled = enabled
        for conn in self._live_connections():
            conn.pings_enabled = enabled

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
        closed = []
        for conn in self._live_connections(key):
            conn.close(CloseCode.POLICY_VIOLATION, REASON_BAD_KEY)
            self._socket_ended(key, conn, by_client=False)
            closed.append(conn.snapshot())
        return closed

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

    # --- the schedule --------------------------------------------------------------------

    def poke(self) -> None:
        """Something changed: the scheduler and every :meth:`drive` look again."""
        for event in self._wakers:
            event.set()
        self.timers.wake()

    def handle_timeout(self, now: float) -> None:
        """Apply every timer due by ``now``, carry out the effects, start what is due."""
        out = self.devices.handle_timeout(now)
        if out:
            self._note_device_events(out)
            self.carry_out(self.registry.dispatch(out, now))
        effects = self.registry.handle_timeout(now)
        if effects:
            self.carry_out(effects)
        self._start_sends(now)

    def next_deadline(self) -> float | None:
        """When :meth:`handle_timeout` next has work (a due time at or before now while a
        batch is in flight: the scheduler looks again shortly)."""
        deadlines = [d for d in (self.registry.next_deadline(), self.devices.next_deadline()) if d]
        return min(deadlines) if deadlines else None

    async def _wait(self, deadline: float | None, real_timeout: float | None) -> None:
        """Until ``deadline`` (simulated; jumps under autojump), a poke, or ``real_timeout``."""
        event = asyncio.Event()
        self._wakers.add(event)
        try:
            await sleep_until_woken(self.clock, event, deadline, real_timeout)
        finally:
            self._wakers.discard(event)

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
        predicate = until or self.idle
        start_real = self.clock.real()
        limit = None if max_sim_s is None else self.clock.now() + max_sim_s
        while True:
            self.handle_timeout(self.clock.now())
            if predicate():
                return True
            left = timeout_real_s - (self.clock.real() - start_real)
            if left <= 0:
                return False
            deadline = self.next_deadline()
            now = self.clock.now()
            jump = (
                self._busy == 0
                and deadline is not None
                and deadline > now
                and (limit is None or deadline <= limit)
            )
            await self._wait(deadline if jump else None, min(left, 0.05))

    def idle(self) -> bool:
        """No item queued on any channel, nothing in flight, no device request pending (a
        registration's lifetime running out is not pending work)."""
        if self._busy or self._sending:
            return False
        if any(self.devices.pending_requests(ep) for ep in self.devices.devices):
            return False
        return all(
            core is None or len(core.queue) == 0
            for core in (self.registry.core(k) for k in self.registry.keys())  # noqa: SIM118 (a method)
        )

    # --- effects -------------------------------------------------------------------------

    def carry_out(self, effects: Iterable[Effect]) -> list[ItemQueued]:
        """Carry out what the cores decided; return the items queued."""
        cause = CAUSE.get()
        queued: list[ItemQueued] = []
        lost: Counter[str] = Counter()
        wake = False
        for effect in effects:
            if type(effect) is ItemQueued:
                queued.append(effect)
                if cause != RUN:
                    self.recorder.remember_cause(effect.item.uid)
                wake = True
            elif isinstance(effect, Wake):
                wake = True
            elif isinstance(effect, PollAnswer):
                waiter = self._polls.get(effect.poll)
                if waiter is not None and not waiter.done():
                    waiter.set_result(effect)
            elif isinstance(effect, CloseSocket):
                if isinstance(effect.socket, Connection):
                    effect.socket.close(int(effect.code), effect.reason)
            elif isinstance(effect, ChannelRemoved):
                self._webhooks.pop(effect.key, None)
                self.recorder.record(
                    ACTOR,
                    "--",
                    PEER,
                    "channel-removed",
                    f"{effect.mechanism} channel removed ({effect.reason}); "
                    f"{effect.dropped_items} queued item(s) dropped",
                    reason=effect.reason,
                    dropped=effect.dropped_items,
                )
            elif isinstance(effect, Undeliverable):
                lost[effect.event.kind] += 1
        if lost:
            self.undeliverable += sum(lost.values())
            self.recorder.record(
                ACTOR,
                "--",
                PEER,
                "undeliverable",
                "no channel for the key: lost " + ", ".join(f"{n} {k}" for k, n in lost.items()),
            )
        if wake:
            self.poke()
        return queued

    def _note_device_events(self, out: list[Outgoing]) -> None:
        kinds = Counter(o.event.kind for o in out)
        self.recorder.record(
            "devices",
            "--",
            ACTOR,
            "device-events",
            "devices: " + ", ".join(f"{n} {k}" for k, n in kinds.items()),
        )

    def _route(self, out: list[Outgoing], what: str) -> list[ItemQueued]:
        now = self.clock.now()
        queued = self.carry_out(self.registry.dispatch(out, now))
        uids = [q.item.uid for q in queued[:3]]
        more = f" +{len(queued) - 3}" if len(queued) > 3 else ""
        self.recorder.record(
            "devices",
            "--",
            ACTOR,
            "queued",
            f"{what}: {len(queued)} item(s) queued (uid {', '.join(uids)}{more})"
            if queued
            else f"{what}: nothing queued (no channel or no subscriber)",
            uids=uids,
        )
        self.handle_timeout(self.clock.now())
        return queued

    # --- sending -------------------------------------------------------------------------

    def _start_sends(self, now: float) -> None:
        for key in self.registry.keys():  # noqa: SIM118 (a method, not a dict)
            core = self.registry.core(key)
            if core is None or core in self._sending:
                continue
            if isinstance(core, CallbackDelivery):
                registered = self._webhooks.get(key)
                if registered is None or registered[0] is not core:
                    continue
                batch = core.next_batch(now)
                if batch is not None:
                    self._begin(core)
                    self.tasks.spawn(
                        self._send_callback(key, core, registered[1], batch), "delivery"
                    )
            elif isinstance(core, WebSocketDelivery):
                conn = core.socket
                if isinstance(conn, Connection) and not conn.closing:
                    batch = core.next_batch(now)
                    if batch is not None:
                        self._begin(core)
                        self.tasks.spawn(
                            self._send_frame(key, core, conn, batch), "websocket frame"
                        )

    def _begin(self, core: object) -> None:
        self._sending.add(core)
        self._busy += 1

    def _end(self, core: object) -> None:
        self._sending.discard(core)
        self._busy -= 1
        self.poke()

    def _cause_of(self, batch: Batch) -> str:
        for item in (batch.items[0], batch.items[-1]):
            cause = self.recorder.cause_of(item.uid)
            if cause is not None:
                return cause
        return RUN

    async def _send_callback(
        self, key: str, core: CallbackDelivery, webhook: Webhook, batch: Batch
    ) -> None:
        try:
            cause = self._cause_of(batch)
            fault = self.faults.take("callback")
            kinds = dict(batch.kinds)
            body = serialize(batch.items, batch.config, epoch_s=self.config.epoch_s, kinds=kinds)
            started_real, started_sim = self.clock.readings()
            label = f"batch {batch.number} (attempt {batch.attempt}, {len(batch)} item(s))"
            self.recorder.record(
                ACTOR,
                "->",
                PEER,
                "callback-put",
                f"PUT {label}, {len(body)} B" + (f" [fault {fault.kind}]" if fault else ""),
                cause=cause,
                url=webhook.url,
                kinds=kinds,
                first_uid=batch.items[0].uid,
            )
            exchange = await self.client.put_batch(webhook.url, body, webhook.headers, fault)
            now = self.clock.now()
            if exchange.status is not None:
                core.receive_response(batch, exchange.status, now)
            else:
                core.receive_failure(batch, now, exchange.error or exchange.outcome)
            retry_in = None
            if core.state is CallbackState.BACKING_OFF:
                retry_in = core.backoff.delay_s(core.failures)  # exact (retry_at - now rounds)
            self.attempt_log.add(
                DeliveryAttempt.of_batch(
                    batch,
                    key=key,
                    channel="callback",
                    attempt=batch.attempt,
                    body_bytes=len(body),
                    started_real_s=started_real,
                    started_sim_s=started_sim,
                    elapsed_real_s=exchange.elapsed_real_s,
                    succeeded=exchange.succeeded,
                    status=exchange.status,
                    answered=exchange.answered,
                    error=exchange.error,
                    fault=exchange.fault,
                    retry_in_sim_s=retry_in,
                    channel_removed=core.state is CallbackState.REMOVED,
                    url=webhook.url,
                ),
                batch,
            )
            answer = (
                f"{exchange.answered}" if exchange.answered is not None else exchange.outcome
            ) + f" for {label} in {exchange.elapsed_real_s * 1000:.1f} ms"
            if exchange.fault in ("status", "timeout"):
                answer += f", counted as {exchange.status or 'a timeout'} (fault)"
            if retry_in is not None:
                answer += f"; retry in {retry_in:g} s (simulated)"
            self.recorder.record(
                PEER if exchange.answered is not None else ACTOR,
                "->" if exchange.answered is not None else "--",
                ACTOR if exchange.answered is not None else PEER,
                "callback-answer",
                answer,
                cause=cause,
                status=exchange.answered,
                error=exchange.error,
                elapsed_ms=round(exchange.elapsed_real_s * 1000, 2),
            )
        finally:
            self._end(core)

    async def _send_frame(
        self, key: str, core: WebSocketDelivery, conn: Connection, batch: Batch
    ) -> None:
        try:
            cause = self._cause_of(batch)
            kinds = dict(batch.kinds)
            body = serialize(batch.items, batch.config, epoch_s=self.config.epoch_s, kinds=kinds)
            started_real, started_sim = self.clock.readings()
            error = await conn.send_message(body, len(batch))
            now = self.clock.now()
            if error is None:
                core.batch_sent(batch, now)
            else:
                core.batch_failed(batch, now)
            self.attempt_log.add(
                DeliveryAttempt.of_batch(
                    batch,
                    key=key,
                    channel="websocket",
                    attempt=1,
                    body_bytes=len(body),
                    started_real_s=started_real,
                    started_sim_s=started_sim,
                    elapsed_real_s=self.clock.real() - started_real,
                    succeeded=error is None,
                    error=error,
                    connection=conn.info.number,
                ),
                batch,
            )
            self.recorder.record(
                ACTOR,
                "->",
                PEER,
                "websocket-frame",
                f"frame: batch {batch.number}, {len(batch)} item(s), {len(body)} B"
                + (f": not sent ({error})" if error else ""),
                cause=cause,
                connection=conn.info.number,
                first_uid=batch.items[0].uid,
            )
        finally:
            self._end(core)

    # --- callback channel ----------------------------------------------------------------

    async def register_callback(
        self,
        url: str,
        headers: Mapping[str, str] | None = None,
        *,
        serialization: Mapping[str, Any] | None = None,
        key: str | None = None,
        verify: bool = True,
    ) -> Verification | None:
        """Register a callback for ``key`` (default: the run's) as ``PUT
        /v2/notification/callback`` does: the verification PUT ``{}`` with ``headers`` first;
        raises :class:`VerificationFailed` when it is not answered 2xx, ``ChannelConflict``
        when the key has another channel type. ``verify=False`` skips the verification (a
        check aid: a receiver that fails it is judged on the rest all the same)."""
        body: dict[str, Any] = {"url": url, "headers": dict(headers or {})}
        if serialization is not None:
            body["serialization"] = dict(serialization)
        webhook = Webhook.model_validate(body)
        return await self.register_webhook(key or self.api_key, webhook, verify=verify)

    async def register_webhook(
        self, key: str, webhook: Webhook, *, verify: bool = True
    ) -> Verification | None:
        """The steps of ``PUT /v2/notification/callback`` after the body was validated."""
        self.handle_timeout(self.clock.now())  # timers first: a channel removed by now is gone
        existing = self.registry.mechanism(key)
        if existing not in (None, "CALLBACK"):
            raise ChannelConflict(key, existing, "CALLBACK")
        if not verify:
            self.recorder.record(
                ACTOR, "--", PEER, "register", f"{webhook.url} registered without verification"
            )
            self._registered(key, webhook)
            return None
        real, sim = self.clock.readings()
        self.recorder.record(
            ACTOR, "->", PEER, "verify", f"verification PUT {{}} to {webhook.url}", url=webhook.url
        )
        self._busy += 1
        try:
            exchange = await self.client.verify(webhook.url, webhook.headers)
        finally:
            self._busy -= 1
        verification = Verification(
            key, webhook.url, tuple(webhook.headers or ()), real, sim, exchange
        )
        self.attempt_log.add_verification(verification)
        self.recorder.record(
            PEER if exchange.answered is not None else ACTOR,
            "->" if exchange.answered is not None else "--",
            ACTOR if exchange.answered is not None else PEER,
            "verify-answer",
            f"verification answered {exchange.answered} in {exchange.elapsed_real_s * 1000:.1f} ms"
            if exchange.answered is not None
            else f"verification failed: {exchange.error}",
            status=exchange.answered,
        )
        if not exchange.succeeded:
            raise VerificationFailed(exchange)
        self._registered(key, webhook)
        return verification

    def _registered(self, key: str, webhook: Webhook) -> None:
        self.carry_out(self.registry.register_callback(key, webhook, self.clock.now()))
        core = self.registry.callback(key)
        assert core is not None
        self._webhooks[key] = (core, webhook)
        self.handle_timeout(self.clock.now())

    async def delete_channel(self, key: str | None = None) -> str | None:
        """Delete ``key``'s channel as its application would (REST): the queue is dropped, a
        bound WebSocket is closed with the configured code (1001 by default). Returns the
        mechanism deleted, None when there was none."""
        key = key or self.api_key
        now = self.clock.now()
        mechanism = self.registry.mechanism(key)
        if mechanism == "CALLBACK":
            _, effects = self.registry.delete_callback(key, now)
        elif mechanism == "WEB_SOCKET":
            _, effects = self.registry.delete_websocket(key, now)
        elif mechanism == "LONG_POLLING":
            _, effects = self.registry.delete_pull(key, now)
        else:
            return None
        self.carry_out(effects)
        self.handle_timeout(self.clock.now())
        return mechanism

    # --- long poll -----------------------------------------------------------------------

    async def poll(self, key: str, *, wait: bool = True) -> tuple[PollAnswer, PullDelivery | None]:
        """``GET /v2/notification/pull``: the answer (200 with a batch, 204, 409, 410) and the
        pull core it came from. Waits at most ``pull_timeout_s`` (real) for items. Raises
        ``ChannelConflict`` (400) when the key has another channel type. The caller reports
        the 200 answer's write with :meth:`answer_written`."""
        poll = object()
        waiter: asyncio.Future[PollAnswer] = asyncio.get_running_loop().create_future()
        self._polls[poll] = waiter
        handed_over = False
        try:
            self.carry_out(self.registry.poll(key, poll, self.clock.now()))
            if not waiter.done() and wait:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(waiter), self.config.pull_timeout_s)
            if not waiter.done():
                self.carry_out(self.registry.poll_timed_out(key, poll, self.clock.now()))
            if not waiter.done():  # already ended elsewhere (the channel went away)
                waiter.set_result(PollAnswer(poll, 204))
            answer = waiter.result()
            core = self.registry.pull(key)
            if answer.batch is not None:
                self._busy += 1
            handed_over = True
            return answer, core
        finally:
            del self._polls[poll]
            if not handed_over:  # refused, or cancelled (the client went away): end the poll
                now = self.clock.now()
                if waiter.done() and not waiter.cancelled():
                    unsent = waiter.result().batch
                    core = self.registry.pull(key)
                    if unsent is not None and core is not None:
                        core.batch_failed(unsent, now)
                else:
                    waiter.cancel()
                    self.carry_out(self.registry.poll_timed_out(key, poll, now))
            self.poke()

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
        batch = answer.batch
        assert batch is not None
        self._busy -= 1
        now = self.clock.now()
        if core is not None:
            if error is None:
                core.batch_sent(batch, now)
            else:
                core.batch_failed(batch, now)
        self.attempt_log.add(
            DeliveryAttempt.of_batch(
                batch,
                key=key,
                channel="pull",
                attempt=1,
                body_bytes=len(body),
                started_real_s=started_real_s,
                started_sim_s=batch.formed_at,
                elapsed_real_s=self.clock.real() - started_real_s,
                succeeded=error is None,
                status=200,
                error=error,
            ),
            batch,
        )
        self.recorder.record(
            ACTOR,
            "->",
            PEER,
            "pull-answer",
            f"200 to a poll: batch {batch.number}, {len(batch)} item(s), {len(body)} B"
            + (f": not written ({error})" if error else ""),
            cause=self._cause_of(batch),
        )
        self.poke()

    # --- WebSocket -----------------------------------------------------------------------

    def new_connection_number(self) -> int:
        self.connections_total += 1
        return self.connections_total

    def keep_connection(self, conn: Connection | ConnectionInfo) -> None:
        with self.changed:
            self._connections.append(conn)
            self.changed.notify_all()

    def _live_connections(self, key: str | None = None) -> list[Connection]:
        return [
            c
            for c in self._connections
            if isinstance(c, Connection)
            and c.info.end is None
            and (key is None or c.info.key == key)
        ]

    def socket_bound(self, key: str, conn: Connection) -> None:
        """An authenticated socket was accepted: bind it (1011 without a channel; an older
        socket is closed with 1001)."""
        self.carry_out(self.registry.connect_websocket(key, conn, self.clock.now()))
        self.handle_timeout(self.clock.now())

    def _socket_ended(self, key: str, conn: Connection, *, by_client: bool) -> None:
        self.carry_out(
            self.registry.socket_closed(key, conn, self.clock.now(), by_client=by_client)
        )
        self.poke()

    def socket_ended(self, key: str, conn: Connection, *, by_client: bool) -> None:
        self._socket_ended(key, conn, by_client=by_client)
        with self.changed:
            self.changed.notify_all()

    def bound_connection(self, key: str | None = None) -> Connection | None:
        core = self.registry.websocket(key or self.api_key)
        socket = core.socket if core is not None else None
        return socket if isinstance(socket, Connection) else None

    async def close_socket(self, code: int, reason: str = "", key: str | None = None) -> bool:
        """Close the key's bound WebSocket with ``code`` (fault); False when none is bound."""
        key = key or self.api_key
        conn = self.bound_connection(key)
        if conn is None:
            return False
        conn.close(code, reason or f"closed by the simulator with {code}")
        self._socket_ended(key, conn, by_client=False)
        return True

    async def drop_socket(self, key: str | None = None) -> bool:
        """End the key's bound WebSocket without a close frame (the client sees 1006)."""
        key = key or self.api_key
        conn = self.bound_connection(key)
        if conn is None:
            return False
        conn.drop()
        self._socket_ended(key, conn, by_client=False)
        return True

    async def ping(self, key: str | None = None) -> PingRecord | None:
        """Ping the key's bound socket now and wait (real time, at most the pong timeout) for
        the pong; a missing pong closes the socket with 1001 as the vendor does."""
        conn = self.bound_connection(key)
        return None if conn is None else await conn.ping()

    # --- devices -------------------------------------------------------------------------

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
        """Make a device known (not registered yet). Without ``resources`` it has
        :func:`standard_resources` (text/plain and TLV)."""
        if ep is None:
            self._uid_seq += 1
            ep = f"0172b9ba5409{self._uid_seq:020x}"
        device = Device(
            ep,
            ept=ept,
            resources={r.path: r for r in (resources or standard_resources())},
            original_ep=original_ep,
            q=queue_mode,
            lifetime_s=lifetime_s,
            response_delay_s=response_delay_s,
        )
        return self._in_loop(lambda: self.devices.add(device))

    async def register(self, ep: str) -> list[ItemQueued]:
        """The device registers: a ``registrations`` item on every key's channel."""
        return self._route(self.devices.register(ep, self.clock.now()), f"{ep} registered")

    async def update_registration(
        self, ep: str, resources: Iterable[Resource] | None = None
    ) -> list[ItemQueued]:
        """A registration update: a ``reg-updates`` item on every key's channel."""
        out = self.devices.update_registration(ep, self.clock.now(), resources=resources)
        return self._route(out, f"{ep} updated its registration")

    async def deregister(self, ep: str) -> list[ItemQueued]:
        """The device de-registers: a ``de-registrations`` item on every key's channel."""
        return self._route(self.devices.deregister(ep, self.clock.now()), f"{ep} de-registered")

    async def expire(self, ep: str) -> list[ItemQueued]:
        """The registration expires: a ``registrations-expired`` item on every key's channel."""
        return self._route(self.devices.expire(ep, self.clock.now()), f"{ep} expired")

    async def set_value(self, ep: str, path: str, value: Value) -> list[ItemQueued]:
        """A resource changes: a ``notifications`` item for every key subscribed to it."""
        out = self.devices.set_value(ep, path, value, self.clock.now())
        return self._route(out, f"{ep}{path} = {value!r}")

    def subscribe(self, ep: str, path: str, key: str | None = None) -> None:
        """Subscribe ``key`` (default: the run's) to a resource, as ``PUT
        /v2/subscriptions/{ep}/{path}`` does."""
        self._in_loop(lambda: self.devices.subscribe(key or self.api_key, ep, path))

    async def inject(
        self,
        kind: Kind,
        bodies: Iterable[Mapping[str, Any]],
        *,
        key: str | None = None,
        original_ep: str | None = None,
    ) -> list[ItemQueued]:
        """Queue raw items of ``kind`` on ``key``'s channel (default: the run's), whatever the
        devices and subscriptions: unknown fields, odd values, 10,000 items at once. A body
        needs ``ep`` (``id`` for ``async-responses``); ``uid`` and ``timestamp`` are added by
        serialization v2, so leave them out."""
        events = [Event(kind, body, original_ep) for body in bodies]
        return await self.queue(events, key=key, what=f"{len(events)} {kind} injected")

    async def queue(
        self, events: Iterable[Event], *, key: str | None = None, what: str = "events queued"
    ) -> list[ItemQueued]:
        """Queue ready-made events on ``key``'s channel (default: the run's)."""
        target = key or self.api_key
        return self._route([Outgoing(event, target) for event in events], what)

    # --- what happened -------------------------------------------------------------------

    def attempts(self) -> list[DeliveryAttempt]:
        """Every batch attempt kept so far, in order (any thread)."""
        return self.attempt_log.attempts()

    def verifications(self) -> list[Verification]:
        return self.attempt_log.verifications()

    @property
    def attempts_total(self) -> int:
        """How many batch attempts were logged (kept or not)."""
        return self.attempt_log.total

    def connections(self) -> list[ConnectionInfo]:
        """Every WebSocket connect attempt kept so far, live ones as of now (any thread)."""
        with self.changed:
            entries = list(self._connections)
        return [c.snapshot() if isinstance(c, Connection) else c for c in entries]

    def calls(self) -> list[Any]:
        """The REST calls the SUT made (:class:`simulators.pelion.api.ApiCall`), any thread."""
        return self.api.calls()

    def wait_for(self, predicate: Callable[[], Any], timeout: float) -> Any:
        """Block (from a check's thread, never in the loop) until ``predicate()`` is truthy or
        ``timeout`` real seconds passed; returns its last value (:meth:`StateChanges.wait_for`).
        It is evaluated again after every logged attempt, call, connection or verification, and
        at least every 50 ms (outside any lock, so it may call :meth:`channel_state`)."""
        return self.changed.wait_for(predicate, timeout)

    def discard_queue(self, key: str | None = None) -> int:
        """Drop every item still queued on ``key``'s channel (counted as deleted), so a batch
        the SUT cannot take does not hold up what follows (a check aid). Returns how many."""

        def clear() -> int:
            core = self.registry.core(key or self.api_key)
            return 0 if core is None else core.queue.clear()

        dropped = self._in_loop(clear)
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
            target = key or self.api_key
            callback = self.registry.callback(target)
            if callback is not None:
                before = callback.config
                callback.config = parsed or DEFAULT_SERIALIZATION
                return before
            websocket = self.registry.websocket(target)
            if websocket is not None:
                before = websocket.config
                websocket.configure(parsed)
                return before
            return None

        return self._in_loop(swap)

    def serialization(self, key: str | None = None) -> SerializationConfig | None:
        """The serialization ``key``'s callback or WebSocket channel delivers with now (any
        thread); None when the key has neither."""

        def read() -> SerializationConfig | None:
            core = self.registry.core(key or self.api_key)
            if isinstance(core, CallbackDelivery | WebSocketDelivery):
                return core.config
            return None

        return self._in_loop(read)

    def channel_state(self, key: str | None = None) -> ChannelSnapshot | None:
        """``key``'s channel now (any thread), None when it has none."""
        return self._in_loop(lambda: self._snapshot(key or self.api_key))

    def removed_channels(self) -> list[ChannelRemoved]:
        """Every channel the service removed or the application deleted, in order."""
        return self._in_loop(lambda: list(self.registry.removed))

    def _snapshot(self, key: str) -> ChannelSnapshot | None:
        self.carry_out(self.registry.handle_timeout(self.clock.now()))  # removed by now: gone
        core = self.registry.core(key)
        mechanism = self.registry.mechanism(key)
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
            registered = self._webhooks.get(key)
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


def standard_resources() -> list[Resource]:
    """A device's usual LwM2M resources: text/plain ones and an OMA-TLV one."""
    from simulators.pelion.devices import TLV

    return [
        Resource("/3/0/0", "Conformance Ltd", rt="Manufacturer", obs=False),
        Resource("/3/0/1", "Simulated sensor", rt="Model", obs=False),
        Resource("/3200/0/5501", 0, rt="Digital Input Counter"),
        Resource("/3303/0/5700", 21.5, rt="Temperature"),
        Resource("/3304/0/5700", 40, rt="Humidity", ct=TLV),
    ]
