"""The SUT as a Pelion WebSocket client: the channel before the socket, authentication, pongs,
reconnecting after each close code, one socket per key, a 10,000-item frame
(PEL-WS-01..07).

The SUT's own timers (reconnect delays, the pong) are judged in real seconds. The reconnect
checks run last: a SUT that does not come back can no longer be judged on anything else.
PEL-WS-05 revokes the key for 20 s: one check times the reconnect after the 1008 that closed
the socket, another, among the last of the run, every reconnect after a refused one (1008 at
the handshake), so the window passes while other vendors' checks run. Connects must be 10 s
apart (from connect to connect: a SUT pacing its attempts, or waiting after each close, both
keep that).
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from conformance.pelion.driver import RECONNECT_WAIT_S, PelionDriver, describe
from conformance.verdicts import Check
from simulators.pelion.delivery import REASON_REPLACED
from simulators.pelion.operations import CloseSocket, DeleteChannel, DropSocket, Ping, RevokeKey
from simulators.pelion.websocket import ConnectionInfo

requirement = pytest.mark.requirement

BIG_FRAME = 10_000
PONG_LIMIT_S = 5.0  # "If the ping frame is not responded within a few seconds" (5 s here)
POLICY_WINDOW_S = 20.0  # how long the key stays revoked (its refusals are followed 10 s more)
POLICY_MIN_GAP_S = 10.0
SLACK_S = 0.1  # measurement slack: the SUT timed its delays in another process


# Why the WebSocket session checks offer no reproducer (the frames they send do: PEL-WS-07,
# PEL-MSG-*): what they judge is what the SUT does by itself, or over its socket's life.
_SUT_ACTS = "no request of the service replays this: the check judges what the SUT does itself, "
_OVER_TIME = (
    "judged over the socket's life in real time (the service's timers and closes, the SUT's "
    "answers), which a one-off script does not replay: "
)


def _accepted(pelion: PelionDriver) -> list[ConnectionInfo]:
    return [c for c in pelion.service.connections() if c.status == 101]


@requirement("PEL-WS-01")
def test_creates_the_channel_before_connecting(pelion: PelionDriver, check: Check) -> None:
    pelion.require("websocket", check)
    check.include_history("pelion")
    check.no_reproducer(_SUT_ACTS + "its channel PUT and its first connect, in that order")
    check.expect("PUT /v2/notification/websocket before the first websocket-connect")
    if absent := pelion.first_connect():
        check.observe(absent)
        raise AssertionError(absent)
    calls = pelion.service.calls()
    puts = [
        c
        for c in calls
        if c.endpoint == "PUT /v2/notification/websocket" and c.status in (200, 201)
    ]
    first = pelion.service.connections()[0]
    check.observe(
        f"first channel PUT at {puts[0].real_s:.2f} s, first connect at {first.connected_real_s:.2f} s"
        if puts
        else f"no channel PUT; first connect at {first.connected_real_s:.2f} s ({first.close_sent or first.status})"
    )
    assert puts, (
        "the SUT connected without ever creating its channel (PUT /v2/notification/websocket)"
    )
    assert puts[0].real_s <= first.connected_real_s, (
        f"the SUT connected at {first.connected_real_s:.2f} s, before creating its channel at "
        f"{puts[0].real_s:.2f} s"
    )


@requirement("PEL-WS-02")
@pytest.mark.run_last(12)  # over the whole run: after the reconnect and 1008 checks (6, 7, 11)
def test_authenticates_every_connect(pelion: PelionDriver, check: Check) -> None:
    """Every connect carries the key as ``Sec-WebSocket-Protocol: wss, pelion_<key>`` (either
    order) or ``Authorization: Bearer <key>`` (judged over the run, the reconnects included).
    The run's key counts as the right one while PEL-WS-05 has it revoked."""
    pelion.require("websocket", check)
    check.no_reproducer(_SUT_ACTS + "the key it offers when it connects")
    check.expect(
        "the API key in Sec-WebSocket-Protocol (pelion_<key>) or a bearer header, every time"
    )
    connects = [
        c
        for c in pelion.service.connections()
        if c.key is None or c.key == pelion.sim.api_key or not c.key_valid
    ]
    forgotten = pelion.service.forgotten_connections()  # past the log's bound: tallied
    if not connects and not forgotten.count:
        raise check.not_verified("the SUT never connected")
    bad = [c for c in connects if c.auth is None or c.key != pelion.sim.api_key]
    ways = sorted({c.auth or "none" for c in connects})
    check.observe(
        f"{len(connects) + forgotten.count} connect(s) authenticated by {', '.join(ways)}; "
        f"{len(bad) + forgotten.without_the_key} without a valid key"
    )
    if forgotten.without_the_key:
        raise AssertionError(
            f"{forgotten.without_the_key} early connect(s) (no longer in the log) had no valid "
            f"key, the first: connect {forgotten.first_without_the_key}"
        )
    if bad:
        first = bad[0]
        raise AssertionError(
            f"connect {first.number} had {'no key' if first.auth is None else 'an invalid key'} "
            f"(offered subprotocols {list(first.offered_subprotocols)}): {first.refusal or first.close_sent}"
        )


@requirement("PEL-WS-03")
def test_answers_pings(pelion: PelionDriver, check: Check) -> None:
    pelion.ensure_socket(check)
    check.no_reproducer(_OVER_TIME + "pongs to the service's pings")
    check.expect(f"a pong echoing the 4-byte ping payload within {PONG_LIMIT_S:g} s")
    records = [pelion.perform(Ping(), timeout=30) for _ in range(3)]
    answered = [r for r in records if r is not None and r.latency_real_s is not None]
    check.observe(
        ", ".join(
            "no socket"
            if r is None
            else "no pong"
            if r.latency_real_s is None
            else f"pong in {r.latency_real_s * 1000:.0f} ms"
            for r in records
        )
    )
    assert all(r is not None for r in records), "the socket was gone before the pings"
    assert len(answered) == len(records), (
        "a ping got no pong echoing its payload in time (closed with 1001)"
    )


@requirement("PEL-WS-03")
@pytest.mark.run_last(12)  # over the whole run: after the reconnect and 1008 checks (6, 7, 11)
def test_answered_every_ping_of_the_run(pelion: PelionDriver, check: Check) -> None:
    """Every ping the service sent on the SUT's sockets over the run, not only this check's
    idle ones: a client that blocks its read loop while it processes a large message misses
    the pings that come meanwhile."""
    pelion.require("websocket", check)
    check.no_reproducer(_OVER_TIME + "pongs to every ping of the run")
    check.expect(f"a pong within {PONG_LIMIT_S:g} s to every ping of the run")
    mine = [c for c in _accepted(pelion) if c.key == pelion.sim.api_key]
    pings = [(c, p) for c in mine for p in c.pings]
    missed = [(c, p) for c, p in pings if p.timed_out]
    forgotten = pelion.service.forgotten_connections()  # past the log's bound: tallied
    if not pings and not forgotten.pings:
        raise check.not_verified("the service sent the SUT no ping in this run")
    total, late = len(pings) + forgotten.pings, len(missed) + forgotten.pings_timed_out
    check.observe(f"{total - late} of {total} pings answered in time")
    assert not forgotten.pings_timed_out, (
        f"{forgotten.pings_timed_out} ping(s) on early sockets (no longer in the log) got no pong"
    )
    if missed:
        conn, ping = missed[0]
        raise AssertionError(
            f"{len(missed)} ping(s) got no pong within {PONG_LIMIT_S:g} s, the first on "
            f"connection {conn.number} at {ping.sent_real_s:.1f} s (the service closed it 1001)"
        )


@requirement("PEL-WS-07")
def test_receives_a_10000_item_frame(pelion: PelionDriver, check: Check) -> None:
    pelion.ensure_socket(check)
    check.expect(f"one text frame of {BIG_FRAME} items taken, the socket kept")
    queued = pelion.notifications("websocket", (f"{i}".encode() for i in range(BIG_FRAME)))
    attempts = [a for a in pelion.deliver("websocket", queued) if a.items == BIG_FRAME]
    sent = next((a for a in attempts if a.succeeded), None)
    check.observe(describe(attempts) + (f" ({sent.bytes} B)" if sent else ""))
    assert sent is not None, f"the {BIG_FRAME}-item frame could not be sent: {describe(attempts)}"
    lost = pelion.kept(attempts, 1.0)
    if lost is not None:  # its 1.8 MB frame is kept beside the report only then
        pelion.reproduce(check, [sent])
    assert lost is None, (
        f"the SUT closed or lost its socket after a {BIG_FRAME}-item frame of {sent.bytes} B: {lost}"
    )
    if pelion.fence("websocket", awaiting=queued) is None:
        reported = len(queued) - len(pelion.unreported(queued))
        if reported != BIG_FRAME:
            pelion.reproduce(check, [sent])
        assert reported == BIG_FRAME, f"the SUT reported {reported} of the {BIG_FRAME} items"


@requirement("PEL-WS-06")
@pytest.mark.run_last(12)  # over the whole run: after the reconnect and 1008 checks (6, 7, 11)
def test_holds_one_socket(pelion: PelionDriver, check: Check) -> None:
    """Over the run: the SUT never had two sockets open at once on its key (a second would
    replace the first, which the server closes with 1001)."""
    pelion.require("websocket", check)
    check.no_reproducer(_SUT_ACTS + "how many sockets it opens on its key")
    check.expect("never two WebSockets open at once for the API key")
    mine = [c for c in _accepted(pelion) if c.key == pelion.sim.api_key]
    forgotten = pelion.service.forgotten_connections()  # past the log's bound: tallied
    if not mine and not forgotten.count:
        raise check.not_verified("the SUT never held a socket")
    replaced = [c for c in mine if c.close_sent is not None and c.close_sent[1] == REASON_REPLACED]
    check.observe(
        f"{len(mine) + forgotten.count} socket(s) over the run; "
        f"{len(replaced) + forgotten.replaced} replaced by a second one"
    )
    assert not forgotten.replaced, (
        f"the SUT opened a second socket while an early one was open ({forgotten.replaced} "
        f"replaced, the first: connection {forgotten.first_replaced})"
    )
    assert not replaced, (
        f"the SUT opened a second socket while socket {replaced[0].number} was open (the server "
        "closed the first with 1001)"
    )


def _reconnected_after(pelion: PelionDriver, since_real_s: float) -> ConnectionInfo | None:
    for c in _accepted(pelion):
        if c.connected_real_s > since_real_s and c.key == pelion.sim.api_key:
            return c
    return None


@requirement("PEL-WS-04")
@pytest.mark.run_last(6)
@pytest.mark.parametrize("how", ["close-1001", "dropped", "close-1011"])
def test_reconnects(pelion: PelionDriver, check: Check, how: str) -> None:
    """After 1001 or an abnormal drop: back again. After 1011 (no channel): the channel
    created again, then back; every 1011 of the run counts, not only the one caused here (a
    SUT that closed its own socket loses its channel too). Such a connect ends the wait for
    the SUT to come back at once."""
    check.no_reproducer(_OVER_TIME + "its reconnect after the service ends its socket")
    if how == "close-1011":
        _judge_reconnects_after_1011(pelion, check)
    pelion.ensure_socket(check)
    clock = pelion.harness.clock
    check.expect(
        "the channel registered again, then a new socket" if how == "close-1011" else "a new socket"
    )
    began = clock.real()
    if how == "close-1001":
        pelion.perform(CloseSocket(code=1001, reason="going away (test)"))
    elif how == "dropped":
        pelion.perform(DropSocket())
    else:
        # Deleting the channel closes the socket (1001); the reconnect then meets no channel
        # and is closed 1011, after which the SUT must create its channel again.
        pelion.perform(DeleteChannel())
    harness = pelion.harness
    back = pelion.service.wait_for(
        lambda: (
            (pelion.socket_bound() and _reconnected_after(pelion, began))
            or (harness.sut is not None and harness.sut.exited() is not None)
            or (how == "close-1011" and bool(pelion.unregistered_reconnects()))
        ),
        RECONNECT_WAIT_S,
    )
    if how == "close-1011":
        _judge_reconnects_after_1011(pelion, check)
    if not isinstance(back, ConnectionInfo):
        back = None
        if harness.sut is not None and (code := harness.sut.exited()) is not None:
            raise AssertionError(f"the SUT process exited with status {code} after {how}")
    puts = [
        c for c in pelion.service.calls()
        if c.endpoint == "PUT /v2/notification/websocket" and c.real_s > began and c.status in (200, 201)
    ]  # fmt: skip
    refused = [
        c
        for c in pelion.service.connections()
        if c.connected_real_s > began and c.close_sent and c.close_sent[0] == 1011
    ]
    check.observe(
        (
            f"back after {back.connected_real_s - began:.2f} s"
            if back
            else f"not back within {RECONNECT_WAIT_S:g} s"
        )
        + (
            f"; {len(refused)} connect(s) closed 1011; channel created again {len(puts)} time(s)"
            if how == "close-1011"
            else ""
        )
    )
    assert back, (
        f"the SUT did not reconnect within {RECONNECT_WAIT_S:g} s after {how.replace('-', ' ')}"
    )
    if how == "close-1011":
        assert puts, "the SUT reconnected without creating its channel again"


def _judge_reconnects_after_1011(pelion: PelionDriver, check: Check) -> None:
    """Fails on a connect that followed a 1011 without the channel created in between."""
    if unregistered := pelion.unregistered_reconnects():
        closed, again = unregistered[0]
        check.observe(
            f"{len(unregistered)} connect(s) after a 1011 without creating the channel again"
        )
        raise AssertionError(
            f"connection {closed.number} was closed 1011 (no channel) and the SUT connected "
            f"again ({again.number}, {again.connected_real_s - (closed.close_sent_real_s or 0):.2f}"
            " s later) without creating its channel first"
        )


def _revoke(pelion: PelionDriver, check: Check) -> tuple[float, frozenset[int]]:
    """Revoke the run's key once per run (the socket is closed 1008 and every reconnect is
    refused with 1008 until the window ends); later calls return the same window."""
    if pelion.policy_window is None:
        pelion.ensure_socket(check)
        began = pelion.harness.clock.real()
        closed = pelion.perform(RevokeKey(seconds_real=POLICY_WINDOW_S))
        pelion.policy_window = (began, frozenset(c.number for c in closed))
    return pelion.policy_window


@dataclass(frozen=True)
class Followed:
    """A connection closed with 1008 in the policy window, and the SUT's next connect, timed
    from ``since_real_s``: the close of a socket that was open, the connect itself of a
    reconnect refused at once (a SUT pacing its attempts and one waiting after each close
    both keep 10 s)."""

    connection: ConnectionInfo
    since_real_s: float
    next_connect_real_s: float | None  # None: none yet

    def gap_s(self, now: float) -> float:
        """Seconds to the next connect (or to ``now``, when none came)."""
        end = self.next_connect_real_s if self.next_connect_real_s is not None else now
        return end - self.since_real_s


def _closed_1008(pelion: PelionDriver, refused: bool) -> list[Followed]:
    """The sockets closed 1008 by the revocation (``refused=False``) or the reconnects refused
    with 1008 within the window (``refused=True``), each with the SUT's next connect (at any
    time: the window's end does not cut a gap short)."""
    assert pelion.policy_window is not None
    began, revoked = pelion.policy_window
    conns = pelion.service.connections()
    found = []
    for conn in conns:
        closed = conn.close_sent_real_s
        if conn.close_sent is None or conn.close_sent[0] != 1008 or closed is None:
            continue
        if (
            not began <= closed <= began + POLICY_WINDOW_S
            or (conn.number not in revoked) != refused
        ):
            continue
        later = [c.connected_real_s for c in conns if c.connected_real_s > conn.connected_real_s]
        since = conn.connected_real_s if refused else closed
        found.append(Followed(conn, since, min(later, default=None)))
    return found


def _judge_reconnects(
    pelion: PelionDriver, check: Check, closes: list[Followed], what: str
) -> None:
    """Connects at least 10 s apart: a next connect sooner fails; with none, the SUT must have
    been watched 10 s from the closed connect, alive (silence of a dead SUT proves nothing)."""
    now = pelion.harness.clock.real()
    gaps = [f.gap_s(now) for f in closes if f.next_connect_real_s is not None]
    quiet = [f.gap_s(now) for f in closes if f.next_connect_real_s is None]
    check.observe(
        f"{len(closes)} {what}; "
        + (
            f"next connects {', '.join(f'{g:.1f}' for g in gaps[:5])} s after"
            + (f" (and {len(gaps) - 5} more)" if len(gaps) > 5 else "")
            if gaps
            else "no next connect"
        )
        + (f"; none for {min(quiet):.1f} s after the last" if quiet else "")
    )
    short = [g for g in gaps if g < POLICY_MIN_GAP_S - SLACK_S]
    assert not short, (
        f"reconnected {min(short):.1f} s after a 1008 ({what}; at least "
        f"{POLICY_MIN_GAP_S:g} s required)"
    )
    if not gaps:
        pelion.harness.require_sut()
        if problem := pelion.harness.sut_alive():
            raise check.not_verified(f"no reconnect, but {problem}: its silence proves nothing")
    if not gaps and not any(q >= POLICY_MIN_GAP_S - SLACK_S for q in quiet):
        raise check.not_verified(f"no {what} was followed, or watched, for 10 s")


def _wait_for_next_connects(pelion: PelionDriver, closes: list[Followed]) -> None:
    """Until each of these connections has a next connect or 10 s have passed since it."""
    clock = pelion.harness.clock
    until = max((f.since_real_s for f in closes), default=0.0)
    until += POLICY_MIN_GAP_S - SLACK_S
    numbers = {f.connection.number for f in closes}

    def followed() -> bool:
        if clock.real() >= until:
            return True
        latest = max((c.connected_real_s for c in pelion.service.connections()), default=0.0)
        return all(
            c.connected_real_s < latest for c in pelion.service.connections() if c.number in numbers
        )

    pelion.service.wait_for(followed, max(0.0, until - clock.real()) + 1)


@requirement("PEL-WS-05")
@pytest.mark.run_last(7)
def test_waits_after_the_1008_that_closed_its_socket(pelion: PelionDriver, check: Check) -> None:
    """The key is invalidated and the SUT's socket closed with 1008: its next connect comes
    no sooner than 10 s after that close (docs/requirements.md §7: "not more often than once
    per 10 s"; the vendor doc names no interval). Timed from the close, not from the socket's
    own connect: how long the socket had lived is not the SUT's choice (it depends on which
    checks ran before)."""
    check.no_reproducer(_OVER_TIME + "its next connect after a revoked key's 1008")
    check.expect(f"the first reconnect after the 1008 at least {POLICY_MIN_GAP_S:g} s after it")
    _revoke(pelion, check)
    closes = _closed_1008(pelion, refused=False)
    if not closes:
        raise check.not_verified("the SUT's socket was gone when its key was revoked")
    _wait_for_next_connects(pelion, closes)
    _judge_reconnects(pelion, check, _closed_1008(pelion, refused=False), "socket(s) closed 1008")


@requirement("PEL-WS-05")
@pytest.mark.run_last(11)  # the window runs on while other vendors' checks run
def test_waits_after_a_refused_reconnect(pelion: PelionDriver, check: Check) -> None:
    """Every reconnect with the invalidated key is refused with 1008 too: from each refused
    connect, the next one comes at least 10 s later. Judged on the refusals of the whole window
    (20 s from the revocation), each followed up to 10 s past it."""
    check.no_reproducer(_OVER_TIME + "its connects while its key stays revoked")
    check.expect(
        f"after a reconnect refused with 1008, the next at least {POLICY_MIN_GAP_S:g} s later"
    )
    began, _ = _revoke(pelion, check)
    clock = pelion.harness.clock
    end = began + POLICY_WINDOW_S
    pelion.service.wait_for(lambda: clock.real() >= end, max(0.0, end - clock.real()) + 1)
    _wait_for_next_connects(pelion, _closed_1008(pelion, refused=True))
    _judge_reconnects(pelion, check, _closed_1008(pelion, refused=True), "refused reconnect(s)")
