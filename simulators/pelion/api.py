"""HTTPS adapter of the simulated Device Management API subset, built on aiohttp (vendor doc;
docs/vendors/pelion.md §2–9; SPEC20/21 for the status codes).

Every call needs ``Authorization: Bearer ak_…`` (401 without it or with an unknown or revoked
key; 403 "Authorization token used is not an API key" for a token without the ``ak_``
prefix). Error bodies are the documented ``{"object": "error", "code", "type", "message",
"request_id"}`` JSON (with ``x-request-id``), except where the vendor answers plain text:
device-request refusals (``RESOURCE_NOT_FOUND``…), ``REMOVED`` / ``ALREADY_DELETED`` and
``CHANNEL_DELETED`` of the pull channel.

| endpoint | answers |
|---|---|
| ``PUT /v2/notification/callback`` | 204 after the verification PUT ``{}`` (with the registered headers) was answered 2xx; 400 when it was not, for another channel type, a bad URL or more than 400 characters of URL and headers; 415 for a non-JSON body |
| ``GET`` / ``DELETE`` the same | 200 ``{url, headers, serialization?}`` / 204; 404 without a callback |
| ``PUT /v2/notification/websocket`` | 201 created, 200 updated (``{queue_size, status, serialization?}``); 400 for another channel type |
| ``GET`` / ``DELETE`` the same | 200 status / 204; 404 without a channel |
| ``GET /v2/notification/websocket-connect`` | 101; 426 without ``Upgrade: websocket`` and ``Connection: Upgrade``; 400 without ``Sec-WebSocket-Key`` / ``-Version: 13``; 429 while a handshake with the same key is in progress; a missing or invalid key: 101 then close 1008 (vendor doc; 401 with ``ws_auth_failure="401"``, SPEC20/21) |
| ``GET /v2/notification/pull`` | 200 NotificationMessage; 204 when the poll ends empty (``pull_timeout_s``, real; ``?noWait=true`` at once); 409 for a second concurrent poll; 410 ``CHANNEL_DELETED`` when the channel is deleted meanwhile; 400 for another channel type |
| ``DELETE /v2/notification/pull`` | always 200, ``REMOVED`` or ``ALREADY_DELETED`` (the Python SDK gives up silently on a 404) |
| ``GET /v2/notification/channel`` | 200 ``{"delivery_mechanism": …}``; 404 |
| ``PUT`` / ``GET`` / ``DELETE /v2/subscriptions`` | 204 / 200 array / 204 (pre-subscriptions; 400 for a bad body) |
| ``PUT`` / ``GET`` / ``DELETE /v2/subscriptions/{device}/{path}`` | 200 / 200 or 404 / 204; 404 ``DEVICE_NOT_FOUND``, ``URI_PATH_DOES_NOT_EXISTS`` |
| ``GET`` / ``DELETE /v2/subscriptions/{device}`` | 200 ``text/uri-list`` / 204 |
| ``POST /v2/device-requests/{device}?async-id=…`` | 202, the result later as an ``async-responses`` item; 400 plain-text reason; 404 |

Bounded whatever the client does: bodies over :data:`MAX_BODY_BYTES` get 413; a connection
without a whole request after ``slow_request_s`` is closed; the call log keeps the latest
:data:`CALLS_KEPT` calls (the rest are counted); a WebSocket client may send at most 64 KiB per
message.
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import unquote

from aiohttp import web
from pydantic import ValidationError

from simulators.adapter import start_site
from simulators.pelion.api_calls import (
    CALL_NOTE,
    EXCERPT,
    ApiBackend,
    ApiCall,
    ApiError,
    CallNote,
    call_note,
    validation_error,
)
from simulators.pelion.api_websocket import WebSocketConnects
from simulators.pelion.channels import OTHER_TYPE_EXISTS, ChannelConflict
from simulators.pelion.config import ACTOR, PEER
from simulators.pelion.devices import RequestRejected
from simulators.pelion.handshake import bearer_token
from simulators.pelion.models import (
    RegisterWebsocketChannel,
    Webhook,
    parse_presubscriptions,
)
from simulators.pelion.records import VerificationFailed

__all__ = ["CALLS_KEPT", "MAX_BODY_BYTES", "Api", "ApiCall", "ApiError"]

CALLS_KEPT = 20_000
MAX_BODY_BYTES = 1024 * 1024
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_FORBIDDEN_VALUE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
# Headers the sender frames the request with: a registered value would corrupt it.
_RESERVED_HEADERS = frozenset({"content-length", "host", "transfer-encoding", "connection"})


class Api:
    """The aiohttp application over an :class:`ApiBackend` (the
    :class:`~simulators.pelion.simulator.PelionSimulator`)."""

    def __init__(self, sim: ApiBackend) -> None:
        self.sim = sim
        self._calls: deque[ApiCall] = deque(maxlen=CALLS_KEPT)
        self.calls_total = 0
        self._lock = threading.Lock()
        self.websocket_connects = WebSocketConnects(sim, self._keep)
        self._runner: web.AppRunner | None = None

    # --- life cycle ----------------------------------------------------------------------

    async def start(self, port: int) -> int:
        app = web.Application(
            middlewares=[self.sim.fault_log.middleware(), self._record],
            client_max_size=MAX_BODY_BYTES,
        )
        routes: list[tuple[str, Handler]] = [
            ("/v2/notification/callback", self._callback),
            ("/v2/notification/websocket", self._websocket),
            ("/v2/notification/websocket-connect", self.websocket_connects.handle),
            ("/v2/notification/pull", self._pull),
            ("/v2/notification/channel", self._channel),
            ("/v2/subscriptions", self._presubscriptions),
            ("/v2/subscriptions/{device}", self._device_subscriptions),
            ("/v2/subscriptions/{device}/{path:.+}", self._resource_subscription),
            ("/v2/device-requests/{device}", self._device_request),
        ]
        for path, handler in routes:
            app.router.add_route("*", path, handler)
        app.router.add_route("*", "/{tail:.*}", self._elsewhere)
        # handler_cancellation: a poll whose client went away ends at once (else the next poll
        # of the same key would get 409 until the first one timed out).
        self._runner = web.AppRunner(
            app,
            access_log=None,
            keepalive_timeout=self.sim.config.slow_request_s,
            handler_cancellation=True,
        )
        await self._runner.setup()
        return await start_site(self._runner, self.sim.reach.listen, port, self.sim.server_context)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def calls(self) -> list[ApiCall]:
        with self._lock:
            return list(self._calls)

    def _keep(self, call: ApiCall) -> None:
        with self._lock:
            self._calls.append(call)
            self.calls_total += 1
        with self.sim.changed:
            self.sim.changed.notify_all()

    # --- plumbing ------------------------------------------------------------------------

    @web.middleware
    async def _record(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Every call: one evidence event in, one out, one :class:`ApiCall`."""
        clock = self.sim.clock
        real, sim_s = clock.readings()
        line = f"{request.method} {request.path[:200]}" + (
            f"?{request.query_string[:200]}" if request.query_string else ""
        )
        self.sim.recorder.record(PEER, "->", ACTOR, "api-request", line)
        note = CallNote()
        CALL_NOTE.set(note)
        status = 500
        answer = ""
        try:
            try:
                response = await handler(request)
            except ApiError as exc:
                response = exc.response()
            status = response.status
            if isinstance(response, web.Response) and response.body is not None:
                body = response.body
                answer = (
                    body[:EXCERPT].decode("utf-8", "replace") if isinstance(body, bytes) else ""
                )
            return response
        except web.HTTPException as exc:
            status = exc.status
            raise
        finally:
            if not note.websocket:
                elapsed = clock.real() - real
                self._keep(
                    ApiCall(
                        real, sim_s, request.method, request.path[:500],
                        request.query_string[:500], status, note.auth,
                        elapsed, note.body, answer,
                        request.headers.get("User-Agent", "")[:200],
                    )
                )  # fmt: skip
                self.sim.recorder.record(
                    ACTOR, "->", PEER, "api-response",
                    f"{status} for {request.method} {request.path[:200]}"
                    + (f": {answer[:120]}" if status >= 400 and answer else ""),
                    status=status, elapsed_ms=round(elapsed * 1000, 2),
                )  # fmt: skip
            self.sim.poke()

    def _key(self, request: web.Request) -> str:
        """The API key of ``Authorization: Bearer ak_…``, else 401/403."""
        token = bearer_token(request.headers.get("Authorization"))
        status = self.sim.keys.status(token)
        if token is not None and status == "invalid" and not token.startswith("ak_"):
            call_note().auth = "not-an-api-key"
            raise ApiError(403, "Authorization token used is not an API key.", type="forbidden")
        call_note().auth = status
        if status != "ok" or token is None:
            message = {
                "missing": "Missing or malformed Authorization header: use 'Bearer <api key>'.",
                "revoked": "Invalid access token: the API key was revoked.",
            }.get(status, "Invalid access token.")
            raise ApiError(401, message, type="invalid_auth")
        return token

    async def _body(self, request: web.Request) -> bytes:
        """The whole body, at most :data:`MAX_BODY_BYTES`, within ``slow_request_s``."""
        limit = self.sim.config.slow_request_s
        try:
            raw = await asyncio.wait_for(request.read(), limit)
        except TimeoutError:
            raise ApiError(
                408, f"Request Timeout: the body did not arrive within {limit:g} s.",
                type="request_timeout",
            ) from None  # fmt: skip
        except web.HTTPRequestEntityTooLarge:
            raise ApiError(
                413, f"The request body is over {MAX_BODY_BYTES} bytes.", type="too_large"
            ) from None
        call_note().body = raw[:EXCERPT].decode("utf-8", "replace")
        return raw

    @staticmethod
    def _json(raw: bytes) -> Any:
        try:
            return json.loads(raw)
        except RecursionError:
            raise ApiError(400, "Bad Request. The body is nested too deeply.") from None
        except ValueError:
            raise ApiError(400, "Bad Request. The body is not valid JSON.") from None

    @staticmethod
    def _methods(request: web.Request, *allowed: str) -> None:
        if request.method not in allowed:
            raise ApiError(
                405,
                f"Method {request.method} is not allowed here (allowed: {', '.join(allowed)}).",
                type="method_not_allowed",
                headers={"Allow": ", ".join(allowed)},
            )

    # --- callback ------------------------------------------------------------------------

    async def _callback(self, request: web.Request) -> web.StreamResponse:
        self._methods(request, "PUT", "GET", "DELETE")
        key = self._key(request)
        sim, now = self.sim, self.sim.clock.now()
        if request.method == "GET":
            webhook = sim.channels.webhook(key, now)
            if webhook is None:
                raise ApiError(404, "The callback URL does not exist.")
            return web.json_response(webhook.to_wire())
        if request.method == "DELETE":
            found = sim.channels.delete_callback(key, now)
            if not found:
                raise ApiError(404, "Callback URL does not exist.")
            return web.Response(status=204)
        content_type = request.headers.get("Content-Type")
        if content_type is not None and not _is_json(content_type):
            raise ApiError(
                415, f"Unsupported Media Type {content_type[:100]!r}: send application/json.",
                type="unsupported_media_type",
            )  # fmt: skip
        data = self._json(await self._body(request))
        try:
            webhook = Webhook.model_validate(data)
        except ValidationError as exc:
            raise validation_error(exc, "callback registration") from None
        for name, value in (webhook.headers or {}).items():
            if not _TOKEN.fullmatch(name) or _FORBIDDEN_VALUE.search(value):
                raise ApiError(
                    400, f"Bad Request. Header {name[:60]!r} is not a valid HTTP header.",
                    fields=[("headers", "names are HTTP tokens; values have no control characters")],
                )  # fmt: skip
            if name.lower() in _RESERVED_HEADERS:
                raise ApiError(
                    400, f"Bad Request. Header {name!r} cannot be registered (the service sets it).",
                    fields=[("headers", f"{name} is set by the service")],
                )  # fmt: skip
        try:
            await sim.register_webhook(key, webhook)
        except ChannelConflict as exc:
            raise ApiError(400, f"{OTHER_TYPE_EXISTS} ({exc.existing}); delete it first.") from None
        except VerificationFailed as exc:
            raise ApiError(
                400, f"{OTHER_TYPE_EXISTS}: {exc}.", fields=[("url", str(exc))]
            ) from None
        return web.Response(status=204)

    # --- WebSocket channel ---------------------------------------------------------------

    async def _websocket(self, request: web.Request) -> web.StreamResponse:
        self._methods(request, "PUT", "GET", "DELETE")
        key = self._key(request)
        sim, now = self.sim, self.sim.clock.now()
        if request.method == "GET":
            status = sim.channels.websocket_status(key, now)
            if status is None:
                raise ApiError(404, "No channel has been registered.")
            return web.json_response(status.to_wire())
        if request.method == "DELETE":
            found = sim.channels.delete_websocket(key, now)
            if not found:
                raise ApiError(404, "Websocket channel doesn't exist.")
            return web.Response(status=204)
        raw = await self._body(request)
        body = None
        if raw.strip():
            try:
                body = RegisterWebsocketChannel.model_validate(self._json(raw))
            except ValidationError as exc:
                raise validation_error(exc, "channel registration") from None
        try:
            # The time now, not the request's start: the cores saw later times while the body
            # came, and they never go back.
            created, status_body = sim.channels.register_websocket(key, body, sim.clock.now())
        except ChannelConflict as exc:
            raise ApiError(400, _conflict(exc)) from None
        return web.json_response(status_body.to_wire(), status=201 if created else 200)

    # --- pull ----------------------------------------------------------------------------

    async def _pull(self, request: web.Request) -> web.StreamResponse:
        self._methods(request, "GET", "DELETE")
        key = self._key(request)
        sim = self.sim
        if request.method == "DELETE":
            result = sim.channels.delete_pull(key, sim.clock.now())
            return web.Response(text=result, content_type="text/plain")
        wait = request.query.get("noWait", "false").lower() != "true"
        try:
            answer, core = await sim.poll(key, wait=wait)
        except ChannelConflict as exc:
            raise ApiError(400, _conflict(exc)) from None
        if answer.status == 409:
            raise ApiError(409, "A long poll request is already open for this API key.",
                           type="conflict")  # fmt: skip
        if answer.status == 410:
            raise ApiError(410, "CHANNEL_DELETED", text=True)
        if answer.batch is None:
            return web.Response(status=204)
        started = sim.clock.real()
        body = answer.batch.to_bytes(epoch_s=sim.config.epoch_s)
        response = web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
        response.content_length = len(body)
        error: str | None = "the poll was cancelled"
        try:
            await response.prepare(request)
            await response.write(body)
            await response.write_eof()
            error = None
        except (ConnectionError, RuntimeError) as exc:
            error = f"{type(exc).__name__}: {exc}"
        finally:
            sim.answer_written(key, core, answer, body, error, started)
        return response

    async def _channel(self, request: web.Request) -> web.StreamResponse:
        self._methods(request, "GET")
        key = self._key(request)
        metadata = self.sim.channels.metadata(key, self.sim.clock.now())
        if metadata is None:
            raise ApiError(404, "No notification channel has been registered.")
        return web.json_response(metadata.to_wire())

    # --- subscriptions -------------------------------------------------------------------

    async def _presubscriptions(self, request: web.Request) -> web.StreamResponse:
        self._methods(request, "PUT", "GET", "DELETE")
        key = self._key(request)
        devices = self.sim.devices
        if request.method == "GET":
            return web.json_response([p.to_wire() for p in devices.presubscriptions(key)])
        if request.method == "DELETE":
            devices.set_presubscriptions(key, [])
            return web.Response(status=204)
        data = self._json(await self._body(request))
        try:
            entries = parse_presubscriptions(data)
        except ValidationError as exc:
            raise validation_error(exc, "pre-subscriptions") from None
        except ValueError as exc:
            raise ApiError(400, f"Bad Request. {exc}", fields=[("body", str(exc))]) from None
        devices.set_presubscriptions(key, entries)
        return web.Response(status=204)

    async def _device_subscriptions(self, request: web.Request) -> web.StreamResponse:
        self._methods(request, "GET", "DELETE")
        key = self._key(request)
        ep = request.match_info["device"]
        devices = self.sim.devices
        if request.method == "DELETE":
            devices.unsubscribe(key, ep)
            return web.Response(status=204)
        if ep not in devices.devices:
            raise ApiError(404, "DEVICE_NOT_FOUND", fields=[("device-id", ep[:100])])
        paths = devices.subscriptions(key, ep)
        return web.Response(text="\n".join(paths), content_type="text/uri-list")

    async def _resource_subscription(self, request: web.Request) -> web.StreamResponse:
        self._methods(request, "PUT", "GET", "DELETE")
        key = self._key(request)
        ep = request.match_info["device"]
        path = "/" + unquote(request.match_info["path"]).strip("/")
        devices = self.sim.devices
        if request.method == "DELETE":
            devices.unsubscribe(key, ep, path)
            return web.Response(status=204)
        if request.method == "GET":
            if not devices.is_subscribed(key, ep, path):
                raise ApiError(404, "Not subscribed.", fields=[("resourcePath", path[:100])])
            return web.Response(status=200)
        try:
            devices.subscribe(key, ep, path)
        except RequestRejected as exc:
            raise ApiError(
                exc.status, exc.reason, fields=[("resourcePath", exc.detail[:100])]
            ) from None
        return web.Response(status=200)

    async def _device_request(self, request: web.Request) -> web.StreamResponse:
        self._methods(request, "POST")
        key = self._key(request)
        ep = request.match_info["device"]
        raw = await self._body(request)
        sim = self.sim
        try:
            sim.devices.device_request(key, ep, request.query.get("async-id"), raw, sim.clock.now())
        except RequestRejected as exc:
            if exc.status == 400:  # documented as plain text, e.g. "RESOURCE_NOT_FOUND"
                raise ApiError(400, exc.reason, text=True) from None
            raise ApiError(
                exc.status, exc.reason, fields=[("device-id", exc.detail[:100])]
            ) from None
        return web.Response(status=202)

    async def _elsewhere(self, request: web.Request) -> web.StreamResponse:
        self._key(request)
        raise ApiError(404, f"Not Found. No such endpoint: {request.method} {request.path[:200]}.")


def _is_json(content_type: str) -> bool:
    mime = content_type.split(";", 1)[0].strip().lower()
    return mime == "application/json" or mime.endswith("+json")


def _conflict(exc: ChannelConflict) -> str:
    return f"Other type of channel already exists ({exc.existing}); delete it first."
