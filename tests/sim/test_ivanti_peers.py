"""The Ivanti broker against MQTT clients nobody here wrote, each a durable subscriber over
mutual TLS 1.2 (clean session off, a fixed client id, QoS 1): live events, then everything
published while it was away, the PUBLISH that was in flight resent with DUP = 1."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from simulators.ivanti.operations import DropBeforeAck, HoldOffline, Publish
from simulators.pki import PKI
from tests.sim.ivanti_env import IvantiEnv, ivanti_env
from tests.sim.ivanti_peers import EXTERNAL, PEERS, Message

HOUR = 3600.0


@pytest.fixture
def env(pki: PKI) -> Iterator[IvantiEnv]:
    with ivanti_env(pki.folder) as running:
        yield running


def _peer_param(name: str) -> object:
    marks = [pytest.mark.external_tool(*EXTERNAL[name])] if name in EXTERNAL else []
    return pytest.param(name, marks=marks, id=name)


@pytest.mark.sim("SIM-IVT-QOS1", "SIM-IVT-RETAIN", "SIM-IVT-PROTO")
@pytest.mark.parametrize("peer_name", [_peer_param(n) for n in PEERS])
def test_durable_subscriber_gets_live_events_then_what_it_missed_with_dup(
    env: IvantiEnv, peer_name: str
) -> None:
    """SIM-IVT-QOS1, SIM-IVT-RETAIN (and SIM-IVT-PROTO for gmqtt, which tries MQTT 5 first):
    events arrive at QoS 1 with RETAIN = 0; a PUBLISH whose PUBACK never came is resent with
    DUP = 1 when the persistent session resumes; what was published while the subscriber was
    away (held offline for an hour of simulated time) is delivered on reconnect and acknowledged."""
    client_id = f"durable-{peer_name}"
    target = env.target(client_id)
    peer = PEERS[peer_name](target, name=peer_name)
    peer.start()
    try:
        env.wait_subscribed(client_id)
        live = env.publish("device_enrolled")
        assert live.delivered_to == (client_id,)
        (got,) = peer.wait_for_payloads([live.payload])
        _check_flags(got, dup=False)
        env.wait_acked(client_id, 1)

        # In flight: the connection drops right after the PUBLISH, before its PUBACK can count;
        # the client is then held offline (reconnects refused) for an hour of simulated time.
        async def drop_in_flight() -> bytes:
            await env.sim.perform(DropBeforeAck(client_id=client_id))
            published = await env.sim.perform(Publish(event_type="device_check_in"))
            await env.sim.perform(HoldOffline(client_id=client_id, duration_sim_s=HOUR))
            return published.payload

        in_flight = env.run(drop_in_flight())
        env.wait_closed(client_id)
    finally:
        peer.stop()
    missed = [env.publish(kind) for kind in ("device_retired", "device_not_compliant")]
    assert all(p.kept_for == (client_id,) for p in missed)
    env.clock.advance(HOUR)  # the hold ends; well inside the 3-hour retention

    peer = PEERS[peer_name](target, name=peer_name)
    peer.start()
    try:
        received = peer.wait_for_payloads([in_flight, *(p.payload for p in missed)])
        resumed = env.wait_acked(client_id, 3)
    finally:
        peer.stop()
    for message in received:
        _check_flags(message, dup=None)
    assert resumed.clean_session is False and resumed.protocol_level == 4
    first, *rest = resumed.sent("PUBLISH")
    assert (first.dup, first.qos, first.retain) == (True, 1, False)  # the one in flight
    assert [(p.dup, p.qos, p.retain) for p in rest] == [(False, 1, False)] * 2
    if received[0].dup is not None:  # the client shows the flag: it saw DUP = 1 too
        assert received[0].dup is True
    assert all(a.acked_real_s is not None for a in resumed.acks())
    if peer_name == "gmqtt":
        # MQTT 5 first (its CONNECT is read up to the level: no client id), CONNACK 1, then 3.1.1.
        levels = [(c.protocol_level, c.connack) for c in env.sim.connections()]
        assert levels[:2] == [(5, 1), (4, 0)], levels


def _check_flags(message: Message, *, dup: bool | None) -> None:
    assert message.qos in (None, 1), message
    assert message.retain in (None, False), message
    if dup is not None and message.dup is not None:
        assert message.dup is dup, message
