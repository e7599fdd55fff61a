"""The two kinds of JSON model of the Device Management API: what a receiver must read (unknown
keys kept) and what a client sends to the simulated API (unknown keys ignored)."""

from __future__ import annotations

from typing import Any, Self

from pydantic import BaseModel, ConfigDict, model_validator

__all__ = ["RequestModel", "WireModel"]


class WireModel(BaseModel):
    """An item a receiver must read: unknown keys are kept (``model_extra``)."""

    model_config = ConfigDict(extra="allow", frozen=True, populate_by_name=True)

    def to_wire(self) -> dict[str, Any]:
        """The JSON object as sent: hyphenated aliases, absent fields left out."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


class RequestModel(BaseModel):
    """A body a client sends to the simulated API: unknown keys are ignored, and text must be
    Unicode (JSON lets a lone surrogate such as ``"\\ud800"`` through; it could be neither
    sent on as a URL or header nor written in a report), so it is a validation error."""

    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)

    @model_validator(mode="after")
    def _unicode_text(self) -> Self:
        if not _is_unicode(self.model_dump()):
            raise ValueError('text with a lone surrogate (e.g. "\\ud800") is not Unicode')
        return self

    def to_wire(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


def _is_unicode(value: Any) -> bool:
    """Whether every string in ``value`` (keys too, in dicts, lists and tuples) is Unicode
    text, i.e. encodable as UTF-8."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if not item.isascii():
                try:
                    item.encode()
                except UnicodeEncodeError:
                    return False
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list | tuple):
            stack.extend(item)
    return True
