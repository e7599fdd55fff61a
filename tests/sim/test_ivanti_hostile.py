"""The Ivanti broker against hostile clients over real TLS sockets: malformed and truncated
packets, oversized remaining lengths, garbage instead of TLS, slow and vanishing peers. Each
bad connection is closed alone; a live subscriber keeps receiving, and a durable subscriber
that was away gets every message queued for it (SIM-IVT-PROTO)."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import socket
import ssl
import threading
from collections.abc import Iterator

import aiohttp
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from simulators.ivanti.operations import Sessions
from simulators.mqtt.codec import encode
from simulators.mqtt.evidence import SUMMARY_KEPT
from simulators.mqtt.packetlog import SUBSCRIPTIONS_KEPT, TEXT_KEPT
from simulators.mqtt.packets import Connack, Connect, Publish, Suback, Subscribe
from simulators.mqtt.server import _ClientProtocol
from simulators.pki import PKI
from tests.sim.ivanti_env import IvantiEnv, ivanti_env
from tests.sim.ivanti_peers import Paho, Target
from tests.sim.ivanti_raw import RawClient

CONNECT = encode(Connect("hostile", clean_session=True, keepalive_s=30))


@pytest.fixture
def env(pki: PKI) -> Iterator[IvantiEnv]:
    with ivanti_env(pki.folder) as running:
        running.sim.broker.server.connect_timeout_s = 1.0
        yield running


def _valid_packets(topic: str) -> list[bytes]:
    return [
        encode(Subscribe(1, ((topic, 1),))),
        encode(Publish(topic, b'{"x":1}', qos=1, packet_id=7)),
        encode(Publish(topic, b"{}")),
    ]


def hostile_streams(topic: str) -> st.SearchStrategy[bytes]:
    """Byte streams a broker must survive, after a valid CONNECT or instead of one."""
    valid = st.sampled_from(_valid_packets(topic))
    truncated = valid.flatmap(lambda p: st.integers(1, len(p) - 1).map(lambda n: p[:n]))
    flipped = st.tuples(valid, st.integers(0, 10_000), st.integers(1, 255)).map(
        lambda t: (
            t[0][: t[1] % len(t[0])]
            + bytes([t[0][t[1] % len(t[0])] ^ t[2]])
            + t[0][t[1] % len(t[0]) + 1 :]
        )
    )
    oversized = st.sampled_from(
        [b"\x30\xff\xff\xff\x7f", b"\x82\xff\xff\xff\xff\x01", b"\x10\x80\x80\x80\x80\x01"]
    )
    reserved = st.integers(0, 255).map(lambda b: bytes([0xF0 | (b & 0x0F), 0]))
    junk = st.binary(min_size=1, max_size=300)
    body = st.one_of(truncated, flipped, oversized, reserved, junk)
    after_connect = body.map(lambda b: CONNECT + b)
    return st.one_of(
        after_connect,
        body,
        st.lists(valid, max_size=3).map(b"".join).map(lambda b: CONNECT + b + b"\x00"),
    )


@pytest.mark.sim("SIM-IVT-PROTO")
def test_malformed_packet_campaign_leaves_the_broker_serving_with_nothing_lost(
    env: IvantiEnv,
) -> None:
    """SIM-IVT-PROTO: a Hypothesis campaign of malformed, truncated, bit-flipped, oversized and
    reserved packets over real TLS connections; each closes (or times out) alone; afterwards the
    live paho subscriber still receives, and the durable one gets its three queued events."""
    topic = env.sim.topic("device_check_in")
    durable = Paho(env.target("durable"))
    durable.start()
    env.wait_subscribed("durable")
    durable.stop()
    env.wait_closed("durable")
    queued = [env.publish(kind) for kind in ("device_enrolled", "device_check_in", "device_wiped")]
    assert all(p.kept_for == ("durable",) for p in queued)
    live = Paho(env.target("live"))
    live.start()
    try:
        env.wait_subscribed("live")
        target = env.target("hostile")

        @settings(
            max_examples=80,
            deadline=None,
            database=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
        )
        @given(stream=hostile_streams(topic), split=st.integers(1, 64), linger=st.booleans())
        def campaign(stream: bytes, split: int, linger: bool) -> None:
            raw = RawClient(target).open()
            try:
                for start in range(0, len(stream), split):
                    raw.send(stream[start : start + split])
                if linger:  # wait for the broker's verdict (closed, or nothing: a partial packet)
                    raw.closed_by_broker(timeout=0.3)
            except (OSError, ssl.SSLError):
                pass  # the broker closed first: that is allowed
            finally:
                raw.close()

        campaign()
        assert env.sim.errors() == []
        event = env.publish("device_retired")
        live.wait_for_payloads([event.payload])
        assert env.views("live")[-1].open
    finally:
        live.stop()
    sessions = {s.client_id: s for s in env.perform(Sessions())}
    assert sessions["durable"].queued == 3
    durable = Paho(env.target("durable"))
    durable.start()
    try:
        durable.wait_for_payloads([p.payload for p in queued])
    finally:
        durable.stop()
    malformed = [e for e in env.recorder.timeline().events() if e.kind == "malformed-packet"]
    assert malformed  # the campaign did reach the decoder


@pytest.mark.sim("SIM-IVT-PROTO")
def test_garbage_slow_and_vanishing_peers_are_cut_off(env: IvantiEnv) -> None:
    """SIM-IVT-PROTO (bounds): bytes that are not TLS fail the handshake; a peer that trickles
    its CONNECT one byte at a time is closed at the CONNECT timeout; peers that vanish mid-
    handshake or mid-packet leave nothing behind; a live paho subscriber is unaffected."""
    server = env.sim.broker.server
    live = Paho(env.target("steady"))
    live.start()
    try:
        env.wait_subscribed("steady")
        with socket.create_connection(("127.0.0.1", env.port), timeout=5) as raw:
            raw.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" + bytes(range(256)))
        env.poll(lambda: server.handshakes_failed >= 1)
        for _ in range(3):  # vanish during the handshake
            socket.create_connection(("127.0.0.1", env.port), timeout=5).close()
        slow = RawClient(env.target("slow")).open()
        try:
            for byte in CONNECT[:5]:
                slow.send(bytes([byte]))
            assert slow.closed_by_broker(timeout=5)
        finally:
            slow.close()
        vanishing = RawClient(env.target("vanishing")).open()
        vanishing.send(CONNECT + _valid_packets(env.sim.topic("device_wiped"))[1][:6])
        vanishing.close()
        env.poll(
            lambda: not [c for c in server.connections() if c.open and c.client_id != "steady"]
        )
        event = env.publish("device_enrolled")
        live.wait_for_payloads([event.payload])
    finally:
        live.stop()
    assert env.sim.errors() == []
    assert len(server._live) == 0 or all(c.log is not None for c in server._live.values())


def _paho_connect_close(target: Target, keepalive_s: int) -> None:
    """One paho client: connect (keep-alive ``keepalive_s``), wait for CONNACK, disconnect."""
    connected = threading.Event()
    client = Paho(target).make_client()
    client.on_connect = lambda c, userdata, flags, reason, props: connected.set()
    client.connect(target.host, target.port, keepalive=keepalive_s)
    client.loop_start()
    try:
        assert connected.wait(10), "no CONNACK within 10 s"
        client.disconnect()
    finally:
        client.loop_stop()


@pytest.mark.sim("SIM-IVT-PROTO")
def test_a_closed_connection_leaves_no_live_state(env: IvantiEnv) -> None:
    """SIM-IVT-PROTO (bounds): a client that connects with keep-alive 65,535 s and closes, over
    and over, leaves nothing of its connection alive in the broker's adapter once it is closed
    (no protocol object, no transport, no keep-alive watch waiting 1.5 × 65,535 s on it): a
    SUT churning connections cannot grow the harness."""
    server = env.sim.broker.server
    cycles = 100
    for n in range(cycles):
        _paho_connect_close(env.target(f"churn-{n}", topic=""), keepalive_s=65_535)
    env.wait_for(
        lambda cs: (
            len([c for c in cs if c.client_id and c.client_id.startswith("churn-")]) == cycles
            and not [c for c in cs if c.open]
        )
    )

    async def alive() -> tuple[int, int]:
        """This server's protocol objects and keep-alive watches still alive."""
        gc.collect()
        protocols = sum(
            isinstance(o, _ClientProtocol) and o.server is server for o in gc.get_objects()
        )
        watches = sum(
            getattr(task.get_coro(), "__qualname__", "") == "MqttServer._watch"
            for task in asyncio.all_tasks()
        )
        return protocols, watches

    seen: list[tuple[int, int]] = []

    def released() -> bool:  # the last TLS close may still be under way: bounded wait
        seen.append(env.run(alive()))
        return seen[-1] == (0, 0)

    with contextlib.suppress(AssertionError):
        env.poll(released, timeout=10)
    protocols, watches = seen[-1]
    assert (protocols, watches) == (0, 0), f"{protocols} connections, {watches} watches alive"
    assert len(server._live) == 0


@pytest.mark.sim("SIM-IVT-PROTO")
def test_refused_subscribe_filters_are_kept_bounded(env: IvantiEnv) -> None:
    """SIM-IVT-PROTO (bounds): a client that sends SUBSCRIBE after SUBSCRIBE of 65,000-character
    topic filters (each refused, SUBACK 0x80) leaves a bounded record, open or closed: each
    filter kept is cut to an excerpt that says how much was cut, the connection keeps its first
    and latest subscriptions and counts the rest, and the evidence is bounded the same way."""
    server = env.sim.broker.server
    filters = 300
    raw = RawClient(env.target("greedy")).open()
    try:
        assert raw.connect(keepalive_s=30, clean_session=True) == Connack(False, 0)
        for n in range(filters):
            raw.send(Subscribe(n + 1, ((f"{n}/" + "x" * 65_000, 1),)))
            assert raw.read() == Suback(n + 1, (0x80,))
    finally:
        raw.close()
    env.wait_closed("greedy")
    (view,) = env.views("greedy")
    assert view.subscriptions_total == filters
    assert len(view.subscriptions) <= SUBSCRIPTIONS_KEPT
    assert view.subscriptions[0][0].startswith("0/x") and view.subscriptions[-1][0].startswith(
        f"{filters - 1}/x"
    )
    for topic_filter, requested, code in view.subscriptions:
        assert (requested, code) == (1, 0x80)
        assert len(topic_filter) <= TEXT_KEPT + 40
        assert topic_filter.endswith(" characters cut]")
    events = [e for cause in env.recorder.causes() for e in env.recorder.timeline(cause).events()]
    assert max(len(e.summary) + len(repr(e.detail)) for e in events) < 4 * SUMMARY_KEPT
    sent = filters * 65_000
    kept = sum(len(f) for f, _, _ in view.subscriptions) + sum(
        len(e.summary) + len(repr(e.detail)) for e in events
    )
    assert kept < sent / 40, f"{kept} characters kept for {sent} sent"
    assert server.connections()  # still serving


@pytest.mark.sim("SIM-IVT-PROTO")
def test_the_packet_log_forgets_the_oldest_closed_connections_past_its_budget(
    env: IvantiEnv,
) -> None:
    """SIM-IVT-PROTO (bounds): past ``log_entries_kept`` entries in all, the packet log forgets
    the oldest closed connections first; a live one and the latest ones stay."""
    server = env.sim.broker.server
    server.log_entries_kept = 40
    live = Paho(env.target("staying"))
    live.start()
    try:
        env.wait_subscribed("staying")
        for n in range(20):
            _paho_connect_close(env.target(f"brief-{n}", topic=""), keepalive_s=30)
        env.wait_closed("brief-19")
        ids = [v.client_id for v in server.connections()]
        assert "staying" in ids and "brief-19" in ids and "brief-0" not in ids
        with server.changed:
            kept = [log.kept for log in server._logs.values()]
            closed = sum(log.kept for c, log in server._logs.items() if c not in server._live)
            assert server._closed_kept == closed  # counted once, at close, and given back
        assert sum(kept) <= 40 + max(kept), kept
    finally:
        live.stop()


@pytest.mark.sim("SIM-IVT-META")
@pytest.mark.parametrize(
    "credentials",
    ["Basic ñandú:contraseña", "Basic \u4e2d\u6587", "Basic c3V0QGV4YW1wbGU=\u00ff", "Basic //8="],
)
def test_unreadable_basic_credentials_on_the_cps_api_are_a_401_with_the_reason(
    env: IvantiEnv, credentials: str
) -> None:
    """SIM-IVT-META: ``Authorization: Basic`` that is not base64 (non-ASCII text), or is base64
    of bytes that are not UTF-8, is the caller's mistake: 401 saying so, never a simulator
    fault (which would make the check running then an error)."""
    context = ssl.create_default_context(cafile=str(env.pki.ca))

    async def call() -> tuple[int, str]:
        async with (
            aiohttp.ClientSession() as session,
            session.get(
                env.sim.cps.base_url + "/event/$metadata",
                headers={"Authorization": credentials},
                ssl=context,
            ) as answer,
        ):
            return answer.status, await answer.text()

    status, text = env.run(call())
    assert status == 401, text
    assert "Basic" in json.loads(text)["errors"][0]["message"]
    assert env.sim.errors() == []


@pytest.mark.sim("SIM-IVT-PROTO")
def test_a_close_reason_quoting_the_client_is_kept_as_an_excerpt(env: IvantiEnv) -> None:
    """SIM-IVT-PROTO (bounds): a refusal that quotes what the client sent (a 60,000-character
    user name, CONNACK 4) quotes an excerpt saying how much was cut, and so does the close
    reason the connection's log keeps, like every string the client chose."""
    raw = RawClient(env.target("named")).open()
    try:
        assert raw.connect(username="u" * 60_000, keepalive_s=30) == Connack(False, 4)
        assert raw.closed_by_broker()
    finally:
        raw.close()
    env.wait_closed("named")
    (view,) = env.views("named")
    reason = view.close_reason
    assert reason is not None and len(reason) < TEXT_KEPT + 200
    assert "more characters cut]" in reason and "is not the certificate's" in reason
    assert view.username is not None and len(view.username) < TEXT_KEPT + 40
