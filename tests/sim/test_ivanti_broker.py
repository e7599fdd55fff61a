"""The Ivanti broker's vendor rules (SIM-IVT-*), each shown with a third-party client over real
TLS on 127.0.0.1: mosquitto_sub and mosquitto_pub, paho-mqtt, curl, and OpenSSL through Python's
ssl module for the protocol versions no MQTT client offers any more."""

from __future__ import annotations

import json
import re
import socket
import ssl
import subprocess
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from simulators.ivanti.broker import ImpostorKind
from simulators.ivanti.operations import (
    Disconnect,
    DuplicateNext,
    PresentImpostors,
    Sessions,
    StopImpostors,
)
from simulators.mqtt.packets import Connack, Pingreq, Pingresp, Publish, Will
from simulators.pki import PKI
from tests.sim.ivanti_env import IvantiEnv, ivanti_env
from tests.sim.ivanti_peers import MosquittoSub, Paho, Target
from tests.sim.ivanti_raw import RawClient

HOUR = 3600.0
MOSQUITTO = pytest.mark.external_tool("mosquitto_sub", "mosquitto_pub")
CURL = pytest.mark.external_tool("curl")


@pytest.fixture
def env(pki: PKI) -> Iterator[IvantiEnv]:
    with ivanti_env(pki.folder) as running:
        yield running


def mosquitto(
    tool: str, target: Target, *args: str, cert: bool = True, timeout: float = 20.0
) -> subprocess.CompletedProcess[str]:
    """Run ``mosquitto_sub``/``mosquitto_pub`` once against ``target`` (MQTT 3.1.1, TLS 1.2
    unless ``args`` say otherwise)."""
    command = [tool, "-h", target.host, "-p", str(target.port), "--cafile", str(target.ca),
               "-V", "mqttv311", "-i", target.client_id]  # fmt: skip
    if cert:
        command += ["--cert", str(target.cert), "--key", str(target.key)]
    if "--tls-version" not in args:
        command += ["--tls-version", "tlsv1.2"]
    return subprocess.run(
        [*command, *args], capture_output=True, text=True, timeout=timeout, check=False
    )


def curl(env: IvantiEnv, path: str, *args: str, cert: bool = True) -> tuple[int, object]:
    login = env.sim.login
    command = ["curl", "-sS", "--cacert", str(env.pki.ca), "-w", "\n%{http_code}"]
    if cert:
        command += ["--cert", str(login.cert.cert), "--key", str(login.cert.key)]
    done = subprocess.run(
        [*command, *args, env.sim.cps.base_url + path],
        capture_output=True,
        text=True,
        timeout=20,
        check=True,
    )
    body, _, status = done.stdout.rpartition("\n")
    return int(status), json.loads(body) if body else None


# --- SIM-IVT-TLS ------------------------------------------------------------------------------


@pytest.mark.sim("SIM-IVT-TLS")
@MOSQUITTO
def test_tls_12_with_a_tenant_certificate_is_the_only_way_in(env: IvantiEnv) -> None:
    """SIM-IVT-TLS: mosquitto_sub gets in over TLS 1.2 with the tenant's certificate; TLS 1.3,
    no client certificate, and a certificate from another CA are refused at the handshake,
    before any MQTT packet; a certificate the tenant does not know gets CONNACK 5."""
    ok = mosquitto(
        "mosquitto_sub", env.target("tls-ok"), "-t", env.sim.topic("device_enrolled"), "-E"
    )
    assert ok.returncode == 0, ok.stderr
    refused = {
        "tls1.3": mosquitto("mosquitto_sub", env.target("tls13"), "-t", "x", "-E", "--tls-version", "tlsv1.3"),
        "no certificate": mosquitto("mosquitto_sub", env.target("nocert"), "-t", "x", "-E", cert=False),
        "unknown CA": mosquitto(
            "mosquitto_sub",
            Target("127.0.0.1", env.port, env.pki.ca, env.pki.impostor_server.cert,
                   env.pki.impostor_server.key, "rogue", "x"),
            "-t", "x", "-E",
        ),
    }  # fmt: skip
    for what, done in refused.items():
        assert done.returncode != 0, what
    # The broker sends its alert before its handshake task records the refusal, so a client can
    # exit first: wait (bounded) for the third record, which the broker announces on `changed`.
    server = env.sim.broker.server
    with server.changed:
        server.changed.wait_for(lambda: len(server.handshake_failures) >= 3, timeout=15)
    assert server.handshakes_failed == 3
    reasons = " ".join(f.reason for f in server.handshake_failures)
    assert "UNSUPPORTED_PROTOCOL" in reasons or "VERSION" in reasons, reasons
    assert "CERTIFICATE" in reasons.upper(), reasons
    # Only the TLS 1.2 one ever reached MQTT.
    assert [c.client_id for c in env.sim.broker.connections()] == ["tls-ok"]

    stranger = env.sim.broker.pki.client_identity("stranger", "stranger@elsewhere.test")
    target = Target("127.0.0.1", env.port, env.pki.ca, stranger.cert, stranger.key, "who", "x")
    done = mosquitto("mosquitto_sub", target, "-t", "x", "-E")
    assert done.returncode != 0 and "not authori" in (done.stderr + done.stdout).lower()
    assert env.views("who")[-1].connack == 5


@pytest.mark.sim("SIM-IVT-TLS")
@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1:DeprecationWarning")
@pytest.mark.parametrize(
    "version", [ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_1], ids=["1.0", "1.1"]
)
def test_tls_10_and_11_are_refused_by_the_broker(env: IvantiEnv, version: ssl.TLSVersion) -> None:
    """SIM-IVT-TLS: an OpenSSL client offering only TLS 1.0 or 1.1 (security level 0, so the
    client really offers it) is refused by the broker."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.set_ciphers("DEFAULT:@SECLEVEL=0")
    context.minimum_version = context.maximum_version = version
    context.load_verify_locations(str(env.pki.ca))
    login = env.sim.login
    context.load_cert_chain(str(login.cert.cert), str(login.cert.key))
    with (
        socket.create_connection(("127.0.0.1", env.port), timeout=10) as raw,
        pytest.raises((ssl.SSLError, ConnectionError)),
    ):
        context.wrap_socket(raw, server_hostname="127.0.0.1")
    server = env.sim.broker.server
    env.poll(lambda: server.handshakes_failed, 10)
    assert server.handshakes_failed == 1 and not server.connections()


@pytest.mark.sim("SIM-IVT-TLS")
def test_username_must_be_the_certificate_email(env: IvantiEnv) -> None:
    """SIM-IVT-TLS: an MQTT user name, if sent, must be the login email of the certificate
    (paho: the right one is accepted, another gets CONNACK 4)."""
    good = Paho(env.target("named", username=env.sim.login.email))
    bad = Paho(env.target("misnamed", username="someone@else.test"))
    for peer in (good, bad):
        peer.start()
    try:
        assert env.wait_connected("named").username == env.sim.login.email
        env.wait_for(lambda cs: [c for c in cs if c.client_id == "misnamed" and c.connack == 4])
    finally:
        good.stop()
        bad.stop()


# --- SIM-IVT-LIMIT ----------------------------------------------------------------------------


@pytest.mark.sim("SIM-IVT-LIMIT")
def test_sixteenth_connection_of_a_tenant_gets_connack_3(env: IvantiEnv) -> None:
    """SIM-IVT-LIMIT: 15 paho connections of one tenant are accepted, the 16th gets CONNACK 3;
    another tenant still connects; once one of the 15 leaves, a new one is accepted."""
    peers = [Paho(env.target(f"limit-{n}", topic="")) for n in range(15)]
    other_tenant = env.sim.broker.add_tenant("other", "epmm")
    other = Paho(env.target("other-1", login=env.login("subscriber", other_tenant), topic=""))
    extra = Paho(env.target("limit-15", topic=""))
    late = Paho(env.target("limit-16", topic=""))
    try:
        for peer in peers:
            peer.start()
        env.wait_for(lambda cs: sum(c.accepted and c.open for c in cs) == 15)
        extra.start()
        env.wait_for(lambda cs: [c for c in cs if c.client_id == "limit-15" and c.connack == 3])
        extra.stop()
        other.start()
        assert env.wait_connected("other-1").tenant == other_tenant.tenant_id
        peers.pop().stop()
        env.wait_for(
            lambda cs: (
                sum(c.accepted and c.open and c.tenant == env.tenant.tenant_id for c in cs) == 14
            )
        )
        late.start()
        env.wait_connected("limit-16")
        assert env.sim.broker.connection_count(env.tenant) == 15
    finally:
        for peer in [*peers, other, extra, late]:
            peer.stop()


# --- SIM-IVT-CLIENTID -------------------------------------------------------------------------


@pytest.mark.sim("SIM-IVT-CLIENTID")
@MOSQUITTO
def test_duplicate_client_id_takes_over_by_default(env: IvantiEnv) -> None:
    """SIM-IVT-CLIENTID: a second connection with a live client id takes over (MQTT-3.1.4-2):
    paho's connection is closed, mosquitto_sub's is accepted; the choice is in the evidence."""
    first = Paho(env.target("twin"))
    first.start()
    try:
        older = env.wait_subscribed("twin")
        done = mosquitto(
            "mosquitto_sub",
            env.target("twin"),
            "-c",
            "-q",
            "1",
            "-t",
            env.sim.topic("device_wiped"),
            "-E",
        )
        assert done.returncode == 0, done.stderr
        closed = env.sim.broker.server.connection(older.conn_id)
        assert closed is not None and "take-over" in (closed.close_reason or "")
    finally:
        first.stop()
    assert any(
        "duplicate client ids: takeover" in e.summary for e in env.recorder.timeline().events()
    )


@pytest.mark.sim("SIM-IVT-CLIENTID")
@MOSQUITTO
def test_duplicate_client_id_can_be_refused_with_return_code_2(pki: PKI) -> None:
    """SIM-IVT-CLIENTID: with --ivanti-duplicate-client-id=refuse, the newcomer gets CONNACK 2
    (mosquitto_sub: identifier rejected) and paho's connection stays; the choice is reported."""
    with ivanti_env(pki.folder, duplicate_client_id="refuse") as env:
        first = Paho(env.target("twin"))
        first.start()
        try:
            older = env.wait_subscribed("twin")
            done = mosquitto("mosquitto_sub", env.target("twin"), "-t", "x", "-E")
            assert (
                done.returncode != 0
                and "identifier rejected" in (done.stderr + done.stdout).lower()
            )
            live = env.publish("device_check_in")
            first.wait_for_payloads([live.payload])
            view = env.sim.broker.server.connection(older.conn_id)
            assert view is not None and view.open
        finally:
            first.stop()
        assert any(
            "duplicate client ids: refuse" in e.summary for e in env.recorder.timeline().events()
        )


# --- SIM-IVT-QOS1 -----------------------------------------------------------------------------


@pytest.mark.sim("SIM-IVT-QOS1")
def test_events_go_at_qos_1_or_the_subscription_qos_if_lower(env: IvantiEnv) -> None:
    """SIM-IVT-QOS1: a QoS 1 subscriber (paho) receives QoS 1; a QoS 0 subscriber receives the
    same event at QoS 0; a QoS 2 subscription is granted 1."""
    at1 = Paho(env.target("at-1"))
    at0 = Paho(env.target("at-0", qos=0))
    at2 = Paho(env.target("at-2", qos=2))
    for peer in (at1, at0, at2):
        peer.start()
    try:
        for client_id in ("at-1", "at-0", "at-2"):
            env.wait_subscribed(client_id)
        event = env.publish("device_compliant")
        assert at1.wait_for_payloads([event.payload])[0].qos == 1
        assert at0.wait_for_payloads([event.payload])[0].qos == 0
        assert at2.wait_for_payloads([event.payload])[0].qos == 1
        assert env.views("at-2")[-1].subscriptions[0][1:] == (2, 1)
    finally:
        for peer in (at1, at0, at2):
            peer.stop()


@pytest.mark.sim("SIM-IVT-QOS1")
def test_unacknowledged_publish_is_resent_after_the_in_session_timeout(pki: PKI) -> None:
    """SIM-IVT-QOS1 (option): with a redelivery timeout, a PUBLISH paho has not acknowledged
    (manual acks) is resent with DUP = 1 after that many simulated seconds, in the session."""
    with ivanti_env(pki.folder, redelivery_timeout_s=30.0) as env:
        peer = Paho(env.target("slow-acker"))
        peer.start()
        assert peer.client is not None
        peer.client.manual_ack_set(True)
        try:
            env.wait_subscribed("slow-acker")
            event = env.publish("device_enrolled")
            peer.wait_for_payloads([event.payload])
            env.clock.advance(30)
            env.wait_for(lambda cs: [c for c in cs if len(c.sent("PUBLISH")) == 2])
            first, again = env.views("slow-acker")[-1].sent("PUBLISH")
            assert (first.dup, again.dup, first.packet_id) == (False, True, again.packet_id)
            assert again.sim_s - first.sim_s >= 30
        finally:
            peer.stop()


# --- SIM-IVT-RETAIN ---------------------------------------------------------------------------


@pytest.mark.sim("SIM-IVT-RETAIN")
def test_three_hour_retention_runs_on_the_simulated_clock(env: IvantiEnv) -> None:
    """SIM-IVT-RETAIN: with its durable subscriber (paho) away, an event is kept 180 simulated
    minutes and then dropped; one published later is still delivered on reconnect, RETAIN = 0.
    Three simulated hours take a fraction of a real second."""
    real_start = env.clock.real()
    peer = Paho(env.target("away"))
    peer.start()
    env.wait_subscribed("away")
    peer.stop()
    env.wait_closed("away")
    old = env.publish("device_retired")
    assert old.kept_for == ("away",)
    env.clock.advance(2 * HOUR)
    recent = env.publish("device_wiped")
    env.clock.advance(HOUR + 1)  # the first is 3 h 1 s old, the second 1 h 1 s
    env.poll(lambda: any(e.kind == "message-expired" for e in env.recorder.timeline().events()))
    sessions = env.perform(Sessions())
    assert [s.queued for s in sessions if s.client_id == "away"] == [1]
    peer = Paho(env.target("away"))
    peer.start()
    try:
        (message,) = peer.wait_for_payloads([recent.payload])
        resumed = env.wait_acked("away", 1)
    finally:
        peer.stop()
    assert message.retain is False and old.payload not in {m.payload for m in peer.messages}
    assert [p.retain for p in resumed.sent("PUBLISH")] == [False]
    assert env.clock.real() - real_start < 20  # no real three hours; generous for a busy CI


@pytest.mark.sim("SIM-IVT-RETAIN")
@MOSQUITTO
def test_first_puback_purges_the_other_durable_copies(env: IvantiEnv) -> None:
    """SIM-IVT-RETAIN: an event kept for two offline durable subscribers is purged from both
    when the first one (mosquitto_sub) acknowledges it; the second (paho) then gets nothing."""
    for client_id in ("first", "second"):
        peer = Paho(env.target(client_id))
        peer.start()
        env.wait_subscribed(client_id)
        peer.stop()
        env.wait_closed(client_id)
    event = env.publish("device_not_compliant")
    assert sorted(event.kept_for) == ["first", "second"]
    done = mosquitto("mosquitto_sub", env.target("first"), "-c", "-q", "1", "-t",
                     f"{env.tenant.prefix}device/#", "-C", "1", "-W", "10")  # fmt: skip
    assert done.returncode == 0 and event.payload.decode() in done.stdout, done.stderr
    env.wait_acked("first", 1)
    env.poll(lambda: {s.client_id: s.queued for s in env.perform(Sessions())}["second"] == 0)
    assert any(e.kind == "message-purged" for e in env.recorder.timeline().events())


# --- SIM-IVT-META -----------------------------------------------------------------------------


@pytest.mark.sim("SIM-IVT-META")
@CURL
@pytest.mark.parametrize("style", ["neurons", "epmm"])
def test_metadata_call_answers_the_topic_map_and_180_minutes(pki: PKI, style: str) -> None:
    """SIM-IVT-META: curl with the identity certificate gets the nine topics (tenant-prefixed
    for Neurons, unprefixed for EPMM) and retentionPeriodMinutes 180; without it, 401."""
    from conformance.ivanti.section import IvantiSection

    with ivanti_env(pki.folder, section=IvantiSection(topic_style=style)) as env:
        status, body = curl(env, "/event/$metadata")
        assert status == 200 and isinstance(body, dict)
        assert body["retentionPeriodMinutes"] == 180
        topics = body["topics"]
        assert len(topics) == 9
        prefix = f"{env.tenant.tenant_id}/" if style == "neurons" else ""
        assert topics["device_check_in"] == f"{prefix}device/check_in"
        assert all(t.startswith(prefix + "device/") for t in topics.values())
        assert curl(env, "/event/$metadata", cert=False)[0] == 401


@pytest.mark.sim("SIM-IVT-META")
@CURL
@MOSQUITTO
def test_event_then_pull_details(env: IvantiEnv) -> None:
    """SIM-IVT-META: the usual flow with third-party tools: mosquitto_sub receives an event,
    curl POSTs its device identifier to /msa/v1/cps/device and gets the same device back."""
    topic = env.sim.topic("device_enrolled")
    sub = MosquittoSub(env.target("puller", topic=topic))
    sub.start()
    try:
        env.wait_subscribed("puller")
        event = env.publish("device_enrolled")
        (message,) = sub.wait_for_payloads([event.payload])
    finally:
        sub.stop()
    device = json.loads(message.payload)["devices"][0]
    status, body = curl(
        env, "/device", "-X", "POST", "-H", "Content-Type: application/json",
        "-d", json.dumps({"identifiers": [device["identifier"], "unknown"]}),
    )  # fmt: skip
    assert status == 200 and isinstance(body, list) and len(body) == 1
    assert body[0]["identifier"] == device["identifier"] and body[0]["status"] == "ACTIVE"


# --- SIM-IVT-KA -------------------------------------------------------------------------------


@pytest.mark.sim("SIM-IVT-KA")
def test_keepalive_is_enforced_in_real_time(env: IvantiEnv) -> None:
    """SIM-IVT-KA: a paho client that keeps pinging (keep-alive 1 s) stays connected; one whose
    network loop stops (silent, socket open) is disconnected after 1.5 × its keep-alive, in real
    seconds; a jump of three simulated hours disconnects nobody."""
    pinging = Paho(env.target("pinging", keepalive_s=1))
    silent = Paho(env.target("silent", keepalive_s=1))
    pinging.start()
    silent.start()
    try:
        env.wait_subscribed("pinging")
        env.wait_subscribed("silent")
        env.clock.advance(3 * HOUR)
        silent.go_silent()
        env.wait_closed("silent", timeout=10)
        view = env.views("silent")[-1]
        last_in = max(p.real_s for p in view.packets if p.direction == "in")
        assert view.closed_real_s is not None
        assert 1.5 <= view.closed_real_s - last_in < 4.0, view.close_reason
        assert "keep-alive" in (view.close_reason or "")
        pings = env.wait_for(
            lambda cs: [
                c for c in cs if c.client_id == "pinging" and len(c.received("PINGREQ")) >= 2
            ]
        )
        assert pings[-1].open  # pinged through 2+ s and the 3 h jump, still connected
        event = env.publish("device_check_in")
        pinging.wait_for_payloads([event.payload])
    finally:
        pinging.stop()
        silent.stop()


@pytest.mark.sim("SIM-IVT-KA")
def test_connection_that_never_sends_connect_is_closed(env: IvantiEnv) -> None:
    """SIM-IVT-KA (adapter bound): a TLS connection with no CONNECT is closed after the connect
    timeout, a PINGREQ-only client is answered and then also timed out by its keep-alive."""
    env.sim.broker.server.connect_timeout_s = 0.5
    raw = RawClient(env.target("mute")).open()
    try:
        assert raw.closed_by_broker(timeout=10)
    finally:
        raw.close()
    raw = RawClient(env.target("pinger")).open()
    try:
        assert raw.connect(keepalive_s=1, clean_session=True) == Connack(False, 0)
        raw.send(Pingreq())
        assert raw.read() == Pingresp()
        assert raw.closed_by_broker(timeout=10)
    finally:
        raw.close()


# --- subscriptions and publishing are the tenant's -----------------------------------------------


@pytest.mark.sim("SIM-IVT-QOS1")
@MOSQUITTO
def test_subscriptions_stay_in_the_tenant_and_subscribers_cannot_publish(env: IvantiEnv) -> None:
    """SIM-IVT-QOS1 / vendor rules: mosquitto_sub's subscription to another tenant's topic (or
    '#') gets SUBACK 0x80; mosquitto_pub as the SUT is acknowledged but refused and recorded;
    the tenant's event source publishes with mosquitto_pub and the subscriber receives it."""
    other = env.sim.broker.add_tenant("neighbour", "neurons")
    denied = mosquitto(
        "mosquitto_sub", env.target("nosy"), "-t", other.topic("device_enrolled"), "-t", "#", "-E"
    )
    assert "denied" in (denied.stdout + denied.stderr).lower()
    assert env.views("nosy")[-1].subscriptions == (
        (other.topic("device_enrolled"), 0, 0x80),
        ("#", 0, 0x80),
    )
    listener = Paho(env.target("listener"))
    listener.start()
    try:
        env.wait_subscribed("listener")
        topic = env.sim.topic("device_check_in")
        forged = mosquitto(
            "mosquitto_pub", env.target("forger"), "-t", topic, "-q", "1", "-m", '{"forged":true}'
        )
        assert forged.returncode == 0, forged.stderr  # acknowledged (MQTT-3.3.5-2)
        assert any(e.kind == "publish-refused" for e in env.recorder.timeline().events())
        source = env.sim.broker.event_source(env.tenant)
        real = mosquitto(
            "mosquitto_pub",
            env.target("vendor", login=source),
            "-t",
            topic,
            "-q",
            "1",
            "-m",
            '{"real":true}',
        )
        assert real.returncode == 0, real.stderr
        listener.wait_for_payloads([b'{"real":true}'])
        assert b'{"forged":true}' not in {m.payload for m in listener.messages}
    finally:
        listener.stop()


def _summaries(env: IvantiEnv, pattern: str) -> list[str]:
    return [e.summary for e in env.recorder.timeline().events() if re.search(pattern, e.summary)]


__all__ = ["Path", "_summaries"]


# --- impostor brokers (for IVT-TLS-03) ---------------------------------------------------------


@MOSQUITTO
def test_impostor_brokers_record_whether_a_connect_reached_them(env: IvantiEnv) -> None:
    """Impostors (unknown CA, expired, wrong host): mosquitto_sub, verifying the broker, refuses
    each at the handshake and sends no CONNECT; a careless paho client (no verification) gets
    through to one, and that impostor records the CONNECT."""
    impostors = env.sim.impostors
    assert set(impostors) == {"unknown-ca", "expired", "wrong-host"}
    for kind, impostor in impostors.items():
        target = replace(env.target(f"careful-{kind}"), port=impostor.port)
        done = mosquitto("mosquitto_sub", target, "-t", env.sim.topic("device_enrolled"), "-E")
        assert done.returncode != 0, (kind, done.stdout)
        refused = impostor.server
        env.poll(lambda: refused.handshakes_failed >= 1)  # noqa: B023 (used at once)
        assert not impostor.connect_received, kind
    careless = replace(env.target("careless"), port=impostors["expired"].port)
    context = ssl.create_default_context(cafile=str(careless.ca))
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id="careless", protocol=paho.MQTTv311)
    client.tls_set_context(context)
    client.connect("127.0.0.1", careless.port)
    client.loop_start()
    try:
        env.poll(lambda: impostors["expired"].connect_received)
    finally:
        client.disconnect()
        client.loop_stop()
    assert not impostors["unknown-ca"].connect_received
    assert not impostors["wrong-host"].connect_received


def _paho_at_broker(env: IvantiEnv, client_id: str, *, verify: bool) -> paho.Client:
    """A durable paho subscriber aimed at the broker's own address, reconnecting quickly;
    ``verify=False``: it accepts any server certificate (a careless client)."""
    target = env.target(client_id)
    context = target.context()
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    client = paho.Client(
        CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False,
        protocol=paho.MQTTv311,
    )  # fmt: skip
    client.tls_set_context(context)
    client.reconnect_delay_set(0.1, 0.2)  # type: ignore[arg-type]
    client.on_connect = lambda c, u, f, reason, p: (
        None if reason.is_failure else c.subscribe(target.topic, 1)
    )
    client.connect_async(target.host, target.port, keepalive=30)
    client.loop_start()
    return client


@pytest.mark.parametrize("verify", [True, False], ids=["verifying", "careless"])
def test_the_broker_address_can_present_the_impostors(env: IvantiEnv, verify: bool) -> None:
    """IVT-TLS-03 without reconfiguring the client: present_impostors hands the next
    connections to the broker's address to the impostors, in order. A verifying paho client
    refuses each at the handshake (no CONNECT), then connects to the real broker; a careless one
    sends its CONNECT to each (answered CONNACK 5), then connects to the real broker."""
    name = "verifying" if verify else "careless"
    client = _paho_at_broker(env, name, verify=verify)
    try:
        env.wait_subscribed(name)
        kinds: list[ImpostorKind] = ["unknown-ca", "expired", "wrong-host"]
        env.perform(PresentImpostors(kinds=kinds))
        env.perform(Disconnect(client_id=name))
        impostors = env.sim.impostors
        met = lambda: all(  # noqa: E731
            i.handshakes_refused + len(i.connections()) >= 1 for i in impostors.values()
        )
        env.poll(met, timeout=20)
        back = env.wait_for(
            lambda cs: [c for c in cs if c.client_id == name and c.open and c.accepted], 20
        )
        assert back and env.sim.broker.server.diverts_pending == 0
        for kind in kinds:
            impostor = impostors[kind]
            assert impostor.connect_received is (not verify), kind
            if verify:
                assert impostor.handshakes_refused >= 1, kind
            else:
                assert [c.connack for c in impostor.connections()] == [5], kind
        diverted = [e for e in env.recorder.timeline().events() if e.kind == "diverted"]
        assert len(diverted) == 3
    finally:
        client.disconnect()
        client.loop_stop()
    assert env.perform(StopImpostors()) == 0


def test_packet_log_identifies_copies_of_one_message_and_cps_calls_are_kept(
    env: IvantiEnv,
) -> None:
    """Every PUBLISH record carries hash(payload), so a check finds each copy of a message (the
    first and a DUP = 1 resend) and its PUBACK; the CPS API keeps each call with its caller;
    with ambient_cause set, evidence no check caused goes to that cause."""
    env.sim.broker.server.ambient_cause = "watcher"
    client = _paho_at_broker(env, "copies", verify=True)
    try:
        env.wait_subscribed("copies")
        env.perform(DuplicateNext(client_id="copies"))
        published = env.publish("device_enrolled")
        view = env.wait_acked("copies", 2)
        mine = [a for a in view.acks() if a.payload_hash == hash(published.payload)]
        assert [a.dup for a in mine] == [False, True]
        assert all(a.acked_real_s is not None for a in mine)
    finally:
        client.disconnect()
        client.loop_stop()
    causes = {e.kind for e in env.recorder.timeline("watcher").events()}
    assert {"mqtt", "tls"} <= causes
    status, _ = _get_metadata(env)
    assert status == 200
    [call] = env.sim.cps.calls()
    assert (call.method, call.email, call.status) == ("GET", env.sim.login.email, 200)
    assert call.path.endswith("/event/$metadata")


def _get_metadata(env: IvantiEnv) -> tuple[int, object]:
    """GET the metadata with the SUT's certificate, from Python (curl is a peer elsewhere)."""
    import urllib.request

    login = env.sim.login
    context = ssl.create_default_context(cafile=str(env.pki.ca))
    context.load_cert_chain(str(login.cert.cert), str(login.cert.key))
    url = env.sim.cps.base_url + "/event/$metadata"
    with urllib.request.urlopen(url, context=context, timeout=10) as answer:
        return answer.status, json.loads(answer.read())


# --- run-wide facts outlive the packet log (IVT-CONN-*, IVT-SESS-01, IVT-PUB-01) ---------------


@pytest.mark.sim("SIM-IVT-CLIENTID")
def test_run_wide_facts_count_connections_the_packet_log_forgot(env: IvantiEnv) -> None:
    """SIM-IVT-CLIENTID: a client that publishes once to an event topic with a Will there, then
    makes more short connections (new client IDs, clean session) than the packet log keeps, is
    still seen to have published, set that Will, used clean sessions and abandoned a client ID:
    the tallies count every connection (here the log keeps 3, as a run keeps 2,000)."""
    server = env.sim.broker.server
    server.connections_kept = 3
    topic = env.sim.topic("device_check_in")
    first = RawClient(env.target("publisher")).open()
    try:
        connack = first.connect(clean_session=False, will=Will(topic, b"{}", 0, False))
        assert connack == Connack(False, 0)
        first.send(Publish(topic, b'{"receipt":true}'))
        first.send(Pingreq())
        assert first.read() == Pingresp()  # the PUBLISH before it was read
    finally:
        first.close()
    env.wait_closed("publisher")
    for n in range(6):
        churn = RawClient(env.target(f"churn-{n}")).open()
        try:
            assert churn.connect(clean_session=True) == Connack(False, 0)
        finally:
            churn.close()
        env.wait_closed(f"churn-{n}")
    assert not env.views("publisher")  # the log forgot it
    facts = env.sim.broker.connection_facts(env.tenant)
    assert (facts.connects, facts.accepted, facts.peak_live) == (7, 7, 1)
    assert (facts.watched_publishes, facts.first_watched_topic) == (1, topic)
    assert (facts.watched_wills, facts.first_watched_will) == (1, topic)
    assert (facts.clean, facts.first_clean) == (6, "churn-0")
    assert (facts.abandoned, facts.first_abandoned, facts.resumed) == (6, "publisher", 0)
    assert facts.shared == 0 and facts.connects_beside(1) == (0, None)
