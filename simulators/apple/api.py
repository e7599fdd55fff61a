"""HTTPS adapter for the simulated Apps and Books API (``/mdm/v2``), built on aiohttp.

The rules live in :class:`simulators.apple.service.AppsAndBooks`; this module parses requests,
records evidence, applies faults, sends the synchronous TEST_NOTIFICATION when client config is
stored, and delivers event notifications when events complete on the simulated clock.

Faults (``server.faults``): target ``"api"`` (any endpoint but client/config) or
``"api:GET /assets"`` (one endpoint), kind ``"status"`` with ``status`` 429 or 503, an
``error`` number (9646, 9729) and ``retry_after`` seconds (a ``Retry-After`` header).
"""

from __future__ import annotations

import asyncio
import json
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from aiohttp import web

from simulators.adapter import BackgroundTasks, DeadlineLoop, StateChanges, start_site
from simulators.apple.delivery import Delivery, RetrySchedule
from simulators.apple.models import Notification, TestNotification
from simulators.apple.notifier import Notifier, Receiver
from simulators.apple.service import ApiError, AppsAndBooks, error_body
from simulators.clock import Clock
from simulators.evidence import Recorder
from simulators.faultlog import FaultLog
from simulators.faults import FaultPlan
from simulators.network import Reach
from simulators.pki import PKI

__all__ = ["ApiRequest", "AppsAndBooksServer"]

ACTOR = "apple-api"
BASE_PATH = "/mdm/v2"
REQUESTS_KEPT = 20_000
MAX_BODY_BYTES = 1024 * 1024
DELIVERIES_KEPT = 1000  # event deliveries kept for delivery_of()
NotifierFactory = Callable[[Receiver], Notifier]
T = TypeVar("T")


@dataclass(frozen=True)
class ApiRequest:
    """One call the SUT made, as the API saw and answered it."""

    real_s: float
    sim_s: float
    method: str
    path: str  # below /mdm/v2, e.g. "status"
    query: dict[str, str]
    status: int
    error_number: int | None = None
    retry_after: int | None = None
    event_id: str | None = None
    event_status: str | None = None

    @property
    def endpoint(self) -> str:
        return f"{self.method} {self.path}"


@dataclass
class AppsAndBooksServer:
    """The simulated API over HTTPS (the simulators' certificate)."""

    service: AppsAndBooks
    clock: Clock
    recorder: Recorder
    pki: PKI
    notifier_factory: NotifierFactory
    port: int = 0
    reach: Reach = field(default_factory=Reach)  # where it listens, the name SUTs use
    # A connection that has not sent a whole request after this many seconds is closed
    # (aiohttp applies its keep-alive timeout from the start of a connection).
    request_timeout_s: float = 15.0
    faults: FaultPlan = field(default_factory=FaultPlan)
    fault_log: FaultLog = field(default_factory=lambda: FaultLog(ACTOR))
    # The calls the SUT made, the latest REQUESTS_KEPT of them (the rest are counted).
    requests: deque[ApiRequest] = field(default_factory=lambda: deque(maxlen=REQUESTS_KEPT))
    requests_total: int = 0
    notifier: Notifier | None = None
    changed: StateChanges = field(init=False)  # notified whenever a call is kept
    tasks: BackgroundTasks = field(init=False)
    timers: DeadlineLoop[list[Notification]] = field(init=False)  # events complete on time
    _runner: web.AppRunner | None = None
    _retired: set[Notifier] = field(default_factory=set)
    _deliveries: dict[str, asyncio.Task[list[Delivery]]] = field(default_factory=dict)
    _delivering: asyncio.Event = field(default_factory=asyncio.Event)  # a delivery was spawned

    def __post_init__(self) -> None:
        self.changed = StateChanges(self.clock)
        self.tasks = BackgroundTasks(self.fault_log)
        self.timers = DeadlineLoop(self.clock, self.service, self._deliver_events)

    @property
    def base_url(self) -> str:
        return self.reach.url("https", self.port, BASE_PATH)

    async def start(self) -> None:
        app = web.Application(
            middlewares=[self.fault_log.middleware()], client_max_size=MAX_BODY_BYTES
        )
        app.router.add_route("*", BASE_PATH + "/{path:.*}", self._serve)
        app.router.add_route("*", "/{path:.*}", self._elsewhere)
        self._runner = web.AppRunner(app, access_log=None, keepalive_timeout=self.request_timeout_s)
        await self._runner.setup()
        self.port = await start_site(
            self._runner, self.reach.listen, self.port, self.pki.server_context()
        )
        self.tasks.spawn(self.timers.run(), "background task")

    async def stop(self) -> None:
        await self.tasks.cancel()
        for notifier in [*self._retired, self.notifier]:
            if notifier is not None:
                await notifier.close()
        if self._runner is not None:
            await self._runner.cleanup()

    def release_events(self) -> None:
        """Let held events complete (thread-safe through the loop)."""
        self.service.release(self.clock.now())
        self.timers.wake()

    def calls(self) -> list[ApiRequest]:
        """The calls kept so far, in order (any thread)."""
        with self.changed:
            return list(self.requests)

    def wait_for(self, predicate: Callable[[list[ApiRequest]], T], timeout: float) -> T:
        """Block (outside the loop) until ``predicate(calls())`` is truthy or ``timeout`` real
        seconds pass; return its last value (:meth:`StateChanges.wait_for`)."""
        return self.changed.wait_for(lambda: predicate(self.calls()), timeout)

    # Request handling.

    async def _serve(self, request: web.Request) -> web.Response:
        """Answer one call, record it (evidence and :attr:`requests`), serialize it once."""
        path = request.match_info.get("path", "").strip("/")
        self.recorder.record(
            "sut",
            "->",
            ACTOR,
            "api-request",
            f"{request.method} {BASE_PATH}/{path}"
            + (f"?{request.query_string}" if request.query_string else ""),
        )
        headers: dict[str, str] = {}
        try:
            status, body, headers = await self._dispatch(request, path)
        except ApiError as exc:
            status, body = exc.status, error_body(exc.number, exc.message)
        retry_after = headers.get("Retry-After")
        record = ApiRequest(
            real_s=self.clock.real(),
            sim_s=self.clock.now(),
            method=request.method,
            path=path,
            query=dict(request.query),
            status=status,
            error_number=body.get("errorNumber"),
            retry_after=int(retry_after) if retry_after else None,
            event_id=request.query.get("eventId") if path == "status" else body.get("eventId"),
            event_status=body.get("eventStatus"),
        )
        with self.changed:
            self.requests.append(record)
            self.requests_total += 1
            self.changed.notify_all()
        self.recorder.record(
            ACTOR,
            "->",
            "sut",
            "api-response",
            f"{status} for {request.method} {path}"
            + (f" (errorNumber {record.error_number})" if record.error_number else "")
            + (f" eventStatus {record.event_status}" if record.event_status else "")
            + (f" Retry-After {retry_after}" if retry_after else ""),
            status=status,
        )
        return web.json_response(body, status=status, headers=headers)

    async def _dispatch(
        self, request: web.Request, path: str
    ) -> tuple[int, dict[str, Any], dict[str, str]]:
        """The answer to one call: HTTP status, JSON body, extra headers."""
        endpoint = f"{request.method} {path}"
        service = self.service
        if endpoint == "GET service/config":
            return 200, service.service_config(self.base_url), {}
        service.check_authorization(request.headers.get("Authorization"))
        if path != "client/config" and (
            fault := self.faults.take(f"api:{endpoint}") or self.faults.take("api")
        ):
            number = int(fault.get("error", 9729))
            status = int(fault.get("status", 503))
            headers = {}
            if fault.get("retry_after") is not None:
                headers["Retry-After"] = str(fault.get("retry_after"))
            self.recorder.record(
                ACTOR, "--", "sut", "fault", f"fault: {status}/{number} {endpoint}"
            )
            return status, error_body(number), headers
        now = self.clock.now()
        if request.method == "POST" and path in ("subscriptions/enable", "subscriptions/disable"):
            return 200, service.set_subscription_management(path.endswith("enable")), {}
        if request.method == "POST":
            if request.content_type != "application/json" or (
                request.charset is not None and request.charset.lower() not in ("utf-8", "utf8")
            ):
                raise ApiError(9727, "The Content-Type must be application/json (UTF-8).")
            payload = await _read_json(request)
            if path == "client/config":
                return 200, await self._store_client_config(payload), {}
            # The time the body came, not the request's start (the clock may have moved).
            response = service.mutate(path, payload, self.clock.now())
            self.timers.wake()
            return 200, response, {}
        if request.method != "GET":
            raise ApiError(9726)
        if path == "client/config":
            return 200, service.client_config_response(), {}
        if path == "status":
            return 200, service.status(request.query.get("eventId"), now), {}
        readers = {
            "assets": service.get_assets,
            "assignments": service.get_assignments,
            "users": service.get_users,
        }
        if path in readers:
            return 200, readers[path](), {}
        query = dict(request.query)
        if path == "subscriptions":
            return 200, service.get_subscriptions(query), {}
        if path == "subscriptions/assignments":
            return 200, service.get_subscription_assignments(query), {}
        return 404, {"errorMessage": f"No such endpoint: {endpoint}."}, {}

    async def _store_client_config(self, payload: Any) -> dict[str, Any]:
        """Validate, send TEST_NOTIFICATION synchronously (one attempt), store only if it was
        answered 2xx. Deliveries still under way to a replaced receiver run to their end."""
        request = self.service.validate_client_config(payload)
        url = request.get("notificationUrl")
        if url is None:
            return self.service.store_client_config(request)
        notifier = self.notifier_factory(Receiver(url, request["notificationAuthToken"]))
        test = Notification.of(TestNotification(), uid=self.service.uid)
        delivery = await notifier.deliver(test, schedule=RetrySchedule((0.0,)))
        if not delivery.attempts or not delivery.attempts[-1].succeeded:
            await notifier.close()
            raise ApiError(9728)
        if self.notifier is not None:
            self._retire(self.notifier)
        self.notifier = notifier
        return self.service.store_client_config(request)

    async def _elsewhere(self, request: web.Request) -> web.Response:
        """Any path outside /mdm/v2: a documented error body, never a plain-text 404."""
        self.recorder.record(
            "sut", "->", ACTOR, "api-request", f"{request.method} {request.path[:200]}"
        )
        body = error_body(9602, f"No such endpoint: {request.method} {request.path[:200]}.")
        return web.json_response(body, status=404)

    # Events complete on the simulated clock; their notifications go to the configured URL.

    def _deliver_events(self, notifications: list[Notification]) -> None:
        """The notifications of the events that completed, each to the configured receiver
        (each delivery kept by notificationId for :meth:`delivery_of`, the latest
        :data:`DELIVERIES_KEPT`)."""
        for notification in notifications:
            if self.notifier is not None:
                task = self.tasks.spawn(
                    self.notifier.deliver_event(notification), "background task"
                )
                self._deliveries[notification.notificationId] = task
                while len(self._deliveries) > DELIVERIES_KEPT:
                    del self._deliveries[next(iter(self._deliveries))]
        if notifications:
            self._delivering.set()

    def hand_out(self) -> list[Notification]:
        """What is due now, handed out and sent at once (as the timers would; in the loop)."""
        notifications = self.service.handle_timeout(self.clock.now())
        self._deliver_events(notifications)
        self.timers.wake()
        return notifications

    async def delivery_of(self, notification_id: str, timeout_s: float) -> list[Delivery]:
        """The deliveries of the notification the API sent under this id, once they have
        ended (it may not have been handed out yet); TimeoutError after ``timeout_s`` real
        seconds."""

        async def ended() -> list[Delivery]:
            while notification_id not in self._deliveries:
                self._delivering.clear()
                await self._delivering.wait()
            return await asyncio.shield(self._deliveries[notification_id])

        return await asyncio.wait_for(ended(), timeout_s)

    def _retire(self, notifier: Notifier) -> None:
        """A replaced receiver's notifier closes once its deliveries have ended."""
        self._retired.add(notifier)

        async def close() -> None:
            await notifier.close_when_idle()
            self._retired.discard(notifier)

        self.tasks.spawn(close(), "background task")


async def _read_json(request: web.Request) -> Any:
    """The JSON body, or a documented 4xx: too large (413), not JSON, not UTF-8, nested too
    deeply (9602). The declared charset is not trusted: JSON is UTF-8 (RFC 8259 §8.1)."""
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise ApiError(
            9602, f"The request body is over {MAX_BODY_BYTES} bytes.", status=413
        ) from None
    try:
        return json.loads(raw)
    except RecursionError:
        raise ApiError(9602, "The request body is nested too deeply.") from None
    except ValueError:
        raise ApiError(9602, "The request body is not valid JSON.") from None
