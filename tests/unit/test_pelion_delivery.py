"""simulators.pelion.delivery: the callback, WebSocket and long-poll channel cores, in the vendor
doc's terms (one batch in flight, "progressive back off of 2 s, 4 s, 8 s, 16 s… up to 2
minutes", removal after 24 h of failures, WebSocket status and close codes, pull 409/204)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from simulators.pelion.delivery import (
    CALLBACK_TRANSITIONS,
    PULL_TRANSITIONS,
    REQUEST_TIMEOUT_S,
    WEBSOCKET_TRANSITIONS,
    BackOff,
    Batch,
    CallbackDelivery,
    CallbackState,
    CloseCode,
    CloseSocket,
    PollAnswer,
    PullDelivery,
    PullState,
    WebSocketDelivery,
    WebSocketState,
)
from simulators.pelion.delivery_terms import move
from simulators.pelion.models import Event, NotificationData, SerializationConfig
from simulators.pelion.queue import NotificationQueue

EP = "0172b9ba5409000000000001001117f5"
DAY = 24 * 3600.0


def obs(n: int) -> Event:
    data = NotificationData(ep=EP, path="/3200/0/5501", ct="text/plain", payload="", max_age=n)
    return Event.of("notifications", data)


def fill(q: NotificationQueue, n: int, now: float, start: int = 1) -> None:
    for i in range(start, start + n):
        q.append(obs(i), now)


def values(batch: Batch | None) -> list[int]:
    assert batch is not None
    return [item.event.body["max-age"] for item in batch.items]


def chunk(n: int) -> SerializationConfig:
    return SerializationConfig(max_chunk_size=n)


# --- back-off --------------------------------------------------------------------------------


def test_request_timeout_is_20_s() -> None:
    assert REQUEST_TIMEOUT_S == 20.0


def test_vendor_back_off_2_4_8_16_up_to_2_minutes() -> None:
    delays = [BackOff().delay_s(n) for n in range(1, 10)]
    assert delays == [2, 4, 8, 16, 32, 64, 120, 120, 120]
    assert BackOff().delay_s(10_000) == 120  # no overflow after a day of failures


def test_later_docs_back_off_starts_at_1_s() -> None:
    assert [BackOff(first_s=1.0).delay_s(n) for n in range(1, 9)] == [1, 2, 4, 8, 16, 32, 64, 120]


@pytest.mark.parametrize("first, cap", [(0.0, 120.0), (-1.0, 120.0), (200.0, 120.0)])
def test_back_off_rejects_nonsense(first: float, cap: float) -> None:
    with pytest.raises(ValueError):
        BackOff(first, cap)
    with pytest.raises(ValueError):
        BackOff().delay_s(0)


# --- callback ----------------------------------------------------------------------------------


def callback(max_chunk: int = 10_000, **kwargs: Any) -> CallbackDelivery:
    return CallbackDelivery(NotificationQueue(), config=chunk(max_chunk), **kwargs)


def test_idle_channel_sends_as_soon_as_items_are_queued() -> None:
    d = callback()
    assert d.next_batch(0.0) is None
    assert d.next_deadline() is None
    fill(d.queue, 3, now=5.0)
    assert d.next_deadline() == 5.0  # due at once
    batch = d.next_batch(5.0)
    assert values(batch) == [1, 2, 3]
    assert (d.state, d.in_flight, batch.attempt if batch else 0) == (
        CallbackState.SENDING,
        batch,
        1,
    )


def test_batches_are_at_most_max_chunk_size() -> None:
    d = callback(max_chunk=100)
    fill(d.queue, 250, now=0.0)
    sizes = []
    while (batch := d.next_batch(1.0)) is not None:
        sizes.append(len(batch))
        d.receive_response(batch, 200, 1.0)
    assert sizes == [100, 100, 50]
    assert d.items_delivered == 250 and len(d.queue) == 0


def test_one_batch_in_flight_next_only_after_200() -> None:
    """ "When the web application responds with 200 OK to the current notification batch,
    Device Management sends the next batch.\""""
    d = callback(max_chunk=100)
    fill(d.queue, 150, now=0.0)
    first = d.next_batch(0.0)
    assert first is not None
    fill(d.queue, 10, now=1.0, start=151)
    assert d.next_batch(2.0) is None  # still in flight
    assert d.receive_response(first, 200, 3.0) is CallbackState.IDLE
    assert values(d.next_batch(3.0)) == list(range(101, 160 + 1))[:100]


@pytest.mark.parametrize("status", [200, 201, 202, 204, 299])
def test_any_2xx_acknowledges(status: int) -> None:
    d = callback()
    fill(d.queue, 2, now=0.0)
    batch = d.next_batch(0.0)
    assert batch is not None
    assert d.receive_response(batch, status, 1.0) is CallbackState.IDLE
    assert len(d.queue) == 0


@pytest.mark.parametrize("status", [100, 301, 400, 401, 404, 429, 500, 503])
def test_non_2xx_backs_off_2_s_from_the_answer(status: int) -> None:
    d = callback()
    fill(d.queue, 2, now=0.0)
    batch = d.next_batch(0.0)
    assert batch is not None
    assert d.receive_response(batch, status, 0.5) is CallbackState.BACKING_OFF
    assert (d.retry_at, d.failing_since, d.last_failure) == (2.5, 0.5, f"HTTP {status}")
    assert d.next_deadline() == 2.5
    assert d.next_batch(2.4) is None  # never before the back-off
    retry = d.next_batch(2.5)
    assert retry is not None and retry.attempt == 2 and values(retry) == [1, 2]


def test_timeout_back_off_counts_from_the_end_of_the_20_s_timeout() -> None:
    d = callback()
    fill(d.queue, 1, now=100.0)
    batch = d.next_batch(100.0)
    assert batch is not None
    d.receive_failure(batch, 100.0 + REQUEST_TIMEOUT_S, "timeout")
    assert d.retry_at == 122.0 and d.last_failure == "timeout"


def test_resend_is_formed_from_the_changing_queue() -> None:
    d = CallbackDelivery(NotificationQueue(lifetime_s=DAY), config=chunk(100))
    d.queue.append(obs(1), 0.0)
    fill(d.queue, 98, now=60.0, start=2)
    batch = d.next_batch(DAY - 3)
    assert batch is not None and len(batch) == 99
    fill(d.queue, 2, now=DAY - 2, start=101)
    d.receive_failure(batch, DAY - 1, "connection refused")
    retry = d.next_batch(DAY + 1)  # obs 1 expired meanwhile; 101 and 102 joined
    assert values(retry) == [*range(2, 100), 101, 102]


def test_back_off_grows_to_2_minutes_and_a_2xx_resets_it() -> None:
    d = callback()
    fill(d.queue, 1, now=0.0)
    now = 0.0
    delays = []
    for _ in range(9):
        batch = d.next_batch(now)
        assert batch is not None
        d.receive_response(batch, 503, now)
        assert d.retry_at is not None
        delays.append(d.retry_at - now)
        now = d.retry_at
    assert delays == [2, 4, 8, 16, 32, 64, 120, 120, 120]
    batch = d.next_batch(now)
    assert batch is not None and batch.attempt == 10
    d.receive_response(batch, 200, now)
    assert (d.failures, d.failing_since, d.retry_at) == (0, None, None)
    fill(d.queue, 1, now=now)
    batch = d.next_batch(now)
    assert batch is not None and batch.attempt == 1
    d.receive_response(batch, 500, now)
    assert d.retry_at == now + 2  # the streak starts again


def test_channel_is_removed_24_h_after_the_first_failure_of_a_streak() -> None:
    d = callback()
    fill(d.queue, 1, now=0.0)
    batch = d.next_batch(0.0)
    assert batch is not None
    d.receive_failure(batch, 20.0)  # first failure: 24 h clock starts at 20
    assert d.remove_at == 20.0 + DAY
    now = 20.0
    while True:
        assert d.next_deadline() is not None
        retry_at = d.retry_at
        assert retry_at is not None
        if retry_at >= d.remove_at:
            break
        now = retry_at
        fill(d.queue, 1, now=now)  # keep something to send
        batch = d.next_batch(now)
        assert batch is not None
        d.receive_response(batch, 500, now)
    assert d.handle_timeout(20.0 + DAY - 0.001) is CallbackState.BACKING_OFF
    assert d.next_deadline() == 20.0 + DAY
    assert d.handle_timeout(20.0 + DAY) is CallbackState.REMOVED
    assert (d.removed_by, d.removed_at) == ("failing-24h", 20.0 + DAY)
    assert d.next_deadline() is None
    assert d.next_batch(20.0 + DAY + 1000) is None


def test_an_answer_after_the_removal_changes_nothing() -> None:
    d = callback()
    fill(d.queue, 1, now=0.0)
    first = d.next_batch(0.0)
    assert first is not None
    d.receive_response(first, 500, 0.0)
    retry = d.next_batch(DAY - 5)
    assert retry is not None
    assert d.receive_response(retry, 200, DAY + 1) is CallbackState.REMOVED  # too late
    assert d.items_delivered == 0 and d.queue.stats().acknowledged == 0


def test_streak_survives_an_empty_queue() -> None:
    """A retry that finds every item expired goes idle but keeps the failure streak: the
    channel is still removed 24 h after the first failure unless a send succeeds."""
    d = CallbackDelivery(NotificationQueue(lifetime_s=10.0))
    fill(d.queue, 1, now=0.0)
    batch = d.next_batch(0.0)
    assert batch is not None
    d.receive_response(batch, 500, 1.0)
    assert d.next_batch(20.0) is None  # retry due, but the item expired at 10
    assert d.state is CallbackState.IDLE and d.failures == 1
    assert d.next_deadline() == 1.0 + DAY
    fill(d.queue, 1, now=30.0)
    retry = d.next_batch(30.0)
    assert retry is not None and retry.attempt == 2
    d.receive_response(retry, 500, 31.0)
    assert d.retry_at == 35.0  # 4 s: the second failure of the streak
    assert d.handle_timeout(1.0 + DAY) is CallbackState.REMOVED


def test_answer_for_a_batch_not_in_flight_is_a_harness_error() -> None:
    d = callback()
    fill(d.queue, 1, now=0.0)
    batch = d.next_batch(0.0)
    assert batch is not None
    d.receive_response(batch, 200, 1.0)
    with pytest.raises(RuntimeError, match="not the batch in flight"):
        d.receive_response(batch, 200, 2.0)


def test_deleted_channel_ignores_late_answers() -> None:
    d = callback()
    fill(d.queue, 1, now=0.0)
    batch = d.next_batch(0.0)
    assert batch is not None
    d.delete()
    assert d.receive_response(batch, 200, 1.0) is CallbackState.DELETED
    assert d.next_deadline() is None and d.next_batch(2.0) is None
    d.delete()  # idempotent


def test_batch_body_uses_the_channel_serialization() -> None:
    config = SerializationConfig.model_validate({"cfg": {"include_uid": "true"}})
    d = CallbackDelivery(NotificationQueue(), config=config)
    fill(d.queue, 2, now=0.0)
    batch = d.next_batch(0.0)
    assert batch is not None
    body = json.loads(batch.to_bytes())
    assert [n["uid"] for n in body["notifications"]] == [i.uid for i in batch.items]


def test_transition_tables_are_closed() -> None:
    for table in (CALLBACK_TRANSITIONS, WEBSOCKET_TRANSITIONS, PULL_TRANSITIONS):
        states = set(table)
        assert all(target in states for moves in table.values() for target in moves.values())
    with pytest.raises(RuntimeError, match="no transition from REMOVED on 'send'"):
        move(CALLBACK_TRANSITIONS, CallbackState.REMOVED, "send")


# --- WebSocket ---------------------------------------------------------------------------------


def websocket(now: float = 0.0, **kwargs: Any) -> WebSocketDelivery:
    return WebSocketDelivery(NotificationQueue(), now, **kwargs)


def test_close_codes_have_the_vendor_values() -> None:
    assert [int(c) for c in CloseCode] == [1000, 1001, 1006, 1008, 1011]


def test_new_channel_is_disconnected_and_stores_events() -> None:
    """ "When opening the channel, its status is disconnected" and "Subscribed events are
    received immediately when the channel is registered. The events bundle is delivered once
    the socket is eventually opened.\""""
    w = websocket()
    assert w.status_body().to_wire() == {"queue_size": 0, "status": "disconnected"}
    fill(w.queue, 3, now=1.0)
    assert w.next_batch(1.0) is None
    assert w.bind("s1", 2.0) == []
    assert w.status == "connected"
    assert values(w.next_batch(2.0)) == [1, 2, 3]


def test_next_frame_after_the_transport_succeeded_not_an_application_ack() -> None:
    w = websocket(config=chunk(100))
    w.bind("s1", 0.0)
    fill(w.queue, 150, now=0.0)
    first = w.next_batch(0.0)
    assert first is not None and len(first) == 100
    assert w.next_batch(0.0) is None  # the frame is still being written
    w.batch_sent(first, 0.1)
    second = w.next_batch(0.1)
    assert second is not None and len(second) == 50
    w.batch_sent(second, 0.2)
    assert w.items_delivered == 150 and len(w.queue) == 0


def test_second_socket_replaces_the_first_with_1001() -> None:
    w = websocket()
    w.bind("s1", 0.0)
    fill(w.queue, 2, now=0.0)
    unconfirmed = w.next_batch(0.0)
    closes = w.bind("s2", 1.0)
    assert closes == [CloseSocket("s1", CloseCode.GOING_AWAY, closes[0].reason)]
    assert "another WebSocket" in closes[0].reason
    assert w.socket == "s2"
    assert unconfirmed is not None
    w.batch_sent(unconfirmed, 1.1)  # a late confirmation from the old socket: ignored
    assert values(w.next_batch(1.2)) == [1, 2]  # resent on the new socket
    assert w.socket_closed("s1", 1.3, by_client=False) is WebSocketState.CONNECTED  # stale


def test_client_close_closes_the_channel_too() -> None:
    """ "Closing the socket from client closes the channel, too.\""""
    w = websocket()
    w.bind("s1", 0.0)
    assert w.socket_closed("s1", 5.0, by_client=True) is WebSocketState.REMOVED
    assert (w.removed_by, w.removed_at) == ("client-close", 5.0)
    with pytest.raises(RuntimeError):
        w.bind("s2", 6.0)


def test_client_close_can_keep_the_channel_as_spec20_says() -> None:
    w = websocket(client_close_removes_channel=False)
    w.bind("s1", 0.0)
    assert w.socket_closed("s1", 5.0, by_client=True) is WebSocketState.DISCONNECTED


def test_lost_socket_keeps_storing_for_24_h_then_the_channel_is_removed() -> None:
    """ "If the WebSocket is closed but the channel remains, it keeps receiving and storing
    messages until the WebSocket is connected again or for 24 hours, after which the channel
    will be removed.\""""
    w = websocket()
    w.bind("s1", 0.0)
    fill(w.queue, 1, now=0.0)
    lost = w.next_batch(0.0)
    assert lost is not None
    w.batch_failed(lost, 0.5)
    assert w.socket_closed("s1", 1.0, by_client=False) is WebSocketState.DISCONNECTED
    fill(w.queue, 1, now=2.0, start=2)
    assert w.next_deadline() == 0.0 + DAY  # item 1 expires first (queued at 0)
    assert w.handle_timeout(1.0 + DAY - 0.001) == []
    assert w.state is WebSocketState.DISCONNECTED
    w.handle_timeout(1.0 + DAY)
    assert (w.state, w.removed_by) == (WebSocketState.REMOVED, "unbound-24h")


def test_reconnecting_within_24_h_keeps_the_channel_and_its_queue() -> None:
    w = websocket()
    fill(w.queue, 2, now=10.0)
    w.bind("s1", DAY - 1)  # 24 h after registration minus 1 s
    assert values(w.next_batch(DAY - 1)) == [1, 2]
    w.socket_closed("s1", DAY, by_client=False)
    w.handle_timeout(2 * DAY - 1)
    assert w.state is WebSocketState.DISCONNECTED  # the 24 h count from the last disconnect
    w.handle_timeout(2 * DAY)
    assert w.state is WebSocketState.REMOVED  # type: ignore[comparison-overlap]  # mypy narrowed it


def test_server_closes_after_24_h_of_inactivity() -> None:
    """ "The server closes automatically after 24 hours of inactivity\""""
    w = websocket()
    w.bind("s1", 0.0)
    fill(w.queue, 1, now=100.0)
    batch = w.next_batch(100.0)
    assert batch is not None
    w.batch_sent(batch, 100.0)
    assert w.next_deadline() == 100.0 + DAY
    (close,) = w.handle_timeout(100.0 + DAY)
    assert (close.socket, close.code) == ("s1", CloseCode.GOING_AWAY)
    assert w.state is WebSocketState.DISCONNECTED and w.socket is None
    w.handle_timeout(100.0 + 2 * DAY)
    assert w.state is WebSocketState.REMOVED  # type: ignore[comparison-overlap]  # mypy narrowed it


def test_idle_close_can_be_disabled() -> None:
    w = websocket(idle_close_s=None)
    w.bind("s1", 0.0)
    assert w.handle_timeout(10 * DAY) == []
    assert w.state is WebSocketState.CONNECTED and w.next_deadline() is None


@pytest.mark.parametrize("code", [CloseCode.GOING_AWAY, CloseCode.NORMAL])
def test_rest_delete_closes_the_socket(code: CloseCode) -> None:
    """Vendor doc: 1001 "If the channel is deleted with a REST call"; SPEC20/21 say 1000."""
    w = websocket(delete_close_code=code)
    w.bind("s1", 0.0)
    (close,) = w.delete()
    assert (close.socket, close.code) == ("s1", code)
    assert w.state is WebSocketState.DELETED
    assert w.delete() == [] and w.next_deadline() is None


def test_second_put_changes_the_serialization() -> None:
    w = websocket()
    w.configure(chunk(100))
    w.bind("s1", 0.0)
    fill(w.queue, 150, now=0.0)
    batch = w.next_batch(0.0)
    assert batch is not None and len(batch) == 100
    assert w.status_body().to_wire()["serialization"]["max_chunk_size"] == 100


# --- pull --------------------------------------------------------------------------------------


def test_poll_answers_at_once_when_items_are_queued() -> None:
    p = PullDelivery(NotificationQueue(), 0.0)
    fill(p.queue, 3, now=0.0)
    answer = p.receive_poll("g1", 1.0)
    assert answer is not None and answer.status == 200 and values(answer.batch) == [1, 2, 3]
    assert p.receive_poll("g2", 1.0) == PollAnswer("g2", 409)  # one poll per key
    assert answer.batch is not None
    p.batch_sent(answer.batch, 1.1)
    assert p.state is PullState.IDLE and len(p.queue) == 0


def test_poll_waits_for_items_or_ends_with_204() -> None:
    p = PullDelivery(NotificationQueue(), 0.0)
    assert p.receive_poll("g1", 0.0) is None
    assert p.state is PullState.WAITING
    assert p.receive_poll("g2", 0.5) == PollAnswer("g2", 409)
    fill(p.queue, 1, now=1.0)
    assert p.next_deadline() == 1.0  # an answer is due
    answer = p.next_answer(1.0)
    assert answer is not None and answer.poll == "g1" and values(answer.batch) == [1]
    assert answer.batch is not None
    p.batch_sent(answer.batch, 1.0)
    assert p.receive_poll("g3", 2.0) is None
    assert p.next_answer(2.0) is None
    assert p.poll_timed_out("other", 30.0) is None
    assert p.poll_timed_out("g3", 30.0) == PollAnswer("g3", 204)
    assert p.poll_timed_out("g3", 31.0) is None


def test_failed_answer_keeps_the_items() -> None:
    p = PullDelivery(NotificationQueue(), 0.0)
    fill(p.queue, 2, now=0.0)
    answer = p.receive_poll("g1", 0.0)
    assert answer is not None and answer.batch is not None
    p.batch_failed(answer.batch, 0.1)
    again = p.receive_poll("g2", 0.2)
    assert again is not None and values(again.batch) == [1, 2]


def test_pull_channel_expires_10_minutes_after_the_last_poll() -> None:
    p = PullDelivery(NotificationQueue(), 0.0)
    assert p.receive_poll("g1", 0.0) is None
    p.handle_timeout(5000.0)  # an open poll keeps the channel (however long it is held)
    assert p.state is PullState.WAITING
    p.poll_timed_out("g1", 5000.0)
    assert p.next_deadline() == 5600.0
    assert p.handle_timeout(5599.0) is PullState.IDLE
    assert p.handle_timeout(5600.0) is PullState.REMOVED
    assert p.removed_by == "unpolled-10min"
    with pytest.raises(RuntimeError):
        p.receive_poll("g2", 5601.0)


def test_delete_answers_a_waiting_poll_with_410() -> None:
    p = PullDelivery(NotificationQueue(), 0.0)
    p.receive_poll("g1", 0.0)
    assert p.delete() == [PollAnswer("g1", 410)]
    assert p.state is PullState.DELETED and p.delete() == []


# The adapters that carry the cores' decisions over real sockets; every other module of
# simulators/pelion is a core (keys.py and handshake.py among them). The simulator's components
# (schedule, sending, long polls, sockets, device control, channel view, records) are adapters.
ADAPTERS = {
    "api.py", "callback.py", "simulator.py", "traffic.py", "websocket.py", "schedule.py",
    "sending.py", "longpoll.py", "sockets.py", "device_control.py", "channel_view.py",
    "records.py", "api_calls.py", "api_websocket.py",
}  # fmt: skip


def test_cores_read_no_clock_and_touch_no_socket() -> None:
    """The cores take ``now`` as an argument: no core module of simulators/pelion (every
    module but the adapters) imports a clock, an event loop, threads or sockets."""
    import ast
    from pathlib import Path

    import simulators.pelion

    banned = {"time", "datetime", "asyncio", "socket", "ssl", "threading", "selectors"}
    package = Path(simulators.pelion.__file__).parent
    cores = [p for p in sorted(package.glob("*.py")) if p.name not in ADAPTERS]
    assert {"models.py", "queue.py", "delivery.py", "channels.py", "devices.py"} <= {
        p.name for p in cores
    }
    for path in cores:
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            assert not {n.split(".")[0] for n in names} & banned, f"{path.name} imports {names}"
