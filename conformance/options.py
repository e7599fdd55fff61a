"""Checks and helpers every option parser shares (the plugin, ``conformance-sim`` and each
vendor's ``settings``): a pinned port, where the servers listen, and a secret made once and
kept beside the PKI.

Imported by the plugin in every pytest run of a user's environment: the standard library only.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

__all__ = ["ADVERTISE_HELP", "LISTEN_HELP", "port", "read_text", "stable_secret"]

MAX_PORT = 65_535


LISTEN_HELP = (
    "the address every simulator, the observer and the control plane bind (default "
    "127.0.0.1; 0.0.0.0 for a SUT in another container or host)"
)
ADVERTISE_HELP = (
    "the host name or IP address a SUT reaches them by: every URL and host handed to the SUT "
    "uses it and every simulator certificate names it (default: the listen address, or "
    "127.0.0.1 when listening on all addresses)"
)


def port(flag: str, value: object) -> int:
    """``value`` as a port to bind (0: any free one); ValueError naming ``flag`` otherwise."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_PORT:
        raise ValueError(f"{flag}={value}: give a port from 1 to {MAX_PORT} (0: any)")
    return value


def stable_secret(path: Path, make: Callable[[], str], valid: Callable[[str], bool]) -> str:
    """The secret kept in ``path``, made with ``make`` the first time (or when the file holds
    no ``valid`` one): the same from run to run, so a SUT deployed elsewhere stays configured."""
    if path.is_file() and valid(value := path.read_text().strip()):
        return value
    path.parent.mkdir(parents=True, exist_ok=True)
    value = make()
    path.write_text(value + "\n")
    return value


def read_text(path: str, flag: str, limit: int = 65_536) -> str:
    """The text of the file an option names; ValueError naming ``flag`` and the fix."""
    try:
        with open(path, encoding="utf-8") as file:
            text = file.read(limit + 1)
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(
            f"{flag} {path}: cannot read it ({exc}); give a readable text file"
        ) from None
    if len(text) > limit:
        raise ValueError(f"{flag} {path}: larger than {limit} characters; give a PEM file")
    return text
