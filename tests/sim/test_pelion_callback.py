"""The callback channel over real HTTPS on 127.0.0.1 (SIM-PEL-VERIFY, SIM-PEL-BATCH,
SIM-PEL-BACKOFF, SIM-PEL-REMOVE, SIM-PEL-QUEUE): an aiohttp receiver, the simulated API."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import pytest

from simulators.evidence import Recorder
from simulators.faults import FaultKind
from simulators.pelion.channels import ChannelOptions
from simulators.pelion.delivery import FAILURE_LIMIT_S, MAX_DELAY_S, REQUEST_TIMEOUT_S, BackOff
from simulators.pelion.operations import FailDeliveries
from simulators.pelion.simulator import PelionConfig, PelionSimulator
from simulators.pki import PKI
from tests.sim.pelion_support import (
    EP,
    KEY,
    Put,
    call,
    client,
    notification,
    receiver,
    running,
    target,
)


async def register(session: Any, sim: PelionSimulator, body: dict[str, Any]) -> tuple[int, Any]:
    status, _, data = await call(session, sim, "PUT", "/v2/notification/callback", json=body)
    return status, data


@pytest.mark.sim("SIM-PEL-VERIFY")
def test_verification_put_carries_the_registered_headers(pki: PKI) -> None:
    """SIM-PEL-VERIFY: registering sends PUT ``{}`` with the registered headers; 2xx → 204 and
    the channel exists (GET answers the URL and headers)."""

    async def scenario() -> None:
        async with running(pki) as sim, client(pki) as session, receiver(pki) as rec:
            status, _ = await register(
                session, sim, {"url": rec.url, "headers": {"x-callback-secret": "cb-secret"}}
            )
            assert status == 204
            assert len(rec.puts) == 1 and rec.puts[0].body == b"{}"
            assert rec.puts[0].headers["x-callback-secret"] == "cb-secret"
            assert rec.puts[0].headers["Content-Type"] == "application/json"
            status, _, data = await call(session, sim, "GET", "/v2/notification/callback")
            assert (status, data) == (
                200,
                {"url": rec.url, "headers": {"x-callback-secret": "cb-secret"}},
            )
            status, _, data = await call(session, sim, "GET", "/v2/notification/channel")
            assert (status, data) == (200, {"delivery_mechanism": "CALLBACK"})
            [verification] = sim.verifications()
            assert verification.accepted and verification.header_names == ("x-callback-secret",)

    asyncio.run(scenario())


@pytest.mark.sim("SIM-PEL-VERIFY")
@pytest.mark.parametrize("answer", [500, 404, 301, "unreachable"])
def test_a_failed_verification_refuses_the_registration(pki: PKI, answer: int | str) -> None:
    """SIM-PEL-VERIFY: a non-2xx answer (or none) to the verification PUT is a 400 and no
    channel is made."""

    async def scenario() -> None:
        async with (
            running(pki) as sim,
            client(pki) as session,
            receiver(pki, lambda n, put: answer if isinstance(answer, int) else 204) as rec,
        ):
            url = "https://127.0.0.1:1/cb" if answer == "unreachable" else rec.url
            status, data = await register(session, sim, {"url": url})
            assert status == 400, data
            assert data["type"] == "validation_error" and "not accessible" in data["message"]
            status, _, _ = await call(session, sim, "GET", "/v2/notification/callback")
            assert status == 404
            assert sim.channel_state() is None

    asyncio.run(scenario())


@pytest.mark.sim("SIM-PEL-VERIFY")
def test_registration_limits_and_other_channel_types(pki: PKI) -> None:
    """SIM-PEL-VERIFY: URL plus headers at most 400 characters, serialization ranges, 415, and
    400 when another channel type exists; none of them sends a verification PUT."""

    async def scenario() -> None:
        async with running(pki) as sim, client(pki) as session, receiver(pki) as rec:
            long_header = {"x-pad": "v" * (400 - len(rec.url) - len("x-pad") + 1)}
            bodies: list[dict[str, Any]] = [
                {"url": rec.url, "headers": long_header},
                {"url": rec.url, "serialization": {"max_chunk_size": 99}},
                {"url": rec.url, "serialization": {"max_chunk_size": 10_001}},
                {"url": "ftp://127.0.0.1/cb"},
                {"headers": {}},
                {"url": rec.url, "headers": {"bad header": "x"}},
            ]
            for body in bodies:
                status, data = await register(session, sim, body)
                assert status == 400 and data["code"] == 400 and data["request_id"], (body, data)
            status, _, data = await call(
                session, sim, "PUT", "/v2/notification/callback", data=b"url=x",
                headers={"Authorization": f"Bearer {KEY}", "Content-Type": "application/x-www-form-urlencoded"},
            )  # fmt: skip
            assert status == 415, data
            exactly = {"x-pad": "v" * (400 - len(rec.url) - len("x-pad"))}
            assert (await register(session, sim, {"url": rec.url, "headers": exactly}))[0] == 204
            assert len(rec.puts) == 1  # only the valid one was verified
            assert (await call(session, sim, "PUT", "/v2/notification/websocket"))[0] == 400
            assert (await call(session, sim, "GET", "/v2/notification/pull"))[0] == 400
            assert (await call(session, sim, "DELETE", "/v2/notification/callback"))[0] == 204
            assert (await call(session, sim, "DELETE", "/v2/notification/callback"))[0] == 404
            assert (await call(session, sim, "PUT", "/v2/notification/websocket"))[0] == 201
            status, data = await register(session, sim, {"url": rec.url})
            assert status == 400 and "other type of channel" in data["message"]
            assert len(rec.puts) == 1

    asyncio.run(scenario())


@pytest.mark.sim("SIM-PEL-BATCH")
def test_serialization_config_as_strings_and_values(pki: PKI) -> None:
    """SIM-PEL-BATCH: the vendor's own example sends ``"100"`` and ``"true"``; both forms are
    read, and the v2 flags shape the items (uid, timestamp, original-ep, objects)."""

    async def scenario() -> None:
        async with (
            running(pki, epoch_s=1_600_000_000.0) as sim,
            client(pki) as session,
            receiver(pki) as rec,
        ):
            cfg = {"deregistrations_as_object": "true", "include_uid": True,
                   "include_timestamp": "true", "include_original_ep": True}  # fmt: skip
            body = {
                "url": rec.url,
                "serialization": {"type": "v2", "max_chunk_size": "100", "cfg": cfg},
            }
            assert (await register(session, sim, body))[0] == 204
            _, _, data = await call(session, sim, "GET", "/v2/notification/callback")
            assert data["serialization"]["max_chunk_size"] == 100
            device = sim.add_device(EP, original_ep="my-sensor-1")
            queued = await sim.register(device.ep)
            queued += await sim.deregister(device.ep)
            assert await sim.drive(timeout_real_s=5)
            items = rec.items()
            assert [kind for kind, _ in items] == ["registrations", "de-registrations"]
            registration, deregistration = items[0][1], items[1][1]
            assert registration["original-ep"] == "my-sensor-1"
            assert registration["uid"] == queued[0].item.uid
            assert registration["timestamp"] >= 1_600_000_000_000
            assert set(deregistration) == {"ep", "uid", "timestamp", "original-ep"}

    asyncio.run(scenario())


@pytest.mark.sim("SIM-PEL-BATCH")
def test_batches_are_at_most_max_chunk_size_and_one_at_a_time(pki: PKI) -> None:
    """SIM-PEL-BATCH: 250 items with ``max_chunk_size`` 100 go as 100 + 100 + 50, in order,
    never two batches at once; a batch answered non-2xx is sent again before the next."""

    async def scenario() -> None:
        answers = {2: 503}  # the second PUT (the first batch) fails once

        async def answer(n: int, put: Put) -> int:
            await asyncio.sleep(0.01)  # the receiver takes its time: a second PUT would overlap
            return answers.get(n, 200)

        async with (
            running(pki, channel=ChannelOptions(backoff=BackOff(first_s=1.0))) as sim,
            client(pki) as session,
            receiver(pki, answer) as rec,
        ):
            body = {
                "url": rec.url,
                "serialization": {"max_chunk_size": 100, "cfg": {"include_uid": True}},
            }
            assert (await register(session, sim, body))[0] == 204
            queued = await sim.inject("notifications", [notification(i) for i in range(250)])
            with sim.clock.autojump():
                assert await sim.drive(timeout_real_s=10)
            sizes = [len(put.json["notifications"]) for put in rec.batches]
            assert sizes == [100, 100, 100, 50]
            assert rec.max_in_flight == 1
            first, again = rec.batches[0].json, rec.batches[1].json
            assert first == again  # the resend carries the same head of the queue
            uids = [item["uid"] for put in rec.batches[1:] for item in put.json["notifications"]]
            assert uids == [q.item.uid for q in queued]
            attempts = sim.attempts()
            assert [(a.batch, a.attempt, a.status) for a in attempts] == [
                (1, 1, 503), (2, 2, 200), (3, 1, 200), (4, 1, 200)
            ]  # fmt: skip
            assert attempts[0].retry_in_sim_s == 1.0 and attempts[1].uids == attempts[0].uids

    asyncio.run(scenario())


@pytest.mark.sim("SIM-PEL-BATCH")
def test_default_batch_is_ten_thousand_items(pki: PKI) -> None:
    """SIM-PEL-BATCH: by default batches carry up to 10,000 items (25,000 → 10,000 ×2 + 5,000)."""

    async def scenario() -> None:
        async with running(pki) as sim, client(pki) as session, receiver(pki) as rec:
            assert (await register(session, sim, {"url": rec.url}))[0] == 204
            await sim.inject("notifications", [notification(i) for i in range(25_000)])
            assert await sim.drive(timeout_real_s=30)
            assert [len(p.json["notifications"]) for p in rec.batches] == [10_000, 10_000, 5_000]

    asyncio.run(scenario())


@pytest.mark.sim("SIM-PEL-BACKOFF")
@pytest.mark.parametrize("first", [2.0, 1.0])
def test_backoff_doubles_to_two_minutes(pki: PKI, first: float) -> None:
    """SIM-PEL-BACKOFF: failed batches are retried after 2, 4, 8 … s (1, 2, 4 … s with the
    later docs' first delay), capped at 120 s, counted from the failure; a 2xx resets it."""

    async def scenario() -> None:
        fails = 10
        async with (
            running(pki, channel=ChannelOptions(backoff=BackOff(first_s=first))) as sim,
            client(pki) as session,
            receiver(pki, lambda n, put: 500 if 2 <= n <= fails + 1 else 204) as rec,
        ):
            assert (await register(session, sim, {"url": rec.url}))[0] == 204
            await sim.inject("notifications", [notification(1)])
            with sim.clock.autojump():
                assert await sim.drive(timeout_real_s=10)
            attempts = sim.attempts()
            assert [a.succeeded for a in attempts] == [False] * fails + [True]
            waits = [a.retry_in_sim_s for a in attempts[:-1]]
            assert waits == [min(first * 2**i, MAX_DELAY_S) for i in range(fails)]
            for before, after in itertools.pairwise(attempts):
                assert before.retry_in_sim_s is not None
                gap = after.started_sim_s - before.started_sim_s - before.elapsed_real_s
                assert gap == pytest.approx(before.retry_in_sim_s, abs=0.05)
            await sim.inject("notifications", [notification(2)])  # a fresh streak after 2xx
            rec.answer = lambda n, put: 500 if n == fails + 3 else 204
            with sim.clock.autojump():
                assert await sim.drive(timeout_real_s=10)
            assert sim.attempts()[-2].retry_in_sim_s == first

    asyncio.run(scenario())


@pytest.mark.sim("SIM-PEL-BACKOFF")
def test_request_timeout_is_twenty_seconds_and_counts_as_a_failure(pki: PKI) -> None:
    """SIM-PEL-BACKOFF: the request timeout is 20 s (real time); an answer that does not come
    in time is a failure and the back-off counts from the end of the timeout."""
    assert PelionConfig(api_key=KEY).request_timeout_s == REQUEST_TIMEOUT_S == 20.0

    async def scenario() -> None:
        release = asyncio.Event()

        async def answer(n: int, put: Put) -> int:
            if n == 2:
                await release.wait()  # the first batch is never answered in time
            return 204

        async with (
            running(pki, request_timeout_s=0.3) as sim,
            client(pki) as session,
            receiver(pki, answer) as rec,
        ):
            assert (await register(session, sim, {"url": rec.url}))[0] == 204
            await sim.inject("notifications", [notification(1)])
            with sim.clock.autojump():
                assert await sim.drive(timeout_real_s=10)
            release.set()
            first, second = sim.attempts()
            assert not first.succeeded and first.status is None and "0.3 s" in (first.error or "")
            assert 0.3 <= first.elapsed_real_s < 2.0
            assert second.succeeded
            assert second.started_sim_s - first.started_sim_s == pytest.approx(
                first.elapsed_real_s + 2.0, abs=0.05
            )

    asyncio.run(scenario())


@pytest.mark.sim("SIM-PEL-BACKOFF")
def test_faults_fail_deliveries_with_a_status_a_timeout_or_unsent(pki: PKI) -> None:
    """SIM-PEL-BACKOFF: armed faults make the next batches fail: sent and counted as 503 or as
    a timeout (the receiver has the batch: it is resent with the same uids), or not sent."""

    async def scenario() -> None:
        async with running(pki) as sim, client(pki) as session, receiver(pki) as rec:
            body = {"url": rec.url, "serialization": {"cfg": {"include_uid": True}}}
            assert (await register(session, sim, body))[0] == 204
            await FailDeliveries(status=503).apply(target(sim))
            await FailDeliveries(kind=FaultKind.TIMEOUT).apply(target(sim))
            await FailDeliveries(kind=FaultKind.UNSENT).apply(target(sim))
            [queued] = await sim.inject("notifications", [notification(1)])
            with sim.clock.autojump():
                assert await sim.drive(timeout_real_s=10)
            attempts = sim.attempts()
            assert [(a.fault, a.status, a.answered, a.succeeded) for a in attempts] == [
                ("status", 503, 204, False),
                ("timeout", None, 204, False),
                ("unsent", 500, None, False),
                (None, 204, 204, True),
            ]
            assert [a.retry_in_sim_s for a in attempts[:3]] == [2.0, 4.0, 8.0]
            received = [put.json["notifications"][0]["uid"] for put in rec.batches]
            assert received == [queued.item.uid] * 3  # the unsent attempt never arrived

    asyncio.run(scenario())


@pytest.mark.sim("SIM-PEL-BACKOFF")
def test_faults_drop_and_stall(pki: PKI) -> None:
    """SIM-PEL-BACKOFF: ``drop`` sends the whole batch and aborts before the answer; ``stall``
    sends half of it and waits out the request timeout. Both are failures, then retried."""

    async def scenario() -> None:
        async with (
            running(pki, request_timeout_s=0.3) as sim,
            client(pki) as session,
            receiver(pki) as rec,
        ):
            assert (await register(session, sim, {"url": rec.url}))[0] == 204
            await FailDeliveries(kind=FaultKind.DROP_BEFORE_ACK).apply(target(sim))
            await FailDeliveries(kind=FaultKind.STALL).apply(target(sim))
            await sim.inject("notifications", [notification(1)])
            with sim.clock.autojump():
                assert await sim.drive(timeout_real_s=10)
            attempts = sim.attempts()
            assert [(a.fault, a.succeeded) for a in attempts] == [
                (FaultKind.DROP_BEFORE_ACK, False), ("stall", False), (None, True)
            ]  # fmt: skip
            assert attempts[1].elapsed_real_s >= 0.3
            assert len(rec.batches) == 2  # the dropped one arrived; the stalled one never did

    asyncio.run(scenario())


@pytest.mark.sim("SIM-PEL-REMOVE")
def test_callback_channel_removed_after_24_hours_of_failures(pki: PKI) -> None:
    """SIM-PEL-REMOVE: a callback whose deliveries keep failing is removed 24 h (simulated)
    after the first failure, with what is queued then; the whole day runs in seconds."""

    async def scenario() -> None:
        async with (
            running(pki) as sim,
            client(pki) as session,
            receiver(pki, lambda n, put: 204 if n == 1 else 500) as rec,
        ):
            assert (await register(session, sim, {"url": rec.url}))[0] == 204
            await sim.inject("notifications", [notification(0)])
            start = sim.clock.now()
            with sim.clock.autojump():
                assert await sim.drive(
                    lambda: sim.clock.now() - start > 23.5 * 3600, timeout_real_s=60
                )
                await sim.inject("notifications", [notification(i) for i in range(1, 3)])
                removed = await sim.drive(
                    lambda: sim.registry.mechanism(KEY) is None, timeout_real_s=60
                )
            assert removed
            [gone] = sim.removed_channels()
            assert gone.reason == "failing-24h" and gone.dropped_items == 2
            attempts = sim.attempts()
            first_failure = attempts[0].started_sim_s + attempts[0].elapsed_real_s
            assert gone.at - first_failure == pytest.approx(FAILURE_LIMIT_S, abs=1.0)
            assert len(attempts) > 700 and all(a.retry_in_sim_s == 120.0 for a in attempts[10:-1])
            assert not any(a.succeeded for a in attempts)
            assert (await call(session, sim, "GET", "/v2/notification/callback"))[0] == 404
            assert (await call(session, sim, "GET", "/v2/notification/channel"))[0] == 404

    asyncio.run(scenario())


@pytest.mark.sim("SIM-PEL-QUEUE")
def test_queue_keeps_50000_items_and_24_hours(pki: PKI) -> None:
    """SIM-PEL-QUEUE: at most 50,000 items queued (the oldest dropped first), items older than
    24 h dropped; both counted, and what is delivered afterwards is what is left."""

    async def scenario() -> None:
        # The failure streak below would remove the channel at the same 24 h: keep it longer,
        # to see the item lifetime alone.
        options = ChannelOptions(failure_limit_s=7 * 24 * 3600.0)
        async with (
            running(pki, channel=options) as sim,
            client(pki) as session,
            receiver(pki) as rec,
        ):
            assert (await register(session, sim, {"url": rec.url}))[0] == 204
            await FailDeliveries(kind=FaultKind.UNSENT).apply(
                target(sim)
            )  # hold the queue back while it fills
            await sim.inject("notifications", [notification(0)])
            await sim.inject("notifications", [notification(i) for i in range(1, 50_011)])
            state = sim.channel_state()
            assert state is not None
            stats = state.queue.to_dict()
            assert (stats["queued"], stats["dropped_overflow"]) == (50_000, 11)
            with sim.clock.autojump():
                assert await sim.drive(timeout_real_s=30)
            payloads = [item["payload"] for _, item in rec.items()]
            assert len(payloads) == 50_000 and payloads[0] == notification(11)["payload"]
            await FailDeliveries(kind=FaultKind.UNSENT).apply(target(sim))
            await sim.inject("notifications", [notification(7)])
            sim.clock.advance(24 * 3600)  # the retry is due at +2 s, the item expires at +24 h
            assert await sim.drive(timeout_real_s=10)
            after = sim.channel_state()
            assert after is not None and after.queue.to_dict()["dropped_expired"] == 1
            assert len(rec.items()) == 50_000

    asyncio.run(scenario())


def test_batches_carry_the_evidence_of_the_check_that_queued_them(pki: PKI) -> None:
    """Evidence: a batch the background scheduler sends is recorded under the cause of its
    items (remembered by uid when they were queued)."""

    async def scenario() -> Recorder:
        async with running(pki) as sim, client(pki) as session, receiver(pki) as rec:
            assert (await register(session, sim, {"url": rec.url}))[0] == 204
            await FailDeliveries(kind=FaultKind.UNSENT).apply(target(sim))
            await sim.inject("notifications", [notification(1)])  # fails: backing off 2 s
            assert await sim.drive(lambda: len(sim.attempts()) == 1, timeout_real_s=5)
            with sim.recorder.attributed("tests::check_a"):
                await sim.inject("notifications", [notification(2)])
            sim.clock.advance(2.0)  # the background scheduler sends the retry
            await rec.wait(lambda: len(rec.batches) == 1)
            assert await sim.drive(timeout_real_s=5)
            return sim.recorder

    recorder = asyncio.run(scenario())
    kinds = [event.kind for event in recorder.timeline("tests::check_a").events()]
    assert kinds == ["queued", "callback-put", "callback-answer"]
