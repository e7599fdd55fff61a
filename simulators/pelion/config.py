"""The simulated service's settings and the names it records evidence under (vendor doc,
"The event notification channel"; docs/vendors/pelion.md)."""

from __future__ import annotations

from dataclasses import dataclass, field

from simulators.pelion.channels import ChannelOptions
from simulators.pelion.delivery import REQUEST_TIMEOUT_S, WsAuthFailure
from simulators.pki import CertFiles

__all__ = ["ACTOR", "DEFAULT_EPOCH_S", "PEER", "PelionConfig"]

ACTOR = "pelion"
PEER = "sut"
# Unix time of simulated 0 when the caller gives none (``timestamp`` of serialization v2).
DEFAULT_EPOCH_S = 1_700_000_000.0


@dataclass(frozen=True)
class PelionConfig:
    """The simulator's settings; every default is the vendor doc's, written once in the core
    that applies it.

    ``channel``: the channel rules' numbers (:class:`ChannelOptions`), among them the callback
    back-off (:class:`BackOff`: the first retry after 2 s in the vendor doc, 1 s in SPEC20/21
    and later Pelion docs) and the close code of a channel deleted over REST (1001 in the vendor
    doc, 1000 in SPEC20/21). ``ws_auth_failure``: a WebSocket connect with a missing or invalid
    key is accepted and closed 1008 (vendor doc: "Authentication fails due to an invalid or
    missing API key header when connecting") or refused with HTTP 401 (SPEC20/21).
    ``cafiles``: CAs trusted for callback URLs besides the system's. ``caller``: the client
    certificate chain presented to callback URLs (leaf and intermediate; None: none);
    ``untrusted_caller``: the chain of another root a check may switch to. ``epoch_s``: the
    Unix time of simulated 0.
    """

    api_key: str
    port: int = 0
    channel: ChannelOptions = field(default_factory=ChannelOptions)
    ws_auth_failure: WsAuthFailure = "close-1008"
    request_timeout_s: float = REQUEST_TIMEOUT_S
    pull_timeout_s: float = 30.0
    ping_interval_s: float | None = 30.0
    pong_timeout_s: float = 5.0
    cafiles: tuple[str, ...] = ()
    caller: CertFiles | None = None
    untrusted_caller: CertFiles | None = None
    epoch_s: float = DEFAULT_EPOCH_S
    slow_request_s: float = 15.0  # a connection without a whole request by then is closed
