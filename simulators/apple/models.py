"""Apple Apps and Books notification wire models (vendor doc, "Subscribing to notifications";
docs/vendors/apple.md §4).

Every notification is an envelope ``{notification, notificationId, notificationType, uId}`` whose
``notification`` object has one shape per ``notificationType``. Models allow unknown fields, as a
receiver must (APL-TYPE-06); the simulator only ever emits the documented ones.
"""

from __future__ import annotations

import uuid
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "BODY_MODELS",
    "ELEMENT_FIELDS",
    "MAX_ELEMENTS",
    "NOTIFICATION_TYPES",
    "AssetCount",
    "AssetManagement",
    "Assignment",
    "AssociatedUser",
    "Notification",
    "NotificationError",
    "SubscriptionAssignment",
    "SubscriptionCount",
    "SubscriptionCounts",
    "SubscriptionManagement",
    "TestNotification",
    "User",
    "UserAssociated",
    "UserManagement",
    "association",
    "new_notification_id",
    "sample",
]

# "There is a limit of 100 elements in the notification."
MAX_ELEMENTS = 100


class _Wire(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)


class NotificationError(_Wire):
    """At most one ``error`` per notification (A-ERR); it may cover several entities."""

    errorNumber: int
    errorMessage: str


class TestNotification(_Wire):
    """``TEST_NOTIFICATION``: ``notification`` is ``{}``; sent when client config is stored."""

    __test__ = False  # not a pytest test class


class AssetCount(_Wire):
    """``ASSET_COUNT``: a purchase, transfer or refund changed ``countDelta`` (signed)."""

    adamId: str
    countDelta: int
    pricingParam: str


class Assignment(_Wire):
    """An asset assigned to a device (``serialNumber``) or a user (``clientUserId``)."""

    adamId: str
    pricingParam: str
    serialNumber: str | None = None
    clientUserId: str | None = None


class AssetManagement(_Wire):
    """``ASSET_MANAGEMENT``: ASSOCIATE, DISASSOCIATE or REVOKE results."""

    assignments: list[Assignment]
    eventId: str
    result: Literal["SUCCESS", "FAILURE"]
    type: Literal["ASSOCIATE", "DISASSOCIATE", "REVOKE"]
    error: NotificationError | None = None


class SubscriptionCounts(_Wire):
    renewing: int
    expiring: int


class SubscriptionCountsBlock(_Wire):
    """Only ``available`` and ``total``: ``assigned`` is never in the notification."""

    available: SubscriptionCounts
    total: SubscriptionCounts


class SubscriptionCount(_Wire):
    """``SUBSCRIPTION_COUNT``: integer ``adamId``/``parentAdamId`` (unlike asset notifications)."""

    parentAdamId: int
    adamId: int
    counts: SubscriptionCountsBlock


class SubscriptionAssignment(_Wire):
    adamId: int
    clientUserId: str
    renewing: bool


class SubscriptionManagement(_Wire):
    """``SUBSCRIPTION_MANAGEMENT``: subscription seats associated or disassociated."""

    assignments: list[SubscriptionAssignment]
    eventId: str
    result: Literal["SUCCESS", "FAILURE"]
    type: Literal["ASSOCIATE", "DISASSOCIATE"]
    error: NotificationError | None = None


class User(_Wire):
    clientUserId: str
    email: str | None = None
    inviteCode: str | None = None
    idHash: str | None = None
    status: str


class UserManagement(_Wire):
    """``USER_MANAGEMENT``: users created, updated or retired."""

    eventId: str
    result: Literal["SUCCESS", "FAILURE"]
    type: Literal["CREATE", "UPDATE", "RETIRE"]
    users: list[User]
    error: NotificationError | None = None


class AssociatedUser(_Wire):
    clientUserId: str
    email: str | None = None
    idHash: str | None = None
    inviteCode: str | None = None
    status: str


class UserAssociated(_Wire):
    """``USER_ASSOCIATED``: a user accepted an invitation; carries no eventId."""

    associatedUsers: list[AssociatedUser]


BODY_MODELS: dict[str, type[_Wire]] = {
    "TEST_NOTIFICATION": TestNotification,
    "ASSET_COUNT": AssetCount,
    "ASSET_MANAGEMENT": AssetManagement,
    "SUBSCRIPTION_COUNT": SubscriptionCount,
    "SUBSCRIPTION_MANAGEMENT": SubscriptionManagement,
    "USER_MANAGEMENT": UserManagement,
    "USER_ASSOCIATED": UserAssociated,
}
NOTIFICATION_TYPES = tuple(BODY_MODELS)

# The list in each body whose items count towards the 100-element limit.
ELEMENT_FIELDS: dict[str, str] = {
    "ASSET_MANAGEMENT": "assignments",
    "SUBSCRIPTION_MANAGEMENT": "assignments",
    "USER_MANAGEMENT": "users",
    "USER_ASSOCIATED": "associatedUsers",
}


def association(
    count: int,
    *,
    target: Literal["clientUserId", "serialNumber"] = "clientUserId",
    adam_id: str = "408709785",
    event_id: str | None = None,
) -> Notification:
    """A successful ASSET_MANAGEMENT ASSOCIATE of one asset to ``count`` users or devices: the
    notification an association of that size produces before it is split at 100."""
    prefix = "user" if target == "clientUserId" else "device"
    body = AssetManagement(
        assignments=[
            Assignment(adamId=adam_id, pricingParam="STDQ", **{target: f"{prefix}-{i}"})
            for i in range(count)
        ],
        eventId=event_id or str(uuid.uuid4()),
        result="SUCCESS",
        type="ASSOCIATE",
    )
    return Notification.of(body)


def sample(notification_type: str, elements: int = 1) -> Notification:
    """A realistic notification of ``notification_type`` (the shapes of the vendor doc's
    examples) with ``elements`` items in its element list, before any split at 100; the count
    types and TEST_NOTIFICATION carry no list, so ``elements`` must be 1 for them."""
    if notification_type not in BODY_MODELS:
        raise ValueError(
            f"unknown notificationType {notification_type!r} (known: {', '.join(BODY_MODELS)})"
        )
    if notification_type not in ELEMENT_FIELDS and elements != 1:
        raise ValueError(
            f"{notification_type} carries no element list: leave out elements "
            f"(types with elements: {', '.join(ELEMENT_FIELDS)})"
        )
    event_id = str(uuid.uuid4())
    n = range(elements)
    if notification_type == "ASSET_MANAGEMENT":
        return association(elements, event_id=event_id)
    if notification_type == "TEST_NOTIFICATION":
        body: _Wire = TestNotification()
    elif notification_type == "ASSET_COUNT":
        body = AssetCount(adamId="408709785", countDelta=-12, pricingParam="STDQ")
    elif notification_type == "SUBSCRIPTION_COUNT":
        body = SubscriptionCount(
            parentAdamId=54321,
            adamId=12345,
            counts=SubscriptionCountsBlock(
                available=SubscriptionCounts(renewing=15, expiring=5),
                total=SubscriptionCounts(renewing=100, expiring=20),
            ),
        )
    elif notification_type == "SUBSCRIPTION_MANAGEMENT":
        body = SubscriptionManagement(
            assignments=[
                SubscriptionAssignment(adamId=12345, clientUserId=f"user-{i}", renewing=True)
                for i in n
            ],
            eventId=event_id,
            result="SUCCESS",
            type="ASSOCIATE",
        )
    elif notification_type == "USER_MANAGEMENT":
        body = UserManagement(
            eventId=event_id,
            result="SUCCESS",
            type="CREATE",
            users=[
                User(clientUserId=f"user-{i}", email=f"user-{i}@example.com", status="Registered")
                for i in n
            ],
        )
    else:
        body = UserAssociated(
            associatedUsers=[
                AssociatedUser(clientUserId=f"user-{i}", idHash=f"hash-{i}", status="Associated")
                for i in n
            ]
        )
    return Notification.of(body)


def new_notification_id() -> str:
    """A fresh ``notificationId`` (UUID-like; receivers must not validate it strictly)."""
    return str(uuid.uuid4())


class Notification(_Wire):
    """The envelope common to every notification type."""

    notification: dict[str, Any]
    notificationId: str = Field(default_factory=new_notification_id)
    notificationType: str
    uId: str = "2049025000431439"

    @classmethod
    def of(cls, body: _Wire, *, uid: str = "2049025000431439", **extra: Any) -> Notification:
        """Wrap a typed body in an envelope with a fresh id."""
        kind = next(k for k, m in BODY_MODELS.items() if isinstance(body, m))
        return cls(
            notification=body.model_dump(mode="json", exclude_none=True),
            notificationType=kind,
            uId=uid,
            **extra,
        )

    def body(self) -> _Wire | None:
        """The typed body, or None for a type this simulator does not know."""
        model = BODY_MODELS.get(self.notificationType)
        return None if model is None else model.model_validate(self.notification)

    def elements(self) -> list[Any]:
        """The items that count towards the 100-element limit (empty for count types)."""
        field_name = ELEMENT_FIELDS.get(self.notificationType)
        items = self.notification.get(field_name, []) if field_name else []
        return list(items) if isinstance(items, list) else []

    def to_wire(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_none=True)

    def to_bytes(self) -> bytes:
        """The JSON body as sent on the wire (``model_dump_json`` without its str round trip)."""
        return self.__pydantic_serializer__.to_json(self, exclude_none=True)
