"""simulators.network.Reach: what --listen and --advertise accept, and what they mean."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from simulators.network import LOCAL, Reach


def test_the_default_is_loopback_only() -> None:
    assert Reach.of(None, None) == LOCAL == Reach("127.0.0.1", "127.0.0.1")
    assert LOCAL.certificate_names == ()
    assert LOCAL.url("https", 8443, "/mdm/v2") == "https://127.0.0.1:8443/mdm/v2"


@pytest.mark.parametrize(
    "listen, advertise, expected",
    [
        ("0.0.0.0", None, Reach("0.0.0.0", "127.0.0.1")),
        ("198.18.0.1", None, Reach("198.18.0.1", "198.18.0.1")),
        ("0.0.0.0", "simulators", Reach("0.0.0.0", "simulators")),
        ("::", "[fd00::1]", Reach("::", "fd00::1")),
        (None, "sim.example.test", Reach("127.0.0.1", "sim.example.test")),
    ],
)
def test_advertise_defaults_to_a_reachable_listen_address(
    listen: str | None, advertise: str | None, expected: Reach
) -> None:
    assert Reach.of(listen, advertise) == expected


def test_urls_and_certificate_names() -> None:
    reach = Reach.of("198.18.0.1", "simulators")
    assert reach.url("wss", 9000, "/ws") == "wss://simulators:9000/ws"
    assert reach.certificate_names == ("simulators", "198.18.0.1")
    assert Reach.of("::", "fd00::1").url("https", 1) == "https://[fd00::1]:1"
    assert Reach.of("0.0.0.0", "simulators").certificate_names == ("simulators",)


@pytest.mark.parametrize(
    "listen, advertise, named",
    [
        ("localhost", None, "--listen='localhost': give an IP address"),
        ("300.1.1.1", None, "--listen='300.1.1.1'"),
        ("0.0.0.0", "0.0.0.0", "--advertise=0.0.0.0: a SUT cannot connect"),
        ("0.0.0.0", "bad name!", "--advertise='bad name!': give the host name"),
        ("0.0.0.0", "-leading.example", "--advertise='-leading.example'"),
    ],
)
def test_a_bad_value_is_one_message_naming_the_option(
    listen: str, advertise: str | None, named: str
) -> None:
    with pytest.raises(ValueError, match="^" + named.replace("(", r"\(").replace("[", r"\[")):
        Reach.of(listen, advertise)


@given(st.text(max_size=300), st.text(max_size=300))
def test_any_input_is_a_reach_or_a_value_error(listen: str, advertise: str) -> None:
    try:
        reach = Reach.of(listen, advertise)
    except ValueError as exc:
        assert str(exc).startswith(("--listen=", "--advertise="))
        assert len(str(exc)) < 400
    else:
        assert reach.url("https", 1).startswith("https://")
