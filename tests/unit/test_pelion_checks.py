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
