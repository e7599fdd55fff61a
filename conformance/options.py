"""Checks and helpers every option parser shares (the plugin, ``conformance-sim`` and each
vendor's ``settings``): a pinned port, and a secret made once and kept beside the PKI.

Imported by the plugin in every pytest run of a user's environment: the standard library only.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

__all__ = ["port", "stable_secret"]

MAX_PORT = 65_535


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
