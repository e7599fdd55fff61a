"""The CPS REST calls a subscriber needs, over HTTPS (TLS 1.2), built on aiohttp.

From the CPS API guide (docs/vendors/ivanti.md §3–§5):

- ``GET /msa/v1/cps/event/$metadata``: "Returns the event types available for subscription and
  the retention time": ``{"topics": {<event type>: <topic>}, "retentionPeriodMinutes": 180}``,
  Neurons style (tenant-prefixed topics) or EPMM style (unprefixed) after the caller's tenant;
- ``POST /msa/v1/cps/device`` (also ``/device/mac``, ``/device/uuid``) with
  ``{"identifiers": [...]}``: the devices with those MDM identifiers (MAC addresses, device
  GUIDs), so the "event, then pull details" flow works.

"You must include the identity certificate in every API call": the caller is identified by its
client certificate (the same as the broker's); HTTP Basic with a known login email (any password)
is accepted as the guide's other option. Anything else is 401, with the reason when the caller
sent something unreadable (Basic credentials that are not base64 of UTF-8 text): whatever a
caller sends is answered 4xx, never a simulator fault. :func:`basic_email` and
:func:`lookup_identifiers` read what a caller controls; each raises only :class:`Unreadable`.
"""

from __future__ import annotations

import base64
import json
import ssl
import threading
from collections import deque
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from simulators.adapter import start_site
from simulators.clock import Clock
from simulators.evidence import Recorder
from simulators.faultlog import FaultLog
from simulators.ivanti.broker import IvantiBroker, Login
from simulators.ivanti.events import metadata
from simulators.mqtt.server import tls12_server_context

__all__ = ["BASE_PATH", "CpsCall", "CpsServer", "Unreadable", "basic_email", "lookup_identifiers"]

ACTOR = "ivanti-cps"
BASE_PATH = "/msa/v1/cps"
MAX_BODY_BYTES = 256 * 1024
MAX_IDENTIFIERS = 200  # "?limit=200" in the guide's examples
LOOKUPS = {"device": "identifier", "device/mac": "macAddress", "device/uuid": "deviceGuid"}
CALLS_KEPT = 1_000


class Unreadable(ValueError):
    """Something a caller sent that the API cannot read: answered 4xx with this reason."""


def basic_email(header: str) -> str | None:
    """The login email of ``Authorization: Basic <base64 of "email:password">`` (None: not
    Basic credentials); :class:`Unreadable` when they are not base64 of UTF-8 text."""
    scheme, _, value = header.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode()
    except ValueError:  # binascii.Error, UnicodeDecodeError, non-ASCII text
        raise Unreadable(
            'Authorization: Basic credentials must be base64 of UTF-8 "email:password".'
        ) from None
    return decoded.partition(":")[0]


def lookup_identifiers(raw: bytes) -> list[str]:
    """The identifiers of a device lookup's body ``{"identifiers": ["...", …]}``;
    :class:`Unreadable` for anything else (not JSON, nested too deeply, another shape, more
    than :data:`MAX_IDENTIFIERS`)."""
    try:
        payload = json.loads(raw)
    except (ValueError, RecursionError):
        raise Unreadable("The body is not valid JSON.") from None
    identifiers = payload.get("identifiers") if isinstance(payload, dict) else None
    if not isinstance(identifiers, list) or not all(isinstance(i, str) for i in identifiers):
        raise Unreadable('Give {"identifiers": ["..."]}.')
    if len(identifiers) > MAX_IDENTIFIERS:
        raise Unreadable(f"At most {MAX_IDENTIFIERS} identifiers.")
    return identifiers


@dataclass(frozen=True)
class CpsCall:
    """One request to the CPS API and its answer."""

    real_s: float
    sim_s: float
    method: str
    path: str  # at most 200 characters
    email: str | None  # the caller's login (certificate or Basic), None if unidentified
    status: int


class CpsServer:
    """The CPS REST API of the broker's tenants."""

    def __init__(
        self,
        broker: IvantiBroker,
        clock: Clock,
        recorder: Recorder,
        *,
        port: int = 0,
        fault_log: FaultLog | None = None,
    ) -> None:
        self.broker = broker
        self.reach = broker.reach
        self.clock = clock
        self.recorder = recorder
        self.port = port
        self.fault_log = fault_log if fault_log is not None else FaultLog(ACTOR)
        self.requests = 0
        self._calls: deque[CpsCall] = deque(maxlen=CALLS_KEPT)
        self._lock = threading.Lock()
        self._runner: web.AppRunner | None = None

    @property
    def base_url(self) -> str:
        return self.reach.url("https", self.port, BASE_PATH)

    async def start(self) -> None:
        pki = self.broker.pki
        context = tls12_server_context(
            str(pki.server.cert), str(pki.server.key), str(pki.ca), require_client_cert=False
        )
        app = web.Application(
            middlewares=[self.fault_log.middleware()], client_max_size=MAX_BODY_BYTES
        )
        app.router.add_route("*", "/{path:.*}", self._serve)
        self._runner = web.AppRunner(app, access_log=None, keepalive_timeout=15.0)
        await self._runner.setup()
        self.port = await start_site(self._runner, self.reach.listen, self.port, context)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _serve(self, request: web.Request) -> web.Response:
        self.requests += 1
        path = request.path
        login, problem = self._caller(request)
        who = login.email if login is not None else "an unidentified caller"
        self.recorder.record(
            who, "->", ACTOR, "cps-request", f"{request.method} {path[:200]}", method=request.method
        )
        status, body = await self._dispatch(request, path, login, problem)
        real, sim = self.clock.readings()
        with self._lock:
            self._calls.append(
                CpsCall(
                    real, sim, request.method, path[:200], login.email if login else None, status
                )
            )
        self.recorder.record(
            ACTOR,
            "->",
            who,
            "cps-response",
            f"{status} for {request.method} {path[:200]}",
            status=status,
        )
        return web.json_response(body, status=status)

    async def _dispatch(
        self, request: web.Request, path: str, login: Login | None, problem: str | None
    ) -> tuple[int, Any]:
        if not path.startswith(BASE_PATH + "/"):
            return 404, {"errors": [{"message": f"No such endpoint: {path[:200]}"}]}
        if login is None:
            return 401, {
                "errors": [
                    {
                        "message": (problem + " " if problem else "")
                        + "Authentication required: present the identity certificate "
                        "(or HTTP Basic with a login email holding the CPS role)."
                    }
                ]
            }
        tenant = login.tenant
        endpoint = path.removeprefix(BASE_PATH + "/").rstrip("/")
        if endpoint == "event/$metadata":
            if request.method != "GET":
                return 405, {"errors": [{"message": "Use GET."}]}
            return 200, metadata(tenant.tenant_id, tenant.style)
        if endpoint in LOOKUPS:
            if request.method != "POST":
                return 405, {"errors": [{"message": 'Use POST with {"identifiers": [...]}.'}]}
            try:
                identifiers = lookup_identifiers(await request.read())
            except Unreadable as exc:
                return 400, {"errors": [{"message": str(exc)}]}
            fleet = self.broker.fleets[tenant.tenant_id]
            devices = fleet.find(LOOKUPS[endpoint], identifiers)
            return 200, [d.model_dump(exclude_none=True) for d in devices]
        return 404, {"errors": [{"message": f"No such endpoint: {request.method} {path[:200]}"}]}

    def calls(self) -> list[CpsCall]:
        """The latest requests (any thread), oldest first."""
        with self._lock:
            return list(self._calls)

    def _caller(self, request: web.Request) -> tuple[Login | None, str | None]:
        """Who calls (the certificate's login, else Basic credentials'), or why nobody: the
        reason when the credentials could not be read."""
        transport = request.transport
        ssl_object = transport.get_extra_info("ssl_object") if transport is not None else None
        if isinstance(ssl_object, ssl.SSLObject | ssl.SSLSocket):
            login = self.broker.login_for(ssl_object.getpeercert())
            if login is not None:
                return login, None
        try:
            email = basic_email(request.headers.get("Authorization", ""))
        except Unreadable as exc:
            return None, str(exc)
        return (self.broker.login_by_email(email) if email is not None else None), None
