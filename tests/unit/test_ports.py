"""conformance.ports: a port handed to a child that binds it later stays out of the kernel's
ephemeral range, so no outgoing connection can take it meanwhile."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from conformance import ports


def test_spare_ports_are_below_the_ephemeral_range_distinct_and_bindable() -> None:
    span = ports.ephemeral_range()
    assert span is not None, "this test needs /proc/sys/net/ipv4/ip_local_port_range"
    given = [ports.spare_port() for _ in range(50)]
    assert len(set(given)) == len(given)
    assert all(ports.LOWEST_SPARE_PORT <= port < span[0] for port in given)
    with socket.socket() as s:
        s.bind(("127.0.0.1", given[-1]))


def test_a_busy_port_is_never_given(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = busy.getsockname()[1]
        # A range whose only spare port is the busy one: the pick falls back to the kernel.
        table = tmp_path / "range"
        table.write_text(f"{taken + 1}\t60999\n")
        monkeypatch.setattr(ports, "LOWEST_SPARE_PORT", taken + 1 - 1000)
        monkeypatch.setattr(ports, "EPHEMERAL_RANGE_FILE", table)
        monkeypatch.setattr("random.randrange", lambda low, high: taken)
        port = ports.spare_port()
    assert port != taken


def test_without_a_readable_range_the_kernel_chooses(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(ports, "EPHEMERAL_RANGE_FILE", tmp_path / "missing")
    assert ports.ephemeral_range() is None
    first, second = ports.spare_port(), ports.spare_port()
    assert first != second
