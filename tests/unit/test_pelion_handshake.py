"""simulators.pelion.handshake: the WebSocket connect rules without sockets, one row per rule
(vendor doc, "WebSocket"; SPEC20/21 for the status codes)."""

from __future__ import annotations

from collections.abc import Mapping

import pytest
from multidict import CIMultiDict

from simulators.pelion.delivery import REASON_BAD_KEY, CloseCode, WsAuthFailure
from simulators.pelion.handshake import (
    Accept,
    AcceptThenClose,
    Handshake,
    Refuse,
    bearer_token,
    judge_handshake,
    offered_subprotocols,
)
from simulators.pelion.keys import ApiKeys

KEY = "ak_good"
REVOKED = "ak_gone"
UPGRADE = {
    "Upgrade": "websocket",
    "Connection": "Upgrade",
    "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
    "Sec-WebSocket-Version": "13",
}


def keys() -> ApiKeys:
    registry = ApiKeys(KEY)
    registry.add(REVOKED)
    registry.revoke(REVOKED)
    return registry


def judge(
    headers: Mapping[str, str],
    *,
    method: str = "GET",
    protocols: tuple[str, ...] = (),
    handshaking: frozenset[str] = frozenset(),
    auth_failure: WsAuthFailure = "close-1008",
) -> Handshake:
    return judge_handshake(
        method, CIMultiDict(headers), protocols, keys(), handshaking, auth_failure
    )


BEARER = {**UPGRADE, "Authorization": f"Bearer {KEY}"}

# (rule, method, headers, protocols, handshaking, auth failure mode, expected outcome)
RULES: list[tuple[str, str, dict[str, str], tuple[str, ...], frozenset[str], WsAuthFailure, object]] = [
    ("405 for another method", "POST", BEARER, (), frozenset(), "close-1008",
     Refuse(405, "The WebSocket connect is a GET.", {"Allow": "GET"})),
    ("426 without Upgrade", "GET", {**BEARER, "Upgrade": ""}, (), frozenset(), "close-1008",
     Refuse(426, "Upgrade Required: send Connection: Upgrade and Upgrade: websocket.",
            {"Upgrade": "websocket"})),
    ("426 without Connection: Upgrade", "GET", {**BEARER, "Connection": "keep-alive"}, (),
     frozenset(), "close-1008",
     Refuse(426, "Upgrade Required: send Connection: Upgrade and Upgrade: websocket.",
            {"Upgrade": "websocket"})),
    ("400 without Sec-WebSocket-Key", "GET", {**BEARER, "Sec-WebSocket-Key": ""}, (),
     frozenset(), "close-1008",
     Refuse(400, "Bad Request: Sec-WebSocket-Key and Sec-WebSocket-Version: 13 are required.")),
    ("400 for another version", "GET", {**BEARER, "Sec-WebSocket-Version": "8"}, (),
     frozenset(), "close-1008",
     Refuse(400, "Bad Request: Sec-WebSocket-Key and Sec-WebSocket-Version: 13 are required.")),
    ("401 for a missing key in 401 mode", "GET", UPGRADE, (), frozenset(), "401",
     Refuse(401, "Invalid access token (missing API key).")),
    ("401 for a revoked key in 401 mode", "GET", {**UPGRADE, "Authorization": f"Bearer {REVOKED}"},
     (), frozenset(), "401", Refuse(401, "Invalid access token (revoked API key).")),
    ("401 for an unknown key in 401 mode", "GET", {**UPGRADE, "Authorization": "Bearer ak_x"},
     (), frozenset(), "401", Refuse(401, "Invalid access token (invalid API key).")),
    ("429 while the key's handshake is in progress", "GET", BEARER, (), frozenset({KEY}),
     "close-1008",
     Refuse(429, "A WebSocket handshake with this API key is still in progress.")),
    ("101 then 1008 for a missing key", "GET", UPGRADE, (), frozenset(), "close-1008",
     AcceptThenClose(CloseCode.POLICY_VIOLATION, REASON_BAD_KEY)),
    ("101 then 1008 for an invalid key, even while handshaking", "GET",
     {**UPGRADE, "Authorization": "Bearer ak_x"}, (), frozenset({"ak_x"}), "close-1008",
     AcceptThenClose()),
    ("101 for a bearer key", "GET", BEARER, (), frozenset(), "close-1008", Accept(KEY, ("wss",))),
    ("101 for a subprotocol key", "GET", UPGRADE, (f"wss, pelion_{KEY}",), frozenset(), "401",
     Accept(KEY)),
    ("the bearer header wins over a subprotocol key", "GET",
     {**UPGRADE, "Authorization": "Basic xyz"}, (f"pelion_{KEY}",), frozenset(), "401",
     Refuse(401, "Invalid access token (missing API key).")),
]  # fmt: skip


@pytest.mark.parametrize(
    ("method", "headers", "protocols", "handshaking", "auth_failure", "expected"),
    [pytest.param(*row[1:], id=row[0]) for row in RULES],
)
def test_each_rule(
    method: str,
    headers: dict[str, str],
    protocols: tuple[str, ...],
    handshaking: frozenset[str],
    auth_failure: WsAuthFailure,
    expected: object,
) -> None:
    decision = judge(
        headers,
        method=method,
        protocols=protocols,
        handshaking=handshaking,
        auth_failure=auth_failure,
    )
    assert decision.outcome == expected


def test_rules_apply_in_order() -> None:
    """A POST without upgrade headers or key is a 405, not a 426 or a 401."""
    decision = judge({}, method="POST", auth_failure="401")
    assert isinstance(decision.outcome, Refuse)
    assert decision.outcome.status == 405


def test_upgrade_tokens_are_case_insensitive_lists() -> None:
    headers = {**BEARER, "Upgrade": "h2c, WebSocket", "Connection": "keep-alive, upgrade"}
    assert judge(headers).outcome == Accept(KEY)


@pytest.mark.parametrize(
    ("headers", "protocols", "auth", "token", "status"),
    [
        (BEARER, (), "bearer", KEY, "ok"),
        ({**UPGRADE, "Authorization": "Bearer"}, (), "bearer", None, "missing"),
        (UPGRADE, ("wss", f"pelion_{REVOKED}"), "subprotocol", REVOKED, "revoked"),
        (UPGRADE, ("wss",), None, None, "missing"),
    ],
)
def test_credentials(
    headers: dict[str, str],
    protocols: tuple[str, ...],
    auth: str | None,
    token: str | None,
    status: str,
) -> None:
    credentials = judge(headers, protocols=protocols).credentials
    assert (credentials.auth, credentials.token, credentials.status) == (auth, token, status)


def test_offered_subprotocols_split_every_header() -> None:
    assert offered_subprotocols(["wss,pelion_ak_1", " a , ,b", ""]) == (
        "wss",
        "pelion_ak_1",
        "a",
        "b",
    )


@pytest.mark.parametrize(
    ("header", "token"),
    [(None, None), ("Bearer ak_1", "ak_1"), ("bearer  ak_1 ", "ak_1"), ("Basic ak_1", None),
     ("Bearer", None)],
)  # fmt: skip
def test_bearer_token(header: str | None, token: str | None) -> None:
    assert bearer_token(header) == token


def test_key_registry_status() -> None:
    registry = keys()
    assert [registry.status(t) for t in (KEY, REVOKED, "ak_x", None, "")] == [
        "ok", "revoked", "invalid", "missing", "missing",
    ]  # fmt: skip
    registry.add(REVOKED)
    assert registry.status(REVOKED) == "ok"
