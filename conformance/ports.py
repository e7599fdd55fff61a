"""A port to hand to a process that binds it later.

Asking the kernel for port 0 and closing the socket gives a port that is free *now*, but it comes
from the ephemeral range, the same range every outgoing connection's local port comes from. Under
load (the self-test runs several suites at once), another connection could take it between the
pick and the child's ``bind`` (``EADDRINUSE``; it happened in CI). So :func:`spare_port` picks
from below the kernel's ephemeral range (``/proc/sys/net/ipv4/ip_local_port_range``), which the
kernel never hands out by itself, checks that it binds, and never gives the same port twice in
one process. Where no such range can be read, it falls back to the kernel's choice.
"""

from __future__ import annotations

import random
import socket
import threading
from pathlib import Path

EPHEMERAL_RANGE_FILE = Path("/proc/sys/net/ipv4/ip_local_port_range")
LOWEST_SPARE_PORT = 10000  # below: well-known and registered services cluster there
ATTEMPTS = 200

_given: set[int] = set()
_lock = threading.Lock()


def ephemeral_range() -> tuple[int, int] | None:
    """The kernel's range for ports it picks itself, or None where it cannot be read."""
    try:
        low, high = (int(part) for part in EPHEMERAL_RANGE_FILE.read_text().split())
    except (OSError, ValueError):
        return None
    return low, high


def _binds(port: int, host: str) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def _kernel_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def spare_port(host: str = "127.0.0.1") -> int:
    """A port that binds on ``host`` now, outside the ephemeral range when there is room, and
    never returned before by this process."""
    with _lock:
        span = ephemeral_range()
        if span is not None and span[0] - LOWEST_SPARE_PORT >= 1000:
            for _ in range(ATTEMPTS):
                port = random.randrange(LOWEST_SPARE_PORT, span[0])
                if port not in _given and _binds(port, host):
                    _given.add(port)
                    return port
        while True:  # no room below the range (or all tried ports busy): the kernel's choice
            port = _kernel_port(host)
            if port not in _given:
                _given.add(port)
                return port
