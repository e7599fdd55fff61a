"""The SUT as a Pelion callback receiver: registration and verification, answers to every batch
and to a 10,000-item one, the registered secret header, the caller's client certificate, a
batch resent after a failed delivery (PEL-CB-01..08, PEL-OBS-01)."""

from __future__ import annotations

import secrets

import pytest

from conformance.driver import DUPLICATE_SETTLE_S, processed_once
from conformance.pelion.driver import (
    STARTUP_WAIT_S,
    PelionDriver,
    describe,
    json_bytes,
    new_ep,
)
from conformance.verdicts import Check
from simulators.faults import FaultKind
from simulators.http_sender import Exchange
from simulators.pelion.api import ApiCall
from simulators.pelion.delivery import REQUEST_TIMEOUT_S
from simulators.pelion.operations import FailDeliveries

requirement = pytest.mark.requirement

BIG_BATCH = 10_000


@requirement("PEL-CB-06")
def test_registers_its_own_callback(pelion: PelionDriver, check: Check) -> None:
    """``PUT /v2/notification/callback`` with ``Authorization: Bearer <api key>`` and a body
    ``{url, headers?}`` whose URL the SUT then serves (the verification PUT is answered)."""
    pelion.require("callback", check)
    if not pelion.section.registers_itself:
        raise check.not_verified(
            "profile not declared: the SUT's [pelion] claims no registers_itself"
        )
    check.include_history("pelion")
    check.no_reproducer(
        "the SUT's own registration call is judged; nothing the service sends replays it"
    )
    check.expect("PUT /v2/notification/callback with the API key, registered (204), its URL served")

    def registration() -> list[ApiCall]:
        return [c for c in pelion.service.calls() if c.endpoint == "PUT /v2/notification/callback"]

    pelion.service.wait_for(lambda: any(c.status == 204 for c in registration()), STARTUP_WAIT_S)
    calls = registration()
    check.observe(
        f"{len(calls)} registration call(s): "
        + (", ".join(f"{c.status} (auth {c.auth})" for c in calls[:5]) if calls else "none")
    )
    assert calls, f"the SUT made no PUT /v2/notification/callback within {STARTUP_WAIT_S:g} s"
    accepted = [c for c in calls if c.status == 204]
    if not accepted and (refusal := pelion.caller_refused()):
        raise check.not_verified(f"{refusal}: the registration failed on its verification PUT")
    assert accepted, (
        f"the callback registration was refused: {calls[-1].status} (auth {calls[-1].auth}) "
        f"{calls[-1].answer[:120]}"
    )
    served = [
        v for v in pelion.service.verifications() if v.key == pelion.sim.callback_key and v.accepted
    ]
    assert served, "the registered URL did not answer the verification PUT"


@requirement("PEL-CB-01")
def test_answers_the_verification(pelion: PelionDriver, check: Check) -> None:
    """The verification PUT ``{}``, with the registered headers, is answered 200 or 204."""
    pelion.require("callback", check)
    pelion.reproduce_put(check, b"{}")
    check.expect("200 or 204 to the verification PUT {}")
    pelion.service.wait_for(
        lambda: any(v.key == pelion.sim.callback_key for v in pelion.service.verifications()),
        STARTUP_WAIT_S if pelion.section.registers_itself else 0.0,
    )
    verifications = [v for v in pelion.service.verifications() if v.key == pelion.sim.callback_key]
    if not verifications:
        raise check.not_verified(
            "no verification PUT was made: the SUT never registered its callback (PEL-CB-06)"
        )
    answers = [
        v.exchange.answered if v.exchange.answered is not None else v.exchange.error
        for v in verifications
    ]
    check.observe("verification answered " + ", ".join(str(a) for a in answers[:5]))
    bad = [v for v in verifications if v.exchange.answered not in (200, 204)]
    unanswered = all(v.exchange.answered is None for v in bad)
    if bad and unanswered and (refusal := pelion.caller_refused()):
        raise check.not_verified(f"{refusal} (judged by PEL-CB-07)")
    assert not bad, (
        f"the verification PUT got {bad[0].exchange.answered if bad[0].exchange.answered is not None else bad[0].exchange.error}"
        " (200 or 204 required)"
    )


@requirement("PEL-CB-02")
def test_callback_url_is_https(pelion: PelionDriver, check: Check) -> None:
    pelion.require("callback", check)
    check.no_reproducer("the declared or registered URL itself is judged: no request replays it")
    check.expect("an https:// callback URL")
    url = pelion.section.callback_url or ""
    registered = pelion.service.channel_state(pelion.sim.callback_key)
    if registered is not None and registered.url:
        url = registered.url
    check.observe(url or "no callback URL")
    if not url:
        raise check.not_verified("no callback URL was declared or registered")
    assert url.lower().startswith("https://"), f"the callback URL {url} is not HTTPS"


@requirement("PEL-CB-04")
def test_answers_a_10000_item_batch(pelion: PelionDriver, check: Check) -> None:
    pelion.ensure_callback(check)
    check.expect(f"2xx within {REQUEST_TIMEOUT_S:g} s for one batch of {BIG_BATCH} items")
    queued = pelion.notifications("callback", (f"{i}".encode() for i in range(BIG_BATCH)))
    attempts = [
        a for a in pelion.deliver("callback", queued, first_try=True) if a.items == BIG_BATCH
    ]
    check.observe(describe(attempts))
    assert attempts, "the 10,000 items were never sent as one batch (harness)"
    first = attempts[0]
    if not first.succeeded:  # its 1.8 MB body is kept beside the report only then
        pelion.reproduce(check, [first])
    assert first.answered is not None and 200 <= first.answered < 300, (
        f"a {BIG_BATCH}-item batch got {first.answered if first.answered is not None else first.error}"
        f" after {first.elapsed_real_s:.1f} s"
    )


@requirement("PEL-CB-05")
def test_rejects_a_batch_without_the_secret_header(pelion: PelionDriver, check: Check) -> None:
    pelion.ensure_callback(check)
    headers = dict(pelion.section.callback_headers)
    if not headers:
        raise check.not_verified("the SUT registered no callback header to check")
    check.expect(f"non-2xx for a batch without {', '.join(headers)}")
    body = json_bytes(
        {
            "notifications": [
                {
                    "ep": new_ep(),
                    "path": "/3200/0/5501",
                    "ct": "text/plain",
                    "payload": "NDI=",
                    "max-age": 0,
                }
            ]
        }
    )
    exchange = pelion.put(body, headers={})
    pelion.reproduce_put(check, body, headers={})
    check.observe(f"{exchange.answered if exchange.answered is not None else exchange.error}")
    assert exchange.answered is not None, f"no answer: {exchange.error}"
    assert not 200 <= exchange.answered < 300, (
        f"accepted ({exchange.answered}) a batch without the registered header(s) {', '.join(headers)}"
    )


def one_notification() -> bytes:
    """A NotificationMessage of one notification from a fresh device."""
    item = {"ep": new_ep(), "path": "/3200/0/5501", "ct": "text/plain", "payload": "NDI="}
    return json_bytes({"notifications": [{**item, "max-age": 0}]})


@requirement("PEL-CB-07")
def test_accepts_the_callers_certificate(pelion: PelionDriver, check: Check) -> None:
    """Device Management presents its client certificate (root → intermediate → leaf: a chain
    of depth 2) on every callback PUT; the SUT's TLS accepts it, so each such PUT gets an HTTP
    answer (its status is PEL-CB-01's and PEL-CB-03's to judge). Observed on the verification
    PUTs so far and on one notification PUT; a PUT without an answer is looked at once more
    (:meth:`PelionDriver.caller_refused`): a bare TLS connection presenting the chain, which a
    receiver refusing the certificate ends before any request."""
    pelion.require("callback", check)
    check.expect(
        "every PUT presenting Device Management's chain (depth 2) answered at HTTP level; a "
        "TLS connection presenting it kept open"
    )
    key = pelion.sim.callback_key
    pelion.service.wait_for(
        lambda: any(v.key == key for v in pelion.service.verifications()),
        STARTUP_WAIT_S if pelion.section.registers_itself else 0.0,
    )
    if plain := pelion.without_tls():
        raise check.not_verified(plain)
    if not (refusal := pelion.caller_refused()):
        pelion.ensure_callback(check)
        queued = pelion.notifications("callback", [b"caller-" + secrets.token_hex(3).encode()])
        try:
            pelion.deliver("callback", queued, first_try=True)
        except AssertionError as gone:
            if pelion.harness.sut_down is None:
                raise
            # The SUT went down on this batch (e.g. half-dead: no answer to batch after batch):
            # that is not a refusal of the certificate, which only a probe could tell.
            raise check.not_verified(
                f"the SUT went down during this check's batch: {gone}"
            ) from None
        refusal = pelion.caller_refused()
    verifications = [
        v.exchange for v in pelion.service.verifications()
        if v.key == key and v.exchange.client_cert == "genuine"
    ]  # fmt: skip
    batches = [
        a for a in pelion.service.attempts()
        if a.key == key and a.channel == "callback" and a.fault is None and a.url
        and a.client_cert == "genuine"
    ]  # fmt: skip
    answered = sum(e.answered is not None for e in verifications)
    answered += sum(a.answered is not None for a in batches)
    check.observe(
        f"{len(verifications)} verification and {len(batches)} batch PUT(s) presented the "
        f"chain; {answered} answered"
        + ("; a bare TLS connection presenting it was ended before any request" if refusal else "")
    )
    assert not refusal, refusal
    if not verifications and not batches:
        raise check.not_verified("no PUT presenting the caller's chain reached the SUT")
    if not answered:
        raise check.not_verified(
            "no PUT presenting the chain was answered, yet the SUT kept a TLS connection "
            "presenting it open: the certificate was not what failed"
        )


@requirement("PEL-CB-08")
def test_rejects_a_caller_without_the_certificate(pelion: PelionDriver, check: Check) -> None:
    """One thing varies: the same one-notification PUT (registered headers), presenting
    Device Management's chain (the control: accepted), no client certificate, and a chain of
    the same shape under another root. A rejection is a non-2xx answer or a connection the SUT
    refused; a 2xx is an acceptance."""
    pelion.require("callback", check)
    if not pelion.section.verifies_caller:
        raise check.not_verified(
            "profile not declared: the SUT's [pelion] claims no verifies_caller"
        )
    pelion.ensure_callback(check)
    if plain := pelion.without_tls():
        raise check.not_verified(plain)
    check.expect(
        "2xx with Device Management's chain; non-2xx or a refused connection with no client "
        "certificate, and with a chain from another CA"
    )

    def outcome(exchange: Exchange) -> str:
        if exchange.answered is not None:
            return str(exchange.answered)
        return f"{exchange.outcome} ({(exchange.error or '')[:100]})"

    control = pelion.put_presenting("genuine", one_notification())
    if not control.succeeded:
        raise check.not_verified(
            f"the PUT presenting Device Management's own chain got {outcome(control)}: "
            "nothing to compare with"
        )
    tried = {
        "no client certificate": pelion.put_presenting("none", one_notification()),
        "a chain from another CA": pelion.put_presenting("untrusted", one_notification()),
    }
    check.observe(
        f"own chain {outcome(control)}; "
        + "; ".join(f"{what} {outcome(e)}" for what, e in tried.items())
    )
    accepted = [what for what, exchange in tried.items() if exchange.succeeded]
    assert not accepted, (
        f"accepted ({', '.join(outcome(tried[w]) for w in accepted)}) a notification PUT from a "
        f"caller presenting {' and from one presenting '.join(accepted)}"
    )


@requirement("PEL-OBS-01")
def test_a_resent_batch_is_processed_once(pelion: PelionDriver, check: Check) -> None:
    """The batch reaches the SUT but its answer is lost, so it is sent again with the same
    items (the same ``uid``s): the SUT processes each item once. Judged by ``uid``: a SUT that
    registered its callback without ``include_uid`` gets items with none, so a resent one
    cannot be told from a new one with the same value (not-verified). The reports are awaited
    in any order, and a second one a little longer (:data:`DUPLICATE_SETTLE_S`)."""
    pelion.ensure_callback(check)
    check.expect("each item of a resent batch reported once")
    serialization = pelion.service.serialization(pelion.key("callback"))
    if serialization is None or not serialization.cfg.include_uid:
        raise check.not_verified(
            "the SUT registered its callback without serialization cfg include_uid, so its "
            "items carry no uid: a resent batch cannot be told from new events with the same "
            "values, and PEL-OBS-01 is judged by uid"
        )
    pelion.perform(FailDeliveries(kind=FaultKind.DROP_BEFORE_ACK))
    queued = pelion.notifications(
        "callback", [b"once-" + secrets.token_hex(3).encode() for _ in range(3)]
    )
    attempts = pelion.deliver("callback", queued)
    pelion.reproduce(check, attempts[:1])  # the batch: PUT it twice, the items are reported twice
    if len([a for a in attempts if a.items]) < 2:
        raise check.not_verified(f"the batch was not resent: {describe(attempts)}")
    if unverifiable := pelion.fence("callback", awaiting=queued):
        raise check.not_verified(unverifiable)
    counts = pelion.count_reports(queued, DUPLICATE_SETTLE_S, more_than=1)
    check.observe(
        "each reported once"
        if set(counts.values()) == {1}
        else f"reported {sorted(counts.values())} times"
    )
    problem = processed_once(counts, [q.item.uid for q in queued])
    assert problem is None, problem


@requirement("PEL-CB-03")
@pytest.mark.run_last(1)
def test_answers_every_batch_within_the_timeout(pelion: PelionDriver, check: Check) -> None:
    """Over the ordinary delivery of the run (before the malformed-input checks): every batch
    PUT got a 2xx within the 20 s delivery timeout. Batches our faults spoiled, and batches
    probing the SUT's tolerance of a message shape (judged by PEL-MSG-01/02), do not count."""
    pelion.require("callback", check)
    check.expect(f"2xx within {REQUEST_TIMEOUT_S:g} s to every batch")
    attempts = [
        a for a in pelion.service.attempts()
        if a.channel == "callback" and a.key == pelion.sim.callback_key and a.fault is None
        and a.items and not (pelion.probes & set(a.uids or ()))
    ]  # fmt: skip
    if not attempts:
        refusal = pelion.caller_refused()
        raise check.not_verified(refusal or "no batch was sent to the SUT in this run")
    bad = [a for a in attempts if a.answered is None or not 200 <= a.answered < 300]
    slowest = max(a.elapsed_real_s for a in attempts)
    check.observe(
        f"{len(attempts)} batches; {len(bad)} not answered 2xx in time; slowest {slowest:.2f} s"
    )
    if bad:
        pelion.reproduce(check, bad[:3])
        first = bad[0]
        what = first.answered if first.answered is not None else first.error
        raise AssertionError(
            f"{len(bad)} batch(es) not answered 2xx within {REQUEST_TIMEOUT_S:g} s; first: {first.items} item(s), {what}"
        )
