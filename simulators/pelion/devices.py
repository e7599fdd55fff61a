"""Simulated devices, subscriptions and device requests, without I/O (docs/vendors/pelion.md §8;
SPEC20 "Device data - subscriptions" and "Device data - requests").

Devices produce the events the channel carries ("Registration and deregistration events, as
well as registration expiration. Notifications from subscribed Resources. Proxy request
results.", vendor doc):

- :meth:`Devices.register` / :meth:`~Devices.update_registration` / :meth:`~Devices.deregister`
  / :meth:`~Devices.expire` → ``registrations``, ``reg-updates``, ``de-registrations``,
  ``registrations-expired`` for every key's channel ("by default, on any device in the
  account"). A device with a lifetime expires by itself when it is not updated in time.
- Pre-subscriptions: "When an endpoint registers and its ID, type, and registered resources
  match the pre-subscription data, Device Management Connect automatically sends subscription
  requests to the device. The pattern may include the endpoint ID (optionally having an ``*``
  character at the end), endpoint type, a list of resources, or expressions with an ``*``
  character at the end. Subscriptions based on pre-subscriptions are done when device
  registers or does a register update. To remove the pre-subscription data, put an empty array
  as a rule." Entries without ``resource-path`` "subscribe to all observable resources"; this
  simulator subscribes pre-subscribed paths only where the resource is observable.
- Manual subscriptions (``PUT /v2/subscriptions/{device-id}/{resourcePath}``, a resource, an
  instance or an object) are bound to the key that made them and wiped at a full
  re-registration.
- "The subscription is bound to the API key your application is using": a value change of a
  subscribed resource is a ``notifications`` item for each subscribing key only.
- ``POST /v2/device-requests/{device-id}?async-id=…`` (async-id ``^[\\w\\-]{1,40}$``): 202, then,
  after the device's delay, an ``async-responses`` item with that id for the requesting key.
  "The queue is limited to 20 requests. [...] The requests from the queue are delivered in the
  order of insertion, one at a time, and not concurrently." Synchronous refusals are plain-text
  reasons (:class:`RequestRejected`).
"""

from __future__ import annotations

import base64
import binascii
import enum
import json
import re
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from simulators.pelion.lwm2m import (
    TEXT_PLAIN,
    TLV,
    Value,
    decode_tlv,
    encode_text,
    encode_tlv,
)
from simulators.pelion.models import (
    AsyncIDResponse,
    DeregistrationData,
    DeviceRequest,
    EndpointData,
    Event,
    Kind,
    NotificationData,
    Outgoing,
    Presubscription,
    ResourceData,
)

__all__ = [
    "ASYNC_ID_PATTERN",
    "DEFAULT_MAX_AGE",
    "DEFAULT_RESPONSE_DELAY_S",
    "DEVICE_NOT_FOUND",
    "EP_PATTERN",
    "MALFORMED_ASYNC_ID",
    "MALFORMED_JSON_CONTENT",
    "MAX_QUEUED_REQUESTS",
    "QUEUE_IS_FULL",
    "RESOURCE_NOT_FOUND",
    "TEXT_PLAIN",
    "TLV",
    "URI_PATH_DOES_NOT_EXISTS",
    "Device",
    "Devices",
    "MissingResource",
    "RequestRejected",
    "Resource",
    "Value",
    "decode_tlv",
    "encode_text",
    "encode_tlv",
]

# SPEC20 device-requests: "async-id ... pattern: ^[\w\-]{1,40}$" (ASCII word characters).
ASYNC_ID_PATTERN = re.compile(r"[\w\-]{1,40}", re.ASCII)
EP_PATTERN = re.compile(r"[0-9a-f]{32}")
PATH_PATTERN = re.compile(r"(/[^/?*\s]+)+")
# "The queue is limited to 20 requests."
MAX_QUEUED_REQUESTS = 20
# How long a simulated device takes to answer one request (simulated seconds).
DEFAULT_RESPONSE_DELAY_S = 0.5
# NotificationData max-age: "Default 60."
DEFAULT_MAX_AGE = 60

# Plain-text reasons of the synchronous answers (SPEC20).
MALFORMED_ASYNC_ID = "MALFORMED_ASYNC_ID"
MALFORMED_JSON_CONTENT = "MALFORMED_JSON_CONTENT"
QUEUE_IS_FULL = "QUEUE_IS_FULL"
RESOURCE_NOT_FOUND = "RESOURCE_NOT_FOUND"
DEVICE_NOT_FOUND = "DEVICE_NOT_FOUND"
URI_PATH_DOES_NOT_EXISTS = "URI_PATH_DOES_NOT_EXISTS"


def _normalize_path(path: str) -> str:
    path = "/" + path.strip("/")
    if not PATH_PATTERN.fullmatch(path):
        raise ValueError(f"not a resource path: {path!r}")
    return path


def _path_matches(pattern: str, path: str) -> bool:
    """``/3200*`` matches by prefix; ``/3200`` matches the object, its instances and resources."""
    if pattern.endswith("*"):
        return path.startswith(pattern[:-1])
    return path == pattern or path.startswith(pattern.rstrip("/") + "/")


def _name_matches(pattern: str | None, name: str) -> bool:
    if pattern is None:
        return True
    if pattern.endswith("*"):
        return name.startswith(pattern[:-1])
    return name == pattern


# --- Devices -------------------------------------------------------------------------------


@dataclass
class Resource:
    """One LwM2M resource: ``ct`` is the content type of its notifications."""

    path: str
    value: Value = ""
    rt: str | None = None
    ct: str = TEXT_PLAIN
    obs: bool = True
    max_age: int = DEFAULT_MAX_AGE

    def __post_init__(self) -> None:
        self.path = _normalize_path(self.path)
        if self.ct not in (TEXT_PLAIN, TLV):
            raise ValueError(f"ct is {TEXT_PLAIN!r} or {TLV!r}, got {self.ct!r}")
        if self.ct == TLV:
            self.resource_id()  # a TLV needs a numeric resource id

    def resource_id(self) -> int:
        last = self.path.rsplit("/", 1)[-1]
        if not last.isdigit():
            raise ValueError(f"{self.path}: an OMA-TLV payload needs a numeric resource id")
        return int(last)

    def payload(self, ct: str | None = None) -> bytes:
        """The value encoded as ``ct`` (default: the resource's own)."""
        if (ct or self.ct) == TLV:
            return encode_tlv(self.resource_id(), self.value)
        return encode_text(self.value)

    def to_data(self) -> ResourceData:
        return ResourceData(path=self.path, rt=self.rt, ct=self.ct, obs=self.obs)


@dataclass
class Device:
    """A simulated device. ``ep`` is the 32-hex device id the platform assigned;
    ``original_ep`` the name the device registered with (defaults to ``ep``)."""

    ep: str
    ept: str = "default"
    resources: dict[str, Resource] = field(default_factory=dict)
    original_ep: str | None = None
    q: bool = False
    lifetime_s: float | None = None
    response_delay_s: float = DEFAULT_RESPONSE_DELAY_S
    registered: bool = field(default=False, init=False)
    expires_at: float | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        if not EP_PATTERN.fullmatch(self.ep):
            raise ValueError(f"a device id is 32 lowercase hex characters, got {self.ep!r}")
        if self.original_ep is None:
            self.original_ep = self.ep
        self.resources = {r.path: r for r in self.resources.values()}

    @classmethod
    def with_resources(cls, ep: str, resources: Iterable[Resource], **kwargs: Any) -> Device:
        return cls(ep, resources={r.path: r for r in resources}, **kwargs)

    def endpoint_data(self) -> EndpointData:
        """The ``registrations`` / ``reg-updates`` item; ``original-ep`` appears natively only
        when it differs from ``ep`` (a self-provided name)."""
        return EndpointData(
            ep=self.ep,
            ept=self.ept,
            original_ep=self.original_ep if self.original_ep != self.ep else None,
            q=self.q,
            resources=[r.to_data() for r in self.resources.values()],
        )

    def has_path(self, path: str) -> bool:
        """Whether ``path`` names a resource, or an instance/object holding one."""
        return any(_path_matches(path, p) for p in self.resources)


class MissingResource(enum.Enum):
    """How a device request for a resource the device lacks is answered. The sources disagree:
    the AsyncIDResponse table has 404 "The device replied that it does not have the requested
    resource"; the device-requests 404 lists URI_PATH_DOES_NOT_EXISTS; its 400 lists
    RESOURCE_NOT_FOUND (which the Izuma E2E tests expect)."""

    ASYNC_404 = "async-404"  # 202, then an async-response with status 404 (default)
    SYNC_404 = "sync-404"  # 404 URI_PATH_DOES_NOT_EXISTS
    SYNC_400 = "sync-400"  # 400 RESOURCE_NOT_FOUND


class RequestRejected(Exception):
    """A synchronous refusal: answer ``status`` with the plain-text ``reason``."""

    def __init__(self, status: int, reason: str, detail: str = "") -> None:
        self.status = status
        self.reason = reason
        self.detail = detail
        super().__init__(f"{status} {reason}" + (f": {detail}" if detail else ""))


@dataclass(frozen=True, slots=True)
class _Request:
    key: str
    async_id: str
    request: DeviceRequest
    accepted_at: float
    done_at: float


class Devices:
    """Every simulated device of the account, with each key's subscriptions.

    Methods return :class:`~simulators.pelion.models.Outgoing` events for
    :meth:`ChannelRegistry.dispatch <simulators.pelion.channels.ChannelRegistry.dispatch>`.
    """

    def __init__(self, *, missing_resource: MissingResource = MissingResource.ASYNC_404) -> None:
        self.missing_resource = missing_resource
        self.devices: dict[str, Device] = {}
        self._presubscriptions: dict[str, tuple[Presubscription, ...]] = {}
        self._manual: dict[str, dict[str, set[str]]] = {}  # key -> ep -> paths
        self._presubscribed: dict[str, dict[str, set[str]]] = {}  # key -> ep -> resource paths
        self._requests: dict[str, deque[_Request]] = {}  # ep -> FIFO

    # --- lifecycle -------------------------------------------------------------------------

    def add(self, device: Device) -> Device:
        """Make a device known (not registered yet)."""
        if device.ep in self.devices:
            raise ValueError(f"device {device.ep} exists")
        self.devices[device.ep] = device
        return device

    def _device(self, ep: str) -> Device:
        try:
            return self.devices[ep]
        except KeyError:
            raise LookupError(f"no device {ep}") from None

    def _event(
        self, kind: Kind, device: Device, item: EndpointData | DeregistrationData
    ) -> Outgoing:
        return Outgoing(Event.of(kind, item, original_ep=device.original_ep))

    def register(self, ep: str, now: float) -> list[Outgoing]:
        """A full registration: manual subscriptions of the device are wiped, pre-subscriptions
        applied; a ``registrations`` item for every key."""
        device = self._device(ep)
        device.registered = True
        device.expires_at = None if device.lifetime_s is None else now + device.lifetime_s
        for subscriptions in self._manual.values():
            subscriptions.pop(ep, None)
        self._apply_presubscriptions(device)
        return [self._event("registrations", device, device.endpoint_data())]

    def update_registration(
        self, ep: str, now: float, *, resources: Iterable[Resource] | None = None
    ) -> list[Outgoing]:
        """A registration update (optionally with a new resource list): pre-subscriptions are
        applied again, manual subscriptions kept; a ``reg-updates`` item for every key."""
        device = self._registered(ep)
        if resources is not None:
            device.resources = {r.path: r for r in resources}
        device.expires_at = None if device.lifetime_s is None else now + device.lifetime_s
        self._apply_presubscriptions(device)
        return [self._event("reg-updates", device, device.endpoint_data())]

    def deregister(self, ep: str, now: float) -> list[Outgoing]:
        """The device de-registered: queued requests end with 429
        ``DEVICE_REMOVED_REGISTRATION``; a ``de-registrations`` item for every key."""
        device = self._registered(ep)
        out = self._flush_requests(ep, 429, "DEVICE_REMOVED_REGISTRATION")
        device.registered = False
        device.expires_at = None
        out.append(self._event("de-registrations", device, DeregistrationData(ep=ep)))
        return out

    def expire(self, ep: str, now: float) -> list[Outgoing]:
        """The registration expired: queued requests end with 503 ``NOT_CONNECTED``; a
        ``registrations-expired`` item for every key."""
        device = self._registered(ep)
        out = self._flush_requests(ep, 503, "NOT_CONNECTED")
        device.registered = False
        device.expires_at = None
        out.append(self._event("registrations-expired", device, DeregistrationData(ep=ep)))
        return out

    def _registered(self, ep: str) -> Device:
        device = self._device(ep)
        if not device.registered:
            raise LookupError(f"device {ep} is not registered")
        return device

    # --- subscriptions ---------------------------------------------------------------------

    def set_presubscriptions(self, key: str, entries: Sequence[Presubscription]) -> None:
        """``PUT /v2/subscriptions`` (an empty list removes all; ``DELETE`` is the same).
        Applied at the next registration or registration update of each device."""
        if entries:
            self._presubscriptions[key] = tuple(entries)
        else:
            self._presubscriptions.pop(key, None)

    def presubscriptions(self, key: str) -> tuple[Presubscription, ...]:
        """``GET /v2/subscriptions`` (``[]`` when none)."""
        return self._presubscriptions.get(key, ())

    def _apply_presubscriptions(self, device: Device) -> None:
        for key in set(self._presubscribed) | set(self._presubscriptions):
            paths = {
                path
                for path, resource in device.resources.items()
                if resource.obs
                and any(
                    _name_matches(entry.endpoint_name, device.ep)
                    and _name_matches(entry.endpoint_type, device.ept)
                    and (
                        entry.resource_path is None
                        or any(_path_matches(p, path) for p in entry.resource_path)
                    )
                    for entry in self._presubscriptions.get(key, ())
                )
            }
            by_device = self._presubscribed.setdefault(key, {})
            if paths:
                by_device[device.ep] = paths
            else:
                by_device.pop(device.ep, None)

    def subscribe(self, key: str, ep: str, path: str) -> None:
        """``PUT /v2/subscriptions/{device-id}/{resourcePath}`` (200). Raises
        :class:`RequestRejected` 404 ``DEVICE_NOT_FOUND`` / ``URI_PATH_DOES_NOT_EXISTS``."""
        device = self.devices.get(ep)
        if device is None or not device.registered:
            raise RequestRejected(404, DEVICE_NOT_FOUND, ep)
        try:
            path = _normalize_path(path)
        except ValueError as exc:
            raise RequestRejected(404, URI_PATH_DOES_NOT_EXISTS, str(exc)) from None
        if not device.has_path(path):
            raise RequestRejected(404, URI_PATH_DOES_NOT_EXISTS, path)
        self._manual.setdefault(key, {}).setdefault(ep, set()).add(path)

    def unsubscribe(self, key: str, ep: str, path: str | None = None) -> None:
        """``DELETE /v2/subscriptions/{device-id}[/{resourcePath}]`` (204)."""
        if path is None:
            self._manual.get(key, {}).pop(ep, None)
            self._presubscribed.get(key, {}).pop(ep, None)
            return
        path = "/" + path.strip("/")
        self._manual.get(key, {}).get(ep, set()).discard(path)
        self._presubscribed.get(key, {}).get(ep, set()).discard(path)

    def subscriptions(self, key: str, ep: str) -> list[str]:
        """The subscribed paths of one device for ``key`` (``GET /v2/subscriptions/{id}``)."""
        paths = self._manual.get(key, {}).get(ep, set()) | self._presubscribed.get(key, {}).get(
            ep, set()
        )
        return sorted(paths)

    def is_subscribed(self, key: str, ep: str, path: str) -> bool:
        if path in self._presubscribed.get(key, {}).get(ep, ()):
            return True
        return any(_path_matches(p, path) for p in self._manual.get(key, {}).get(ep, ()))

    def subscribers(self, ep: str, path: str) -> list[str]:
        keys = set(self._manual) | set(self._presubscribed)
        return sorted(key for key in keys if self.is_subscribed(key, ep, path))

    # --- values ----------------------------------------------------------------------------

    def set_value(self, ep: str, path: str, value: Value, now: float) -> list[Outgoing]:
        """The device's resource changed: a ``notifications`` item for each subscribed key
        (none while the device is not registered)."""
        device = self._device(ep)
        path = _normalize_path(path)
        try:
            resource = device.resources[path]
        except KeyError:
            raise LookupError(f"device {ep} has no resource {path}") from None
        resource.value = value
        return self._notify(device, resource)

    def _notify(self, device: Device, resource: Resource) -> list[Outgoing]:
        if not device.registered:
            return []
        keys = self.subscribers(device.ep, resource.path)
        if not keys:
            return []
        item = NotificationData(
            ep=device.ep,
            path=resource.path,
            ct=resource.ct,
            payload=base64.b64encode(resource.payload()).decode(),
            max_age=resource.max_age,
        )
        event = Event.of("notifications", item, original_ep=device.original_ep)
        return [Outgoing(event, key) for key in keys]

    # --- device requests -------------------------------------------------------------------

    def device_request(
        self,
        key: str,
        ep: str,
        async_id: str | None,
        body: bytes | str | Mapping[str, Any] | DeviceRequest,
        now: float,
    ) -> float:
        """``POST /v2/device-requests/{ep}?async-id=…``: accepted (202) unless it raises
        :class:`RequestRejected`; returns when the async-response will be due."""
        if async_id is None or not ASYNC_ID_PATTERN.fullmatch(async_id):
            raise RequestRejected(400, MALFORMED_ASYNC_ID, repr(async_id))
        request = self._parse_request(body)
        device = self.devices.get(ep)
        if device is None or not device.registered:
            raise RequestRejected(404, DEVICE_NOT_FOUND, ep)
        path = request.uri.split("?", 1)[0]
        if path.rstrip("/") not in device.resources:
            if self.missing_resource is MissingResource.SYNC_404:
                raise RequestRejected(404, URI_PATH_DOES_NOT_EXISTS, path)
            if self.missing_resource is MissingResource.SYNC_400:
                raise RequestRejected(400, RESOURCE_NOT_FOUND, path)
        pending = self._requests.setdefault(ep, deque())
        if len(pending) >= MAX_QUEUED_REQUESTS:
            raise RequestRejected(400, QUEUE_IS_FULL, f"{len(pending)} requests queued")
        start = max(now, pending[-1].done_at) if pending else now
        done_at = start + device.response_delay_s
        pending.append(_Request(key, async_id, request, now, done_at))
        return done_at

    @staticmethod
    def _parse_request(body: bytes | str | Mapping[str, Any] | DeviceRequest) -> DeviceRequest:
        """The request a client's body asks for; :class:`RequestRejected` (400
        ``MALFORMED_JSON_CONTENT``) for anything else: not JSON, nested deeper than the parser
        recurses, another shape, text that is not Unicode (a lone surrogate)."""
        if isinstance(body, DeviceRequest):
            return body
        try:
            data = json.loads(body) if isinstance(body, bytes | str) else body
            return DeviceRequest.model_validate(data)
        except (ValueError, ValidationError, RecursionError) as exc:
            raise RequestRejected(400, MALFORMED_JSON_CONTENT, str(exc)[:200]) from None

    def pending_requests(self, ep: str) -> int:
        return len(self._requests.get(ep, ()))

    def _flush_requests(self, ep: str, status: int, error: str) -> list[Outgoing]:
        pending = self._requests.pop(ep, deque())
        return [
            Outgoing(
                Event.of(
                    "async-responses", AsyncIDResponse(id=r.async_id, status=status, error=error)
                ),
                r.key,
            )
            for r in pending
        ]

    def _execute(self, device: Device, req: _Request) -> list[Outgoing]:
        request = req.request
        path = request.uri.split("?", 1)[0].rstrip("/")
        resource = device.resources.get(path)
        out: list[Outgoing] = []
        answer: dict[str, Any] = {"id": req.async_id, "status": 200}
        if resource is None:
            answer["status"] = 404
        elif request.method == "GET":
            ct = request.accept or resource.ct
            if ct not in (TEXT_PLAIN, TLV):
                answer["status"] = 415
            else:
                try:
                    payload = resource.payload(ct)
                except ValueError:
                    answer["status"] = 415  # TLV asked of a resource without a numeric id
                else:
                    answer.update(
                        payload=base64.b64encode(payload).decode(),
                        ct=ct,
                        max_age=resource.max_age,
                    )
        elif request.method == "PUT":
            if request.payload_b64 is not None:
                status, value = self._written_value(resource, request)
                answer["status"] = status
                if value is not None:
                    resource.value = value
                    out.extend(self._notify(device, resource))
            # else: notification rules (``?pmax=…``) or an empty write: accepted as is
        elif request.method == "DELETE":
            del device.resources[path]
        # POST executes the resource: 200, nothing changes.
        response = AsyncIDResponse.model_validate(answer)
        out.insert(0, Outgoing(Event.of("async-responses", response), req.key))
        return out

    @staticmethod
    def _written_value(resource: Resource, request: DeviceRequest) -> tuple[int, Value | None]:
        assert request.payload_b64 is not None
        try:
            data = base64.b64decode(request.payload_b64, validate=True)
        except (binascii.Error, ValueError):
            return 400, None
        ct = request.content_type or TEXT_PLAIN
        if ct == TLV:
            try:
                value = decode_tlv(data).get(resource.resource_id())
            except ValueError:
                return 400, None
            return (200, value) if value is not None else (400, None)
        if ct != TEXT_PLAIN:
            return 415, None
        try:
            return 200, data.decode()
        except UnicodeDecodeError:
            return 200, data

    # --- timers ----------------------------------------------------------------------------

    def _next_action(self) -> tuple[float, str, bool] | None:
        """(when, ep, is_expiry) of the earliest due action."""
        best: tuple[float, str, bool] | None = None
        for ep, pending in self._requests.items():
            if pending and (best is None or pending[0].done_at < best[0]):
                best = (pending[0].done_at, ep, False)
        for device in self.devices.values():
            at = device.expires_at
            if device.registered and at is not None and (best is None or at < best[0]):
                best = (at, device.ep, True)
        return best

    def handle_timeout(self, now: float) -> list[Outgoing]:
        """Everything due by ``now``, in time order: answered requests, expired registrations."""
        out: list[Outgoing] = []
        while (action := self._next_action()) is not None and action[0] <= now:
            at, ep, is_expiry = action
            if is_expiry:
                out.extend(self.expire(ep, at))
            else:
                req = self._requests[ep].popleft()
                if not self._requests[ep]:
                    del self._requests[ep]
                out.extend(self._execute(self.devices[ep], req))
        return out

    def next_deadline(self) -> float | None:
        action = self._next_action()
        return None if action is None else action[0]
