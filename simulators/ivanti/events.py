"""Ivanti CPS events: topics, the subscription metadata, device payloads and a generator.

From "Using the Event Notification Service" and the CPS API guide (docs/vendors/ivanti.md §4, §5):

- the metadata call ``GET /msa/v1/cps/event/$metadata`` answers ``{"topics": {<event type>:
  <topic>}, "retentionPeriodMinutes": 180}``; Neurons for MDM topics carry the tenant GUID
  (``<tenant>/device/check_in``), EPMM topics do not (``device/check_in``);
- "There is currently one message format defined. See Device.": ``{"timestamp": <epoch ms>,
  "eventType": "device.app_inventory", "devices": [Device, …]}``;
- the examples leave fields out (``blocked`` is absent from "Device retire"), and the guide
  warns not to type-check strictly because fields may be added: every Device field is optional.

The generator keeps a small fleet per tenant so that the "event, then pull details" flow works:
an event changes a device (enrolled → ACTIVE, retired → RETIRED, compliant flips…) and the CPS
device look-ups answer with the same device.
"""

from __future__ import annotations

import hashlib
import json
import random
import uuid
from collections.abc import Iterable, Mapping
from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict

__all__ = [
    "EVENT_TYPES",
    "RETENTION_PERIOD_MINUTES",
    "Device",
    "DeviceEvent",
    "EventGenerator",
    "Fleet",
    "TopicStyle",
    "event_key",
    "event_type_name",
    "metadata",
    "topics",
]

TopicStyle = Literal["neurons", "epmm"]

# "retained in the system for a maximum duration of 3 hours"; the metadata call's value.
RETENTION_PERIOD_MINUTES: Final = 180

# The nine event types of the metadata examples → their topic below the tenant prefix.
EVENT_TYPES: Final[Mapping[str, str]] = {
    "device_profile_inventory_update": "device/profile_inventory",
    "device_cert_inventory_update": "device/cert_inventory",
    "device_compliant": "device/compliant",
    "device_check_in": "device/check_in",
    "device_app_inventory_update": "device/app_inventory",
    "device_wiped": "device/wiped",
    "device_not_compliant": "device/not_compliant",
    "device_enrolled": "device/enrolled",
    "device_retired": "device/retired",
}


def topics(
    tenant_id: str, style: TopicStyle, event_types: Iterable[str] = EVENT_TYPES
) -> dict[str, str]:
    """Event type → topic, as the metadata call of a tenant of this style answers it."""
    prefix = f"{tenant_id}/" if style == "neurons" else ""
    return {name: prefix + EVENT_TYPES[name] for name in event_types}


def metadata(tenant_id: str, style: TopicStyle) -> dict[str, Any]:
    """The body of ``GET /msa/v1/cps/event/$metadata`` (both vendor examples' shape)."""
    return {"topics": topics(tenant_id, style), "retentionPeriodMinutes": RETENTION_PERIOD_MINUTES}


def event_type_name(event_type: str) -> str:
    """The payload's dotted ``eventType``: ``device_check_in`` → ``device.check_in`` (the
    examples show ``device.app_inventory`` and ``device.retired``)."""
    return EVENT_TYPES[event_type].replace("/", ".")


def event_key(topic: str, message: Any) -> str:
    """What ties an observer record ``{"topic", "message"}`` to the published event: a hash of
    the topic and the canonical JSON of the message (the SUT reports the object it parsed).

    Any input has a key, the SUT's text being whatever it sent: a lone surrogate is hashed as
    it is (``surrogatepass``), a value JSON cannot hold by its ``repr``. Only a message no
    canonical form exists for (keys of several types, nested deeper than the interpreter
    recurses, a cycle) has none: ``""``."""
    try:
        canonical = json.dumps(
            message, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=repr
        )
    except (TypeError, ValueError, RecursionError):
        return ""
    text = f"{topic}\n{canonical}".encode("utf-8", "surrogatepass")
    return f"ivanti:{hashlib.sha256(text).hexdigest()[:20]}"


class Device(BaseModel):
    """A device in an event (CPS "Object models"; every field optional)."""

    model_config = ConfigDict(extra="allow")

    compliant: bool | None = None
    quarantined: bool | None = None
    blocked: bool | None = None
    compromised: bool | None = None
    status: str | None = None
    lastCheckInTime: int | None = None
    registrationTime: int | None = None
    identifier: str | None = None
    imei: str | None = None
    imsi: str | None = None
    macAddress: str | None = None
    manufacturer: str | None = None
    model: str | None = None
    os: str | None = None
    osVersion: str | None = None
    phoneNumber: str | None = None
    serialNumber: str | None = None
    userId: str | None = None
    userUuid: str | None = None
    ownership: str | None = None
    iosUdid: str | None = None
    deviceGuid: str | None = None


class DeviceEvent(BaseModel):
    """One message: ``{"timestamp": <epoch ms>, "eventType": "device.…", "devices": [...]}``."""

    model_config = ConfigDict(extra="allow")

    timestamp: int
    eventType: str
    devices: list[Device]

    def to_wire(self) -> bytes:
        return json.dumps(self.model_dump(exclude_none=True), separators=(",", ":")).encode()


# --- a fleet and its events -------------------------------------------------------------------

_MODELS: Final = (
    ("Apple Inc.", "iPad5,3", "IOS", "12.2"),
    ("Apple Inc.", "iPhone14,2", "IOS", "17.4"),
    ("Apple Inc.", "MacBookPro18,3", "OSX", "14.4"),
    ("samsung", "SM-G991B", "ANDROID", "14"),
    ("Google", "Pixel 8", "ANDROID", "14"),
)


class Fleet:
    """A tenant's devices, changed by the events that mention them (deterministic per seed)."""

    def __init__(
        self, tenant_id: str, *, size: int = 12, seed: int = 0, epoch_ms: int = 1_700_000_000_000
    ) -> None:
        self.tenant_id = tenant_id
        self._rng = random.Random(f"{tenant_id}:{seed}")
        self.devices: dict[str, Device] = {}
        for n in range(size):
            device = self._new_device(n, epoch_ms)
            assert device.identifier is not None
            self.devices[device.identifier] = device

    def _new_device(self, n: int, epoch_ms: int) -> Device:
        rng = self._rng
        manufacturer, model, os_name, os_version = rng.choice(_MODELS)
        identifier = hashlib.sha1(f"{self.tenant_id}:{n}".encode()).hexdigest()
        user = f"user{n}@{self.tenant_id[:8]}.example"
        fields: dict[str, Any] = {
            "compliant": True,
            "quarantined": False,
            "blocked": False,
            "compromised": False,
            "status": "ACTIVE",
            "lastCheckInTime": epoch_ms - rng.randrange(3_600_000),
            "registrationTime": epoch_ms - rng.randrange(30 * 86_400_000),
            "identifier": identifier,
            "macAddress": ":".join(f"{rng.randrange(256):02x}" for _ in range(6)),
            "manufacturer": manufacturer,
            "model": model,
            "os": os_name,
            "osVersion": os_version,
            "serialNumber": "".join(
                rng.choice("ABCDEFGHJKLMNPQRSTUVWXYZ0123456789") for _ in range(12)
            ),
            "userId": user,
            "userUuid": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            "ownership": rng.choice(("COMPANY", "EMPLOYEE")),
            "deviceGuid": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
        }
        if os_name == "IOS":
            fields["iosUdid"] = identifier
        if os_name == "ANDROID":
            fields["imei"] = "".join(rng.choice("0123456789") for _ in range(15))
        return Device(**fields)

    def find(self, key: str, values: Iterable[str]) -> list[Device]:
        """Devices whose ``key`` field is one of ``values``, in the order asked (unknown ones
        are left out)."""
        index = {getattr(d, key): d for d in self.devices.values()}
        return [index[v] for v in values if isinstance(v, str) and v in index]

    def apply(self, event_type: str, device: Device, timestamp_ms: int) -> Device:
        """The device after ``event_type`` happened to it (kept in the fleet)."""
        changes: dict[str, Any] = {"lastCheckInTime": timestamp_ms}
        match event_type:
            case "device_enrolled":
                changes.update(status="ACTIVE", registrationTime=timestamp_ms, compliant=True)
            case "device_retired":
                changes.update(status="RETIRED")
            case "device_wiped":
                changes.update(status="WIPED")
            case "device_compliant":
                changes.update(compliant=True, quarantined=False)
            case "device_not_compliant":
                changes.update(compliant=False, quarantined=self._rng.random() < 0.3)
        updated = device.model_copy(update=changes)
        assert updated.identifier is not None
        self.devices[updated.identifier] = updated
        return updated


class EventGenerator:
    """Realistic events for one tenant: a random event type (of ``event_types``) happening to a
    random device of the fleet. ``timestamp`` is epoch milliseconds from ``wall_ms``."""

    def __init__(
        self, fleet: Fleet, event_types: Iterable[str] = EVENT_TYPES, *, seed: int = 0
    ) -> None:
        self.fleet = fleet
        self.event_types = tuple(event_types)
        unknown = set(self.event_types) - set(EVENT_TYPES)
        if unknown or not self.event_types:
            raise ValueError(f"unknown or no event types: {sorted(unknown)}")
        self._rng = random.Random(f"events:{fleet.tenant_id}:{seed}")

    def pick(self, event_types: Iterable[str] | None = None) -> str:
        """A random event type (of ``event_types``, default the generator's)."""
        return self._rng.choice(tuple(event_types) if event_types is not None else self.event_types)

    def next(self, wall_ms: int, event_type: str | None = None) -> tuple[str, DeviceEvent]:
        """(event type, message); the fleet is updated as the event says."""
        rng = self._rng
        kind = event_type if event_type is not None else rng.choice(self.event_types)
        if kind not in EVENT_TYPES:
            raise ValueError(f"unknown event type {kind!r} (known: {', '.join(EVENT_TYPES)})")
        device = rng.choice(list(self.fleet.devices.values()))
        device = self.fleet.apply(kind, device, wall_ms - rng.randrange(2_000))
        # As in the vendor's examples, some fields are sometimes absent.
        dropped = {name for name in ("blocked", "imei", "macAddress") if rng.random() < 0.2}
        shown = Device(**device.model_dump(exclude=dropped, exclude_none=True))
        return kind, DeviceEvent(
            timestamp=wall_ms, eventType=event_type_name(kind), devices=[shown]
        )
