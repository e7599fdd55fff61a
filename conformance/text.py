"""Text a SUT had a hand in, made safe to show: in a report, a terminal or an error message.

Imported by the plugin when a run starts: the standard library only.
"""

from __future__ import annotations

import re

__all__ = ["brief", "printable"]

# Code points XML 1.0 does not allow (§2.2), C1 controls (ESC, NUL… a terminal would act on
# them), and lone surrogates (no encoding can write them).
_UNSAFE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff\ufffe\uffff]")


def printable(text: str) -> str:
    """``text`` with every forbidden character shown as ``\\xNN`` (or ``\\uNNNN``)."""
    return _UNSAFE.sub(_escape, text)


def brief(text: str, limit: int) -> str:
    """:func:`printable` ``text``, at most ``limit`` characters: past that its start, and how
    much was cut."""
    text = printable(text)
    if len(text) <= limit:
        return text
    return f"{text[:limit]} … ({len(text) - limit} more characters cut)"


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"
