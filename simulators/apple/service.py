"""The Apps and Books API (``/mdm/v2``) subset, as state without I/O
(docs/vendors/apple.md §2–6).

:class:`AppsAndBooks` takes parsed requests and ``now`` and returns ``(http_status, body)``;
mutations create events that stay ``PENDING`` until their processing deadline, then complete and
yield the notifications to send. The aiohttp adapter is :mod:`simulators.apple.api`.
"""

from __future__ import annotations

import itertools
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from simulators.apple.errors import (
    ERRORS,
    LIMITS,
    ApiError,
    error_body,
    is_unicode,
    valid_text,
)
from simulators.apple.models import (
    Notification,
    User,
    UserManagement,
)
from simulators.apple.subscriptions import BILLING_PERIOD_S, CallOutcome, SubscriptionLedger

__all__ = ["ERRORS", "LIMITS", "ApiError", "AppsAndBooks", "Event", "error_body"]

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
    num_failed: int = 0  # how many of the requested tasks failed
    held: bool = False  # kept PENDING and silent until released (fault)
    notified: bool = False  # its notifications have been handed out by handle_timeout()
    deferred: bool = False  # a deferred subscription disassociation (notified at period end)
    seats: tuple[tuple[int, str], ...] = ()  # subscription calls: the (adamId, user) pairs named

    def complete(self, now: float) -> bool:
        return not self.held and now >= self.complete_at

    def status(self, now: float) -> str:
        """PENDING until processed; then FAILED if any task failed, else COMPLETE."""
        if not self.complete(now):
            return "PENDING"
        return "FAILED" if self.failures else "COMPLETE"

    def num_completed(self, now: float) -> int:
        return self.num_requested - self.num_failed if self.complete(now) else 0


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
    # (adamId, pricingParam, "clientUserId" | "serialNumber", id) -> the assignment, in order
    assignments: dict[tuple[str, str, str, str], dict[str, Any]] = field(default_factory=dict)
    events: dict[str, Event] = field(default_factory=dict)
    billing_period_s: float = BILLING_PERIOD_S  # subscriptions: deferred disassociations wait
    subscriptions: SubscriptionLedger = field(init=False)
    _version: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def __post_init__(self) -> None:
        self.subscriptions = SubscriptionLedger(self.uid, self.billing_period_s)
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
            if not _https_url(url) or not is_unicode(url):
                raise ApiError(9712)
            if not token.isascii() or not token.isprintable():
                raise ApiError(
                    9602, "notificationAuthToken must be printable ASCII (it is sent in a header)."
                )
        types = request.get("notificationTypes", [])
        if not isinstance(types, list) or any(t not in SUBSCRIBABLE for t in types):
            raise ApiError(9602, f"notificationTypes must be drawn from {list(SUBSCRIBABLE)}.")
        if "mdmInfo" in request:
            info = request["mdmInfo"]
            if not isinstance(info, dict) or not all(
                isinstance(info.get(k), str) and is_unicode(info[k])
                for k in ("id", "name", "metadata")
            ):  # each notification carries it: text that encodes as UTF-8
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
        return self.page("assignments", list(self.assignments.values()))

    def get_users(self) -> dict[str, Any]:
        return self.page("users", list(self.users.values()))

    def registered(self, client_user_id: str) -> bool:
        """Whether a user with this clientUserId exists and is not retired."""
        return self.users.get(client_user_id, {}).get("status") not in (None, "Retired")

    def get_subscriptions(self, query: dict[str, str]) -> dict[str, Any]:
        """``GET /subscriptions``: one cursor page (no ``nextCursor``: it is the last)."""
        items = self.subscriptions.listing(query)
        return self.envelope({"subscriptions": items, "versionId": str(next(self._version))})

    def get_subscription_assignments(self, query: dict[str, str]) -> dict[str, Any]:
        """``GET /subscriptions/assignments``: one cursor page."""
        items = self.subscriptions.assignments(query)
        return self.envelope({"assignments": items, "versionId": str(next(self._version))})

    def set_subscription_management(self, enabled: bool) -> dict[str, Any]:
        """``POST /subscriptions/enable`` and ``/subscriptions/disable`` (no body)."""
        return self.envelope(self.subscriptions.set_enabled(enabled))

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
        """Validate the whole request first (an error leaves no state behind), then apply it
        and schedule its event."""
        if not isinstance(request, dict):
            raise ApiError(9602, "The request body must be a JSON object.")
        event_id = str(uuid.uuid4())
        action = path.split("/")[-1]
        if path in ("assets/associate", "assets/disassociate", "assets/revoke"):
            outcome = self._manage_assets(action, request, event_id)
        elif path in ("users/create", "users/update", "users/retire"):
            outcome = self._manage_users(action, request, event_id)
        elif path == "subscriptions/associate":
            outcome = self.subscriptions.associate(request, event_id, self.registered)
        elif path == "subscriptions/disassociate":
            outcome = self.subscriptions.disassociate(request, event_id, now)
        else:
            raise ApiError(9602, f"Unknown operation {path}.")
        held = self.hold_events > 0
        self.hold_events -= held
        self.events[event_id] = Event(
            event_id,
            action.upper(),
            outcome.requested,
            now,
            now + self.processing_delay_s,
            outcome.notifications,
            outcome.failures,
            num_failed=outcome.failed,
            held=held,
            deferred=outcome.deferred,
            seats=outcome.seats,
        )
        return self.envelope({"eventId": event_id})

    def _manage_assets(self, action: str, request: dict[str, Any], event_id: str) -> CallOutcome:
        """Associate, disassociate or revoke. An association to a user who is not registered
        fails with 9609 ("Registered user not found"), one beyond an asset's available count
        with 9709; each error gets its own FAILURE notification (at most one ``error`` per
        notification) and an entry in the event's failures."""
        revoke = action == "revoke"
        users = _strings(
            request, "clientUserIds", "maxRevokeClientUserIds" if revoke else "maxClientUserIds"
        )
        serials = _strings(
            request, "serialNumbers", "maxRevokeSerialNumbers" if revoke else "maxSerialNumbers"
        )
        if not users and not serials:
            raise ApiError(9602, "clientUserIds or serialNumbers is required.")
        if revoke:
            user_set, serial_set = set(users), set(serials)
            targets = [
                key
                for key in self.assignments
                if (key[2] == "clientUserId" and key[3] in user_set)
                or (key[2] == "serialNumber" and key[3] in serial_set)
            ]
            return self._apply(action, event_id, len(targets), targets, {})
        assets = self._assets(request)
        people = [("clientUserId", u) for u in users] + [("serialNumber", s) for s in serials]
        targets = [(adam, pricing, kind, who) for adam, pricing in assets for kind, who in people]
        if action == "disassociate":
            return self._apply(
                action, event_id, len(targets), [t for t in targets if t in self.assignments], {}
            )
        unknown = {u for u in users if self.users.get(u, {}).get("status") in (None, "Retired")}
        failed: dict[int, list[tuple[str, str, str, str]]] = {9609: [], 9709: []}
        wanted: dict[tuple[str, str], list[tuple[str, str, str, str]]] = {}
        for target in targets:
            if target[2] == "clientUserId" and target[3] in unknown:
                failed[9609].append(target)
            elif target not in self.assignments:
                wanted.setdefault(target[:2], []).append(target)
        granted = []
        for asset, new in wanted.items():
            if len(new) > self.assets[asset]["availableCount"]:
                failed[9709].extend(new)
            else:
                granted.extend(new)
        return self._apply(action, event_id, len(targets), granted, failed)

    def _assets(self, request: dict[str, Any]) -> list[tuple[str, str]]:
        """The request's ``assets``: 1 to 25 known ``{adamId, pricingParam}``, without repeats."""
        assets = request.get("assets")
        if not isinstance(assets, list) or not 1 <= len(assets) <= LIMITS["maxAssets"]:
            raise ApiError(9602, "assets must list 1 to 25 {adamId, pricingParam}.")
        keys = []
        for item in assets:
            if not isinstance(item, dict):
                raise ApiError(9602, "every asset is an object {adamId, pricingParam}.")
            adam, pricing = item.get("adamId"), item.get("pricingParam", "STDQ")
            if isinstance(adam, int) and not isinstance(adam, bool):
                adam = str(adam)
            if not isinstance(adam, str) or not isinstance(pricing, str):
                raise ApiError(9602, "adamId and pricingParam are strings.")
            if (adam, pricing) not in self.assets:
                raise ApiError(9602, f"Unknown asset {adam[:40]} {pricing[:10]}.")
            keys.append((adam, pricing))
        return list(dict.fromkeys(keys))

    def _apply(
        self,
        action: str,
        event_id: str,
        requested: int,
        done: list[tuple[str, str, str, str]],
        failed: dict[int, list[tuple[str, str, str, str]]],
    ) -> CallOutcome:
        """Change the assignments and counts, and build the event's notifications."""
        for key in done:
            asset = self.assets[key[:2]]
            if action == "associate":
                self.assignments[key] = {"adamId": key[0], "pricingParam": key[1], key[2]: key[3]}
                asset["availableCount"] -= 1
                asset["assignedCount"] += 1
            else:
                del self.assignments[key]
                asset["availableCount"] += 1
                asset["assignedCount"] -= 1
        kind = action.upper()
        notifications = []
        if done or not any(failed.values()):
            notifications.append(_asset_notification(done, event_id, kind, None, self.uid))
        failures = []
        for number, keys in failed.items():
            if not keys:
                continue
            notifications.append(_asset_notification(keys, event_id, kind, number, self.uid))
            info: dict[str, list[str]] = {}
            for key in keys:
                info.setdefault(f"{key[2]}s", [])
                if key[3] not in info[f"{key[2]}s"]:
                    info[f"{key[2]}s"].append(key[3])
            failures.append({**error_body(number), "errorInfo": info})
        return CallOutcome(notifications, requested, failures, sum(len(k) for k in failed.values()))

    def _manage_users(self, action: str, request: dict[str, Any], event_id: str) -> CallOutcome:
        users = request.get("users")
        if not isinstance(users, list) or not users or len(users) > LIMITS["maxUsers"]:
            raise ApiError(9602, "users must list 1 to 100 users.")
        for item in users:
            if not isinstance(item, dict) or not valid_text(item.get("clientUserId")):
                raise ApiError(9602, "every user needs a clientUserId (a string).")
            if "email" in item and not valid_text(item["email"]):
                raise ApiError(9602, "email is a string.")
        changed = []
        for item in users:
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
        return CallOutcome([Notification.of(body, uid=self.uid)], len(changed), [], 0)

    # Time.

    def next_deadline(self) -> float | None:
        due = [e.complete_at for e in self.events.values() if not e.notified and not e.held]
        if (release := self.subscriptions.next_deadline()) is not None:
            due.append(release)
        return min(due, default=None)

    def handle_timeout(self, now: float) -> list[Notification]:
        """Hand out, once, the notifications of every event that has completed by ``now``.

        Status reads derive from ``now`` and never consume notifications, so a poll that
        arrives before the adapter's handle_timeout cannot lose them."""
        out: list[Notification] = []
        for event in self.events.values():
            if not event.notified and event.complete(now):
                event.notified = True
                out.extend(n for n in event.notifications if self.subscribed(n.notificationType))
        released = self.subscriptions.due(now)  # deferred disassociations: end of the period
        out.extend(n for n in released if self.subscribed(n.notificationType))
        return out

    def release(self, now: float) -> None:
        """Let held events complete from ``now`` on."""
        for event in self.events.values():
            if event.held:
                event.held = False
                event.complete_at = max(event.complete_at, now)


def _https_url(url: str) -> bool:
    """An ``https://host[:port]/…`` URL with a host and a valid port."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return False
    return parts.scheme.lower() == "https" and bool(parts.hostname) and port != 0


def _strings(request: dict[str, Any], key: str, limit: str) -> list[str]:
    """The request's list of identifiers under ``key``, without repeats, within ``limit``."""
    value = request.get(key, [])
    if not isinstance(value, list) or not all(valid_text(v) for v in value):
        raise ApiError(9602, f"{key} must be a list of identifiers (non-empty UTF-8 strings).")
    if len(value) > LIMITS[limit]:
        raise ApiError(9602, f"{key}: at most {LIMITS[limit]} ({limit}).")
    return list(dict.fromkeys(value))


def _asset_notification(
    keys: list[tuple[str, str, str, str]], event_id: str, kind: str, error: int | None, uid: str
) -> Notification:
    """An ASSET_MANAGEMENT notification, built as plain JSON (it may carry 25,000 items)."""
    body: dict[str, Any] = {
        "assignments": [{"adamId": a, "pricingParam": p, k: who} for a, p, k, who in keys],
        "eventId": event_id,
        "result": "FAILURE" if error else "SUCCESS",
        "type": kind,
    }
    if error:
        body["error"] = {"errorNumber": error, "errorMessage": ERRORS[error][1]}
    return Notification(notification=body, notificationType="ASSET_MANAGEMENT", uId=uid)
