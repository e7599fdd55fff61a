"""An OpenAPI description of an Apple notification receiver, generated from the pydantic models,
and the Schemathesis negative cases drawn from it (APL-BAD-01).

``python -m conformance.apple.openapi`` prints the description, so users can run their own
Schemathesis campaign against their receiver.
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import settings

from conformance.fuzzing import negative_bodies
from simulators.apple.models import BODY_MODELS, NOTIFICATION_TYPES

__all__ = ["negative_cases", "receiver_openapi"]

PATH = "/notify"


def receiver_openapi() -> dict[str, Any]:
    """OpenAPI 3.0 for ``POST /notify`` taking any documented notification."""
    schemas: dict[str, Any] = {}
    variants = []
    for kind, model in BODY_MODELS.items():
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        schemas.update(schema.pop("$defs", {}))
        schemas[model.__name__] = schema
        variants.append(
            {
                "type": "object",
                "required": ["notification", "notificationId", "notificationType", "uId"],
                "properties": {
                    "notification": {"$ref": f"#/components/schemas/{model.__name__}"},
                    "notificationId": {"type": "string", "minLength": 1},
                    "notificationType": {"type": "string", "enum": [kind]},
                    "uId": {"type": "string"},
                },
            }
        )
    return {
        "openapi": "3.0.3",
        "info": {"title": "Apple Apps and Books notification receiver", "version": "1"},
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"bearer": []}],
        "paths": {
            PATH: {
                "post": {
                    "requestBody": {
                        "required": True,
                        "content": {"application/json": {"schema": {"oneOf": variants}}},
                    },
                    "responses": {
                        "200": {"description": "processed"},
                        "400": {"description": "malformed"},
                        "401": {"description": "bad token"},
                    },
                }
            }
        },
    }


def _unknown_type_only(body: Any) -> bool:
    """A well-formed envelope whose type is merely unknown: APL-TYPE-06's case, not malformed."""
    return (
        isinstance(body, dict)
        and isinstance(body.get("notificationId"), str)
        and isinstance(body.get("notificationType"), str)
        and body["notificationType"] not in NOTIFICATION_TYPES
        and isinstance(body.get("notification"), dict)
    )


def negative_cases(campaign: settings | None = None) -> list[bytes]:
    """Schema-violating request bodies (deterministic from run to run by default)."""
    return negative_bodies(
        receiver_openapi(),
        PATH,
        "POST",
        keep=lambda body: not _unknown_type_only(body),
        campaign=campaign,
    )


if __name__ == "__main__":
    print(json.dumps(receiver_openapi(), indent=2))
