"""The API keys the simulated service accepts (vendor doc: every call carries
``Authorization: Bearer ak_…``; a revoked key gets 401 and its sockets close 1008, SPEC20/21)."""

from __future__ import annotations

from typing import Literal

__all__ = ["ApiKeys", "KeyStatus"]

KeyStatus = Literal["ok", "missing", "revoked", "invalid"]


class ApiKeys:
    """The accepted and the revoked API keys (a core without I/O)."""

    def __init__(self, first: str) -> None:
        self.accepted: set[str] = {first}
        self.revoked: set[str] = set()

    def status(self, token: str | None) -> KeyStatus:
        """``ok`` for an accepted key; ``missing`` without one; else ``revoked`` or
        ``invalid``."""
        if not token:
            return "missing"
        if token in self.accepted:
            return "ok"
        return "revoked" if token in self.revoked else "invalid"

    def add(self, key: str) -> None:
        """Accept ``key`` (again)."""
        self.accepted.add(key)
        self.revoked.discard(key)

    def revoke(self, key: str) -> None:
        """Refuse ``key`` from now on (401 for REST, 1008 for its sockets)."""
        self.accepted.discard(key)
        self.revoked.add(key)
