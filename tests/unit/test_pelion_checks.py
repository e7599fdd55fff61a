"""Pelion check logic that needs no socket: the timing of PEL-WS-05 and the run-wide 1011 rule
of PEL-WS-04, on hand-made connection records."""

from __future__ import annotations

from conformance.pelion.test_websocket import Followed
from simulators.pelion.websocket import ConnectionInfo


def _socket(number: int, connected: float, closed: float) -> ConnectionInfo:
    return ConnectionInfo(
        number, 101, connected, connected, close_sent=(1008, "policy"), close_sent_real_s=closed
    )


def test_a_reconnect_after_a_1008_is_timed_from_the_close_not_from_the_sockets_age() -> None:
    """PEL-WS-05: a SUT that reconnects 0.5 s after the 1008 hurried, however long the socket
    the 1008 closed had lived (measured from its connect, 10.5 s would have passed)."""
    old = _socket(1, connected=0.0, closed=10.0)
    young = _socket(2, connected=9.95, closed=10.0)
    for socket in (old, young):
        followed = Followed(socket, socket.close_sent_real_s or 0.0, 10.5)
        assert followed.gap_s(now=99.0) == 0.5
    assert Followed(old, 10.0, None).gap_s(now=22.0) == 12.0  # no reconnect yet: time since


def test_connects_past_the_logs_bound_are_tallied_not_lost() -> None:
    """PEL-WS-02/03/06 judge the whole run: a connect pushed out of the bounded log (a storm of
    later ones) leaves its facts in the tally (999 replaced sockets once passed as 0)."""
    from types import SimpleNamespace

    from simulators.adapter import StateChanges
    from simulators.clock import Clock
    from simulators.pelion.config import PelionConfig
    from simulators.pelion.delivery import REASON_REPLACED
    from simulators.pelion.sockets import Sockets
    from simulators.pelion.websocket import PingRecord

    clock = Clock()
    schedule = SimpleNamespace(clock=clock, changed=StateChanges(clock))
    sockets = Sockets(schedule, PelionConfig(api_key="ak_run"), kept=3)  # type: ignore[arg-type]
    replaced = ConnectionInfo(
        1, 101, 0.0, 0.0, key="ak_run", auth="subprotocol", key_valid=True,
        close_sent=(1001, REASON_REPLACED), pings=(PingRecord(0.0, "00", None, True),),
    )  # fmt: skip
    keyless = ConnectionInfo(2, 101, 1.0, 1.0, key=None, auth=None)
    good = [
        ConnectionInfo(n, 101, n, n, key="ak_run", auth="subprotocol", key_valid=True)
        for n in range(3, 6)
    ]
    for info in [replaced, keyless, *good]:
        sockets.keep_connection(info)
    assert [c.number for c in sockets.connections()] == [3, 4, 5]
    forgotten = sockets.forgotten_connections()
    assert (forgotten.count, forgotten.replaced, forgotten.first_replaced) == (2, 1, 1)
    assert (forgotten.without_the_key, forgotten.first_without_the_key) == (1, 2)
    assert (forgotten.pings, forgotten.pings_timed_out) == (1, 1)
