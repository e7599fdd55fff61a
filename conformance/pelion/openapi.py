"""An OpenAPI description of a Pelion callback receiver, generated from the pydantic models, and
the Schemathesis negative cases drawn from it (PEL-MSG-03).

``python -m conformance.pelion.openapi`` prints the description, so users can run their own
Schemathesis campaign against their receiver.
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import settings

from conformance.fuzzing import negative_bodies
from simulators.pelion.models import NotificationMessage

__all__ = ["negative_cases", "receiver_openapi"]

PATH = "/callback"


def receiver_openapi() -> dict[str, Any]:
    """OpenAPI 3.0 for ``PUT /callback`` taking a NotificationMessage."""
    schema = NotificationMessage.model_json_schema(
        by_alias=True, ref_template="#/components/schemas/{model}"
    )
    schemas: dict[str, Any] = schema.pop("$defs", {})
    schemas["NotificationMessage"] = schema
    return {
        "openapi": "3.0.3",
        "info": {"title": "Pelion Device Management callback receiver", "version": "1"},
        "components": {"schemas": schemas},
        "paths": {
            PATH: {
                "put": {
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {
                                "schema": {"$ref": "#/components/schemas/NotificationMessage"}
                            }
                        },
                    },
                    "responses": {
                        "200": {"description": "accepted"},
                        "204": {"description": "accepted"},
                        "400": {"description": "malformed"},
                    },
                }
            }
        },
    }


def _is_message(body: Any) -> bool:
    try:
        NotificationMessage.model_validate(body)
    except ValueError:
        return False
    return True


def negative_cases(campaign: settings | None = None) -> list[bytes]:
    """Schema-violating request bodies (deterministic from run to run by default)."""
    return negative_bodies(
        receiver_openapi(), PATH, "PUT", keep=lambda body: not _is_message(body), campaign=campaign
    )


if __name__ == "__main__":
    print(json.dumps(receiver_openapi(), indent=2))
