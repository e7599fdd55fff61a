"""A client's strings in what the broker keeps and says: :func:`excerpt`.

A client chooses its client id, user name, topics and topic filters, up to 65,535 bytes each
(§1.5.3). Whatever quotes them (a packet log entry, an evidence event, a refusal's reason, a
close reason) quotes an excerpt of at most :data:`TEXT_KEPT` characters that says how much was
cut, so what the broker keeps stays small whatever the client sends.
"""

from __future__ import annotations

__all__ = ["TEXT_KEPT", "excerpt"]

# Characters of a client's string kept whole: every client id a broker accepts (256) and every
# topic the vendor uses (under 100) fits, so checks compare whole values; longer ones are kept
# as an excerpt.
TEXT_KEPT = 256


def excerpt(text: str, limit: int = TEXT_KEPT) -> str:
    """``text`` if it has at most ``limit`` characters, else its first ``limit`` followed by
    a marker saying how many were cut."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}…[{len(text) - limit} more characters cut]"
