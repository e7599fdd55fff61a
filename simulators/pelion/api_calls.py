"""What the HTTPS adapter answers and logs (:class:`ApiError`, :class:`ApiCall`) and the narrow
interface it needs of the service (:class:`ApiBackend`; vendor doc; docs/vendors/pelion.md
§2–9; SPEC20/21 for the status codes)."""

from __future__ import annotations

import contextvars
import ssl
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal, Protocol

from aiohttp import web
from pydantic import ValidationError

from simulators.adapter import StateChanges
from simulators.clock import Clock
from simulators.evidence import Recorder
from simulators.faultlog import FaultLog
from simulators.faults import FaultPlan
from simulators.network import Reach
from simulators.pelion.config import PelionConfig
from simulators.pelion.delivery import PollAnswer, PullDelivery
from simulators.pelion.devices import Devices
from simulators.pelion.error_bodies import error_body, new_request_id
from simulators.pelion.keys import ApiKeys
from simulators.pelion.models import (
    ChannelMetadata,
    RegisterWebsocketChannel,
    Webhook,
    WebsocketChannel,
)
from simulators.pelion.records import Verification
from simulators.pelion.websocket import Connection, ConnectionInfo

__all__ = [
    "CALL_NOTE",
    "EXCERPT",
    "ApiBackend",
    "ApiCall",
    "ApiError",
    "CallNote",
    "ChannelRest",
    "call_note",
    "validation_error",
]


EXCERPT = 300  # characters of a body or an answer kept in the call log


@dataclass
class CallNote:
    """What a handler learns about the call it answers, for the call log."""

    auth: str = "missing"
    body: str = ""
    websocket: bool = False


# Each request is handled in its own task: the note set by the middleware is the handler's.
CALL_NOTE: contextvars.ContextVar[CallNote] = contextvars.ContextVar("pelion_call_note")


def call_note() -> CallNote:
    """The note of the call being handled."""
    note = CALL_NOTE.get(None)
    if note is None:  # outside the middleware (cannot happen in the app): a throwaway note
        note = CallNote()
        CALL_NOTE.set(note)
    return note


class ChannelRest(Protocol):
    """The REST calls on a key's channel (:class:`~simulators.pelion.channel_view.ChannelView`),
    each carrying out what the cores decided."""

    def webhook(self, key: str, now: float) -> Webhook | None: ...
    def delete_callback(self, key: str, now: float) -> bool: ...
    def websocket_status(self, key: str, now: float) -> WebsocketChannel | None: ...
    def delete_websocket(self, key: str, now: float) -> bool: ...
    def register_websocket(
        self, key: str, body: RegisterWebsocketChannel | None, now: float
    ) -> tuple[bool, WebsocketChannel]: ...
    def delete_pull(self, key: str, now: float) -> Literal["REMOVED", "ALREADY_DELETED"]: ...
    def metadata(self, key: str, now: float) -> ChannelMetadata | None: ...


class ApiBackend(Protocol):
    """What the HTTP layer needs of the service: its settings, clock and evidence, the keys,
    the channels' REST calls, the devices core, and the steps of a registration, a poll and a
    WebSocket's life."""

    @property
    def clock(self) -> Clock: ...
    @property
    def recorder(self) -> Recorder: ...
    @property
    def config(self) -> PelionConfig: ...
    @property
    def server_context(self) -> ssl.SSLContext: ...
    @property
    def reach(self) -> Reach: ...
    @property
    def fault_log(self) -> FaultLog: ...
    @property
    def faults(self) -> FaultPlan: ...
    @property
    def changed(self) -> StateChanges: ...
    @property
    def keys(self) -> ApiKeys: ...
    @property
    def channels(self) -> ChannelRest: ...
    @property
    def devices(self) -> Devices: ...
    @property
    def pings_enabled(self) -> bool: ...

    def poke(self) -> None: ...
    async def register_webhook(
        self, key: str, webhook: Webhook, *, verify: bool = True
    ) -> Verification | None: ...
    async def poll(
        self, key: str, *, wait: bool = True
    ) -> tuple[PollAnswer, PullDelivery | None]: ...
    def answer_written(
        self,
        key: str,
        core: PullDelivery | None,
        answer: PollAnswer,
        body: bytes,
        error: str | None,
        started_real_s: float,
    ) -> None: ...
    def new_connection_number(self) -> int: ...
    def keep_connection(self, conn: Connection | ConnectionInfo) -> None: ...
    def socket_bound(self, key: str, conn: Connection) -> None: ...
    def socket_ended(self, key: str, conn: Connection, *, by_client: bool) -> None: ...


@dataclass(frozen=True, slots=True)
class ApiCall:
    """One REST call (or WebSocket handshake) the client made, as answered.

    ``auth`` is ``ok``, ``missing``, ``invalid``, ``revoked`` or ``not-an-api-key``;
    ``body`` and ``answer`` are excerpts (at most 300 characters)."""

    real_s: float
    sim_s: float
    method: str
    path: str
    query: str
    status: int
    auth: str
    elapsed_real_s: float
    body: str = ""
    answer: str = ""
    user_agent: str = ""

    @property
    def endpoint(self) -> str:
        return f"{self.method} {self.path}"


class ApiError(Exception):
    """An answer other than success: JSON error body, or plain text where the vendor uses it."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        text: bool = False,
        type: str | None = None,
        fields: Iterable[tuple[str, str]] = (),
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.text = text
        self.type = type
        self.fields = list(fields)
        self.headers = headers or {}

    def response(self) -> web.Response:
        if self.text:
            return web.Response(
                status=self.status, text=self.message, content_type="text/plain",
                headers=self.headers,
            )  # fmt: skip
        request_id = new_request_id()
        body = error_body(
            self.status, self.message, type=self.type, request_id=request_id, fields=self.fields
        )
        return web.json_response(
            body.to_wire(), status=self.status, headers={"x-request-id": request_id, **self.headers}
        )


def validation_error(exc: ValidationError, what: str) -> ApiError:
    fields = [
        (".".join(str(p) for p in error["loc"]) or "body", str(error["msg"])[:200])
        for error in exc.errors()[:20]
    ]
    summary = "; ".join(f"{name}: {message}" for name, message in fields[:3])
    return ApiError(400, f"Bad Request. Invalid {what}: {summary}"[:500], fields=fields)
