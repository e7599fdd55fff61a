"""The ``[pelion]`` manifest section a SUT declares, and the record it reports to the observer."""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictStr, model_validator

from conformance.manifest import ManifestFile, Section, WebUrl
from simulators.pelion.models import MAX_WEBHOOK_CHARS

__all__ = ["Channel", "ObservedItem", "PelionSection"]

Channel = Literal["callback", "websocket"]
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_RESERVED = frozenset({"content-length", "host", "transfer-encoding", "connection"})


class PelionSection(Section):
    """``[pelion]``: the SUT receives Pelion notifications (docs/sut-contract.md §2).

    ``channel = "callback"``: the SUT serves ``callback_url``; the harness registers it with
    ``callback_headers`` once the SUT is ready, unless ``registers_itself = true`` (the SUT
    calls ``PUT /v2/notification/callback`` itself). ``verifies_caller = true``: the SUT
    checks the client certificate the service presents (chained to
    ``CONFORMANCE_PELION_CALLER_CA``) and refuses callers without it (PEL-CB-08). ``channel = "websocket"``: the SUT creates
    its channel and connects itself. ``tls_ca`` verifies the callback URL's certificate
    (default: the harness CA).

    A project extension: ``channel = ["callback", "websocket"]`` for a SUT that implements
    both. The vendor allows one channel per API key, so such a SUT gets a second key for its
    callback, ``CONFORMANCE_PELION_CALLBACK_API_KEY`` (``CONFORMANCE_PELION_API_KEY`` stays
    the WebSocket's), and is judged on both.
    """

    channel: Channel | list[Channel]
    callback_url: WebUrl | None = None
    callback_headers: dict[str, str] = {}
    registers_itself: StrictBool = False
    verifies_caller: StrictBool = False
    tls_ca: ManifestFile | None = None

    @property
    def channels(self) -> tuple[Channel, ...]:
        """The channels claimed, callback first."""
        claimed = {self.channel} if isinstance(self.channel, str) else set(self.channel)
        return tuple(c for c in ("callback", "websocket") if c in claimed)

    @model_validator(mode="after")
    def _consistent(self) -> PelionSection:
        if not self.channels:
            raise ValueError('channel: give "callback", "websocket" or both in a list')
        if "callback" in self.channels:
            if self.callback_url is None:
                raise ValueError(
                    'channel = "callback" needs callback_url = "https://…" (the URL the SUT '
                    "serves notifications on)"
                )
            for name, value in self.callback_headers.items():
                if not _TOKEN.fullmatch(name) or any(ord(c) < 32 and c != "\t" for c in value):
                    raise ValueError(
                        f"callback_headers: {name!r} is not a valid HTTP header (names are "
                        "HTTP tokens, values have no control characters)"
                    )
                if name.lower() in _RESERVED:
                    raise ValueError(f"callback_headers: {name!r} is set by the service itself")
            total = len(self.callback_url) + sum(
                len(k) + len(v) for k, v in self.callback_headers.items()
            )
            if total > MAX_WEBHOOK_CHARS:
                raise ValueError(
                    f"callback_url and callback_headers together have {total} characters; the "
                    f"vendor allows at most {MAX_WEBHOOK_CHARS} (shorten the URL or the headers)"
                )
        else:
            extra = [
                name
                for name, given in (
                    ("callback_url", self.callback_url is not None),
                    ("callback_headers", bool(self.callback_headers)),
                    ("registers_itself", self.registers_itself),
                    ("verifies_caller", self.verifies_caller),
                )
                if given
            ]
            if extra:
                raise ValueError(
                    f'{", ".join(extra)} apply to channel = "callback" only (a WebSocket SUT '
                    "creates its channel and connects itself): remove them or set channel = "
                    '"callback"'
                )
        return self


class ObservedItem(BaseModel):
    """``POST {observer}/pelion``: ``{"kind": "<top-level key>", "item": <the item as
    received>, "payload_hex": "<decoded payload bytes as hex>"}`` (docs/sut-contract.md §4)."""

    model_config = ConfigDict(extra="allow")
    kind: StrictStr
    item: Any
    payload_hex: str | None = Field(default=None, pattern=r"^(?:[0-9A-Fa-f]{2})*$")
