"""The Apps and Books API (``/mdm/v2``) subset, as state without I/O (research/apple.md §2–6).

:class:`AppsAndBooks` takes parsed requests and ``now`` and returns ``(http_status, body)``;
mutations create events that stay ``PENDING`` until their processing deadline, then complete and
yield the notifications to send. The aiohttp adapter is :mod:`simulators.apple.api`.
"""

from __future__ import annotations

import itertools
import uuid
from dataclasses import dataclass, field
from typing import Any

from simulators.apple.models import (
    AssetManagement,
    Assignment,
    Notification,
    NotificationError,
    User,
    UserManagement,
)

__all__ = ["ERRORS", "ApiError", "AppsAndBooks", "Event", "error_body"]

# errorNumber -> (HTTP status, errorMessage), from Apple's "Handling error responses" tables.
ERRORS: dict[int, tuple[int, str]] = {
    9601: (401, "Login required."),
    9602: (400, "Invalid argument."),
    9621: (401, "The sToken has expired."),
    9646: (429, "There are too many recent requests. Try again momentarily."),
    9609: (400, "Registered user not found."),
    9708: (400, "Event not found."),
    9709: (400, "There aren't enough assets available to complete this association."),
    9710: (400, "Notification URL and notification auth token must be supplied together."),
    9711: (400, "Notification URL or notification auth token is too long."),
    9712: (400, "Notification URL is not a valid HTTPS URL."),
    9722: (401, "The Authorization header must be in the form 'Bearer {sToken}'."),
    9723: (400, "mdmInfo must include name, id and metadata."),
    9724: (400, "MDM id is too long."),
    9725: (400, "MDM name is too long."),
    9726: (405, "The request method is not supported."),
    9727: (415, "The Content-Type must be application/json."),
    9728: (400, "The provided notification URL is unreachable."),
    9729: (503, "The service is temporarily unavailable."),
}

LIMITS = {
    "maxAssets": 25,
    "maxUsers": 100,
    "maxNotificationLength": 512,
    "maxClientUserIds": 1000,
    "maxSerialNumbers": 1000,
    "maxRevokeClientUserIds": 100,
    "maxRevokeSerialNumbers": 100,
    "maxMdmNameLength": 100,
    "maxMdmMetadataLength": 255,
    "maxMdmIdLength": 100,
}
SUBSCRIBABLE = (
    "TEST_NOTIFICATION",
    "ASSET_MANAGEMENT",
    "USER_MANAGEMENT",
    "USER_ASSOCIATED",
    "ASSET_COUNT",
    "SUBSCRIPTION_MANAGEMENT",
    "SUBSCRIPTION_COUNT",
    "UNLIMITED_ASSET",
)


class ApiError(Exception):
    """A synchronous error answer: ``errorNumber`` maps to its HTTP status."""

    def __init__(self, number: int, message: str | None = None) -> None:
        self.number = number
        self.status, default = ERRORS[number]
        self.message = message or default
        super().__init__(f"{number}: {self.message}")


def error_body(number: int, message: str | None = None) -> dict[str, Any]:
    return {"errorNumber": number, "errorMessage": message or ERRORS[number][1]}


@dataclass
class Event:
    """An asynchronous event started by a mutating call (``eventId``)."""

    event_id: str
    event_type: str  # ASSOCIATE | DISASSOCIATE | REVOKE | CREATE | UPDATE | RETIRE
    num_requested: int
    created_at: float
    complete_at: float
    notifications: list[Notification]
    failures: list[dict[str, Any]] = field(default_factory=list)
    held: bool = False  # kept PENDING and silent until released (fault)
    notified: bool = False  # its notifications have been handed out by tick()

    def complete(self, now: float) -> bool:
        return not self.held and now >= self.complete_at

    def status(self, now: float) -> str:
        """PENDING until processed; then FAILED if any task failed, else COMPLETE."""
        if not self.complete(now):
            return "PENDING"
        return "FAILED" if self.failures else "COMPLETE"

    def num_completed(self, now: float) -> int:
        if not self.complete(now):
            return 0
        failed = sum(len(v) for f in self.failures for v in f.get("errorInfo", {}).values())
        return self.num_requested - failed


@dataclass
class AppsAndBooks:
    """State of one organization unit (``uId``) reachable with one sToken."""

    stoken: str
    uid: str = "2049025000431439"
    processing_delay_s: float = 2.0  # simulated seconds from a mutation to its notifications
    hold_events: int = 0  # the next N events stay PENDING, without notifications, until released
    client_config: dict[str, Any] = field(default_factory=dict)
    assets: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    users: dict[str, dict[str, Any]] = field(default_factory=dict)
    assignments: list[dict[str, Any]] = field(default_factory=list)
    events: dict[str, Event] = field(default_factory=dict)
    _version: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def __post_init__(self) -> None:
        if not self.assets:
            for adam_id, product in (("408709785", "App"), ("329103948", "Book")):
                self.assets[(adam_id, "STDQ")] = {
                    "adamId": adam_id,
                    "pricingParam": "STDQ",
                    "productType": product,
                    "revocable": True,
                    "deviceAssignable": product == "App",
                    "availableCount": 500,
                    "assignedCount": 0,
                    "totalCount": 500,
                    "supportedPlatforms": ["iOS", "macOS"],
                }

    # Authentication.

    def check_authorization(self, header: str | None) -> None:
        """Every endpoint but service/config needs ``Authorization: Bearer {sToken}``."""
        if not header:
            raise ApiError(9601)
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise ApiError(9722)
        if token != self.stoken:
            raise ApiError(9601, "The sToken is invalid.")

    def envelope(self, body: dict[str, Any]) -> dict[str, Any]:
        body = {**body, "uId": self.uid}
        if "mdmInfo" in self.client_config:
            body["mdmInfo"] = self.client_config["mdmInfo"]
        return body

    # Configuration.

    def service_config(self, base_url: str) -> dict[str, Any]:
        names = {
            "clientConfig": "client/config",
            "getAssets": "assets",
            "getAssignments": "assignments",
            "associateAssets": "assets/associate",
            "disassociateAssets": "assets/disassociate",
            "revokeAssets": "assets/revoke",
            "getUsers": "users",
            "createUsers": "users/create",
            "updateUsers": "users/update",
            "retireUsers": "users/retire",
            "eventStatus": "status",
        }
        return {
            "errorCodes": [
                {"errorNumber": n, "errorMessage": m} for n, (_, m) in sorted(ERRORS.items())
            ],
            "limits": LIMITS,
            "notificationTypes": [t for t in SUBSCRIBABLE if t != "TEST_NOTIFICATION"],
            "urls": {k: f"{base_url}/{v}" for k, v in names.items()},
        }

    def validate_client_config(self, request: Any) -> dict[str, Any]:
        """Check a ClientConfigRequest (9602, 9710–9712, 9723–9725); return it if valid."""
        if not isinstance(request, dict):
            raise ApiError(9602, "The request body must be a JSON object.")
        url, token = request.get("notificationUrl"), request.get("notificationAuthToken")
        if (url is None) != (token is None) or url == "" or token == "":
            raise ApiError(9710)
        if url is not None:
            if not isinstance(url, str) or not isinstance(token, str):
                raise ApiError(9602, "notificationUrl and notificationAuthToken are strings.")
            if len(url) > LIMITS["maxNotificationLength"] or len(token) > 512:
                raise ApiError(9711)
            if not url.lower().startswith("https://") or len(url) <= len("https://"):
                raise ApiError(9712)
        types = request.get("notificationTypes", [])
        if not isinstance(types, list) or any(t not in SUBSCRIBABLE for t in types):
            raise ApiError(9602, f"notificationTypes must be drawn from {list(SUBSCRIBABLE)}.")
        if "mdmInfo" in request:
            info = request["mdmInfo"]
            if not isinstance(info, dict) or not all(
                isinstance(info.get(k), str) for k in ("id", "name", "metadata")
            ):
                raise ApiError(9723)
            if len(info["id"]) > LIMITS["maxMdmIdLength"]:
                raise ApiError(9724)
            if len(info["name"]) > LIMITS["maxMdmNameLength"]:
                raise ApiError(9725)
        return request

    def store_client_config(self, request: dict[str, Any]) -> dict[str, Any]:
        """Replace the configuration (the request carries the complete set of types)."""
        config: dict[str, Any] = {
            k: request[k] for k in ("notificationUrl", "notificationAuthToken") if k in request
        }
        config["subscribedNotificationTypes"] = [
            t for t in request.get("notificationTypes", []) if t != "TEST_NOTIFICATION"
        ]
        if "mdmInfo" in request:
            config["mdmInfo"] = request["mdmInfo"]
        self.client_config = config
        return self.client_config_response()

    def client_config_response(self) -> dict[str, Any]:
        return self.envelope(
            {
                "countryISO2ACode": "US",
                "defaultPlatform": "volumestore",
                "locationName": "Conformance Simulator",
                "websiteURL": "https://business.apple.com",
                "subscribedNotificationTypes": [],
                **self.client_config,
            }
        )

    def subscribed(self, notification_type: str) -> bool:
        return notification_type in self.client_config.get("subscribedNotificationTypes", [])

    # Reads.

    def page(self, key: str, items: list[dict[str, Any]]) -> dict[str, Any]:
        return self.envelope(
            {
                key: items,
                "currentPageIndex": 0,
                "size": len(items),
                "totalPages": 1,
                "versionId": str(next(self._version)),
            }
        )

    def get_assets(self) -> dict[str, Any]:
        return self.page("assets", list(self.assets.values()))

    def get_assignments(self) -> dict[str, Any]:
        return self.page("assignments", list(self.assignments))

    def get_users(self) -> dict[str, Any]:
        return self.page("users", list(self.users.values()))

    def status(self, event_id: str | None, now: float) -> dict[str, Any]:
        """``GET /status?eventId=``: PENDING → COMPLETE/FAILED; unknown id → 9708."""
        event = self.events.get(event_id or "")
        if event is None:
            raise ApiError(9708)
        done = event.complete(now)
        return self.envelope(
            {
                "eventStatus": event.status(now),
                "eventType": event.event_type,
                "numRequested": event.num_requested,
                "numCompleted": event.num_completed(now),
                "failures": event.failures if done else [],
            }
        )

    # Mutations: each returns an EventResponse and schedules an event.

    def mutate(self, path: str, request: Any, now: float) -> dict[str, Any]:
        if not isinstance(request, dict):
            raise ApiError(9602, "The request body must be a JSON object.")
        event_id = str(uuid.uuid4())
        if path in ("assets/associate", "assets/disassociate", "assets/revoke"):
            notifications, count, failures = self._manage_assets(
                path.split("/")[1], request, event_id
            )
        elif path in ("users/create", "users/update", "users/retire"):
            notifications, count, failures = self._manage_users(
                path.split("/")[1], request, event_id
            )
        else:
            raise ApiError(9602, f"Unknown operation {path}.")
        held = self.hold_events > 0
        self.hold_events -= held
        self.events[event_id] = Event(
            event_id,
            path.split("/")[1].upper(),
            count,
            now,
            now + self.processing_delay_s,
            notifications,
            failures,
            held=held,
        )
        return self.envelope({"eventId": event_id})

    def _manage_assets(
        self, action: str, request: dict[str, Any], event_id: str
    ) -> tuple[list[Notification], int, list[dict[str, Any]]]:
        """Associate, disassociate or revoke; an association to a user who is not registered
        fails with 9609 ("Registered user not found"), reported in its own FAILURE
        notification (at most one ``error`` per notification) and in the event's failures."""
        users = _strings(request, "clientUserIds")
        serials = _strings(request, "serialNumbers")
        if not users and not serials:
            raise ApiError(9602, "clientUserIds or serialNumbers is required.")
        missing: list[str] = []
        if action == "revoke":
            targets = [
                a
                for a in self.assignments
                if a.get("clientUserId") in users or a.get("serialNumber") in serials
            ]
            self.assignments = [a for a in self.assignments if a not in targets]
        else:
            assets = request.get("assets")
            if not isinstance(assets, list) or not assets or len(assets) > LIMITS["maxAssets"]:
                raise ApiError(9602, "assets must list 1 to 25 {adamId, pricingParam}.")
            if action == "associate":
                missing = [
                    u for u in users if self.users.get(u, {}).get("status") in (None, "Retired")
                ]
            people = [{"clientUserId": u} for u in users] + [{"serialNumber": s} for s in serials]
            targets = [
                {"adamId": str(a.get("adamId")), "pricingParam": a.get("pricingParam", "STDQ"), **t}
                for a in assets
                if isinstance(a, dict)
                for t in people
            ]
            if action == "associate":
                self.assignments.extend(t for t in targets if t.get("clientUserId") not in missing)
            else:
                self.assignments = [a for a in self.assignments if a not in targets]
        failed = [t for t in targets if t.get("clientUserId") in missing]
        succeeded = [t for t in targets if t not in failed]
        notifications = []
        for result, items in (("SUCCESS", succeeded), ("FAILURE", failed)):
            if items or (result == "SUCCESS" and not failed):
                body = AssetManagement(
                    assignments=[Assignment.model_validate(t) for t in items],
                    eventId=event_id,
                    result=result,
                    type=action.upper(),
                    error=NotificationError(errorNumber=9609, errorMessage=ERRORS[9609][1])
                    if result == "FAILURE"
                    else None,
                )
                notifications.append(Notification.of(body, uid=self.uid))
        failures = []
        if missing:
            failures.append(
                {**error_body(9609), "errorInfo": {"clientUserIds": sorted(set(missing))}}
            )
        return notifications, len(targets), failures

    def _manage_users(
        self, action: str, request: dict[str, Any], event_id: str
    ) -> tuple[list[Notification], int, list[dict[str, Any]]]:
        users = request.get("users")
        if not isinstance(users, list) or not users or len(users) > LIMITS["maxUsers"]:
            raise ApiError(9602, "users must list 1 to 100 users.")
        changed = []
        for item in users:
            if not isinstance(item, dict) or not isinstance(item.get("clientUserId"), str):
                raise ApiError(9602, "every user needs a clientUserId.")
            user = self.users.setdefault(
                item["clientUserId"],
                {"clientUserId": item["clientUserId"], "inviteCode": uuid.uuid4().hex},
            )
            if isinstance(item.get("email"), str):
                user["email"] = item["email"]
            user["status"] = "Retired" if action == "retire" else "Registered"
            changed.append(User.model_validate(user))
        body = UserManagement(
            eventId=event_id,
            result="SUCCESS",
            type=action.upper(),
            users=changed,
        )
        return [Notification.of(body, uid=self.uid)], len(changed), []

    # Time.

    def next_deadline(self) -> float | None:
        due = [e.complete_at for e in self.events.values() if not e.notified and not e.held]
        return min(due, default=None)

    def tick(self, now: float) -> list[Notification]:
        """Hand out, once, the notifications of every event that has completed by ``now``.

        Status reads derive from ``now`` and never consume notifications, so a poll that
        arrives before the adapter's tick cannot lose them."""
        out: list[Notification] = []
        for event in self.events.values():
            if not event.notified and event.complete(now):
                event.notified = True
                out.extend(n for n in event.notifications if self.subscribed(n.notificationType))
        return out

    def release(self, now: float) -> None:
        """Let held events complete from ``now`` on."""
        for event in self.events.values():
            if event.held:
                event.held = False
                event.complete_at = max(event.complete_at, now)


def _strings(request: dict[str, Any], key: str) -> list[str]:
    value = request.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ApiError(9602, f"{key} must be a list of strings.")
    return list(value)
