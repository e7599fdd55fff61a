"""The SUT's connection to the broker and its subscriptions (IVT-TLS-01, IVT-TLS-02,
IVT-SUB-01, IVT-SUB-02), judged on its first connection; the first check waits for it."""

from __future__ import annotations

import contextlib
from collections import Counter

import pytest

from conformance.driver import prose
from conformance.ivanti.driver import NOT_REPLAYED_SUT_ACTS, NOT_REPLAYED_TLS, IvantiDriver
from conformance.verdicts import Check, NotVerified
from simulators.mqtt.topics import topic_matches

requirement = pytest.mark.requirement

# Handshake failures that mean the client and the broker found no protocol version in common
# (or the client spoke something else than TLS), as OpenSSL names them on the server side.
VERSION_FAILURES = (
    "UNSUPPORTED_PROTOCOL",
    "WRONG_VERSION_NUMBER",
    "PROTOCOL_VERSION",
    "VERSION_TOO_LOW",
    "VERSION_TOO_HIGH",
    "NO_PROTOCOLS_AVAILABLE",
    "HTTP_REQUEST",
    "UNKNOWN_PROTOCOL",
    "RECORD_LAYER_FAILURE",
)
# Failures at the client-certificate request: TLS 1.2 had been agreed by then.
CERTIFICATE_FAILURES = ("PEER_DID_NOT_RETURN_A_CERTIFICATE", "CERTIFICATE", "UNKNOWN_CA")


def _contact(ivanti: IvantiDriver) -> None:
    """Wait for the SUT's first connection; its absence (the SUT taken as down) is judged by
    the check itself, from what the broker saw."""
    with contextlib.suppress(AssertionError, NotVerified):
        ivanti.online()


def _failures(ivanti: IvantiDriver) -> list[str]:
    return [f.reason for f in ivanti.sim.broker.server.handshake_failures]


@requirement("IVT-TLS-01")
def test_connects_over_tls_1_2(ivanti: IvantiDriver, check: Check) -> None:
    """The broker offers TLS 1.2 and nothing else: a connection at all is the evidence."""
    check.no_reproducer(NOT_REPLAYED_TLS)
    check.expect("a TLS connection to the broker, which offers TLS 1.2 only")
    _contact(ivanti)
    established = ivanti.sim.broker.connections()
    failures = _failures(ivanti)
    if established:
        first = established[0]
        check.observe(
            f"{len(established)} TLS 1.2 connection(s); the first from "
            f"{first.email or 'an unknown identity'} ({first.peer})"
        )
        return
    version = [f for f in failures if any(v in f.upper() for v in VERSION_FAILURES)]
    certificate = [f for f in failures if any(c in f.upper() for c in CERTIFICATE_FAILURES)]
    check.observe(
        f"no TLS connection; {len(failures)} handshake(s) failed"
        + (f": {prose(sorted(set(failures))[:3])}" if failures else "")
    )
    if certificate and not version:
        check.note(
            "the handshakes failed at the client-certificate request, so TLS 1.2 had been "
            "agreed (the certificate is judged by IVT-TLS-02)"
        )
        return
    if version:
        raise AssertionError(
            f"the SUT's TLS handshakes with the TLS 1.2-only broker failed: {version[0]}"
        )
    raise AssertionError(
        f"the SUT made no TLS connection to the broker: {ivanti.harness.sut_down or 'none seen'}"
    )


@requirement("IVT-TLS-02")
def test_presents_its_identity_certificate(ivanti: IvantiDriver, check: Check) -> None:
    login = ivanti.sim.login
    check.no_reproducer(NOT_REPLAYED_TLS)
    check.expect(f"the client certificate of {login.email} at the TLS handshake")
    _contact(ivanti)
    established = ivanti.sim.broker.connections()
    mine = [v for v in established if v.email == login.email]
    others = [v for v in established if v.email != login.email]
    if mine:
        check.observe(f"presented the identity certificate of {login.email}")
        if others:
            check.note(f"{len(others)} other connection(s) presented another identity")
        return
    if others:
        who = prose(sorted({v.email or "no identity" for v in others}))
        check.observe(f"presented the certificate of {who}")
        raise AssertionError(f"the SUT did not present its identity certificate ({who})")
    certificate = [
        f for f in _failures(ivanti) if any(c in f.upper() for c in CERTIFICATE_FAILURES)
    ]
    if certificate:
        check.observe(f"TLS handshakes failed: {prose(sorted(set(certificate))[:3])}")
        raise AssertionError(f"the SUT presented no usable client certificate: {certificate[0]}")
    ivanti.harness.require_sut()
    raise check.not_verified("the SUT made no TLS connection to the broker")


@requirement("IVT-SUB-01")
def test_subscribes_to_every_consumed_topic(ivanti: IvantiDriver, check: Check) -> None:
    consumed = ivanti.sim.consumed_topics
    check.no_reproducer(NOT_REPLAYED_SUT_ACTS)
    check.expect(
        f"subscriptions covering the topic of each of the {len(consumed)} event types it "
        "consumes (from the metadata call)"
    )
    ivanti.online()
    filters = [f for f, _ in ivanti.subscriptions()]
    refused = [f for v in ivanti.live() for f, _, code in v.subscriptions if code >= 0x80]
    missing = [
        t for t, topic in consumed.items() if not any(topic_matches(f, topic) for f in filters)
    ]
    check.observe(
        f"{len(consumed) - len(missing)} of {len(consumed)} consumed topics covered by "
        f"{len(filters)} subscription(s)" + (f"; missing {prose(missing)}" if missing else "")
    )
    if refused:
        check.note(f"the broker refused (SUBACK 0x80) {prose(refused[:5])}")
    assert not missing, (
        f"no subscription to the topic of {prose(missing)} ({prose(consumed[t] for t in missing)})"
    )


@requirement("IVT-SUB-02")
def test_subscribes_with_qos_1(ivanti: IvantiDriver, check: Check) -> None:
    """The vendor delivers at QoS 1 ("MQTT delivers messages with QoS level 1"); a subscription
    at QoS 0, as in the vendor's own sample subscriber, caps delivery at QoS 0 (MQTT-3.8.4-6):
    at most once, nothing acknowledged, redelivered or kept offline. The failure says so, since
    an integrator who copied the sample has no other way to learn it."""
    check.no_reproducer(NOT_REPLAYED_SUT_ACTS)
    check.expect("each consumed topic subscribed at QoS 1 (QoS 2 is granted 1)")
    ivanti.online()
    consumed = ivanti.sim.consumed_topics
    granted: dict[str, int] = {}
    for name, topic in consumed.items():
        qos = [q for f, q in ivanti.subscriptions() if topic_matches(f, topic)]
        if qos:
            granted[name] = max(qos)
    if not granted:
        raise check.not_verified("the SUT subscribes to none of its consumed topics (IVT-SUB-01)")
    requested = Counter(q for v in ivanti.live() for _, q, code in v.subscriptions if code < 0x80)
    at_zero = [name for name, qos in granted.items() if qos < 1]
    check.observe(
        (
            f"each of {len(granted)} subscribed topics at QoS 1"
            if not at_zero
            else f"QoS 0 for {prose(at_zero)}"
        )
        + (
            " (requested: " + prose(f"{n} at QoS {q}" for q, n in sorted(requested.items())) + ")"
            if requested
            else ""
        )
    )
    assert not at_zero, (
        f"subscribed at QoS 0 to the topic of {prose(at_zero)}: the service delivers at QoS 1, "
        "but a QoS 0 subscription downgrades delivery to at most once (MQTT-3.8.4-6), so an "
        "event in flight when the connection drops is lost and nothing is kept while the SUT "
        "is offline. The vendor's sample subscriber does subscribe at QoS 0 "
        "(client.subscribe(topic, 0)); subscribe at QoS 1 instead"
    )
