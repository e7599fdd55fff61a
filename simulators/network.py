"""Where the simulators listen and the name a SUT reaches them by (docs/sut-contract.md §6).

Every server (brokers, APIs, the observer, the control plane) binds :attr:`Reach.listen`;
every URL and host handed to a SUT uses :attr:`Reach.advertise`, and every simulator server
certificate names it. The default is loopback for both: nothing is reachable from elsewhere
unless the user says so.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

__all__ = ["LOCAL", "LOOPBACK", "Reach"]

LOOPBACK = "127.0.0.1"
# RFC 1123 host names: dot-separated labels of letters, digits and inner hyphens.
_HOST_NAME = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)(\.(?!-)[A-Za-z0-9-]{1,63}(?<!-))*\.?")


@dataclass(frozen=True)
class Reach:
    """The address servers bind and the host name or address a SUT uses to reach them."""

    listen: str = LOOPBACK
    advertise: str = LOOPBACK

    @classmethod
    def of(cls, listen: str | None, advertise: str | None) -> Reach:
        """From ``--listen`` and ``--advertise``; raises ``ValueError`` naming the option and the
        fix. The advertised name defaults to the listen address, or to loopback when listening
        on every address (``0.0.0.0``, ``::``)."""
        listen = (listen or LOOPBACK).strip()
        try:
            address = ipaddress.ip_address(listen.strip("[]"))
        except ValueError:
            raise ValueError(
                f"--listen={listen!r}: give an IP address of this machine to bind, e.g. "
                "127.0.0.1, 0.0.0.0 (every IPv4 address) or :: (every IPv6 address)"
            ) from None
        if advertise is None or not advertise.strip():
            advertise = LOOPBACK if address.is_unspecified else str(address)
        advertise = advertise.strip()
        if not _is_host(advertise):
            raise ValueError(
                f"--advertise={advertise[:100]!r}: give the host name or IP address the SUT "
                "resolves to reach this machine, e.g. --advertise=simulators or "
                "--advertise=198.18.0.1"
            )
        if _is_ip(advertise) and ipaddress.ip_address(advertise.strip("[]")).is_unspecified:
            raise ValueError(
                f"--advertise={advertise}: a SUT cannot connect to an unspecified address; give "
                "the name or address it reaches this machine by"
            )
        return cls(str(address), advertise.strip("[]"))

    @property
    def is_loopback(self) -> bool:
        return self.listen == LOOPBACK and self.advertise == LOOPBACK

    @property
    def certificate_names(self) -> tuple[str, ...]:
        """Names a simulator server certificate carries besides ``localhost`` and
        ``127.0.0.1``: the advertised name and a specific listen address."""
        names = [self.advertise]
        if not ipaddress.ip_address(self.listen).is_unspecified:
            names.append(self.listen)
        return tuple(dict.fromkeys(n for n in names if n not in ("localhost", LOOPBACK)))

    def url(self, scheme: str, port: int, path: str = "") -> str:
        """``scheme://advertised-host:port/path``, an IPv6 address in brackets."""
        return f"{scheme}://{self.host_in_url}:{port}{path}"

    @property
    def host_in_url(self) -> str:
        return f"[{self.advertise}]" if ":" in self.advertise else self.advertise


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text.strip("[]"))
    except ValueError:
        return False
    return True


def _is_host(text: str) -> bool:
    return len(text) <= 253 and (_is_ip(text) or _HOST_NAME.fullmatch(text) is not None)


LOCAL = Reach()  # the default: bind loopback, hand SUTs 127.0.0.1
