"""simulators.pelion.channels: one channel per API key ("Each API key can only have one
callback URL"), 400 for another type, deletion drops the queue, events routed to the key's
channel or to every key's, and removals reported as effects."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import pytest

from simulators.pelion.channels import (
    ChannelConflict,
    ChannelOptions,
    ChannelRegistry,
    ChannelRemoved,
    ItemQueued,
    Undeliverable,
    Wake,
)
from simulators.pelion.delivery import (
    BackOff,
    CallbackState,
    CloseCode,
    CloseSocket,
    PollAnswer,
)
from simulators.pelion.models import (
    DeregistrationData,
    Event,
    NotificationData,
    Outgoing,
    RegisterWebsocketChannel,
    SerializationConfig,
    Webhook,
)

EP = "0172b9ba5409000000000001001117f5"
DAY = 24 * 3600.0
A, B = "ak_application_a", "ak_application_b"


def obs(n: int) -> Event:
    data = NotificationData(ep=EP, path="/3200/0/5501", ct="text/plain", payload="", max_age=n)
    return Event.of("notifications", data)


def hook(url: str = "https://app.example/cb", **kwargs: object) -> Webhook:
    return Webhook.model_validate({"url": url, **kwargs})


def kinds(effects: Sequence[object]) -> list[str]:
    return [type(e).__name__ for e in effects]


def test_callback_registration_and_metadata() -> None:
    r = ChannelRegistry()
    assert r.metadata(A, 0.0) is None  # 404
    assert r.register_callback(A, hook(headers={"authorization": "t"}), 0.0) == []
    metadata = r.metadata(A, 0.0)
    assert metadata is not None and metadata.delivery_mechanism == "CALLBACK"
    stored = r.webhook(A, 0.0)
    assert stored is not None and stored.headers == {"authorization": "t"}
    assert r.webhook(B, 0.0) is None


def test_same_type_replaces_the_url_and_keeps_the_queue() -> None:
    """ "If you set another callback URL with the same API key, the first URL will be
    overwritten.\""""
    r = ChannelRegistry()
    r.register_callback(A, hook("https://one.example/"), 0.0)
    r.route(A, obs(1), 1.0)
    old = r.callback(A)
    assert old is not None
    in_flight = old.next_batch(1.0)
    assert in_flight is not None
    old.receive_response(in_flight, 500, 2.0)  # backing off on the old URL
    effects = r.register_callback(A, hook("https://two.example/"), 3.0)
    assert effects == [Wake(A)]  # the new URL has items waiting
    new = r.callback(A)
    assert new is not None and new is not old
    assert old.state is CallbackState.DELETED
    stored = r.webhook(A, 3.0)
    assert stored is not None and stored.url == "https://two.example/"
    batch = new.next_batch(3.0)  # no back-off carried over
    assert batch is not None and batch.attempt == 1 and len(batch) == 1


@pytest.mark.parametrize("existing", ["callback", "websocket", "pull"])
def test_another_type_is_a_400_conflict(existing: str) -> None:
    r = ChannelRegistry()
    if existing == "callback":
        r.register_callback(A, hook(), 0.0)
    elif existing == "websocket":
        r.register_websocket(A, None, 0.0)
    else:
        r.poll(A, "g1", 0.0)
    attempts: dict[str, Callable[[], object]] = {
        "callback": lambda: r.register_callback(A, hook(), 1.0),
        "websocket": lambda: r.register_websocket(A, None, 1.0),
        "pull": lambda: r.poll(A, "g2", 1.0),
    }
    for kind, attempt in attempts.items():
        if kind == existing:
            continue
        with pytest.raises(ChannelConflict, match="other type of channel already exists") as info:
            attempt()
        assert info.value.status == 400
    assert r.register_websocket(B, None, 1.0)[0]  # another key is not affected


def test_websocket_put_201_then_200_updates_serialization() -> None:
    r = ChannelRegistry()
    created, _ = r.register_websocket(A, None, 0.0)
    body = RegisterWebsocketChannel(serialization=SerializationConfig(max_chunk_size=500))
    updated, _ = r.register_websocket(A, body, 1.0)
    assert (created, updated) == (True, False)
    status = r.websocket_status(A, 1.0)
    assert status is not None and status.serialization is not None
    assert (status.status, status.serialization.max_chunk_size) == ("disconnected", 500)
    assert r.websocket_status(B, 1.0) is None


def test_delete_drops_the_queue_and_answers_404_the_second_time() -> None:
    r = ChannelRegistry()
    r.register_callback(A, hook(), 0.0)
    for n in range(3):
        r.route(A, obs(n), 1.0)
    found, effects = r.delete_callback(A, 2.0)
    assert found and effects == [ChannelRemoved(A, "CALLBACK", "deleted", 2.0, 3)]
    assert r.delete_callback(A, 3.0) == (False, [])
    assert r.removed == effects
    assert kinds(r.route(A, obs(9), 4.0)) == ["Undeliverable"]


def test_delete_of_the_wrong_type_is_404_and_keeps_the_channel() -> None:
    r = ChannelRegistry()
    r.register_callback(A, hook(), 0.0)
    assert r.delete_websocket(A, 1.0) == (False, [])
    assert r.mechanism(A) == "CALLBACK"


def test_websocket_connect_without_a_channel_closes_1011() -> None:
    """1011: "No channel has been registered for this API key with a prior PUT when
    connecting.\""""
    r = ChannelRegistry()
    (close,) = r.connect_websocket(A, "s1", 0.0)
    assert isinstance(close, CloseSocket)
    assert (close.socket, close.code) == ("s1", CloseCode.UNEXPECTED_CONDITION)
    r.register_callback(B, hook(), 0.0)
    (close,) = r.connect_websocket(B, "s2", 0.0)  # a callback channel is not a WebSocket one
    assert isinstance(close, CloseSocket) and close.code == 1011


def test_events_are_stored_until_a_socket_connects_and_a_second_replaces_it() -> None:
    r = ChannelRegistry()
    r.register_websocket(A, None, 0.0)
    effects = r.route(A, obs(1), 1.0)
    assert kinds(effects) == ["ItemQueued"]
    assert r.connect_websocket(A, "s1", 2.0) == [Wake(A)]
    core = r.websocket(A)
    assert core is not None and core.status == "connected"
    batch = core.next_batch(2.0)
    assert batch is not None and len(batch) == 1
    core.batch_sent(batch, 2.0)
    (close,) = r.connect_websocket(A, "s2", 3.0)
    assert close == CloseSocket("s1", CloseCode.GOING_AWAY, close.reason)  # type: ignore[union-attr]


def test_delete_websocket_closes_the_socket_with_1001() -> None:
    r = ChannelRegistry()
    r.register_websocket(A, None, 0.0)
    r.connect_websocket(A, "s1", 0.0)
    found, effects = r.delete_websocket(A, 1.0)
    assert found
    close, removed = effects
    assert isinstance(close, CloseSocket) and close.code == CloseCode.GOING_AWAY
    assert isinstance(removed, ChannelRemoved) and removed.reason == "deleted"


def test_delete_close_code_option() -> None:
    r = ChannelRegistry(ChannelOptions(websocket_delete_close_code=CloseCode.NORMAL))
    r.register_websocket(A, None, 0.0)
    r.connect_websocket(A, "s1", 0.0)
    _, effects = r.delete_websocket(A, 1.0)
    assert isinstance(effects[0], CloseSocket) and effects[0].code == CloseCode.NORMAL


def test_client_close_removes_the_websocket_channel() -> None:
    r = ChannelRegistry()
    r.register_websocket(A, None, 0.0)
    r.connect_websocket(A, "s1", 0.0)
    r.route(A, obs(1), 1.0)
    effects = r.socket_closed(A, "s1", 2.0, by_client=True)
    assert effects == [ChannelRemoved(A, "WEB_SOCKET", "client-close", 2.0, 1)]
    assert r.metadata(A, 2.0) is None


def test_lost_socket_keeps_the_channel_for_24_h() -> None:
    r = ChannelRegistry()
    r.register_websocket(A, None, 0.0)
    r.connect_websocket(A, "s1", 0.0)
    assert r.socket_closed(A, "s1", 10.0, by_client=False) == []
    r.route(A, obs(1), 20.0)
    assert r.handle_timeout(10.0 + DAY - 1) == []
    assert r.next_deadline() == 10.0 + DAY
    (removed,) = r.handle_timeout(10.0 + DAY)
    assert removed == ChannelRemoved(A, "WEB_SOCKET", "unbound-24h", 10.0 + DAY, 1)


def test_idle_socket_is_closed_by_the_registry_timers() -> None:
    r = ChannelRegistry()
    r.register_websocket(A, None, 0.0)
    r.connect_websocket(A, "s1", 0.0)
    (close,) = r.handle_timeout(DAY)
    assert isinstance(close, CloseSocket) and close.socket == "s1"
    assert r.mechanism(A) == "WEB_SOCKET"


def test_pull_channel_created_by_the_first_get() -> None:
    r = ChannelRegistry()
    assert r.poll(A, "g1", 0.0) == []  # waiting
    metadata = r.metadata(A, 0.0)
    assert metadata is not None and metadata.delivery_mechanism == "LONG_POLLING"
    assert r.poll(A, "g2", 0.0) == [PollAnswer("g2", 409)]
    effects = r.route(A, obs(1), 1.0)
    assert kinds(effects) == ["ItemQueued", "PollAnswer"]
    answer = effects[1]
    assert isinstance(answer, PollAnswer) and answer.poll == "g1" and answer.status == 200
    pull = r.pull(A)
    assert pull is not None and answer.batch is not None
    pull.batch_sent(answer.batch, 1.0)
    r.poll(A, "g3", 2.0)
    assert r.poll_timed_out(A, "g3", 40.0) == [PollAnswer("g3", 204)]
    (removed,) = r.handle_timeout(40.0 + 600.0)
    assert isinstance(removed, ChannelRemoved) and removed.reason == "unpolled-10min"


def test_delete_pull_is_always_200() -> None:
    """The Python SDK sends DELETE /v2/notification/pull before registering a webhook and
    gives up silently on a 404."""
    r = ChannelRegistry()
    assert r.delete_pull(A, 0.0) == ("ALREADY_DELETED", [])
    r.register_callback(B, hook(), 0.0)
    assert r.delete_pull(B, 0.0) == ("ALREADY_DELETED", [])
    assert r.mechanism(B) == "CALLBACK"  # the other type is untouched
    r.poll(A, "g1", 1.0)
    status, effects = r.delete_pull(A, 2.0)
    assert status == "REMOVED"
    assert effects == [PollAnswer("g1", 410), ChannelRemoved(A, "LONG_POLLING", "deleted", 2.0, 0)]


def test_events_for_a_key_without_channel_are_counted_as_undeliverable() -> None:
    r = ChannelRegistry()
    event = obs(1)
    assert r.route(A, event, 0.0) == [Undeliverable(A, event)]
    assert r.undeliverable[A] == 1


def test_broadcast_reaches_every_key_with_its_own_uid() -> None:
    """Registration events go to every key's channel ("on any device in the account")."""
    r = ChannelRegistry()
    r.register_callback(A, hook(), 0.0)
    r.register_websocket(B, None, 0.0)
    event = Event.of("de-registrations", DeregistrationData(ep=EP))
    effects = r.dispatch([Outgoing(event), Outgoing(obs(1), A)], 1.0)
    queued = [e for e in effects if isinstance(e, ItemQueued)]
    assert [(e.key, e.item.event.kind) for e in queued] == [
        (A, "de-registrations"),
        (B, "de-registrations"),
        (A, "notifications"),
    ]
    assert queued[0].item.uid != queued[1].item.uid
    stats = r.queue_stats(A)
    assert stats is not None and stats.queued == 2
    assert r.queue_stats("nobody") is None


def test_failing_callback_is_removed_with_its_queue_after_24_h() -> None:
    r = ChannelRegistry(ChannelOptions(backoff=BackOff(first_s=1.0)))
    r.register_callback(A, hook(), 0.0)
    r.route(A, obs(1), 0.0)
    core = r.callback(A)
    assert core is not None
    batch = core.next_batch(0.0)
    assert batch is not None
    core.receive_failure(batch, 20.0)
    assert core.retry_at == 21.0  # the 1 s option
    assert r.next_deadline() == 21.0
    r.route(A, obs(2), 100.0)
    (removed,) = r.handle_timeout(20.0 + DAY)
    # obs 1 (queued at 0) expired at 24 h; obs 2 is dropped with the channel
    assert removed == ChannelRemoved(A, "CALLBACK", "failing-24h", 20.0 + DAY, 1)
    assert r.callback(A) is None and r.next_deadline() is None


def test_a_removed_channel_is_reaped_before_routing() -> None:
    r = ChannelRegistry()
    r.register_websocket(A, None, 0.0)
    effects = r.route(A, obs(1), DAY + 1)  # no socket for 24 h
    assert kinds(effects) == ["ChannelRemoved", "Undeliverable"]


def test_options_reach_the_queues() -> None:
    r = ChannelRegistry(ChannelOptions(max_items=2))
    r.register_callback(A, hook(), 0.0)
    for n in range(3):
        r.route(A, obs(n), 0.0)
    stats = r.queue_stats(A)
    assert stats is not None and stats.queued == 2 and stats.to_dict()["dropped_overflow"] == 1


def test_effects_of_a_lookup_are_returned_by_the_next_call() -> None:
    """A GET applies the timers (a channel removed by now is a 404) without losing what the
    adapter must do: the idle socket's close comes with the next call returning effects."""
    r = ChannelRegistry()
    r.register_websocket(A, None, 0.0)
    r.connect_websocket(A, "s1", 0.0)
    status = r.websocket_status(A, DAY)  # the server closed the idle socket at 24 h
    assert status is not None and status.status == "disconnected"
    (close,) = r.handle_timeout(DAY)
    assert isinstance(close, CloseSocket) and close.socket == "s1"
    assert r.metadata(A, 2 * DAY) is None  # 24 h without a socket: removed, 404
    (removed,) = r.route(B, obs(1), 2 * DAY)[:1]
    assert isinstance(removed, ChannelRemoved) and removed.reason == "unbound-24h"
