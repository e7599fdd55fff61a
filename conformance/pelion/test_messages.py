"""NotificationMessages on every channel the SUT claims: each kind, several kinds at once,
serialization v2 and unknown keys, base64 payloads decoded, malformed bodies survived
(PEL-MSG-01..03, PEL-OBS-02).

A callback accepts a message by answering its PUT 2xx. A WebSocket client has no answer to
give: it accepts a message by keeping its socket and, when it reports to the observer, by
reporting the message's items.
"""

from __future__ import annotations

import base64
import secrets
from collections.abc import Callable, Sequence
from typing import Any

import pytest
from hypothesis import given

from conformance.fuzzing import campaign_settings
from conformance.pelion import openapi
from conformance.pelion.driver import (
    Channel,
    PelionDriver,
    describe,
    json_bytes,
    new_ep,
)
from conformance.pelion.strategies import malformed_bodies
from conformance.verdicts import Check, HarnessError
from simulators.pelion.channels import ItemQueued
from simulators.pelion.operations import Inject

requirement = pytest.mark.requirement
CHANNELS = ["callback", "websocket"]
CAMPAIGN_BUDGET_S = 45.0


def _endpoint() -> dict[str, Any]:
    return {
        "ep": new_ep(),
        "ept": "default",
        "resources": [{"path": "/3/0/0", "rt": "Manufacturer", "obs": True}],
    }


def _note() -> dict[str, Any]:
    return {
        "ep": new_ep(),
        "path": "/3200/0/5501",
        "ct": "text/plain",
        "payload": "NDI=",
        "max-age": 0,
    }


KINDS: dict[str, Callable[[], dict[str, Any]]] = {
    "notifications": _note,
    "registrations": _endpoint,
    "reg-updates": _endpoint,
    "de-registrations": lambda: {"ep": new_ep()},
    "registrations-expired": lambda: {"ep": new_ep()},
    "async-responses": lambda: {
        "id": secrets.token_hex(8),
        "status": 200,
        "payload": base64.b64encode(b"device value").decode(),
        "ct": "text/plain",
        "max-age": 0,
    },
}


def _accepts(
    pelion: PelionDriver,
    check: Check,
    channel: Channel,
    queued: list[ItemQueued],
    what: str,
    *,
    after: Sequence[bytes] = (),
) -> None:
    """Deliver ``queued`` and judge whether the SUT accepted it (see the module docstring).
    The reproducer sends the refused batch again; on a WebSocket, the frames ``after`` which
    it was sent first."""
    pelion.probes.update(q.item.uid for q in queued)
    attempts = pelion.deliver(channel, queued)
    if channel == "callback":
        pelion.reproduce(check, [a for a in attempts if not a.succeeded] or attempts)
    else:
        bodies = [b for a in attempts if (b := pelion.service.attempt_body(a.seq)) is not None]
        if bodies:
            pelion.reproduce_frames(check, [*after, *bodies])
    check.observe(describe(attempts))
    taken: set[str] = set()
    for attempt in attempts:
        if attempt.succeeded:
            taken.update(attempt.uids or ())
    if channel == "callback":  # accepted once a 2xx came (a transient refusal is PEL-CB-03's)
        assert attempts, f"{what} was never sent (harness)"
        if not {q.item.uid for q in queued} <= taken:
            last = attempts[-1]
            raise AssertionError(
                f"answered {last.answered if last.answered is not None else last.error} to {what}"
            )
        return
    assert any(a.succeeded for a in attempts), f"{what} could not be sent: the socket was gone"
    lost = pelion.kept(attempts)
    assert lost is None, f"the SUT closed or lost its WebSocket after {what}: {lost}"
    if pelion.fence(channel, awaiting=queued) is None:
        missing = pelion.unreported(queued)
        assert not missing, (
            f"the SUT took {what} but reported {len(queued) - len(missing)} of {len(queued)} item(s)"
        )
    else:
        check.note("judged by the socket staying open: the SUT's reports could not be awaited")


@requirement("PEL-MSG-01")
@pytest.mark.parametrize("kind", [*KINDS, "several-kinds"])
@pytest.mark.parametrize("channel", CHANNELS)
def test_accepts_each_kind(pelion: PelionDriver, check: Check, channel: Channel, kind: str) -> None:
    pelion.ensure(channel, check)
    kinds = list(KINDS) if kind == "several-kinds" else [kind]
    check.expect(f"a NotificationMessage of {', '.join(kinds)} accepted on the {channel} channel")
    queued = pelion.inject_together(channel, [(k, KINDS[k]()) for k in kinds])  # type: ignore[misc]
    _accepts(pelion, check, channel, queued, f"a message of {', '.join(kinds)}")
    if kind == "several-kinds":
        uids = {q.item.uid for q in queued}
        together = [a for a in pelion.attempts_of(uids) if a.uids and uids <= set(a.uids)]
        if not together:
            raise HarnessError("the kinds were not sent in one message")


@requirement("PEL-MSG-02")
@pytest.mark.parametrize("form", ["deregistrations-as-objects", "v2-fields", "unknown-keys"])
@pytest.mark.parametrize("channel", CHANNELS)
def test_accepts_serialization_v2_and_unknown_keys(
    pelion: PelionDriver, check: Check, channel: Channel, form: str
) -> None:
    pelion.ensure(channel, check)
    key = pelion.key(channel)
    check.expect(f"{form.replace('-', ' ')} accepted on the {channel} channel")
    config: dict[str, Any] = {
        "type": "v2",
        "cfg": {
            "include_uid": True,
            "include_timestamp": True,
            "include_original_ep": True,
            "deregistrations_as_object": form == "deregistrations-as-objects",
        },
    }
    with pelion.serializing(channel, config):
        what = f"a message with {form.replace('-', ' ')}"
        if form == "unknown-keys":  # one kind per message: several kinds are PEL-MSG-01's
            body = {**_note(), "future-field": {"nested": [1, 2]}, "Another_Key": None}
            _accepts(pelion, check, channel, pelion.inject(channel, "notifications", [body]), what)
            endpoint = {**_endpoint(), "future": True}
            _accepts(
                pelion, check, channel, pelion.inject(channel, "registrations", [endpoint]), what
            )
        elif form == "deregistrations-as-objects":
            for kind in ("de-registrations", "registrations-expired"):
                queued = pelion.inject(channel, kind, [{"ep": new_ep()}])
                _accepts(pelion, check, channel, queued, what)
        else:
            queued = pelion.perform(
                Inject(
                    kind="notifications", items=[_note()], key=key, original_ep="device-self-name"
                )
            )
            _accepts(pelion, check, channel, queued, what)


@requirement("PEL-OBS-02")
@pytest.mark.parametrize("channel", CHANNELS)
def test_decodes_base64_payloads(pelion: PelionDriver, check: Check, channel: Channel) -> None:
    """The observer record's ``payload_hex`` is the decoded payload: text, binary, empty."""
    pelion.ensure(channel, check)
    values = [b"23.5", bytes(range(256))[::7] + b"\xff\x00", b"", "Grüße".encode()]
    check.expect("payload_hex = the base64-decoded payload of every notification")
    queued = pelion.notifications(channel, values, ct="application/octet-stream")
    pelion.reproduce(check, pelion.deliver(channel, queued))
    if unverifiable := pelion.fence(channel, awaiting=queued):
        raise check.not_verified(unverifiable)
    wanted = {q.item.uid: v.hex() for q, v in zip(queued, values, strict=True)}
    seen = pelion.reports_by_item(queued)  # by uid, or by kind and ep (one device each)
    wrong = {
        uid: (sorted({str(r.get("payload_hex")) for r in seen[uid]}), hexed)
        for uid, hexed in wanted.items()
        if uid in seen and any(r.get("payload_hex") != hexed for r in seen[uid])
    }
    check.observe(f"{len(seen)} of {len(wanted)} reported; {len(wrong)} with a wrong payload_hex")
    assert len(seen) == len(wanted), (
        f"{len(wanted) - len(seen)} notification(s) were never reported"
    )
    assert not wrong, (
        f"payload_hex differs from the decoded payload (reported, expected): "
        f"{next(iter(wrong.values()))}"
    )


# Malformed input (PEL-MSG-03): run after the other checks, as for every vendor.

CORPUS: dict[str, bytes] = {
    "empty-body": b"",
    "not-json": b"this is not json",
    "truncated-json": json_bytes({"notifications": [_note()]})[:-9],
    "invalid-utf8": b'{"notifications": [{"ep": "\xff\xfe", "path": "/1/0/1"}]}',
    "json-array": b"[]",
    "null": b"null",
    "item-not-an-object": json_bytes({"notifications": [42]}),
    "missing-ep": json_bytes({"notifications": [{"path": "/3/0/0", "payload": "NDI="}]}),
    "bad-base64": json_bytes({"notifications": [{**_note(), "payload": "%%% not base64"}]}),
    "status-a-string": json_bytes({"async-responses": [{"id": "a1", "status": "200"}]}),
    "huge-array": json_bytes({"notifications": [{}] * 100_000}),
    "deep-nesting": b'{"notifications": ' + b"[" * 50_000 + b"]" * 50_000 + b"}",
}


def _judge_put(pelion: PelionDriver, check: Check, body: bytes, what: str) -> None:
    exchange = pelion.put(body)
    if exchange.answered is None or exchange.answered >= 500:
        pelion.reproduce_put(check, body)
    check.observe(
        f"{exchange.answered if exchange.answered is not None else exchange.error} for {what}"
    )
    if exchange.outcome == "timeout":
        check.note(f"{what}: no answer within the timeout (judged by PEL-CB-03)")
        return
    assert exchange.answered is not None, (
        f"the receiver broke the connection on {what}: {exchange.error}"
    )
    assert exchange.answered < 500, f"answered {exchange.answered} to {what}"
    if exchange.answered != 400:
        check.note(f"{what}: answered {exchange.answered}; 400 is usual")


@requirement("PEL-MSG-03")
@pytest.mark.run_last(2)
@pytest.mark.parametrize("name", list(CORPUS))
def test_malformed_callback_corpus(pelion: PelionDriver, check: Check, name: str) -> None:
    pelion.ensure_callback(check)
    check.expect("never 5xx to a malformed batch")
    _judge_put(pelion, check, CORPUS[name], name)


@requirement("PEL-MSG-03")
@pytest.mark.run_last(2)
def test_malformed_callback_campaign(pelion: PelionDriver, check: Check) -> None:
    """Hypothesis (``conformance.pelion.strategies.malformed_bodies``) and Schemathesis
    (negative cases from ``conformance.pelion.openapi``)."""
    pelion.ensure_callback(check)
    check.expect("never 5xx to any generated malformed batch")
    clock = pelion.harness.clock
    ends = clock.real() + CAMPAIGN_BUDGET_S
    skipped: list[int] = []

    @campaign_settings(pelion.harness.settings.fuzz_profile)
    @given(malformed_bodies())
    def campaign(body: bytes) -> None:
        if clock.real() > ends:
            skipped.append(len(body))
            return
        _judge_put(pelion, check, body, f"a generated body of {len(body)} B")

    campaign()
    for body in openapi.negative_cases(
        campaign_settings(pelion.harness.settings.fuzz_profile, max_examples=15)
    ):
        _judge_put(pelion, check, body, f"a schema-violating body of {len(body)} B")
    if skipped:
        check.note(
            f"{len(skipped)} generated bodies not sent: the {CAMPAIGN_BUDGET_S:g} s budget ran out"
        )


@requirement("PEL-MSG-03")
@pytest.mark.run_last(2)
def test_malformed_websocket_frames(pelion: PelionDriver, check: Check) -> None:
    """Malformed text frames on the SUT's socket: it keeps (or takes back) its socket and goes
    on processing valid messages."""
    pelion.ensure_socket(check)
    check.expect("after malformed frames, the SUT holds its socket and accepts a valid message")
    sent: list[bytes] = []
    for name, body in CORPUS.items():
        if len(body) > 200_000:
            continue
        conn = pelion.service.bound_connection(pelion.sim.api_key)
        if conn is None:
            pelion.ensure_socket(check)
            conn = pelion.service.bound_connection(pelion.sim.api_key)
        assert conn is not None
        text = body.decode("utf-8", "replace")
        pelion.harness.run(conn.send_raw(text))
        sent.append(text.encode())
        check.observe(f"sent {len(sent)} malformed frames; the last: {name}")
    pelion.ensure_socket(check)
    queued = pelion.inject("websocket", "notifications", [_note()])
    _accepts(
        pelion, check, "websocket", queued, "a valid message after the malformed frames", after=sent
    )


@requirement("PEL-MSG-03")
@pytest.mark.run_last(3)
@pytest.mark.parametrize("channel", CHANNELS)
def test_still_healthy_after_malformed_input(
    pelion: PelionDriver, check: Check, channel: Channel
) -> None:
    pelion.ensure(channel, check)
    check.expect("a valid message accepted after the malformed-input checks, and the SUT up")
    _accepts(
        pelion,
        check,
        channel,
        pelion.inject(channel, "notifications", [_note()]),
        "a valid message",
    )
    alive = pelion.harness.sut_alive()
    assert alive is None, alive
