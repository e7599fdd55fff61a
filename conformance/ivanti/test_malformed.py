"""Malformed payloads on the SUT's topics: a fixed corpus, then a Hypothesis campaign
(conformance.ivanti.strategies.malformed_payloads), then a plain event (IVT-PAY-02). Runs after
the other Ivanti checks on a connection: a SUT that crashes here must not take their verdicts
down with it."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given

from conformance.fuzzing import campaign_settings
from conformance.ivanti.driver import IvantiDriver
from conformance.ivanti.strategies import LARGE_PAYLOAD_BYTES, malformed_payloads
from conformance.ivanti.test_delivery import CAMPAIGN_BUDGET_S, _judge_payloads
from conformance.verdicts import Check
from simulators.ivanti.broker import Published

pytestmark = pytest.mark.run_last(9)  # after the timers: a payload may bring the SUT down
requirement = pytest.mark.requirement


def _corpus(template: dict[str, Any]) -> dict[str, bytes]:
    """One kind of damage each, to a realistic event."""
    event = json.dumps(template).encode()
    devices = list(template["devices"])
    copies = LARGE_PAYLOAD_BYTES // max(1, len(json.dumps(devices))) + 2
    return {
        "empty": b"",
        "not-json": b"device checked in: ok",
        "invalid-utf8": b'{"eventType": "device.check_in", "devices": [{"userId": "\xff\xfe"}]}',
        "truncated-json": event[: len(event) // 2],
        "json-array": json.dumps([template]).encode(),
        "json-string": json.dumps("device.check_in").encode(),
        "null": b"null",
        "devices-not-a-list": json.dumps({**template, "devices": "none"}).encode(),
        "event-type-not-a-string": json.dumps({**template, "eventType": 7}).encode(),
        "device-not-an-object": json.dumps({**template, "devices": [devices]}).encode(),
        "deep-nesting": b'{"devices": ' + b"[" * 50_000 + b"]" * 50_000 + b"}",
        "binary-256-kib": bytes(range(256)) * (LARGE_PAYLOAD_BYTES // 256 + 1),
        "event-over-256-kib": json.dumps({**template, "devices": devices * copies}).encode(),
    }


@requirement("IVT-PAY-02")
def test_tolerates_malformed_payloads(ivanti: IvantiDriver, check: Check) -> None:
    ivanti.online()
    name, _ = ivanti.qos1_type(check)
    topic = ivanti.sim.topic(name)
    check.expect(
        "a PUBACK for every malformed payload (not JSON, invalid UTF-8, wrong shapes, "
        "256 KiB and more), the connection kept, and a plain event acknowledged after"
    )
    corpus = _corpus(ivanti.realistic(name))
    sent: dict[str, Published] = {
        variant: ivanti.publish(name, payload) for variant, payload in corpus.items()
    }
    clock = ivanti.harness.clock
    ends = clock.real() + CAMPAIGN_BUDGET_S
    drawn: list[bytes] = []

    @campaign_settings(ivanti.harness.settings.fuzz_profile)
    @given(malformed_payloads())
    def draw(payload: bytes) -> None:
        if clock.real() < ends and payload not in drawn and payload not in corpus.values():
            drawn.append(payload)

    draw()
    for n, payload in enumerate(drawn):
        sent[f"generated #{n + 1} ({len(payload)} B)"] = ivanti.publish(name, payload)
    _judge_payloads(ivanti, check, sent, topic, "malformed payload", "IVT-PAY-02")
