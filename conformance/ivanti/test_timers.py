"""Keep-alive (IVT-KA-01): the SUT's own timer, judged in real time on everything the broker
saw so far, after the other checks on a connection; it waits only when there is no evidence
yet, at most until the broker's 1.5 × keep-alive limit would have run out."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from conformance.ivanti.driver import NOT_REPLAYED_OVER_TIME, IvantiDriver
from conformance.verdicts import Check
from simulators.mqtt.server import ConnectionView

# The SUT's own timers, after the other vendors' checks (an idle stretch for the keep-alive has
# usually passed by then: no waiting), before malformed payloads.
pytestmark = pytest.mark.run_last(8)
requirement = pytest.mark.requirement

KEEPALIVE_FACTOR = (
    1.5  # MQTT-3.1.2-24: the broker closes a client silent for 1.5 times its keep-alive
)
KEEPALIVE_WAIT_MAX_S = 100.0  # longest wait for evidence without --slow (keep-alive <= 65 s)
SLACK_S = 2.0  # past the broker's limit, for its close to be recorded
# Packets that do not keep a connection alive: the answer to what the broker just sent, and
# leaving.
NOT_KEEPALIVE = frozenset({"PUBACK", "DISCONNECT"})


@dataclass(frozen=True)
class Stretch:
    """A stretch of one connection in which the broker sent the SUT nothing but PINGRESPs."""

    view: ConnectionView
    start_real_s: float
    end_real_s: float
    control: str  # the SUT's first control packet in it ("PINGREQ", …)

    @property
    def length_s(self) -> float:
        return self.end_real_s - self.start_real_s


def idle_stretches(view: ConnectionView, now: float) -> list[Stretch]:
    """Stretches at least one keep-alive long with a control packet from the SUT (not the PUBACK
    answering what came just before, nor a DISCONNECT)."""
    keepalive = view.keepalive_s or 0
    if not view.accepted or keepalive <= 0:
        return []
    found: list[Stretch] = []
    start: float | None = None
    control: str | None = None
    for packet in view.packets:
        if packet.direction == "out" and packet.kind != "PINGRESP":
            if start is not None and control and packet.real_s - start >= keepalive:
                found.append(Stretch(view, start, packet.real_s, control))
            start, control = packet.real_s, None
        elif packet.direction == "in" and packet.kind not in NOT_KEEPALIVE and start is not None:
            control = control or packet.kind
    end = view.closed_real_s if view.closed_real_s is not None else now
    if start is not None and control and end - start >= keepalive:
        found.append(Stretch(view, start, end, control))
    return found


def _closed_for_keepalive(views: list[ConnectionView]) -> list[ConnectionView]:
    return [v for v in views if (v.close_reason or "").startswith("keep-alive")]


@requirement("IVT-KA-01")
def test_keeps_the_connection_alive(ivanti: IvantiDriver, check: Check) -> None:
    """Fails when the broker ever closed a connection of the SUT for silence, or the SUT
    declared keep-alive 0 (the mechanism off: it sends no PINGREQ and cannot notice a dead
    connection; the vendor's sample client uses 30 s). Passes on an idle stretch of at least
    one keep-alive period in which the SUT sent a control packet, within 1.5 × (the broker
    enforces it)."""
    check.include_history("ivanti-broker")
    clock = ivanti.harness.clock
    check.no_reproducer(NOT_REPLAYED_OVER_TIME)
    check.expect(
        f"a control packet (PINGREQ) within {KEEPALIVE_FACTOR:g} × the keep-alive it declared "
        "during idle stretches; never closed for silence"
    )
    views = [v for v in ivanti.connections() if v.accepted]
    if not views:
        ivanti.harness.require_sut()
        ivanti.online()
        views = [v for v in ivanti.connections() if v.accepted]
    off = [v for v in views if v.keepalive_s == 0]
    if off:
        check.observe(f"{off[0].client_id} declared keep-alive 0")
        raise AssertionError(
            f"the SUT declared keep-alive 0 (off) on {len(off)} connection(s): it never sends "
            "PINGREQ, so neither it nor the broker notices a dead connection"
        )
    evidence = [s for v in views for s in idle_stretches(v, clock.real())]
    if not evidence and not _closed_for_keepalive(views):
        live = ivanti.online()
        keepalive = max(v.keepalive_s or 0 for v in live)
        last = max(
            (p.real_s for v in live for p in v.packets if p.direction == "in"),
            default=clock.real(),
        )
        deadline = max(last, clock.real()) + KEEPALIVE_FACTOR * keepalive + SLACK_S
        if deadline - clock.real() > KEEPALIVE_WAIT_MAX_S and not ivanti.harness.settings.slow:
            raise check.not_verified(
                f"keep-alive {keepalive} s: no idle stretch that long in this run; --slow waits "
                f"up to {KEEPALIVE_FACTOR * keepalive + SLACK_S:g} s for one"
            )
        ivanti.sim.wait_for(
            lambda vs: (
                _closed_for_keepalive(vs)
                or any(idle_stretches(v, clock.real()) for v in ivanti.live_of(vs))
            ),
            max(0.0, deadline - clock.real()),
        )
        views = [v for v in ivanti.connections() if v.accepted]
        evidence = [s for v in views for s in idle_stretches(v, clock.real())]
    closed = _closed_for_keepalive(ivanti.connections())
    declared = sorted({v.keepalive_s for v in views if v.keepalive_s is not None})
    if closed:
        check.observe(f"the broker closed {len(closed)} connection(s): {closed[0].close_reason}")
        raise AssertionError(
            f"the broker closed {closed[0].client_id} for silence ({closed[0].close_reason})"
        )
    if not evidence:
        raise check.not_verified(
            f"keep-alive {declared} s: no idle stretch of a keep-alive period was observed"
        )
    best = max(evidence, key=lambda s: s.length_s)
    check.observe(
        f"keep-alive {', '.join(map(str, declared))} s; an idle stretch of {best.length_s:.1f} s "
        f"on {best.view.client_id} with a {best.control}; no connection closed for silence"
    )
