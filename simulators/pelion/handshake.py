"""The rules of the WebSocket connect ``GET /v2/notification/websocket-connect`` as a core
without I/O (vendor doc, "WebSocket"; SPEC20/21 for the status codes).

In order: 405 for another method; 426 without ``Upgrade: websocket`` and ``Connection:
Upgrade``; 400 without ``Sec-WebSocket-Key`` or ``Sec-WebSocket-Version: 13``; 401 for a
missing or invalid key when the service refuses those (``ws_auth_failure="401"``, SPEC20/21);
429 while a handshake with the same key is in progress; otherwise 101 with the subprotocol
``wss``, then, for a missing or invalid key, close 1008 (vendor doc: "Authentication fails due to
an invalid or missing API key header when connecting").

The key comes from ``Authorization: Bearer …`` or, without that header, from the first offered
subprotocol ``pelion_<key>``.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal

from simulators.pelion.delivery import REASON_BAD_KEY, CloseCode, WsAuthFailure
from simulators.pelion.keys import ApiKeys, KeyStatus

__all__ = [
    "SUBPROTOCOL",
    "Accept",
    "AcceptThenClose",
    "Credentials",
    "Handshake",
    "Refuse",
    "bearer_token",
    "judge_handshake",
    "offered_subprotocols",
]

SUBPROTOCOL = "wss"  # the one subprotocol the service selects when offered


@dataclass(frozen=True, slots=True)
class Credentials:
    """How the client authenticated: ``auth`` is where the key came from (None: nowhere)."""

    auth: Literal["bearer", "subprotocol"] | None
    token: str | None
    status: KeyStatus
    offered: tuple[str, ...]

    @property
    def valid(self) -> bool:
        return self.status == "ok"


@dataclass(frozen=True, slots=True)
class Refuse:
    """Answer ``status`` with ``reason`` (an error body) and ``headers``; no socket."""

    status: int
    reason: str
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Accept:
    """Answer 101 (``wss`` when offered) and bind the socket to ``key``'s channel."""

    key: str
    subprotocols: tuple[str, ...] = (SUBPROTOCOL,)


@dataclass(frozen=True, slots=True)
class AcceptThenClose:
    """Answer 101, then close at once with ``code`` (a missing or invalid key)."""

    code: CloseCode = CloseCode.POLICY_VIOLATION
    reason: str = REASON_BAD_KEY
    subprotocols: tuple[str, ...] = (SUBPROTOCOL,)


@dataclass(frozen=True, slots=True)
class Handshake:
    """The decision on one WebSocket connect, with the credentials it was judged on."""

    credentials: Credentials
    outcome: Refuse | Accept | AcceptThenClose


def bearer_token(header: str | None) -> str | None:
    """The token of ``Authorization: Bearer <token>`` (scheme case-insensitive), else None."""
    if header is None:
        return None
    scheme, _, token = header.strip().partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


def offered_subprotocols(values: Iterable[str]) -> tuple[str, ...]:
    """Every offered subprotocol, in order, from the ``Sec-WebSocket-Protocol`` header values
    (one header or several, ", " or "," between)."""
    return tuple(item.strip() for value in values for item in value.split(",") if item.strip())


def _credentials(authorization: str | None, offered: tuple[str, ...], keys: ApiKeys) -> Credentials:
    auth: Literal["bearer", "subprotocol"] | None
    if authorization is not None:
        auth, token = "bearer", bearer_token(authorization)
    else:
        pelion = [p for p in offered if p.startswith("pelion_")]
        auth = "subprotocol" if pelion else None
        token = pelion[0].removeprefix("pelion_") if pelion else None
    return Credentials(auth, token, keys.status(token), offered)


def _tokens(value: str) -> set[str]:
    return {t.strip().lower() for t in value.split(",")}


def judge_handshake(
    method: str,
    headers: Mapping[str, str],
    protocols: Iterable[str],
    keys: ApiKeys,
    handshaking: Collection[str],
    auth_failure: WsAuthFailure,
) -> Handshake:
    """Judge a connect: ``headers`` is the request's (a case-insensitive mapping, the first
    value of each), ``protocols`` the values of every ``Sec-WebSocket-Protocol`` header,
    ``handshaking`` the keys whose handshake is in progress."""
    credentials = _credentials(headers.get("Authorization"), offered_subprotocols(protocols), keys)

    def decided(outcome: Refuse | Accept | AcceptThenClose) -> Handshake:
        return Handshake(credentials, outcome)

    if method != "GET":
        return decided(Refuse(405, "The WebSocket connect is a GET.", {"Allow": "GET"}))
    upgrade = _tokens(headers.get("Upgrade", ""))
    connection = _tokens(headers.get("Connection", ""))
    if "websocket" not in upgrade or "upgrade" not in connection:
        return decided(
            Refuse(
                426, "Upgrade Required: send Connection: Upgrade and Upgrade: websocket.",
                {"Upgrade": "websocket"},
            )
        )  # fmt: skip
    if not headers.get("Sec-WebSocket-Key") or headers.get("Sec-WebSocket-Version") != "13":
        return decided(
            Refuse(
                400, "Bad Request: Sec-WebSocket-Key and Sec-WebSocket-Version: 13 are required."
            )
        )
    token = credentials.token
    if not credentials.valid or token is None:
        if auth_failure == "401":
            return decided(Refuse(401, f"Invalid access token ({credentials.status} API key)."))
        return decided(AcceptThenClose())
    if token in handshaking:
        return decided(Refuse(429, "A WebSocket handshake with this API key is still in progress."))
    return decided(Accept(token))
