"""The legacy long-poll channel over real HTTPS on 127.0.0.1 (SIM-PEL-PULL), the way the
official SDKs still consume notifications."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from simulators.pelion.delivery import PULL_IDLE_LIMIT_S
from simulators.pki import PKI
from tests.sim.pelion_support import AUTH, KEY, call, client, notification, receiver, running

PULL = "/v2/notification/pull"


@pytest.mark.sim("SIM-PEL-PULL")
def test_poll_answers_200_with_a_batch_or_204_when_it_ends_empty(pki: PKI) -> None:
    """SIM-PEL-PULL: the first GET creates the channel and, with nothing queued, ends with
    204 after the hold; queued items come back as one NotificationMessage (200)."""

    async def scenario() -> None:
        async with running(pki, pull_timeout_s=0.2) as sim, client(pki) as session:
            status, text, _ = await call(session, sim, "GET", PULL)
            assert (status, text) == (204, "")
            status, _, data = await call(session, sim, "GET", "/v2/notification/channel")
            assert data == {"delivery_mechanism": "LONG_POLLING"}
            queued = await sim.inject("notifications", [notification(1), notification(2)])
            status, _, data = await call(session, sim, "GET", PULL)
            assert status == 200
            assert [n["payload"] for n in data["notifications"]] == ["MQ==", "Mg=="]
            [attempt] = sim.attempts()
            assert (attempt.channel, attempt.status, attempt.uids) == (
                "pull", 200, tuple(q.item.uid for q in queued)
            )  # fmt: skip
            status, _, _ = await call(session, sim, "GET", PULL + "?noWait=true")
            assert status == 204  # nothing left, and no wait

    asyncio.run(scenario())


@pytest.mark.sim("SIM-PEL-PULL")
def test_a_waiting_poll_is_answered_when_items_arrive_and_a_second_gets_409(pki: PKI) -> None:
    """SIM-PEL-PULL: a poll waits for items; a second concurrent poll of the key gets 409."""

    async def scenario() -> None:
        async with running(pki, pull_timeout_s=5.0) as sim, client(pki) as session:
            waiting = asyncio.ensure_future(call(session, sim, "GET", PULL))
            assert await sim.drive(lambda: bool(sim.long_polls.waiting), timeout_real_s=5)
            status, _, data = await call(session, sim, "GET", PULL)
            assert status == 409 and data["code"] == 409
            await sim.inject("notifications", [notification(3)])
            status, _, data = await asyncio.wait_for(waiting, 5)
            assert status == 200 and data["notifications"][0]["payload"] == "Mw=="

    asyncio.run(scenario())


@pytest.mark.sim("SIM-PEL-PULL")
def test_a_poll_whose_client_left_ends_at_once(pki: PKI) -> None:
    """SIM-PEL-PULL: a client that gives up its poll does not hold the key's poll slot (the
    next poll is served, not 409)."""

    async def scenario() -> None:
        async with running(pki, pull_timeout_s=30.0) as sim, client(pki) as session:
            with pytest.raises(TimeoutError):
                await call(session, sim, "GET", PULL, timeout=aiohttp.ClientTimeout(total=0.3))
            assert await sim.drive(lambda: not sim.long_polls.waiting, timeout_real_s=5)
            await sim.inject("notifications", [notification(4)])
            status, _, data = await call(session, sim, "GET", PULL)
            assert status == 200 and data["notifications"][0]["payload"] == "NA=="

    asyncio.run(scenario())


@pytest.mark.sim("SIM-PEL-PULL")
def test_delete_answers_200_removed_or_already_deleted(pki: PKI) -> None:
    """SIM-PEL-PULL: DELETE answers 200 ``REMOVED``, or ``ALREADY_DELETED`` when there is no
    pull channel (none, or another type: the Python SDK deletes it before registering a
    callback and gives up on a 404); a poll waiting meanwhile gets 410."""

    async def scenario() -> None:
        async with (
            running(pki, pull_timeout_s=5.0) as sim,
            client(pki) as session,
            receiver(pki) as rec,
        ):
            assert (await call(session, sim, "DELETE", PULL))[:2] == (200, "ALREADY_DELETED")
            waiting = asyncio.ensure_future(call(session, sim, "GET", PULL))
            assert await sim.drive(lambda: bool(sim.long_polls.waiting), timeout_real_s=5)
            assert (await call(session, sim, "DELETE", PULL))[:2] == (200, "REMOVED")
            assert (await asyncio.wait_for(waiting, 5))[:2] == (410, "CHANNEL_DELETED")
            assert (await call(session, sim, "DELETE", PULL))[:2] == (200, "ALREADY_DELETED")
            status, _, _ = await call(
                session, sim, "PUT", "/v2/notification/callback", json={"url": rec.url}
            )
            assert status == 204
            assert (await call(session, sim, "DELETE", PULL))[:2] == (200, "ALREADY_DELETED")
            status, _, data = await call(session, sim, "GET", PULL)
            assert status == 400 and "other type of channel" in data["message"].lower()
            assert sim.registry.mechanism(KEY) == "CALLBACK"

    asyncio.run(scenario())


@pytest.mark.sim("SIM-PEL-PULL")
def test_a_poll_carries_at_most_10000_items(pki: PKI) -> None:
    """SIM-PEL-PULL: "The same logic applies to the pull interface": a batch of up to 10,000
    items per answer, the rest at the next poll."""

    async def scenario() -> None:
        async with running(pki, pull_timeout_s=0.2) as sim, client(pki) as session:
            assert (await call(session, sim, "GET", PULL))[0] == 204
            await sim.inject("notifications", [notification(i) for i in range(10_001)])
            sizes = []
            for _ in range(2):
                _, _, data = await call(session, sim, "GET", PULL)
                sizes.append(len(data["notifications"]))
            assert sizes == [10_000, 1]

    asyncio.run(scenario())


@pytest.mark.sim("SIM-PEL-PULL")
def test_an_unpolled_channel_expires_after_10_minutes(pki: PKI) -> None:
    """SIM-PEL-PULL: the pull channel "expires if not polled for 10 minutes" (simulated)."""

    async def scenario() -> None:
        async with running(pki, pull_timeout_s=0.1) as sim, client(pki) as session:
            assert (await call(session, sim, "GET", PULL, headers=AUTH))[0] == 204
            sim.clock.advance(PULL_IDLE_LIMIT_S)
            assert await sim.drive(lambda: sim.registry.mechanism(KEY) is None, timeout_real_s=5)
            assert sim.removed_channels()[-1].reason == "unpolled-10min"

    asyncio.run(scenario())
