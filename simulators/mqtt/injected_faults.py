"""Faults a test arms on a broker core: refused CONNECTs (the next few, or all of a tenant's
during an outage), a client held offline until a simulated time, duplicated deliveries, lost
PUBACKs. The
core asks here while it decides (:mod:`~simulators.mqtt.admission`,
:mod:`~simulators.mqtt.delivery`); acting now (closing a connection, resending) is the core's.

Each fault is keyed by tenant, None meaning any tenant. A refusal uses a CONNACK return code
1..5 (MQTT 3.1.1 Table 3.1); a refused CONNECT leaves nothing behind (MQTT-3.1.4-5).
"""

from __future__ import annotations

from simulators.mqtt.packets import CONNACK_SERVER_UNAVAILABLE

__all__ = ["InjectedFaults"]


def _check_return_code(return_code: int) -> None:
    if not 1 <= return_code <= 5:
        raise ValueError("a refusal return code is 1..5 (Table 3.1)")


class InjectedFaults:
    """The faults armed on one core, and the decisions they make."""

    def __init__(self) -> None:
        self._refusals: list[tuple[str | None, int]] = []  # (tenant, return code), in order
        self._outages: dict[str | None, int] = {}  # tenant (None: every tenant) → return code
        self._held: dict[tuple[str | None, str], tuple[float, int]] = {}  # → (until, code)
        self._duplicates: dict[tuple[str | None, str], int] = {}  # → deliveries to duplicate
        self._lost_pubacks: dict[tuple[str | None, str], int] = {}  # → PUBACKs not to count

    def clear(self, *, tenant: str | None) -> None:
        """Disarm every fault armed for ``tenant``: refusals, outage, holds, duplicates, lost
        PUBACKs."""
        self._refusals = [r for r in self._refusals if r[0] != tenant]
        self._outages.pop(tenant, None)
        for table in (self._held, self._duplicates, self._lost_pubacks):
            for key in [k for k in table if k[0] == tenant]:
                del table[key]

    # --- arming -------------------------------------------------------------------------------

    def refuse_next_connects(
        self,
        count: int,
        return_code: int = CONNACK_SERVER_UNAVAILABLE,
        *,
        tenant: str | None = None,
    ) -> None:
        """Refuse the next ``count`` CONNECTs (of ``tenant`` if given) with ``return_code``."""
        _check_return_code(return_code)
        self._refusals += [(tenant, return_code)] * count

    def begin_outage(
        self, return_code: int = CONNACK_SERVER_UNAVAILABLE, *, tenant: str | None = None
    ) -> None:
        """Refuse every CONNECT (of ``tenant`` if given) with ``return_code`` until
        :meth:`end_outage`: the broker is unreachable for that tenant, whatever client id a
        client uses. Live connections are left alone (the core's ``disconnect`` closes them)."""
        _check_return_code(return_code)
        self._outages[tenant] = return_code

    def end_outage(self, *, tenant: str | None = None) -> None:
        """End :meth:`begin_outage` (for ``tenant``); CONNECTs are admitted again."""
        self._outages.pop(tenant, None)

    def in_outage(self, tenant: str | None = None) -> bool:
        return tenant in self._outages or None in self._outages

    def hold(
        self,
        client_id: str,
        until: float,
        *,
        tenant: str | None = None,
        return_code: int = CONNACK_SERVER_UNAVAILABLE,
    ) -> None:
        """Refuse the CONNECTs of ``client_id`` until simulated time ``until`` (the core's
        ``hold_offline`` also disconnects it)."""
        _check_return_code(return_code)
        self._held[(tenant, client_id)] = (until, return_code)

    def release(self, client_id: str, *, tenant: str | None = None) -> None:
        """End :meth:`hold` early."""
        self._held.pop((tenant, client_id), None)

    def duplicate_next_delivery(
        self, client_id: str, *, tenant: str | None = None, times: int = 1
    ) -> None:
        """Send the next ``times`` new QoS >= 1 PUBLISHes to ``client_id`` twice, the copy with
        DUP = 1 (a QoS 0 copy would break MQTT-3.3.1-2, so QoS 0 deliveries are left alone)."""
        key = (tenant, client_id)
        self._duplicates[key] = self._duplicates.get(key, 0) + times

    def lose_next_pubacks(
        self, client_id: str, *, tenant: str | None = None, times: int = 1
    ) -> None:
        """Do not count the next ``times`` PUBACKs of ``client_id``: each is lost between the
        client and the broker, so its PUBLISH stays in flight and is redelivered (after the
        redelivery timeout, or when the session resumes)."""
        key = (tenant, client_id)
        self._lost_pubacks[key] = self._lost_pubacks.get(key, 0) + times

    # --- deciding -----------------------------------------------------------------------------

    def connect_refusal(self, tenant: str) -> tuple[int, str] | None:
        """(return code, reason) if a CONNECT of ``tenant`` is to be refused before its client
        id is looked at: an outage, else the next armed refusal (used up)."""
        outage = self._outages.get(tenant, self._outages.get(None))
        if outage is not None:
            return outage, "refused during an injected outage (begin_outage)"
        for index, (refused_tenant, return_code) in enumerate(self._refusals):
            if refused_tenant in (None, tenant):
                del self._refusals[index]
                return return_code, "refused by an injected fault (refuse_next_connects)"
        return None

    def hold_refusal(self, tenant: str, client_id: str, now: float) -> tuple[int, str] | None:
        """(return code, reason) if ``client_id`` is held offline at ``now``; a hold that has
        ended is forgotten."""
        for key in ((tenant, client_id), (None, client_id)):
            hold = self._held.get(key)
            if hold is not None:
                until, return_code = hold
                if now < until:
                    return return_code, f"held offline until {until} (injected fault)"
                del self._held[key]
        return None

    def take_duplicate(self, tenant: str, client_id: str) -> bool:
        """Whether the PUBLISH just sent to ``client_id`` is to be sent again (one use)."""
        for key in ((tenant, client_id), (None, client_id)):
            if self._duplicates.get(key):
                self._duplicates[key] -= 1
                if not self._duplicates[key]:
                    del self._duplicates[key]
                return True
        return False

    def take_lost_puback(self, tenant: str, client_id: str) -> bool:
        """Whether the PUBACK just received from ``client_id`` is lost (one use)."""
        for key in ((tenant, client_id), (None, client_id)):
            if self._lost_pubacks.get(key):
                self._lost_pubacks[key] -= 1
                if not self._lost_pubacks[key]:
                    del self._lost_pubacks[key]
                return True
        return False
