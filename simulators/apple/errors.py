"""The Apps and Books API's synchronous errors, limits and identifier rules (Apple, "Handling
error responses" and Service Config ``limits``; docs/vendors/apple.md §6), shared by the API's
cores (:mod:`simulators.apple.service`, :mod:`simulators.apple.subscriptions`)."""

from __future__ import annotations

from typing import Any

__all__ = ["ERRORS", "LIMITS", "ApiError", "error_body", "is_unicode", "valid_text"]

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
    # Subscriptions (9811 to 9818): only these two are described in the vendor's table.
    9816: (400, "The request names more subscriptions than maxSubscriptions allows."),
    9818: (400, "Subscription management can't be disabled while subscriptions are assigned."),
}

LIMITS = {
    "maxAssets": 25,
    "maxUsers": 100,
    "maxNotificationLength": 512,
    "maxClientUserIds": 1000,
    "maxSerialNumbers": 1000,
    "maxRevokeClientUserIds": 100,
    "maxRevokeSerialNumbers": 100,
    "maxSubscriptions": 25,
    "maxSubscriptionClientUserIds": 1000,
    "maxMdmNameLength": 100,
    "maxMdmMetadataLength": 255,
    "maxMdmIdLength": 100,
}


class ApiError(Exception):
    """A synchronous error answer: ``errorNumber`` maps to its HTTP status."""

    def __init__(
        self, number: int, message: str | None = None, *, status: int | None = None
    ) -> None:
        self.number = number
        self.status, default = ERRORS[number]
        self.status = status or self.status
        self.message = message or default
        super().__init__(f"{number}: {self.message}")


def error_body(number: int, message: str | None = None) -> dict[str, Any]:
    return {"errorNumber": number, "errorMessage": message or ERRORS[number][1]}


def valid_text(value: Any, limit: int = 256) -> bool:
    """A non-empty string of at most ``limit`` characters that encodes as UTF-8 (a lone
    surrogate cannot be sent in a notification)."""
    if not isinstance(value, str) or not value or len(value) > limit:
        return False
    return is_unicode(value)


def is_unicode(text: str) -> bool:
    """Whether ``text`` encodes as UTF-8 (JSON lets a lone surrogate, ``"\\ud800"``, through)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
