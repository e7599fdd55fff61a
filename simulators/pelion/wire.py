"""The two kinds of JSON model of the Device Management API: what a receiver must read (unknown
keys kept) and what a client sends to the simulated API (unknown keys ignored)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

__all__ = ["RequestModel", "WireModel"]


class WireModel(BaseModel):
    """An item a receiver must read: unknown keys are kept (``model_extra``)."""

    model_config = ConfigDict(extra="allow", frozen=True, populate_by_name=True)

    def to_wire(self) -> dict[str, Any]:
        """The JSON object as sent: hyphenated aliases, absent fields left out."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


class RequestModel(BaseModel):
    """A body a client sends to the simulated API: unknown keys are ignored."""

    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)

    def to_wire(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)
