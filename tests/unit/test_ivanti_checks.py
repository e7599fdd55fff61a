"""The Ivanti suite's judgements on packet logs, without a broker: PUBLISH/PUBACK pairing and
keep-alive evidence; and its public Hypothesis strategies (what a user fuzzes their own handler
with)."""

from __future__ import annotations

import json
from dataclasses import replace
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import given, settings
from pydantic import ValidationError

from conformance.ivanti.driver import IvantiDriver
from conformance.ivanti.strategies import (
    LARGE_PAYLOAD_BYTES,
    event_payloads,
    events,
    evolved_events,
    evolved_payloads,
    malformed_payloads,
)
from conformance.ivanti.test_timers import idle_stretches
from simulators.clock import Clock
from simulators.ivanti.events import EVENT_TYPES, DeviceEvent
from simulators.mqtt.packetlog import ConnectionView, PacketRecord, pair_acks


def view(
    *packets: PacketRecord, keepalive: int = 10, closed: float | None = None
) -> ConnectionView:
    return ConnectionView(
        conn_id=1, peer="127.0.0.1:1", tenant="t", email="e", opened_real_s=0.0,
        opened_sim_s=0.0, closed_real_s=closed, close_reason=None, client_id="c",
        clean_session=False, keepalive_s=keepalive, protocol_level=4, username=None,
        will_topic=None, connack=0, subscriptions=(), packets=packets, packets_total=len(packets),
    )  # fmt: skip


def out(real: float, kind: str, packet_id: int | None = None, dup: bool = False) -> PacketRecord:
    qos = 1 if kind == "PUBLISH" else None
    return PacketRecord(real, real, "out", kind, 10, packet_id, qos, dup, False, "t", 7)


def inbound(real: float, kind: str, packet_id: int | None = None) -> PacketRecord:
    return PacketRecord(real, real, "in", kind, 4, packet_id)


def test_each_copy_needs_its_own_puback() -> None:
    """A PUBLISH and its DUP = 1 repeat share a packet id: one PUBACK answers the first only."""
    copies = pair_acks(
        view(out(1, "PUBLISH", 5), out(1.1, "PUBLISH", 5, dup=True), inbound(1.2, "PUBACK", 5))
    )
    assert [(c.dup, c.acked_real_s) for c in copies] == [(False, 1.2), (True, None)]
    copies = pair_acks(
        view(
            out(1, "PUBLISH", 5),
            out(1.1, "PUBLISH", 5, dup=True),
            inbound(1.2, "PUBACK", 5),
            inbound(1.3, "PUBACK", 5),
            inbound(1.4, "PUBACK", 9),  # answers nothing
        )
    )
    assert [c.delay_real_s for c in copies] == pytest.approx([0.2, 0.2])


def test_keepalive_evidence_is_an_idle_stretch_with_a_control_packet() -> None:
    # Busy: a PUBLISH every 3 s, each acknowledged; no stretch of 10 s.
    busy = [
        p
        for t in range(0, 30, 3)
        for p in (out(t, "PUBLISH", t + 1), inbound(t + 0.01, "PUBACK", t + 1))
    ]
    assert idle_stretches(view(*busy), now=31) == []
    # Idle after the CONNACK: a PINGREQ 10 s later.
    idle = view(out(0, "CONNACK"), inbound(10, "PINGREQ"), out(10, "PINGRESP"))
    [stretch] = idle_stretches(idle, now=12)
    assert stretch.control == "PINGREQ" and stretch.length_s == pytest.approx(12)
    # Silent: only the PUBACK of the last PUBLISH, then nothing (the broker would close it).
    assert idle_stretches(view(out(0, "PUBLISH", 1), inbound(0.01, "PUBACK", 1)), now=14) == []
    # Keep-alive 0 is never evidence.
    assert (
        idle_stretches(view(out(0, "CONNACK"), inbound(10, "PINGREQ"), keepalive=0), now=12) == []
    )


def _strict(payload: bytes) -> DeviceEvent:
    return DeviceEvent.model_validate_json(payload, strict=True)


@settings(max_examples=60, deadline=None)
@given(events())
def test_events_are_documented_events(event: DeviceEvent) -> None:
    wire = event.to_wire()
    assert _strict(wire) == event
    assert event.eventType in {t.replace("/", ".") for t in EVENT_TYPES.values()}
    assert event.devices


@settings(max_examples=30, deadline=None)
@given(event_payloads(("device_enrolled",)))
def test_event_payloads_take_the_chosen_types(payload: bytes) -> None:
    assert json.loads(payload)["eventType"] == "device.enrolled"


@settings(max_examples=60, deadline=None)
@given(evolved_events())
def test_evolved_events_are_still_objects_a_tolerant_parser_reads(event: dict[str, Any]) -> None:
    wire = json.loads(json.dumps(event))
    assert isinstance(wire["eventType"], str) and isinstance(wire["devices"], list)
    DeviceEvent.model_validate({"timestamp": 0, **wire})  # unknown fields are allowed


@settings(max_examples=30, deadline=None)
@given(evolved_payloads())
def test_evolved_payloads_are_json(payload: bytes) -> None:
    assert isinstance(json.loads(payload), dict)


@settings(max_examples=100, deadline=None)
@given(malformed_payloads())
def test_malformed_payloads_are_never_a_valid_event(payload: bytes) -> None:
    with pytest.raises(ValidationError):
        _strict(payload)


def test_malformed_payloads_include_large_ones() -> None:
    """256 KiB and more (IVT-PAY-02): at least one branch draws it."""
    sizes: list[int] = []

    @settings(max_examples=200, deadline=None, database=None)
    @given(malformed_payloads())
    def collect(payload: bytes) -> None:
        sizes.append(len(payload))

    collect()
    assert max(sizes) >= LARGE_PAYLOAD_BYTES


class _ChurningSut:
    """The broker as a check sees it while the SUT churns its connections: its one connection
    is live when first looked at and closed by every later look."""

    def __init__(self) -> None:
        self.looks = 0

    def connections(self) -> list[ConnectionView]:
        self.looks += 1
        live = view(out(0, "CONNACK"), keepalive=30)
        return [live if self.looks == 1 else replace(live, closed_real_s=1.0)]

    def wait_for(self, predicate: Any, timeout: float) -> Any:
        return predicate(self.connections())


def test_online_never_answers_an_empty_list_to_a_sut_that_churns() -> None:
    """IVT-TLS-03, IVT-KA-01 and IVT-RECON-01 take min()/max() over what online() answers: when
    the SUT's connection closed between the wait and the read, the one last seen live stands
    for it (an empty list made those checks errors, a harness fault)."""
    sim = _ChurningSut()
    harness = SimpleNamespace(require_sut=lambda: None, clock=Clock())
    driver = IvantiDriver(harness=harness, sim=sim, _contact=True)  # type: ignore[arg-type]
    driver.settle = lambda: None  # type: ignore[method-assign]
    live = driver.online()
    assert [v.client_id for v in live] == ["c"]
    assert max(v.keepalive_s or 0 for v in live) == 30
