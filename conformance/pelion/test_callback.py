"""The SUT as a Pelion callback receiver: registration and verification, answers to every batch
and to a 10,000-item one, the registered secret header, a batch resent after a failed delivery
(PEL-CB-01..06, PEL-OBS-01)."""

from __future__ import annotations

import secrets

import pytest

from conformance.driver import DUPLICATE_SETTLE_S
from conformance.pelion.driver import (
    STARTUP_WAIT_S,
    PelionDriver,
    describe,
    json_bytes,
    new_ep,
)
from conformance.verdicts import Check
from simulators.faults import FaultKind
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
    assert all(c >= 1 for c in counts.values()), (
        f"an acknowledged item was never reported: {counts}"
    )
    assert all(c == 1 for c in counts.values()), "an item was processed more than once"


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
        raise check.not_verified("no batch was sent to the SUT in this run")
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
