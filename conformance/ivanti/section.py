"""The ``[ivanti]`` manifest section a SUT declares, and the record it reports to the observer."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from conformance.manifest import Section
from simulators.ivanti.events import EVENT_TYPES

__all__ = ["IvantiSection", "ObservedEvent"]


class IvantiSection(Section):
    """``[ivanti]``: the SUT subscribes to the Ivanti broker (docs/sut-contract.md §2)."""

    consumes: list[str] = Field(default_factory=lambda: list(EVENT_TYPES), min_length=1)
    topic_style: Literal["neurons", "epmm"] = "neurons"

    @field_validator("consumes")
    @classmethod
    def _known(cls, value: list[str]) -> list[str]:
        unknown = [name for name in value if name not in EVENT_TYPES]
        if unknown:
            raise ValueError(
                f"unknown event types {', '.join(map(repr, unknown))} "
                f"(known: {', '.join(EVENT_TYPES)})"
            )
        return list(dict.fromkeys(value))


class ObservedEvent(BaseModel):
    """``POST {observer}/ivanti``: ``{"topic": "<topic>", "message": <the JSON payload>}``."""

    model_config = ConfigDict(extra="allow")
    topic: str
    message: Any
